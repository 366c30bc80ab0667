"""What closes the gap: LipFNO / LipDeepONet expressivity variants against the unconstrained twins.

Same tasks, data, training and metrics as ``liponet bench --preset small`` (1-D advection and
Burgers, rollout nRMSE on the test split, PDEBench corrections), one row per variant, with its
certified Lipschitz bound and its nRMSE relative to the unconstrained twin (FNO / DeepONet).

Variants: (a) every layer 1-Lipschitz, last layer ``k`` (k = 1, and k = 4); (a, orthogonal)
Björck-orthogonalised Fourier multipliers; (b) free last layer; (c) trainable per-channel output
scale; (b + c); (d) auxiliary-network scale (LipFNO: certified on the ball of radius 1.5 x the
largest training-input norm; LipDeepONet: on the query domain); LipDeepONet without the periodic
trunk embedding (harmonics 0).

Run from the repository root: ``.venv/bin/python benchmarks/closing_gap.py`` (``--quick``:
smoke run). Writes ``benchmarks/results/closing_gap.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from liponet.bench import (
    MODELS,
    PRESETS,
    BenchData,
    Preset,
    deeponet_builder,
    lipfno_builder,
    load_task,
    run_row,
)

RESULTS = Path("benchmarks/results")


lipfno = lipfno_builder


def lipdeeponet(**kw: Any) -> Callable[[BenchData, Preset], nn.Module]:
    return deeponet_builder(constrained=True, **kw)


VARIANTS: dict[str, tuple[str, Callable[[BenchData, Preset], nn.Module]]] = {
    "FNO (twin)": ("FNO", MODELS["FNO"]),
    "LipFNO a (k=1)": ("FNO", lipfno()),
    "LipFNO a (k=4)": ("FNO", lipfno(k=4.0)),
    "LipFNO a (orthogonal)": ("FNO", lipfno(normalization="orthogonal")),
    "LipFNO b (free last)": ("FNO", lipfno(free_last_layer=True)),
    "LipFNO c (vector scale)": ("FNO", lipfno(output_scale="vector")),
    "LipFNO b+c": ("FNO", lipfno(free_last_layer=True, output_scale="vector")),
    "LipFNO d (auxiliary)": ("FNO", lipfno(output_scale="auxiliary")),
    "DeepONet (twin)": ("DeepONet", MODELS["DeepONet"]),
    "LipDeepONet a (k=1)": ("DeepONet", lipdeeponet()),
    "LipDeepONet a (k=4)": ("DeepONet", lipdeeponet(k=4.0)),
    "LipDeepONet b (free last)": ("DeepONet", lipdeeponet(free_last_layer=True)),
    "LipDeepONet c (vector scale)": ("DeepONet", lipdeeponet(output_scale="vector")),
    "LipDeepONet b+c": ("DeepONet", lipdeeponet(free_last_layer=True, output_scale="vector")),
    "LipDeepONet d (auxiliary)": ("DeepONet", lipdeeponet(output_scale="auxiliary")),
    "LipDeepONet a, no harmonics": ("DeepONet", lipdeeponet(harmonics=0)),
}

COLS = ["task", "variant", "nrmse", "nrmse / twin", "lipschitz_certified", "params", "train_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny preset)")
    parser.add_argument("--tasks", nargs="+", default=["advection_1d", "burgers_1d"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    preset = PRESETS["tiny" if args.quick else "small"]
    if args.quick:
        args.tasks = ["advection_1d"]
    rows: list[dict[str, Any]] = []
    for task in args.tasks:
        with tempfile.TemporaryDirectory() as tmp:
            data = load_task(task, preset, None, tmp)
        twins: dict[str, float] = {}
        for variant, (twin, builder) in VARIANTS.items():
            r = run_row(variant, data, preset, builder=builder)
            if variant.endswith("(twin)"):
                twins[twin] = r["nrmse"]
            rows.append(
                {
                    "task": task,
                    "variant": variant,
                    "nrmse": r["nrmse"],
                    "nrmse / twin": r["nrmse"] / twins[twin],
                    "lipschitz_certified": r["lipschitz_certified"],
                    "params": r["params"],
                    "train_s": r["train_s"],
                }
            )
            print(f"{task} {variant}: nrmse {r['nrmse']:.3g}, L {r['lipschitz_certified']:.3g}")
    write(rows, preset, time.perf_counter() - start)


def write(rows: list[dict[str, Any]], preset: Preset, seconds: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / "closing_gap.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLS)
        w.writeheader()
        w.writerows(rows)
    md = [
        "# What closes the gap: expressivity variants vs unconstrained twins",
        "",
        f"Settings: preset `{preset.name}` data and training ({preset.steps} Adam steps, batch "
        f"{preset.batch}, lr {preset.lr}, width {preset.width}, modes {preset.modes}, DeepONet "
        f"width {preset.onet_width}, basis {preset.onet_basis}), rollout nRMSE on the test split "
        f"(input frames excluded), 1 torch thread, {platform.machine()}; total {seconds:.0f} s. "
        "`lipschitz_certified` = lipschitz_bound() (function norm; variant d of LipFNO on a ball "
        "of inputs only).",
        "",
        "| " + " | ".join(COLS) + " |",
        "|" + "---|" * len(COLS),
    ]
    for r in rows:
        md.append(
            "| "
            + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in COLS)
            + " |"
        )
    (RESULTS / "closing_gap.md").write_text("\n".join(md) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for task, marker in zip(dict.fromkeys(r["task"] for r in rows), "os^", strict=False):
        for r in (r for r in rows if r["task"] == task):
            ax.scatter(
                r["lipschitz_certified"],
                r["nrmse"],
                marker=marker,
                c="C0" if "FNO" in r["variant"] else "C1",
                s=20,
            )
            ax.annotate(f"{r['variant']}", (r["lipschitz_certified"], r["nrmse"]), fontsize=4)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="certified Lipschitz bound",
        ylabel="rollout nRMSE (test)",
        title="accuracy vs certified bound (o advection, s Burgers)",
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "closing_gap.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
