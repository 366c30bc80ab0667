"""Does training on unrolled steps close LipFNO's advection rollout gap? A one-seed screen.

advection_study.md found LipFNO's one-step error on medium advection below FNO's, while its
rollout error grows about twice as fast over the 31 predicted frames. This screen trains each
model on the medium advection data two ways, with the same optimizer steps:

- ``one-step``: the relative L2 loss of one predicted frame from a true window (the bench's loss);
- ``unroll-K``: from a true window, K predicted frames, each fed back into the window (gradients
  through the whole chain), the loss the mean over the K frames' relative L2 errors. A step
  costs about K one-step steps, so the same number of steps is K times the compute.

The loop is this script's own (Adam, cosine-annealed per step, batch 32 windows drawn from the
training trajectories), so figures compare with each other, not with ``bench_medium.md``'s
Trainer rows. Score: PDEBench rollout nRMSE on the test trajectories (input frames excluded),
as ``liponet bench`` scores it.

Run from the repository root: ``.venv/bin/python benchmarks/rollout_training.py`` (about ten CPU
minutes; ``--quick`` for a smoke run). Writes ``benchmarks/results/rollout_training.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import time
from pathlib import Path

import torch
from _plot import panel_row
from fno_common import markdown_table, write_csv

from liponet.bench import (
    MODEL_TRAINING,
    MODELS,
    PRESETS,
    _scores,
    _trajectories,
    load_task,
    resolve_task,
)

RESULTS = Path("benchmarks/results")
TASK = "advection_1d"
#: model -> learning rate (each family at its best medium rate: FNO 3e-4, LipFNO-d2 3e-3)
CONFIGS = {"FNO-lr3e-4": 3e-4, "LipFNO-d2": 3e-3}


def unrolled_loss(model: torch.nn.Module, traj: torch.Tensor, k0: int, unroll: int) -> torch.Tensor:
    """Mean relative L2 error of ``unroll`` fed-back predictions from a true window.

    ``traj`` ``(b, frames, C, *spatial)`` with ``frames >= k0 + unroll``; the window is the
    first ``k0`` frames, flattened frame-major as the bench's windows are.
    """
    window = traj[:, :k0]
    losses = []
    for j in range(unroll):
        pred = model(window.flatten(1, 2))  # (b, C, *spatial)
        target = traj[:, k0 + j]
        err = (pred - target).flatten(1).norm(dim=1) / target.flatten(1).norm(dim=1)
        losses.append(err.mean())
        window = torch.cat([window[:, 1:], pred.unsqueeze(1)], 1)
    return torch.stack(losses).mean()


def train(
    name: str, lr: float, unroll: int, data, train_traj, steps: int, seed: int, wd: float = 0.0
) -> dict:
    preset = PRESETS["medium"]
    torch.manual_seed(seed)
    model = MODELS[name](data, preset)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    k0 = data.initial_step
    n, frames = train_traj.shape[:2]
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.process_time()
    for _ in range(steps):
        idx = torch.randint(n, (32,), generator=gen)
        t0 = torch.randint(frames - k0 - unroll + 1, (32,), generator=gen)
        offsets = t0[:, None] + torch.arange(k0 + unroll)[None, :]
        batch = train_traj[idx[:, None], offsets]  # (32, k0 + unroll, C, *spatial)
        loss = unrolled_loss(model, batch, k0, unroll)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    cpu = time.process_time() - start
    model.eval()
    with torch.no_grad():
        scores = _scores(model, data, "test")
        one = unrolled_loss(model, data.traj_test, k0, 1).item()
    return {
        "model": name,
        "lr": lr,
        "weight_decay": wd,
        "training": "one-step" if unroll == 1 else f"unroll-{unroll}",
        "seed": seed,
        "steps": steps,
        "cpu_s": cpu,
        "one_step_rel_l2": one,
        "rollout_nrmse": scores["nrmse"],
        "lipschitz_certified": float(model.lipschitz_bound())
        if hasattr(model, "lipschitz_bound")
        else math.nan,
    }


def _number(text: str) -> object:
    """A CSV cell as the int or float it was written from, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def write_results(rows: list[dict], out: Path, quick: bool, steps: int, seed: int) -> None:
    """``rollout_training.{csv,md,png}`` (``_quick`` for a smoke run) from the rows."""
    out.mkdir(parents=True, exist_ok=True)
    stem = "rollout_training" + ("_quick" if quick else "")
    write_csv(out / f"{stem}.csv", rows)
    text = [
        "# Unrolled training on medium advection (one seed)",
        "",
        f"Settings: {'quick' if quick else 'default'} run, task {TASK}, medium data "
        f"(seed 0), {steps} Adam steps per row, batch 32 windows from the training trajectories, "
        f"cosine-annealed per step to 0, Adam with the row's weight decay, seed {seed}, "
        f"1 torch thread, torch {torch.__version__}",
        "",
        "`rollout_nrmse`: PDEBench rollout nRMSE on the test trajectories (input frames "
        "excluded); `one_step_rel_l2`: mean relative L2 error of one step from the first true "
        "window of each test trajectory; `cpu_s`: process CPU seconds of the training loop. "
        "The loop differs from `liponet bench`'s Trainer recipe (which anneals its cosine once "
        "per epoch, about six epochs here, so its last epoch still runs at 7% of the rate, and "
        "uses weight decay 1e-4): here the rate is annealed every step to 0 and the weight decay "
        "is the row's (`weight_decay`), so compare rows with each other, not with "
        "`bench_medium.md`.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
    ]
    (out / f"{stem}.md").write_text("\n".join(text))
    models = list(dict.fromkeys(r["model"] for r in rows))
    with panel_row(out / f"{stem}.png", 1, (6, 3.5)) as (ax,):
        for name in models:
            pts = [r for r in rows if r["model"] == name]
            xs = [
                1 if r["training"] == "one-step" else int(r["training"].split("-")[1]) for r in pts
            ]
            ax.plot(xs, [float(r["rollout_nrmse"]) for r in pts], "o-", label=name)
        ax.set_xlabel("unrolled steps in the training loss")
        ax.set_ylabel("test rollout nRMSE")
        ax.set_yscale("log")
        ax.legend(loc="best", fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 20 steps, 64 samples")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--unroll", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--models", nargs="+", default=list(CONFIGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weight-decay", type=float, default=0.0, help="Adam's (coupled) weight decay"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/liponet-rollout-training"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--from-csv", type=Path, nargs="+", help="train nothing: combine these runs' CSVs"
    )
    args = parser.parse_args()
    if args.from_csv:
        rows = [
            {k: _number(v) for k, v in r.items()}
            for path in args.from_csv
            for r in csv.DictReader(path.open())
        ]
        write_results(rows, args.out, args.quick, int(rows[0]["steps"]), int(rows[0]["seed"]))
        return
    torch.set_num_threads(1)
    preset = PRESETS["medium"]
    steps = args.steps
    if args.quick:
        preset = dataclasses.replace(preset, n_samples=64)
        steps = 20
    data = load_task(TASK, preset, None, args.work_dir)
    path, kwargs = resolve_task(TASK, preset, None)
    path = args.work_dir / f"{preset.name}-seed0" / path
    train_traj, _ = _trajectories(path, "train", kwargs)
    rows = []
    for name in args.models:
        for unroll in args.unroll:
            lr = MODEL_TRAINING.get(name, {}).get("lr", CONFIGS.get(name, preset.lr))
            row = train(name, lr, unroll, data, train_traj, steps, args.seed, args.weight_decay)
            print(row, flush=True)
            rows.append(row)
    write_results(rows, args.out, args.quick, steps, args.seed)


if __name__ == "__main__":
    main()
