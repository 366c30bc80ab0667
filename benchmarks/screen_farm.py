"""Screen many LipFNO/FNO configurations of the ``medium`` bench at once, on a GPU or on CPUs.

A *screen* picks which configurations deserve the bench's three-seed rows; it is never a table
row itself (a GPU's float32 kernels reorder sums, so its figures differ from the CPU's in the
last digits and a 1500-step training run amplifies that into a few per cent). Each job trains one
configuration (model keywords + optimizer settings) on one ``medium`` task with the bench's own
code path (:func:`liponet.bench.run_row`: the Trainer, the test rollout, the certificate), and
writes one CSV row with its name, its test nRMSE and its certified bound as soon as it finishes.

The grids (``--grid``):

- ``darcy``: LipFNO's convex-potential blocks at k 1.3 / 2 / 3, twice the features, 8 / 10
  kept modes, three blocks, the fused Fourier block; learning rates 5e-3 / 1e-2 / 2e-2; the
  preset's recipe (cosine per epoch, weight decay 1e-4), per-step cosine, per-step cosine without
  weight decay; FNO at 1e-2 / 2e-2 / 3e-2 under the same three recipes.
- ``burgers``: two- and three-block LipFNO-wide, three-times features with two blocks, 16 kept
  modes; learning rates 5e-3 / 1e-2 / 2e-2 under the per-step recipes; FNO at 1e-3 / 3e-3.

Jobs run in ``--workers`` processes that take them from one queue (each worker reads each task's
data once); a job that would start after ``--deadline-s`` is skipped, so a run stopped by a
time limit keeps every finished row. Run from the repository root::

    python benchmarks/screen_farm.py --grid darcy burgers --device cuda --workers 12 \\
        --work-dir DATA --out OUT --deadline-s 420
    python benchmarks/screen_farm.py --grid darcy --quick --workers 2   # smoke run on the CPU

Writes ``screen_farm.csv`` (one row per job) and ``screen_farm.md`` (per task, sorted by nRMSE,
with the ratio to the task's best FNO of the same run) to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import multiprocessing as mp
import os
import platform
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from liponet.bench import (
    PRESETS,
    Builder,
    Preset,
    fno_builder,
    lipfno_builder,
    load_task,
    run_row,
    with_overrides,
)

#: LipFNO keywords pinned in every configuration (a change of LipFNO's defaults changes no row).
CPL: dict[str, Any] = {
    "block": "cpl",
    "normalization": "clip",
    "increment": False,
    "budget": "last",
}

#: Recipes: suffix -> preset overrides (the bench's ``RECIPE_SUFFIXES`` and the preset's own).
RECIPES: dict[str, dict[str, Any]] = {
    "": {},
    "-cos": {"schedule_unit": "step"},
    "-cos-wd0": {"schedule_unit": "step", "weight_decay": 0.0},
}

#: Preset fields a configuration may override (the rest goes to the model's constructor).
PRESET_KEYS = ("width", "depth", "lr", "weight_decay", "schedule_unit", "input_noise")

#: Per task: network name -> (family, keywords). ``modes``/``depth``/``hidden_factor`` go to
#: the bench's builders as in ``liponet.bench``.
NETWORKS: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {
    "darcy_2d": {
        "FNO": ("FNO", {}),
        "cpl-k1.3": ("LipFNO", {**CPL, "k": 1.3}),
        "cpl-k3": ("LipFNO", {**CPL, "k": 3.0}),
        "cpl-k2": ("LipFNO", {**CPL, "k": 2.0}),
        "wide-k1.3": ("LipFNO", {**CPL, "k": 1.3, "hidden_factor": 2}),
        "m8-k3": ("LipFNO", {**CPL, "k": 3.0, "modes": 8}),
        "m8-k1.3": ("LipFNO", {**CPL, "k": 1.3, "modes": 8}),
        "m10-k3": ("LipFNO", {**CPL, "k": 3.0, "modes": 10}),
        "d3-k3": ("LipFNO", {**CPL, "k": 3.0, "depth": 3}),
        "wide-m8-k1.3": ("LipFNO", {**CPL, "k": 1.3, "hidden_factor": 2, "modes": 8}),
        "fourier-k3": ("LipFNO", {**CPL, "block": "fourier", "k": 3.0}),
    },
    "burgers_1d": {
        "FNO": ("FNO", {}),
        "wide-d2": ("LipFNO", {**CPL, "k": 1.3, "hidden_factor": 2, "depth": 2}),
        "wide-d3": ("LipFNO", {**CPL, "k": 1.3, "hidden_factor": 2, "depth": 3}),
        "wide3-d2": ("LipFNO", {**CPL, "k": 1.3, "hidden_factor": 3, "depth": 2}),
        "wide-d2-m16": ("LipFNO", {**CPL, "k": 1.3, "hidden_factor": 2, "depth": 2, "modes": 16}),
        "wide-d2-k1.6": ("LipFNO", {**CPL, "k": 1.6, "hidden_factor": 2, "depth": 2}),
    },
}

#: Per task and family: the learning rates and recipes of the grid.
RATES: dict[str, dict[str, tuple[float, ...]]] = {
    "darcy_2d": {"FNO": (1e-2, 2e-2, 3e-2), "LipFNO": (5e-3, 1e-2, 2e-2)},
    "burgers_1d": {"FNO": (1e-3, 3e-3), "LipFNO": (5e-3, 1e-2, 2e-2)},
}
GRID_RECIPES: dict[str, tuple[str, ...]] = {
    "darcy_2d": ("", "-cos", "-cos-wd0"),
    "burgers_1d": ("-cos", "-cos-wd0"),
}
GRIDS = {"darcy": "darcy_2d", "burgers": "burgers_1d"}

FIELDS = (
    "task",
    "config",
    "network",
    "family",
    "lr",
    "recipe",
    "seed",
    "status",
    "nrmse",
    "val_nrmse",
    "lipschitz_certified",
    "train_s",
    "steps",
    "device",
    "error",
)


def jobs_for(task: str, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """Every (network, rate, recipe, seed) job of one task's grid, FNO's first."""
    jobs = []
    for seed, (network, (family, _)) in itertools.product(seeds, NETWORKS[task].items()):
        for lr, suffix in itertools.product(RATES[task][family], GRID_RECIPES[task]):
            name = f"{network}-lr{lr:g}{suffix}"
            jobs.append(
                dict(
                    task=task,
                    config=name,
                    network=network,
                    family=family,
                    lr=lr,
                    recipe=suffix or "-epoch",
                    seed=seed,
                )
            )
    return sorted(jobs, key=lambda j: (j["seed"], j["family"] != "FNO"))


def build_job(job: Mapping[str, Any], preset: Preset) -> tuple[Builder, Preset]:
    """The builder and training preset of one job."""
    family, keywords = NETWORKS[job["task"]][job["network"]]
    kw = dict(keywords)
    changes = {key: kw.pop(key) for key in PRESET_KEYS if key in kw}
    changes.update(RECIPES[job["recipe"] if job["recipe"] != "-epoch" else ""])
    changes["lr"] = job["lr"]
    builder = fno_builder(**kw) if family == "FNO" else lipfno_builder(**kw)
    return builder, with_overrides(preset, **changes)


def _worker(queue: Any, args: argparse.Namespace, csv_path: Path, t0: float) -> None:
    torch.set_num_threads(1)
    preset = quick_preset() if args.quick else PRESETS["medium"]
    cache: dict[str, Any] = {}
    while True:
        job = queue.get()
        if job is None:
            return
        if time.time() - t0 > args.deadline_s:
            continue
        row: dict[str, Any] = {**job, "device": args.device}
        try:
            if job["task"] not in cache:
                cache[job["task"]] = load_task(job["task"], preset, None, args.work_dir, 0)
            builder, train_preset = build_job(job, preset)
            r = run_row(
                job["config"],
                cache[job["task"]],
                train_preset,
                job["seed"],
                builder=builder,
                device=args.device,
            )
            row.update({k: r.get(k, "") for k in FIELDS if k in r and k not in job})
            row["status"] = r["status"]
        except Exception as exc:  # a failed job is a row too: the screen goes on
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}"[:300])
        with csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS, extrasaction="ignore")
            writer.writerow({k: row.get(k, "") for k in FIELDS})
        print(
            f"{row['task']} {row['config']} seed {row['seed']}: {row.get('status')} "
            f"nrmse {row.get('nrmse', '')} L {row.get('lipschitz_certified', '')} "
            f"{time.time() - t0:.0f} s",
            flush=True,
        )


def quick_preset() -> Preset:
    """A tiny preset for the smoke run."""
    return with_overrides(
        PRESETS["medium"],
        name="screen-quick",
        n_samples=48,
        steps=6,
        width=6,
        n_calib=16,
        n_query=8,
        nx={**PRESETS["medium"].nx, "darcy_2d": 16, "burgers_1d": 32},
    )


def markdown(rows: Sequence[Mapping[str, str]], settings: str) -> str:
    """Per task, the rows sorted by nRMSE with their ratio to the task's best FNO."""
    out = [
        "# Screen of LipFNO / FNO configurations (medium preset)",
        "",
        "Regenerate: `python benchmarks/screen_farm.py --grid ... --device ... --out ...`. "
        "A screen picks configurations for the bench's three-seed rows; it is not a table of "
        "the bench (other device, one seed).",
        "",
        f"Settings: {settings}",
    ]
    for task in sorted({r["task"] for r in rows}):
        ok = [r for r in rows if r["task"] == task and r["status"] == "ok"]
        fno = [float(r["nrmse"]) for r in ok if r["family"] == "FNO"]
        best = min(fno) if fno else math.nan
        out += [
            "",
            f"## {task} (best FNO {best:.4g})",
            "",
            "| config | seed | nRMSE | / best FNO | certified L | train_s |",
            "|---|---|---|---|---|---|",
        ]
        for r in sorted(ok, key=lambda r: float(r["nrmse"])):
            out.append(
                f"| {r['config']} | {r['seed']} | {float(r['nrmse']):.4g} | "
                f"{float(r['nrmse']) / best:.3g} | {float(r['lipschitz_certified']):.3g} | "
                f"{float(r['train_s']):.0f} |"
            )
        bad = [r for r in rows if r["task"] == task and r["status"] != "ok"]
        for r in bad:
            out.append(f"\n- {r['config']} seed {r['seed']}: {r['status']} {r['error']}")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--grid", nargs="+", choices=tuple(GRIDS), default=["darcy"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", default="bench-work")
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--deadline-s", type=float, default=math.inf)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--from-csv", action="store_true", help="only rebuild the markdown")
    parser.add_argument("--note", default="", help="a sentence on this run for the markdown")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "screen_farm.csv"
    settings = (
        f"grids {', '.join(args.grid)}, seeds {args.seeds}, device {args.device}, "
        f"{args.workers} worker processes of one torch thread, torch {torch.__version__}, "
        f"{platform.machine()}"
    )
    if args.note:
        settings = f"{args.note} {settings}"
    if not args.from_csv:
        if not csv_path.is_file():
            with csv_path.open("w", newline="") as fh:
                csv.DictWriter(fh, fieldnames=FIELDS).writeheader()
        per_grid = [jobs_for(GRIDS[g], args.seeds) for g in args.grid]
        jobs = [j for group in itertools.zip_longest(*per_grid) for j in group if j is not None]
        if args.quick:
            jobs = jobs[:: max(1, len(jobs) // 6)]
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        for job in jobs:
            queue.put(job)
        for _ in range(args.workers):
            queue.put(None)
        t0 = time.time()
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        procs = [
            ctx.Process(target=_worker, args=(queue, args, csv_path, t0))
            for _ in range(args.workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    (out / "screen_farm.md").write_text(markdown(rows, settings))
    print(out / "screen_farm.md")


if __name__ == "__main__":
    main()
