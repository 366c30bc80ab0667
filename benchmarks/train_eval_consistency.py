"""Does LipFNO train one model and evaluate another? Power-iteration norms vs exact norms.

Training forwards of ``normalization="clip"`` / ``"global"`` multipliers (and so of the
convex-potential blocks, whose ``K`` is clipped to norm 1 before the factor 2) divide by
warm-started power-iteration estimates ``sigma_hat`` (one step per optimizer step); eval
forwards (the weights certified and exported) divide by exact float64 SVD norms ``sigma``.
An estimate below the norm leaves the training multiplier larger than the eval one.

This script trains bench models on the ``medium`` preset's Burgers task
(``liponet.bench.PRESETS["medium"]``, its generated data, ``liponet.bench.MODELS`` builders,
the bench's :class:`~liponet.train.Trainer` configuration, cosine schedule over the run's own
number of steps) and reports

* every ``--every`` optimizer steps, for every constrained multiplier of every scalar-normalized
  layer: the ratio ``sigma_hat / sigma`` of the estimate the *next* training step applies
  (one warm power step from the stored vector, on the current weights) to the exact norm
  (median and minimum over multipliers, and over the multipliers above the target, those
  the clip acts on), and the largest norm of a training-mode multiplier relative to the
  target ``k`` (``sigma / max(1, sigma_hat / k) / k``; eval: at most 1);
* after training, test nRMSE of the same weights with training-mode forwards (power vectors
  restored before every forward, so each forward applies what the next optimizer step would)
  and with eval-mode forwards: one-step relative L2 and the bench's rollout nRMSE.

Run from the repository root with one thread:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_eval_consistency.py`` (``--steps``,
``--models``, ``--quick`` for a smoke run). Writes
``benchmarks/results/train_eval_consistency.{md,csv}``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from fno_common import markdown_table, write_csv
from torch.utils.data import TensorDataset

from liponet.bench import (
    EPOCH_VAL_WINDOWS,
    MODELS,
    PRESETS,
    BenchData,
    Preset,
    load_task,
    train_config,
)
from liponet.bench import _scores as bench_scores
from liponet.layers import LipSpectralConv
from liponet.layers.fourier import SCALAR_NORMALIZATIONS, _power_vectors
from liponet.train import ConstraintWarning, DistContext, Trainer

RESULTS = Path("benchmarks/results")
TASK = "burgers_1d"


def scalar_convs(model: torch.nn.Module) -> list[LipSpectralConv]:
    """The constrained layers normalized by a scalar per multiplier (estimated in training)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, LipSpectralConv)
        and m.k is not None
        and m.normalization in SCALAR_NORMALIZATIONS
    ]


@torch.no_grad()
def ratios(model: torch.nn.Module) -> dict[str, float]:
    """Estimate/exact per multiplier, as the next training step would estimate (no write)."""
    all_r: list[float] = []
    bound_r: list[float] = []
    worst = 0.0
    for conv in scalar_convs(model):
        m = conv._stacked(conv._symmetric_spectral()).detach()
        u = _power_vectors(m, torch.view_as_complex(conv.u), conv.n_power)
        est = torch.linalg.vector_norm(m @ u.unsqueeze(-1), dim=(-2, -1)).double()
        exact = torch.linalg.svdvals(m.to(torch.complex128))[..., 0]
        r = (est / exact).tolist()
        all_r += r
        target = conv._target()
        bound_r += [x for x, s in zip(r, exact.tolist(), strict=True) if s > target]
        if conv.normalization == "clip":
            applied = exact / (est / target).clamp_min(1.0)
        else:  # global: every multiplier scaled by target / max estimate
            applied = exact * target / est.max()
        worst = max(worst, float(applied.max()) / target)
    return {
        "ratio_median": statistics.median(all_r),
        "ratio_min": min(all_r),
        "ratio_median_clipped": statistics.median(bound_r) if bound_r else float("nan"),
        "n_clipped": len(bound_r),
        "n_multipliers": len(all_r),
        "train_norm_max": worst,
    }


