"""``liponet regress``: fit Burgers u(x, t) with every LipMLP variant, certify the max error."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HELP = (
    "solve 1-D Burgers with py-pde, fit each LipMLP variant + an MLP + bilinear interpolation on "
    "a coarse (x, t) grid, certify the max error, validate on dense points"
)

#: Settings of ``--quick`` (an end-to-end run in seconds, e.g. for tests).
QUICK = {
    "n_train": 9,
    "n_reference": 64,
    "width": 16,
    "depth": 2,
    "epochs": 100,
    "n_validation": 20_000,
    "subdivisions": 4,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Study settings, output paths and ``--quick``."""
    from ..studies.regression import VARIANTS, RegressionConfig

    d = RegressionConfig()
    add = parser.add_argument
    add("--quick", action="store_true", help=f"tiny settings for a smoke run: {QUICK}")
    add("--nu", type=float, default=None, help=f"viscosity (default {d.nu})")
    add("--n-train", type=int, default=None, help=f"training nodes per axis (default {d.n_train})")
    add(
        "--n-reference",
        type=int,
        default=None,
        help=f"py-pde cells and time intervals (default {d.n_reference})",
    )
    add("--width", type=int, default=None, help=f"hidden width (default {d.width})")
    add("--depth", type=int, default=None, help=f"hidden layers (default {d.depth})")
    add("--epochs", type=int, default=None, help=f"full-batch Adam steps (default {d.epochs})")
    add("--lr", type=float, default=None, help=f"learning rate (default {d.lr})")
    add("--k", type=float, default=None, help="k of variant 'ak' (default: ceil(L_f))")
    add(
        "--n-validation",
        type=int,
        default=None,
        help=f"random validation points (default {d.n_validation})",
    )
    add(
        "--subdivisions",
        type=int,
        default=None,
        help=f"certification sub-grid per cell and axis (default {d.subdivisions})",
    )
    add(
        "--variants",
        default=None,
        help=f"comma-separated subset of {','.join(VARIANTS)} (default: all)",
    )
    add("--seed", type=int, default=None, help=f"seed (default {d.seed})")
    add(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: these small networks train fastest on one thread; "
        "several threads on a busy machine slow training down by an order of magnitude)",
    )
    add("--plot", default="regress.png", help="PNG to write ('' for none; default regress.png)")
    add("--csv", default="", help="also write the table as CSV to this path")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~liponet.studies.regression.RegressionConfig` the flags describe."""
    from ..studies.regression import RegressionConfig

    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    for name in (
        "nu",
        "n_train",
        "n_reference",
        "width",
        "depth",
        "epochs",
        "lr",
        "k",
        "n_validation",
        "subdivisions",
        "seed",
    ):
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    if args.variants:
        values["variants"] = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    cfg = RegressionConfig(**values)
    cfg.check()
    return cfg


COLUMNS = [
    ("variant", "variant", "{}"),
    ("L_g", "L_g (cert.)", "{:.3g}"),
    ("rmse", "RMSE", "{:.2e}"),
    ("max_error", "max err (obs.)", "{:.2e}"),
    ("bound_global", "bound global", "{:.2e}"),
    ("bound_cell", "bound cell", "{:.2e}"),
    ("bound_envelope", "bound envelope", "{:.2e}"),
    ("floor", "floor", "{:.2e}"),
    ("violations", "violations g/c/e", "{}"),
    ("tightness_envelope", "tightness env.", "{:.2f}"),
    ("tightness_cell", "tightness cell", "{:.2f}"),
]


def format_rows(rows: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The study's rows as an aligned text table (or a markdown table)."""
    table = [[title for _, title, _ in COLUMNS]]
    for row in rows:
        row = dict(row)
        row["violations"] = "/".join(
            str(row[f"violations_{m}"]) for m in ("global", "cell", "envelope")
        )
        table.append([fmt.format(row[key]) for key, _, fmt in COLUMNS])
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in table]
        lines.insert(1, "|" + "|".join("---" for _ in COLUMNS) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in table
    )


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Write every field of the rows as CSV."""
    import csv

    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def describe(info: dict[str, Any]) -> list[str]:
    """Lines stating the target, its constant and the reference's own error."""
    return [
        f"PDE: {info['pde']}",
        f"target f: {info['reference']}; L_f = {info['L_f']:.4g} (certified constant of f)",
        f"exact solution (Cole-Hopf): max |f - u_exact| on the validation points = "
        f"{info['reference_error']:.2e} (sampled); its constant ESTIMATED from neighbour slopes "
        f"on a fine grid: {info['L_exact_estimate']:.4g}",
        f"training grid {info['n_train']}x{info['n_train']} on [0,1]^2; validation "
        f"{info['n_validation']} uniform random points; certification sub-grid "
        f"{info['subdivisions']} per cell and axis; variant 'ak' uses k = {info['k']:g}",
        "bounds certify sup |f - g| over [0,1]^2 (methods: global, cell, envelope); floor = "
        "max over cells of (up - lo)/2, the least any method can certify from the grid values "
        "and L_f; tightness = bound / observed max error",
    ]


def run(args: argparse.Namespace) -> int:
    """Run the study, print the table, write the PNG (and CSV)."""
    import importlib.util

    from ..studies.regression import plot_study, run_regression_study
    from . import UsageError

    needed = {"pde": "py-pde", "scipy": "scipy"} | (
        {"matplotlib": "matplotlib"} if args.plot else {}
    )
    missing = [pkg for mod, pkg in needed.items() if importlib.util.find_spec(mod) is None]
    if missing:
        raise UsageError(f"needs {', '.join(missing)}: pip install 'liponet[pde,plot]'")
    cfg = config_from_args(args)
    if args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f}s] {message}", file=sys.stderr, flush=True)

    study = run_regression_study(cfg, progress)
    print("\n".join(describe(study.info)))
    print()
    print(format_rows(study.rows))
    labels = {row["label"] for row in study.rows}
    print(f"\nlabels: {', '.join(sorted(labels))}; total {study.info['total_s']:.1f}s")
    if args.plot:
        plot_study(study, args.plot)
        print(f"plot: {args.plot}")
    if args.csv:
        write_csv(study.rows, args.csv)
        print(f"csv: {args.csv}")
    return 0
