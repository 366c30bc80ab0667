"""Accuracy against certified constant: the front of test nRMSE vs certified L, per task.

For each task of a ``liponet bench`` preset (default ``medium``: same data, training through the
Trainer, metrics and certificates as ``liponet bench --preset medium``), LipFNO variants are
trained with the last-layer budget ``k`` swept from the data's own constant ``L_data`` up to 4
(increment variants ``u_last + f(x)``: the budget of ``f`` from 0.25 to 3, certified ``1 + k``),
next to FNO (its certified bound is the product of its layer norms). ``L_data`` is the bench's
``L_G`` of the one-step map between the file's grid samples: certified only where a theorem
matches the file's ``discretization`` attribute, else the largest ratio over calibration pairs
(labelled estimated). Each row: nRMSE (rollout, test split), its ratio to FNO's, and the certified
``lipschitz_bound()`` of the trained model, so a reader sees what each unit of certificate costs.

Run from the repository root (1 torch thread; rows are appended to the CSV as they finish and a
rerun skips the rows already there)::

    .venv/bin/python benchmarks/lipschitz_front.py --work-dir /tmp/liponet-medium
    .venv/bin/python benchmarks/lipschitz_front.py --from-csv   # tables and plot from the CSV

``--quick`` runs the ``tiny`` preset (smoke test). Writes
``benchmarks/results/lipschitz_front.{csv,md,png}``.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from _plot import panel_row, pyplot

from liponet.bench import (
    MODELS,
    PRESETS,
    BenchData,
    Preset,
    certificate_columns,
    lipfno_builder,
    load_task,
    preset_settings,
    read_rows,
    run_row,
    with_overrides,
)

RESULTS = Path("benchmarks/results")
STEM = "lipschitz_front"

#: LipFNO variants whose front is swept: name -> keywords (``k`` is added per point). The
#: keywords are pinned (as the bench's rows), so a change of LipFNO's defaults changes nothing.
VARIANTS: dict[str, dict[str, Any]] = {
    "LipFNO clip": {"normalization": "clip", "block": "fourier", "increment": False},
    "LipFNO inc": {"normalization": "clip", "block": "cpl", "increment": True},
}
#: Budgets of the increment ``f`` of increment variants (certified ``1 + k``: 1.25 to 4).
K_INCREMENT = (0.25, 0.5, 1.0, 2.0, 3.0)
#: Budgets above the data's constant (``L_data`` itself is always the first point).
K_GRID = (2.0, 3.0, 4.0)

COLUMNS = (
    "task",
    "variant",
    "k",
    "seed",
    "status",
    "nrmse",
    "val_nrmse",
    "nrmse_ratio",
    "lipschitz_certified",
    "L_data",
    "L_data_label",
    "train_s",
    "steps",
    "params",
    "source",
)

#: Rows of ``bench_medium.csv`` that are points of a front (same preset, data, seed and
#: training): (variant, k) -> the bench's model name. FNO's row is reused the same way.
FROM_BENCH: dict[tuple[str, float], str] = {("LipFNO clip", 3.0): "LipFNO-clip"}


def k_values(l_data: float, grid: Sequence[float] = K_GRID) -> list[float]:
    """``L_data`` (rounded up to 3 digits) then every grid value clearly above it."""
    first = math.ceil(l_data * 1000) / 1000
    return [first, *(k for k in grid if k > 1.05 * first)]


def data_constant(data: BenchData, preset: Preset) -> tuple[float, str]:
    """The bench's ``L_G`` of the task (value, label), from a row's certificate columns."""
    fno = MODELS["FNO"](data, preset).eval()  # certificates cover the eval-mode function

    def f(x: torch.Tensor) -> torch.Tensor:
        return fno(x)

    cols = certificate_columns(fno, f, data, preset)
    return float(cols["L_G"]), str(cols["L_G_label"])


def append(path: Path, row: Mapping[str, Any]) -> None:
    new = not path.is_file() or path.stat().st_size == 0
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, restval="", lineterminator="\n")
    if new:
        writer.writeheader()
    writer.writerow({k: row.get(k, "") for k in COLUMNS})
    with path.open("a", newline="") as fh:
        fh.write(buffer.getvalue())


def read(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as fh:
        for raw in csv.DictReader(fh):
            row: dict[str, Any] = dict(raw)
            for key in ("k", "nrmse", "val_nrmse", "nrmse_ratio", "lipschitz_certified"):
                row[key] = float(raw[key]) if raw[key] else math.nan
            for key in ("L_data", "train_s"):
                row[key] = float(raw[key]) if raw[key] else math.nan
            row["seed"] = int(raw["seed"])
            rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3g}"
    return str(v)


def markdown(rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any]) -> str:
    lines = [
        "# Accuracy against certified constant (nRMSE vs certified L)",
        "",
        "Regenerate: `.venv/bin/python benchmarks/lipschitz_front.py` (rows appended to the CSV "
        "as they finish; `--from-csv` rebuilds this file and the PNG from the CSV alone).",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
        "Each LipFNO variant is trained with its last-layer budget `k` from the data's constant "
        "`L_data` (the bench's `L_G` of the one-step map between the file's grid samples: "
        "certified only where a theorem matches the file's `discretization` attribute, else the "
        "largest ratio over calibration pairs, estimated; the label is in the table) up to 4; "
        "`lipschitz_certified` is the trained model's certified bound (k for LipFNO, up to the "
        "float32 rounding the certificate includes), "
        "`nRMSE / FNO` the ratio to FNO trained the same way (same seed). `cost per unit` = how "
        "much nRMSE / FNO drops per unit of certified L from the previous point of the same "
        "variant (the price of the certificate at that budget).",
        "",
    ]
    for task in dict.fromkeys(r["task"] for r in rows):
        lines += [f"## {task}", ""]
        lines += [
            "| variant | k | seed | nRMSE | nRMSE / FNO | certified L | L_data | cost per unit "
            "| train_s | source |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        task_rows = [r for r in rows if r["task"] == task and r["status"] == "ok"]
        for variant in dict.fromkeys(r["variant"] for r in task_rows):
            prev: Mapping[str, Any] | None = None
            for r in sorted(
                (r for r in task_rows if r["variant"] == variant), key=lambda r: r["k"]
            ):
                cost = math.nan
                if prev is not None:
                    dl = r["lipschitz_certified"] - prev["lipschitz_certified"]
                    if dl > 0:
                        cost = (prev["nrmse_ratio"] - r["nrmse_ratio"]) / dl
                k = "-" if math.isnan(r["k"]) else _fmt(r["k"])
                lines.append(
                    f"| {variant} | {k} | {r['seed']} | {_fmt(r['nrmse'])} "
                    f"| {_fmt(r['nrmse_ratio'])} | {_fmt(r['lipschitz_certified'])} "
                    f"| {_fmt(r['L_data'])} ({r['L_data_label']}) | {_fmt(cost)} "
                    f"| {_fmt(r['train_s'])} | {r.get('source', '')} |"
                )
                prev = r
        lines.append("")
    return "\n".join(lines)


def plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    ok = [r for r in rows if r["status"] == "ok"]
    tasks = list(dict.fromkeys(r["task"] for r in ok))
    if pyplot() is None or not tasks:
        return None
    with panel_row(path, len(tasks), (4.2, 3.8)) as axes:
        _draw(axes, tasks, ok)
        axes[0].set_ylabel("test nRMSE (rollout)")
        axes[0].legend(loc="best", fontsize=7)
    return path


def _draw(axes: list[Any], tasks: list[str], ok: list[Mapping[str, Any]]) -> None:
    """One panel per task: nRMSE against the certified bound, one line per variant."""
    for ax, task in zip(axes, tasks, strict=True):
        task_rows = [r for r in ok if r["task"] == task]
        for variant in dict.fromkeys(r["variant"] for r in task_rows):
            pts = sorted(
                (r for r in task_rows if r["variant"] == variant),
                key=lambda r: r["lipschitz_certified"],
            )
            xs = [r["lipschitz_certified"] for r in pts]
            ys = [r["nrmse"] for r in pts]
            style = "*" if variant == "FNO" else "o-"
            ax.plot(xs, ys, style, label=variant, markersize=9 if variant == "FNO" else 5)
        fno = [r["nrmse"] for r in task_rows if r["variant"] == "FNO"]
        if fno:
            ax.axhline(fno[0], color="gray", ls="--", lw=0.8)
        ax.axvline(task_rows[0]["L_data"], color="k", ls=":", lw=0.8, label="L_data")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("certified Lipschitz bound")
        ax.set_title(task, fontsize=9)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--preset", default="medium", choices=tuple(PRESETS))
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny preset)")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=tuple(VARIANTS), metavar="V"
    )
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument(
        "--steps", type=int, default=None, help="override the preset's steps (as liponet bench)"
    )
    parser.add_argument("--work-dir", default=None, help="generated data (reused when present)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--from-csv", action="store_true", help="only rebuild md/png")
    parser.add_argument(
        "--bench-csv",
        default=str(RESULTS / "bench_medium.csv"),
        help="reuse its rows that are points of a front (same preset, seed and training)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = with_overrides(PRESETS["tiny" if args.quick else args.preset], steps=args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{STEM}.csv"
    settings = {
        **preset_settings(preset),
        "data seed": 0,
        "torch threads": 1,
        "machine": platform.machine(),
    }
    if not args.from_csv:
        done = {
            (r["task"], r["variant"], _fmt(r["k"]), r["seed"])
            for r in read(csv_path)
            if r["status"] == "ok"
        }
        bench_csv = Path(args.bench_csv)
        bench_rows = read_rows(bench_csv) if bench_csv.is_file() else []
        with tempfile.TemporaryDirectory(prefix="liponet-front-") as tmp:
            for task in args.tasks or preset.tasks:
                data = load_task(task, preset, None, args.work_dir or tmp, 0)
                l_data, label = data_constant(data, preset)
                todo: list[tuple[str, float, Any]] = [("FNO", math.nan, MODELS["FNO"])]
                for variant in args.variants:
                    grid = K_INCREMENT if VARIANTS[variant].get("increment") else k_values(l_data)
                    for k in grid:
                        todo.append((variant, k, lipfno_builder(**VARIANTS[variant], k=k)))
                fno_nrmse = next(
                    (
                        r["nrmse"]
                        for r in read(csv_path)
                        if r["task"] == task and r["variant"] == "FNO" and r["seed"] == args.seed
                    ),
                    math.nan,
                )
                for variant, k, builder in todo:
                    if (task, variant, _fmt(k), args.seed) in done:
                        continue
                    start = time.perf_counter()
                    bench_name = "FNO" if variant == "FNO" else FROM_BENCH.get((variant, k))
                    reused = [
                        b
                        for b in bench_rows
                        if preset.name == "medium"
                        and (b["task"], b["model"], b["seed"]) == (task, bench_name, args.seed)
                        and b["status"] == "ok"
                    ]
                    if reused:
                        r = {**reused[0], "source": Path(args.bench_csv).name}
                    else:
                        r = run_row(variant, data, preset, args.seed, builder=builder)
                        r["source"] = "run"
                    if variant == "FNO":
                        fno_nrmse = r["nrmse"]
                    row = {
                        **{c: r.get(c, "") for c in COLUMNS if c in r},
                        "variant": variant,
                        "k": k,
                        "nrmse_ratio": r["nrmse"] / fno_nrmse,
                        "L_data": l_data,
                        "L_data_label": label,
                    }
                    append(csv_path, row)
                    print(
                        f"{task} {variant} k={_fmt(k)}: nrmse {r['nrmse']:.4g} "
                        f"({row['nrmse_ratio']:.3g}x FNO), certified L "
                        f"{r['lipschitz_certified']:.3g}, {time.perf_counter() - start:.0f} s wall",
                        flush=True,
                    )
    rows = read(csv_path)
    (out / f"{STEM}.md").write_text(markdown(rows, settings))
    plot(rows, out / f"{STEM}.png")
    print(out / f"{STEM}.md")


if __name__ == "__main__":
    main()
