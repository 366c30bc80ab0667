"""DeepONets on 2-D fields: why the global DeepONet fails on 2-D diffusion-reaction, and the fix.

Same task, data, training and metrics as ``liponet bench --preset small`` (2-D diffusion-reaction,
FitzHugh-Nagumo from noise initial states, 32 x 32, 10 input frames of 2 fields, rollout nRMSE on
the test split), one row per model with its certified Lipschitz bound:

- the diagnosis: the relative error of the best rank-``p`` projection of the one-step targets per
  field (the POD floor; ``p`` = the bench's ``onet_basis``), a floor no DeepONet with ``p`` trunk
  functions per channel can beat, and persistence (next frame = last input frame);
- ``DeepONet`` / ``LipDeepONet``: the bench's global DeepONets;
- ``LocalDeepONet`` / ``LipLocalDeepONet``: the bench's local-branch DeepONets
  (:func:`liponet.bench.local_deeponet_builder`: a 3 x 3 patch per output point, pointwise skip,
  half the bench DeepONets' width and basis);
- ``FNO`` / ``LipFNO``: the bench's FNOs on the same data and budget.

Run from the repository root: ``.venv/bin/python benchmarks/deeponet_2d.py`` (``--quick``: smoke
run; ``--steps N`` overrides the preset's optimizer steps; ``--task`` another task of the small
preset). Writes ``benchmarks/results/deeponet_2d.{md,csv,png}`` (``deeponet_2d_<task>`` for
another task).
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _plot import agg_pyplot
from torch import nn

from liponet.bench import (
    MODELS,
    PRESETS,
    BenchData,
    Preset,
    load_task,
    local_deeponet_builder,
    per_task,
    rollout_fields,
    run_row,
    with_overrides,
)
from liponet.metrics import pdebench_metrics

RESULTS = Path("benchmarks/results")


MODELS_2D: dict[str, Callable[[BenchData, Preset], nn.Module]] = {
    "FNO": MODELS["FNO"],
    "LipFNO": MODELS["LipFNO"],
    "DeepONet": MODELS["DeepONet"],
    "LipDeepONet": MODELS["LipDeepONet"],
    "LocalDeepONet": MODELS["LocalDeepONet"],
    "LipLocalDeepONet": MODELS["LipLocalDeepONet"],
    "LipLocalDeepONet (k=2)": local_deeponet_builder(True, k=2.0),
}

#: The rows of a default run (the others: ``--models``).
DEFAULT_MODELS = ("LipLocalDeepONet", "DeepONet", "FNO", "LocalDeepONet")

COLS = [
    "model",
    "nrmse",
    "val_nrmse",
    "one_step_rel",
    "lipschitz_certified",
    "L_G",
    "coverage",
    "params",
    "train_s",
]


def pod_floor(data: BenchData, rank: int) -> list[float]:
    """Per output channel: relative error of the best rank-``rank`` projection of the test
    one-step targets onto the leading principal directions of the training targets."""
    floors = []
    for c in range(data.out_channels):
        train = data.y_train[:, c].flatten(1).double()
        test = data.y_test[:, c].flatten(1).double()
        _, _, vh = torch.linalg.svd(train, full_matrices=False)
        basis = vh[:rank]  # (rank, n_points)
        proj = test @ basis.T @ basis
        floors.append(float((proj - test).norm() / test.norm()))
    return floors


def persistence_row(data: BenchData) -> dict[str, Any]:
    """Next frame = last input frame: rollout and one-step scores."""
    c = data.out_channels

    def f(x: torch.Tensor) -> torch.Tensor:
        return x[:, -c:]

    assert data.traj_test is not None and data.traj_val is not None
    scores = {}
    for split, traj in (("test", data.traj_test), ("val", data.traj_val)):
        pred = rollout_fields(f, traj, data.initial_step)
        scores[split] = float(
            pdebench_metrics(
                pred.movedim(1, -1),
                traj.movedim(1, -1),
                time_axis=True,
                input_frames=data.initial_step,
            )["nrmse"]
        )
    return {
        "model": "persistence (last input frame)",
        "nrmse": scores["test"],
        "val_nrmse": scores["val"],
        "one_step_rel": one_step(f, data),
        "lipschitz_certified": 1.0,
        "params": 0,
        "train_s": 0.0,
    }


@torch.no_grad()
def one_step(f: Callable[[torch.Tensor], torch.Tensor], data: BenchData) -> float:
    """Relative L2 error of one step on all test windows (not a rollout)."""
    err = num = 0.0
    for i in range(0, data.x_test.shape[0], 256):
        x, y = data.x_test[i : i + 256], data.y_test[i : i + 256]
        err += float((f(x) - y).pow(2).sum())
        num += float(y.pow(2).sum())
    return math.sqrt(err / num)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (few steps)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps")
    parser.add_argument("--task", default="diffusion_reaction_2d")
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), choices=list(MODELS_2D)
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, cpu0 = time.perf_counter(), time.process_time()
    preset = with_overrides(PRESETS["small"], steps=5 if args.quick else args.steps)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        data = load_task(args.task, preset, None, work, seed=0)
        floors = pod_floor(data, preset.onet_basis)
        print(f"POD floor rank {preset.onet_basis}: {floors}", flush=True)
        if data.traj_test is not None:
            rows.append(persistence_row(data))
        for name in args.models:
            row = run_row(name, data, preset, seed=0, builder=MODELS_2D[name])
            row["model"] = name
            row["one_step_rel"] = one_step(row["_f"], data)
            rows.append(row)
            print(
                f"{name}: nrmse {row['nrmse']:.4g} one-step {row['one_step_rel']:.4g} "
                f"L {row['lipschitz_certified']:.4g} train {row['train_s']:.0f}s",
                flush=True,
            )
            write(rows, args, preset, data, floors, start, cpu0)  # after every row


def write(
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    preset: Preset,
    data: BenchData,
    floors: list[float],
    start: float,
    cpu0: float,
) -> None:
    """Write the CSV, markdown and PNG of the rows so far."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batches = math.ceil(data.x_train.shape[0] / preset.batch)
    epochs = math.ceil(per_task(preset.steps, args.task) / batches)  # as bench.train_config
    every = max(1, epochs // (preset.lr_halvings + 1))
    default_task = args.task == "diffusion_reaction_2d"
    stem = out / ("deeponet_2d" if default_task else f"deeponet_2d_{args.task}")
    if args.quick:
        stem = stem.with_name(stem.name + "_quick")
    with stem.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLS, restval="", extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k, "") for k in COLS})
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    by = {r["model"]: r for r in rows}
    lines = [
        f"# DeepONets on 2-D fields: {args.task}",
        "",
        "Produced by `.venv/bin/python benchmarks/deeponet_2d.py"
        + (" --quick" if args.quick else "")
        + (f" --steps {args.steps}" if args.steps else "")
        + (f" --task {args.task}" if args.task != "diffusion_reaction_2d" else "")
        + "`.",
        "",
        f"Setting: `liponet bench` preset `small` data and training through the Trainer "
        f"({epochs} epochs of {batches} batches = {epochs * batches} Adam steps: the preset's "
        f"{preset.steps} rounded up to whole epochs; batch {preset.batch}, lr {preset.lr}, "
        f"halved every {every} epoch(s)), grid "
        f"{'x'.join(map(str, data.spatial))}, {data.in_channels} input channels "
        f"({data.initial_step} frames), {data.out_channels} output channels; DeepONets width "
        f"{preset.onet_width}, depth {preset.onet_depth}, {preset.onet_basis} basis functions per "
        f"channel (local: width {max(1, preset.onet_width // 2)}, "
        f"{max(1, preset.onet_basis // 2)} basis functions, 3 x 3 patch); FNOs width "
        f"{preset.width}, {preset.modes} modes, depth {preset.depth}; seed 0; torch "
        f"{torch.__version__}, 1 thread, {platform.machine()}; wall "
        f"{time.perf_counter() - start:.0f} s, CPU {time.process_time() - cpu0:.0f} s "
        "(shared machine: times are indicative).",
        "",
        "Columns: `nrmse` / `val_nrmse`: PDEBench nRMSE of the rollout from the first window "
        "(test / validation split, input frames excluded); `one_step_rel`: relative L2 error of "
        "one step over all test windows; `lipschitz_certified`: the model's certified constant "
        "(function norms); `L_G`: the data's largest pair ratio (estimated); `coverage`: of the "
        "one-step operator error bound on test windows (as in `liponet bench`).",
        "",
        "## Diagnosis",
        "",
        f"- Best rank-{preset.onet_basis} projection of the test targets onto the training "
        "targets' principal directions (POD floor), relative error per field: "
        + ", ".join(f"{v:.3f}" for v in floors)
        + f". A DeepONet's output is a combination of its {preset.onet_basis} trunk functions "
        "per channel, so no training gets it below this floor on one step: the targets "
        "(fields grown from per-cell noise) are not low-rank.",
        "",
        "## Results",
        "",
        "| " + " | ".join(COLS) + " |",
        "|" + "---|" * len(COLS),
    ]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in COLS) + " |")
    if "LipLocalDeepONet" in by and "FNO" in by:
        lip, fno = by["LipLocalDeepONet"], by["FNO"]
        lines += [
            "",
            "## Reading",
            "",
            f"- LipLocalDeepONet: rollout nRMSE {lip['nrmse']:.3g} against FNO "
            f"{fno['nrmse']:.3g} ({lip['nrmse'] / fno['nrmse']:.2f}x), certified constant "
            f"{lip['lipschitz_certified']:.3g}.",
        ]
        if "LipDeepONet" in by:
            lines.append(
                f"- The global LipDeepONet: {by['LipDeepONet']['nrmse']:.3g}, as the POD floor "
                "predicts."
            )
    lines += ["", f"![nRMSE and certified constants]({stem.name}.png)", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    _plot(rows, stem.with_suffix(".png"))


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    plt = agg_pyplot()

    names = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in (
        (axes[0], "nrmse", "rollout nRMSE (test)"),
        (axes[1], "lipschitz_certified", "certified Lipschitz bound"),
    ):
        values = [float(r.get(key, float("nan")) or float("nan")) for r in rows]
        ax.barh(range(len(names)), values)
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names, fontsize=7)
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