@torch.no_grad()
def set_exact_vectors(model: torch.nn.Module) -> None:
    """Power vectors := exact top right singular vectors (float64 SVD) of the current weights."""
    for conv in scalar_convs(model):
        m = conv._stacked(conv._symmetric_spectral()).detach().to(torch.complex128)
        vh = torch.linalg.svd(m)[2]  # (K [+1], in, in): row 0 is the top right vector^H
        conv.u.copy_(torch.view_as_real(vh[:, 0].conj().to(torch.complex64)))


class Probe:
    """Trainer callback: :func:`ratios` every ``every`` optimizer steps.

    ``exact``: after every optimizer step (and before training) the power vectors are set to
    the exact top singular vectors, so every training forward normalizes by the exact norms
    (up to float32): the experiment of training what eval applies (cost not representative).
    """

    def __init__(self, model: torch.nn.Module, every: int, exact: bool = False) -> None:
        self.model, self.every, self.exact, self.step, self.rows = model, every, exact, 0, []
        if exact:
            set_exact_vectors(model)

    def __call__(self, event: str, record: dict[str, Any]) -> None:
        if event != "step":
            return
        self.step += 1
        if self.step % self.every == 0:
            self.rows.append({"step": self.step, **ratios(self.model)})
        if self.exact:
            set_exact_vectors(self.model)


def frozen_train_forward(model: torch.nn.Module):
    """Training-mode forward that restores every power vector first (no drift across calls)."""
    convs = scalar_convs(model)
    saved = [c.u.clone() for c in convs]

    @torch.no_grad()
    def f(x: torch.Tensor) -> torch.Tensor:
        for c, u in zip(convs, saved, strict=True):
            c.u.copy_(u)
        model.train()
        return model(x)

    return f


