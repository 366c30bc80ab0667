"""Trainer step time of each ``medium`` bench model against the bench's FNO, task by task.

``benchmarks/results/bench_medium.md``'s ``train_s`` column was measured one row after another,
on a shared machine, with the code of its day. This script measures what issue 13 asks of the
best variant (train time <= 1.3x FNO's) side by side: for every task of the ``medium`` preset
(``liponet.bench.PRESETS["medium"]``: 1-D advection with 64 kept modes, Burgers and
diffusion-reaction with 12, on 128 cells; Darcy on 32 x 32 with 12 x 12 modes and domain
padding 1/8) it builds each model exactly as ``liponet bench --preset medium`` does
(``liponet.bench.MODELS``: FNO, LipFNO, LipFNO-clip, LipFNO-inc, LipFNO-wide, and the
two-block LipFNO-d2 and LipFNO-inc-d2), wraps it in a
:class:`liponet.train.Trainer` configured as the bench configures it
(``liponet.bench.train_config``: Adam, relative L2 loss, batch 32) and times the Trainer's own
optimizer step (forward, loss, backward, gradient norm, Adam step) on one batch, all models of a
task in interleaved rounds in one process, one torch thread, median process CPU time.

The inputs are random fields of the tasks' shapes (``initial_step`` frames as channels, the
preset's grids), not the generated data: a step's cost does not depend on the values. The one
data-dependent setting, LipFNO-inc's ``k="auto"``, is resolved from these windows as the bench
resolves it from its data; ``k`` scales the weights and changes no operation.

Run from the repository root: ``.venv/bin/python benchmarks/medium_step_time.py`` (a few CPU
minutes; ``--quick`` for a smoke run, ``--rounds N``). Writes
``benchmarks/results/medium_step_time.{md,csv,png}``. ``--tasks T ...`` measures only those
tasks and keeps the other tasks' rows of the existing CSV (the markdown says which rows came
from which run); ``--models M ...`` measures further bench models beside :data:`VARIANTS` (the
variants a task-specific study adds, e.g. Burgers' two-block ``LipFNO-wide-d2``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import pathlib
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from _plot import panel_row
from fno_common import interleaved_ms, write_csv, write_report

from liponet.bench import (
    MODEL_TRAINING,
    MODELS,
    PRESETS,
    TASKS,
    BenchData,
    Preset,
    train_config,
    with_overrides,
)
from liponet.train import ConstraintWarning, DistContext, Trainer

RESULTS = Path("benchmarks/results")
#: The bench models of the ``medium`` table, and the baseline (first).
VARIANTS = (
    "FNO",
    "LipFNO",
    "LipFNO-clip",
    "LipFNO-inc",
    "LipFNO-wide",
    "LipFNO-d2",
    "LipFNO-inc-d2",
)
#: Training windows of the random data (what ``k="auto"`` is resolved from).
N_WINDOWS = 256


def task_data(task: str, preset: Preset, generator: torch.Generator) -> BenchData:
    """Random one-step windows with the shapes of ``task`` under ``preset``."""
    spec = TASKS[task]
    spatial = tuple(preset.nx[task] // preset.strides[task][0] for _ in range(spec.dims))
    step = preset.initial_step[task]
    channels = 1  # every medium task has one field
    cin = channels if spec.coefficient else step * channels

    def field(c: int) -> torch.Tensor:
        return torch.randn(N_WINDOWS, c, *spatial, generator=generator)

    x, y = field(cin), field(channels)
    return BenchData(
        task=spec,
        path=pathlib.Path("random"),
        initial_step=step,
        x_train=x,
        y_train=y,
        x_test=x,
        y_test=y,
        x_val=x,
        y_val=y,
        traj_test=None,
        traj_val=None,
        in_channels=cin,
        out_channels=channels,
        spatial=spatial,
        dt=1.0,
    )


def trainer_step(
    model: torch.nn.Module, data: BenchData, preset: Preset, folder: str
) -> Callable[[], None]:
    """One optimizer step of the bench's Trainer on the first batch of ``data``.

    An unrolled variant (``preset.unroll = K``) steps on ``K`` target frames (the frame
    repeated: a step's cost does not depend on the values).
    """
    y_train = data.y_train.repeat(1, preset.unroll, *(1,) * (data.y_train.ndim - 2))
    train_set = torch.utils.data.TensorDataset(data.x_train, y_train)
    config = train_config(data, preset, 0, folder, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstraintWarning)
        trainer = Trainer(
            config,
            train_set,
            train_set,
            ctx=DistContext(device=torch.device("cpu")),
            model=model,
            progress=False,
        )
    x, y = data.x_train[: preset.batch], y_train[: preset.batch]

    def step() -> None:
        trainer._train_step(x, y, len(x))

    return step


def measure(
    preset: Preset,
    tasks: tuple[str, ...],
    rounds: int,
    variants: tuple[str, ...] | dict[str, tuple[str, ...]] = VARIANTS,
) -> list[dict]:
    """Step times of ``variants`` (one tuple for every task, or a tuple per task) on ``tasks``."""
    rows = []
    generator = torch.Generator().manual_seed(0)
    per_task = variants if isinstance(variants, dict) else dict.fromkeys(tasks, variants)
    for task in tasks:
        variants = per_task[task]
        data = task_data(task, preset, generator)
        with tempfile.TemporaryDirectory(prefix="liponet-step-time-") as folder:
            fns = {}
            kept: dict[str, int] = {}  # kept modes per dimension of each model
            for name in variants:
                torch.manual_seed(0)
                model = MODELS[name](data, preset)
                kept[name] = int(getattr(model, "modes", (0,))[0])  # LipFNO-m8: 8, not 12
                # a training variant's settings (e.g. input_noise, one more randn per batch)
                own = with_overrides(preset, **MODEL_TRAINING.get(name, {}))
                fns[name] = trainer_step(model, data, own, f"{folder}/{name}")
            ms = interleaved_ms(fns, rounds)
        for name in variants:
            rows.append(
                {
                    "task": task,
                    "model": name,
                    "grid": "x".join(str(n) for n in data.spatial),
                    "modes": kept[name],
                    "ms": ms[name],
                    "FNO_ms": ms["FNO"],
                    "ratio_to_FNO": ms[name] / ms["FNO"],
                }
            )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows if r["model"] != "FNO"))
    with panel_row(path, 1, (7, 3.5)) as (ax,):
        width = 0.8 / len(models)
        for j, name in enumerate(models):
            ratio = {r["task"]: float(r["ratio_to_FNO"]) for r in rows if r["model"] == name}
            values = [ratio.get(t, float("nan")) for t in tasks]
            ax.bar([i + (j - (len(models) - 1) / 2) * width for i in range(len(tasks))], values,
                   width, label=name)  # fmt: skip
        ax.axhline(1.3, color="grey", lw=0.8, ls="--", label="target 1.3")
        ax.axhline(1.0, color="black", lw=0.6)
        ax.set_xticks(range(len(tasks)), tasks, fontsize=7)
        ax.set_ylabel("Trainer step CPU time / FNO's")
        ax.legend(loc="best", fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds per task")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--tasks", nargs="+", help="measure only these (the CSV's other tasks' rows are kept)"
    )
    parser.add_argument("--models", nargs="+", default=[], help="bench models besides VARIANTS")
    parser.add_argument(
        "--csv-models",
        action="store_true",
        help="measure each task's models of the existing CSV too (every model measured before)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = PRESETS["medium"]
    tasks = tuple(args.tasks or preset.tasks)
    unknown = [t for t in tasks if t not in preset.tasks]
    unknown += [m for m in args.models if m not in MODELS]
    if unknown:
        parser.error(
            f"unknown task or model {unknown}; tasks: {preset.tasks}, models: {list(MODELS)}"
        )
    variants = tuple(dict.fromkeys((*VARIANTS, *args.models)))
    csv_path = args.out / "medium_step_time.csv"
    per_task: dict[str, tuple[str, ...]] = dict.fromkeys(tasks, variants)
    if args.csv_models and csv_path.exists():
        with csv_path.open() as fh:
            earlier = [r for r in csv.DictReader(fh) if r["model"] in MODELS]
        for task in tasks:
            own = [r["model"] for r in earlier if r["task"] == task]
            per_task[task] = tuple(dict.fromkeys((*variants, *own)))
    rounds = args.rounds
    if args.quick:
        preset = dataclasses.replace(
            preset,
            nx={t: 32 for t in tasks},
            width=8,
            modes=4,
            batch=4,
        )
        rounds = 2
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    rows = measure(preset, tasks, rounds, per_task)
    load_end = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    kept: list[dict] = []
    if args.tasks and csv_path.exists():  # the other tasks' rows of an earlier run
        with csv_path.open() as fh:
            kept = [r for r in csv.DictReader(fh) if r["task"] not in tasks]
        kept = [{**r, **{k: float(r[k]) for k in ("ms", "FNO_ms", "ratio_to_FNO")}} for r in kept]
    order = list(dict.fromkeys([*preset.tasks, *(r["task"] for r in kept)]))
    rows = sorted(kept + rows, key=lambda r: order.index(r["task"]))
    write_csv(csv_path, rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run: the `medium` preset's tasks, grids, "
        f"modes, width {preset.width}, depth {preset.depth}, batch {preset.batch}; "
        f"{rounds} interleaved rounds per task, 1 torch thread, "
        f"torch {torch.__version__}; {time.perf_counter() - start:.0f} s; the machine's 1-minute "
        f"load average {load_start:.1f} at the start and {load_end:.1f} at the end (other "
        "processes' load inflates some models' ratios more than others')"
    )
    measured = "; ".join(f"{t}: {', '.join(per_task[t])}" for t in tasks)
    if kept:
        settings += (
            f". This run measured {', '.join(tasks)} (models {measured}); the rows "
            "of the other tasks are an earlier run's, kept from the CSV"
        )
    else:
        settings += f". Models per task: {measured}"
    write_report(
        args.out,
        "medium_step_time",
        "Trainer step time of the `medium` bench models against FNO",
        settings,
        (
            "Median CPU milliseconds per optimizer step of `liponet.train.Trainer` (forward, "
            "relative L2 loss, backward, gradient norm, Adam step) for each model as "
            "`liponet bench --preset medium` builds and configures it; all models of a task "
            "measured interleaved in one process on one batch of random fields of the task's "
            "shape. `ratio_to_FNO` is the train-time ratio issue 13 bounds by 1.3 for the best "
            "variant."
        ),
        rows,
        plot,
    )


if __name__ == "__main__":
    main()