@torch.no_grad()
def one_step_rel_l2(f, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> float:
    pred = torch.cat([f(x[i : i + batch]) for i in range(0, x.shape[0], batch)])
    num = (pred - y).flatten(1).norm(dim=1)
    return float((num / y.flatten(1).norm(dim=1)).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=["LipFNO", "LipFNO-clip", "LipFNO-inc"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work-dir", default="/tmp/liponet-consistency-data")
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny sizes, 1 seed)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--from-csv",
        action="store_true",
        help="rebuild the markdown from the CSV files only (pass the run's --steps)",
    )
    parser.add_argument(
        "--exact-vectors",
        action="store_true",
        help="train with exact norms (power vectors set from SVDs after every step); "
        "writes train_eval_consistency_exact.*",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    stem = "train_eval_consistency" + ("_exact" if args.exact_vectors else "")
    steps = 20 if args.quick else args.steps
    if args.from_csv:
        final, trace = read_csv(out / f"{stem}.csv"), read_csv(out / f"{stem}_trace.csv")
        seeds = sorted({int(r["seed"]) for r in final})
        write_markdown(out / f"{stem}.md", final, trace, steps, seeds, args.exact_vectors)
        return
    preset = PRESETS["medium"]
    if args.quick:
        args.seeds = args.seeds[:1]
    preset = dataclasses.replace(preset, steps={**preset.steps, TASK: steps})
    if args.quick:
        preset = dataclasses.replace(preset, n_samples={**preset.n_samples, TASK: 32})
    data = load_task(TASK, preset, None, args.work_dir, seed=0)
    out.mkdir(parents=True, exist_ok=True)
    trace: list[dict[str, Any]] = []
    final: list[dict[str, Any]] = []
    for seed in args.seeds:
        for name in args.models:
            torch.manual_seed(seed)
            model = MODELS[name](data, preset)
            probe = Probe(model, 5 if args.quick else args.every, args.exact_vectors)
            fit(model, data, preset, seed, probe)
            row, rows = measure(name, seed, model, probe, data)
            final.append(row)
            trace += rows
            print(row, flush=True)
            write_csv(out / f"{stem}.csv", final)
            write_csv(out / f"{stem}_trace.csv", trace)
            write_markdown(out / f"{stem}.md", final, trace, steps, args.seeds, args.exact_vectors)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV this script wrote, numbers as numbers."""
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key, value in row.items():
            if key != "model":
                row[key] = float(value) if "." in value or "n" in value.lower() else int(value)
    return rows


def fit(model: torch.nn.Module, data: BenchData, preset: Preset, seed: int, probe: Probe) -> None:
    """The bench's training (:func:`liponet.bench.train`'s Trainer and config), probed."""
    pick = torch.randperm(data.x_val.shape[0], generator=torch.Generator().manual_seed(seed))
    pick = pick[:EPOCH_VAL_WINDOWS]
    train_set = TensorDataset(data.x_train, data.y_train)
    val_set = TensorDataset(data.x_val[pick], data.y_val[pick])
    with tempfile.TemporaryDirectory(prefix="liponet-consistency-") as run_dir:
        config = train_config(data, preset, seed, run_dir, "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConstraintWarning)
            trainer = Trainer(
                config, train_set, val_set, ctx=DistContext(device=torch.device("cpu")),
                model=model, callbacks=[probe], progress=False,
            )  # fmt: skip
        trainer.fit()


def measure(
    name: str, seed: int, model: torch.nn.Module, probe: Probe, data: BenchData
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The final row (ratios, train- and eval-mode scores) and the probe's trace rows."""
    last = ratios(model)
    f_train = frozen_train_forward(model)
    eval_model = copy.deepcopy(model).eval()

    @torch.no_grad()
    def f_eval(x: torch.Tensor) -> torch.Tensor:
        return eval_model(x)

    row: dict[str, Any] = {"model": name, "seed": seed, "steps": probe.step, **last}
    row["one_step_train"] = one_step_rel_l2(f_train, data.x_test, data.y_test)
    row["one_step_eval"] = one_step_rel_l2(f_eval, data.x_test, data.y_test)
    row["nrmse_train"] = bench_scores(f_train, data, "test")["nrmse"]
    row["nrmse_eval"] = bench_scores(f_eval, data, "test")["nrmse"]
    row["eval_over_train"] = row["nrmse_eval"] / row["nrmse_train"]
    row["certified_L"] = eval_model.lipschitz_bound()
    return row, [{"model": name, "seed": seed, **r} for r in probe.rows]


def summary(final: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model over seeds: ranges of the ratios and of eval/train nRMSE."""
    rows = []
    for name in dict.fromkeys(r["model"] for r in final):
        mine = [r for r in final if r["model"] == name]
        ratio = [r["eval_over_train"] for r in mine]
        one = [r["one_step_eval"] / r["one_step_train"] for r in mine]
        rows.append(
            {
                "model": name,
                "seeds": len(mine),
                "ratio_median_min": min(r["ratio_median"] for r in mine),
                "ratio_min": min(r["ratio_min"] for r in mine),
                "train_norm_max": max(r["train_norm_max"] for r in mine),
                "nrmse_eval_mean": statistics.mean(r["nrmse_eval"] for r in mine),
                "eval_over_train_min": min(ratio),
                "eval_over_train_max": max(ratio),
                "one_step_eval_over_train_min": min(one),
                "one_step_eval_over_train_max": max(one),
            }
        )
    return rows


def comparison(path: Path, final: list[dict[str, Any]], exact: bool) -> list[str]:
    """Exact-norm runs against the power-estimate runs of the same folder (same model, seed)."""
    power_csv = path.parent / "train_eval_consistency.csv"
    if not exact or not power_csv.is_file():
        return []
    power = {(r["model"], int(r["seed"])): r for r in read_csv(power_csv)}
    rows = []
    for r in final:
        p = power.get((r["model"], int(r["seed"])))
        if p is None:
            continue
        rows.append(
            {
                "model": r["model"],
                "seed": r["seed"],
                "nrmse_eval_power": p["nrmse_eval"],
                "nrmse_eval_exact": r["nrmse_eval"],
                "exact_over_power": r["nrmse_eval"] / p["nrmse_eval"],
                "one_step_eval_power": p["one_step_eval"],
                "one_step_eval_exact": r["one_step_eval"],
                "one_step_exact_over_power": r["one_step_eval"] / p["one_step_eval"],
            }
        )
    if not rows:
        return []
    return [
        "## Against training with power estimates (`train_eval_consistency.csv`)",
        "",
        "The certified (eval) model's test scores, same model, seed, data and steps.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
    ]


def write_markdown(
    path: Path,
    final: list[dict[str, Any]],
    trace: list[dict[str, Any]],
    steps: int,
    seeds: list[int],
    exact: bool = False,
) -> None:
    """The results table: summary per model, final rows, the trace during training."""
    cols = [
        "model",
        "seed",
        "steps",
        "ratio_median",
        "ratio_min",
        "n_clipped",
        "n_multipliers",
        "train_norm_max",
        "one_step_train",
        "one_step_eval",
        "nrmse_train",
        "nrmse_eval",
        "eval_over_train",
        "certified_L",
    ]
    tcols = ["model", "seed", "step", "ratio_median", "ratio_min", "n_clipped", "train_norm_max"]
    trace_min = min((r["ratio_min"] for r in trace), default=float("nan"))
    trace_max = max((r["train_norm_max"] for r in trace), default=float("nan"))
    ratios_all = [r["eval_over_train"] for r in final]
    one_all = [r["one_step_eval"] / r["one_step_train"] for r in final]
    text = [
        "# Training vs eval normalization (benchmarks/train_eval_consistency.py)",
        "",
        f"Burgers 1-D, `medium` preset data and sizes, {steps} requested Trainer steps (whole "
        f"epochs: `steps` column; cosine over them), training seeds {seeds}, one thread. "
        "`ratio_*`: power-iteration estimate / exact float64 norm of each multiplier of the "
        "scalar-normalized layers, as the next training step would apply it (median and "
        "minimum over the multipliers; `n_clipped`: how many lie above the target, those the "
        "clip acts on). `train_norm_max`: the largest training-mode multiplier norm / k (eval: "
        "<= 1). nRMSE: the bench's test rollout; `one_step`: the test windows' relative L2; "
        "`_train`: training-mode forward of the same weights (power vectors restored before "
        "each forward, so every forward applies what the next optimizer step would), `_eval`: "
        "eval forward (exact norms: the certified model).",
        "",
        *(
            [
                "**Exact-norm training** (`--exact-vectors`): after every optimizer step the "
                "power vectors were set to the exact top singular vectors (float64 SVD), so "
                "training normalized by the exact norms; compare with "
                "`train_eval_consistency.md` (power estimates, the library's training).",
                "",
            ]
            if exact
            else []
        ),
        f"Measured: over all probes during training the smallest estimate/exact ratio was "
        f"{trace_min:.4g} and the largest training-mode multiplier {trace_max:.4g} k; after "
        f"training, eval/train rollout nRMSE lies in [{min(ratios_all):.4g}, "
        f"{max(ratios_all):.4g}] over {len(final)} runs, one-step eval/train relative L2 in "
        f"[{min(one_all):.4g}, {max(one_all):.4g}].",
        "",
        "## Summary per model",
        "",
        markdown_table(summary(final), list(summary(final)[0])),
        "",
        *comparison(path, final, exact),
        "## After training",
        "",
        markdown_table(final, cols),
        "",
        "## During training",
        "",
        markdown_table(trace, tcols),
        "",
    ]
    path.write_text("\n".join(text))


if __name__ == "__main__":
    main()
