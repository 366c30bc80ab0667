"""Why LipFNO trails FNO on Darcy flow, and which configuration closes the gap (issue 13).

Trains LipFNO configurations next to FNO on the ``medium`` preset's Darcy task (same data,
Trainer, metrics and certificates as ``liponet bench --preset medium --tasks darcy_2d``: beta = 1,
coefficient -> solution on 32 x 32 cells, 1024 samples, width 20, 12 modes, depth 4, padding 1/8,
batch 32, lr 3e-3 cosine) and records, per configuration and seed: the test nRMSE, the training
nRMSE (relative L2 on 2048 training samples: underfitting or overfitting?), the ratio to FNO's
(same steps and seed), the certified ``lipschitz_bound()`` of the trained model and the process
CPU seconds per optimizer step (1 torch thread) with its ratio to FNO's. Method: screening runs
with fewer steps (``--steps 500``, one seed) over every configuration, then the best ones at the
preset's 1500 steps.

Run from the repository root (rows are appended to the CSV as they finish; a rerun skips the
rows already there; several processes may append to the CSV if they run disjoint
configurations)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/darcy_study.py --steps 500 --seeds 0
    .venv/bin/python benchmarks/darcy_study.py --from-csv   # tables and plot from the CSV

``--quick`` runs a tiny Darcy problem (smoke test). Writes
``benchmarks/results/darcy_study.{csv,md,png}``; the row format and helpers are
``benchmarks/burgers_study.py``'s.
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from _plot import pyplot
from burgers_study import _fmt, append, one_step_error, read, summarize
from torch import nn

from liponet.bench import (
    MODEL_TRAINING,
    MODELS,
    PRESETS,
    BenchData,
    Builder,
    Preset,
    append_row,
    fno_builder,
    lipfno_builder,
    load_task,
    per_task,
    preset_settings,
    run_row,
    with_overrides,
)
from liponet.layers.fourier import PaddedDomain

RESULTS = Path("benchmarks/results")
STEM = "darcy_study"
TASK = "darcy_2d"

#: Keywords pinned in every LipFNO configuration, so a change of LipFNO's defaults changes no row.
CPL: dict[str, Any] = {
    "block": "cpl",
    "normalization": "clip",
    "increment": False,
    "budget": "last",
}
FOURIER: dict[str, Any] = {**CPL, "block": "fourier"}

#: Configurations: name -> (keywords, what it tests). ``FNO`` is the bench's FNO; ``model="FNO"``
#: builds the bench's FNO with the other keywords; :data:`PRESET_KEYS` override the preset;
#: everything else goes to LipFNO. The data's estimated constant (largest pair ratio over
#: calibration pairs, the bench's ``L_G``) is 0.53 on this task.
CONFIGS: dict[str, tuple[dict[str, Any] | None, str]] = {
    "FNO": (None, "the unconstrained reference (GELU, fused blocks, padding 1/8)"),
    "FNO lr=1e-2": (
        {"model": "FNO", "lr": 1e-2},
        "FNO at the learning rate that helps LipFNO-clip (is the gain the constraint's?)",
    ),
    "cpl k=1": ({**CPL, "k": 1.0}, "LipFNO's defaults (the bench's LipFNO row)"),
    "fourier k=3": ({**FOURIER, "k": 3.0}, "fused blocks, slack k = 3 (the bench's LipFNO-clip)"),
    "cpl hidden=2w k=1.3": (
        {**CPL, "k": 1.3, "hidden_factor": 2},
        "twice the ReLU features per block (the bench's LipFNO-wide, best on Burgers)",
    ),
    "cpl k=3": ({**CPL, "k": 3.0}, "the default block with LipFNO-clip's slack"),
    "cpl hidden=2w k=3": (
        {**CPL, "k": 3.0, "hidden_factor": 2},
        "twice the features and slack k = 3",
    ),
    "fourier k=1": ({**FOURIER, "k": 1.0}, "fused blocks without slack"),
    "fourier k=6": ({**FOURIER, "k": 6.0}, "fused blocks, more slack"),
    "fourier global k=3": (
        {**FOURIER, "k": 3.0, "normalization": "global"},
        "one global scale of the multipliers instead of per-mode clipping",
    ),
    "fourier qr k=3": (
        {**FOURIER, "k": 3.0, "normalization": "qr"},
        "norm-free (QR) multipliers: every mode's singular values at 1",
    ),
    "fourier learned k=3": (
        {**FOURIER, "k": 3.0, "budget": "learned"},
        "learned allocation of k over lifting, blocks and projection (input scaling included)",
    ),
    "fourier free-last k=3": (
        {**FOURIER, "k": 3.0, "free_last_layer": True},
        "unconstrained last projection layer (its exact norm enters; k unused: the bench's "
        "LipFNO-free)",
    ),
    "cpl free-last": (
        {**CPL, "free_last_layer": True},
        "LipFNO's default blocks with an unconstrained last projection layer (no k)",
    ),
    "fourier vector k=3": (
        {**FOURIER, "k": 3.0, "output_scale": "vector"},
        "trainable output scale (certified max |s|)",
    ),
    "fourier modes=16 k=3": (
        {**FOURIER, "k": 3.0, "modes": 16},
        "every mode the 32 x 32 grid resolves",
    ),
    "fourier padding=0 k=3": (
        {**FOURIER, "k": 3.0, "padding": 0.0},
        "no domain padding (Darcy is not periodic; the bench pads FNOs by 1/8)",
    ),
    "fourier padding=0.25 k=3": (
        {**FOURIER, "k": 3.0, "padding": 0.25},
        "twice the bench's padding",
    ),
    "fourier lr=1e-2 k=3": (
        {**FOURIER, "k": 3.0, "lr": 1e-2},
        "higher learning rate (constrained weights move less per step)",
    ),
    "fourier lr=1e-3 k=3": ({**FOURIER, "k": 3.0, "lr": 1e-3}, "lower learning rate"),
    "fourier modes=8 k=3": (
        {**FOURIER, "k": 3.0, "modes": 8},
        "fewer kept modes (less capacity: LipFNO-clip fits the training set better than FNO)",
    ),
    "fourier wd=1e-3 k=3": (
        {**FOURIER, "k": 3.0, "weight_decay": 1e-3},
        "ten times the preset's weight decay (1e-4): regularization against overfitting",
    ),
    "fourier width=32 k=3": (
        {**FOURIER, "k": 3.0, "width": 32},
        "more channels (parameters x 2.5: capacity or constraint?)",
    ),
    "cpl depth=3 k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "depth": 3, "lr": 1e-2},
        "three convex-potential blocks (step about 1.2x FNO's) at LipFNO-wide's k and best rate",
    ),
    "cpl depth=2 k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "depth": 2, "lr": 1e-2},
        "two convex-potential blocks (step below FNO's) at LipFNO-wide's k and best rate",
    ),
    "fourier lr=2e-2 k=3": (
        {**FOURIER, "k": 3.0, "lr": 2e-2},
        "fused blocks at FNO's best rate",
    ),
    "cpl depth=3 softplus k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "depth": 3, "lr": 1e-2, "cpl_activation": "softplus"},
        "three blocks with a smooth activation (softplus; FNO's GELU is smooth)",
    ),
    "cpl depth=3 k=3 lr=1e-2": (
        {**CPL, "k": 3.0, "depth": 3, "lr": 1e-2},
        "three blocks with more slack in the last layer",
    ),
    "cpl depth=3 modes=8 k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "depth": 3, "lr": 1e-2, "modes": 8},
        "three blocks, fewer kept modes (less capacity against the generalization gap)",
    ),
    "cpl modes=8 k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "modes": 8, "lr": 1e-2},
        "four blocks with 8 kept modes (step about 1.26x FNO's: the kept spectrum's products "
        "are what a convex-potential block costs beyond an FNO block)",
    ),
    "cpl modes=8 k=3 lr=1e-2": (
        {**CPL, "k": 3.0, "modes": 8, "lr": 1e-2},
        "four blocks, 8 kept modes, slack k = 3 (LipFNO-clip's) instead of 1.3",
    ),
    "cpl hidden=2w modes=8 k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "hidden_factor": 2, "modes": 8, "lr": 1e-2},
        "LipFNO-wide-lr with 8 kept modes (cheaper; less capacity against the generalization gap)",
    ),
    "cpl depth=2 hidden=2w k=1.3 lr=1e-2": (
        {**CPL, "k": 1.3, "depth": 2, "lr": 1e-2, "hidden_factor": 2},
        "two blocks with LipFNO-wide's features",
    ),
    "FNO lr=2e-2": (
        {"model": "FNO", "lr": 2e-2},
        "FNO at its best rate (the bench's FNO-lr2e-2): the reference of the augmented rows",
    ),
    "FNO lr=2e-2 d4": (
        {"model": "FNO", "lr": 2e-2, "augment": "d4"},
        "symmetry augmentation, all eight symmetries of the square (half a coarse cell off on "
        "the stride-2 read for six of them)",
    ),
    "FNO lr=2e-2 tr": (
        {"model": "FNO", "lr": 2e-2, "augment": "transpose"},
        "augmentation by the transpose alone (exact on the stride-2 read)",
    ),
    "cpl modes=8 k=3 lr=1e-2 d4": (
        {**CPL, "k": 3.0, "modes": 8, "lr": 1e-2, "augment": "d4"},
        "LipFNO-m8-lr with the eight symmetries of the square",
    ),
    "cpl modes=8 k=3 lr=1e-2 tr": (
        {**CPL, "k": 3.0, "modes": 8, "lr": 1e-2, "augment": "transpose"},
        "LipFNO-m8-lr with the transpose",
    ),
    "cpl modes=8 k=3 lr=1e-2 wd=1e-3 tr": (
        {**CPL, "k": 3.0, "modes": 8, "lr": 1e-2, "weight_decay": 1e-3, "augment": "transpose"},
        "LipFNO-m8-lr-tr with ten times the weight decay (the GPU screen: weight decay helps "
        "both families on Darcy)",
    ),
    "fourier lr=1e-2 k=3 tr": (
        {**FOURIER, "k": 3.0, "lr": 1e-2, "augment": "transpose"},
        "LipFNO-clip-lr (fused blocks, step 1.13x FNO's) with the transpose",
    ),
}

#: Keywords that override the preset (sizes, optimizer) rather than go to LipFNO.
PRESET_KEYS = ("width", "modes", "depth", "lr", "weight_decay", "augment")


def builder(config: str) -> Builder:
    """The model builder of one configuration (``PRESET_KEYS`` override the preset)."""
    keywords, _ = CONFIGS[config]
    kw = dict(keywords or {"model": "FNO"})
    changes = {key: kw.pop(key) for key in PRESET_KEYS if key in kw}
    is_fno = kw.pop("model", None) == "FNO"
    padding = kw.pop("padding", None)
    inner = fno_builder(**kw) if is_fno else lipfno_builder(**kw)

    def build(data: BenchData, preset: Preset) -> nn.Module:
        model = inner(data, with_overrides(preset, **changes))
        if padding is not None:  # the bench's builders pad non-periodic tasks by 1/8
            domains = [m for m in model.modules() if isinstance(m, PaddedDomain)]
            assert domains, f"{config}: no padded domain to change"
            for domain in domains:
                domain.padding = float(padding)
        return model

    return build


def config_preset(preset: Preset, config: str) -> Preset:
    """The preset a configuration trains with (``lr``, ``weight_decay``, ``augment``; sizes: the
    builder)."""
    keywords = CONFIGS[config][0] or {}
    return with_overrides(
        preset,
        lr=keywords.get("lr"),
        weight_decay=keywords.get("weight_decay"),
        augment=keywords.get("augment"),
    )


def with_ratios(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with ``nrmse_ratio``/``step_ratio`` to the FNO row of the same steps and seed.

    Recomputed from the CSV (a process that ran without FNO wrote them as ``nan``).
    """
    fno = {
        (r["steps_target"], r["seed"]): r
        for r in rows
        if r["config"] == "FNO" and r["status"] == "ok"
    }
    out = []
    for r in rows:
        ref = fno.get((r["steps_target"], r["seed"]))
        ratios = (
            {
                "nrmse_ratio": r["nrmse"] / ref["nrmse"],
                "step_ratio": r["s_per_step"] / ref["s_per_step"],
            }
            if ref
            else {"nrmse_ratio": math.nan, "step_ratio": math.nan}
        )
        out.append({**r, **ratios})
    return out


def markdown(
    rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any], findings: str = ""
) -> str:
    """The results page: findings, configurations, summary over seeds, then every row."""
    lines = [
        "# Darcy flow under constraint: why LipFNO trails FNO and what closes the gap",
        "",
        "Regenerate: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/darcy_study.py "
        "--steps S --seeds ... --configs ...` (rows appended to the CSV as they finish; "
        "`--from-csv` rebuilds this file and the PNG from the CSV alone).",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
        "**Reduced budget.** Optimizer steps per row: the `steps` column (screening 500 steps, "
        "one seed, a third of the preset's 1500; confirmation at 1500); the cosine schedule "
        "spans each row's own steps. Seeds: the `seeds` column (the bench's rows, three seeds "
        "at 1500 steps, are in `bench_medium.md`). `nRMSE / FNO`: mean test nRMSE over the "
        "seeds divided by FNO's mean over the same seeds and steps. `certified L`: the trained "
        "model's `lipschitz_bound()` (largest over seeds). `ms/step`: process CPU milliseconds "
        "per optimizer step (1 torch thread, shared machine; ratios to FNO are the comparable "
        "figure). `test rel. L2` / `train rel. L2`: mean relative L2 error on the test samples "
        "/ 2048 (here: all 830) training samples; their gap separates underfitting from "
        "overfitting.",
        "",
        *([findings] if findings else []),
        "## Configurations",
        "",
        "| config | keywords | what it tests |",
        "|---|---|---|",
    ]
    for name in dict.fromkeys(r["config"] for r in rows):
        if name not in CONFIGS and name in MODELS:  # a bench model (--bench-models)
            settings_ = ", ".join(f"{k}={v}" for k, v in MODEL_TRAINING.get(name, {}).items())
            lines.append(f"| {name} | bench model; {settings_} | `liponet.bench` row |")
            continue
        keywords, why = CONFIGS.get(name, (None, "(no longer defined)"))
        kw = "bench FNO" if keywords is None else ", ".join(f"{k}={v}" for k, v in keywords.items())
        lines.append(f"| {name} | {kw} | {why} |")
    lines += [
        "",
        "## Summary over seeds",
        "",
        "| steps | config | seeds | nRMSE mean | std | nRMSE / FNO | certified L | params "
        "| ms/step | step / FNO |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summarize(rows):
        lines.append(
            f"| {s['steps']} | {s['config']} | {s['seeds']} | {_fmt(s['nrmse'])} "
            f"| {_fmt(s['nrmse_std'])} | {_fmt(s['ratio'])} | {_fmt(s['L'])} | {s['params']} "
            f"| {_fmt(s['ms_per_step'])} | {_fmt(s['step_ratio'])} |"
        )
    lines += [
        "",
        "## All rows",
        "",
        "| steps | config | seed | nRMSE | val nRMSE | nRMSE / FNO | certified L | L_G "
        "| test rel. L2 | train rel. L2 | train_s | ms/step | step / FNO |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] != "ok":
            continue
        lines.append(
            f"| {r['steps_target']} | {r['config']} | {r['seed']} "
            f"| {_fmt(r['nrmse'])} | {_fmt(r['val_nrmse'])} | {_fmt(r['nrmse_ratio'])} "
            f"| {_fmt(r['lipschitz_certified'])} | {_fmt(r['L_G'])} ({r['L_G_label']}) "
            f"| {_fmt(r['one_step_test'])} | {_fmt(r['one_step_train'])} "
            f"| {_fmt(r['train_s'])} | {_fmt(1000 * r['s_per_step'])} | {_fmt(r['step_ratio'])} |"
        )
    lines.append("")
    return "\n".join(lines)


def plot(rows: Sequence[Mapping[str, Any]], path: Path) -> Path | None:
    """Per steps: test nRMSE / FNO against training rel. L2 / FNO's (underfit -> right)."""
    plt = pyplot()
    if plt is None:
        return None
    ok = [r for r in rows if r["status"] == "ok"]
    summary = [s for s in summarize(rows) if math.isfinite(s["ratio"])]
    panels = list(dict.fromkeys(s["steps"] for s in summary))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 4.6), squeeze=False)
    for ax, steps in zip(axes[0], panels, strict=True):
        fno = [
            r["one_step_train"] for r in ok if (r["steps_target"], r["config"]) == (steps, "FNO")
        ]
        for s in (s for s in summary if s["steps"] == steps):
            seeds = {int(x) for x in s["seeds"].split()}
            train = [
                r["one_step_train"]
                for r in ok
                if (r["steps_target"], r["config"]) == (steps, s["config"]) and r["seed"] in seeds
            ]
            x = sum(train) / len(train) / (sum(fno) / len(fno)) if fno else math.nan
            ax.plot(x, s["ratio"], "*" if s["config"] == "FNO" else "o")
            ax.annotate(
                f"{s['config']} (L {s['L']:.3g})",
                (x, s["ratio"]),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.axvline(1.0, color="gray", ls=":", lw=0.8)
        ax.set_xlabel("training rel. L2 / FNO's")
        ax.set_title(f"{TASK}, {steps} steps (seeds averaged)", fontsize=9)
    axes[0][0].set_ylabel("test nRMSE / FNO's (dashed: the 1.0 target)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


#: What the committed rows show (the tables below hold every figure); not written for --quick.
FINDINGS = """## Findings

- **Nothing tried around LipFNO-m8-lr-tr beats it; the seed-0 screen cannot separate them**
  (branch darcy13e; seed 0, 1500 steps, all with the transpose; the bench rows of the same
  names are in `bench_medium.md`; `FNO-lr2e-2-tr` reproduced its seed-0 row there to every
  digit, 0.0324). With the transpose the Lipschitz model no longer fits the training set as
  well as FNO (training rel. L2 0.0342 against `FNO-lr2e-2-tr`'s 0.029; test / train 1.21
  against 1.12), so training-only regularizers, which trade training fit for generalization,
  do not help: input noise of 3e-2 of each input's RMS (`-noise3e-2`) 0.0413 (training 0.0343:
  no effect), weight averaging (`-ema`: `TrainConfig.ema` = 0.998, the averaged model deployed
  and certified at 3) 0.0474 (training 0.042: an average over the last ~500 steps lags the
  cosine's final annealing, which already does what an average would; FNO's twin
  `FNO-lr2e-2-tr-ema` loses more, 0.0407 against 0.0324, training 0.0376). Other rates fit worse:
  7e-3 0.0425, 1.5e-2 0.0423 (training 0.0372), 2e-2 0.0479 (0.0426); k = 4 0.0433 (0.0362).
  Kept modes: 6 / 9 / 10 reach 0.0436 / 0.0448 / 0.0392 (training 0.0359 / 0.0362 / 0.0308)
  at 1.12x / 1.28x / 1.35x FNO's step (8 modes: 1.23x; `darcy_step_time_13e/medium_step_time.md`,
  measured side by side at load 10-12). The 10-mode model's seed 0 looked like progress
  (1.21x `FNO-lr2e-2-tr` on that seed, against 1.27x) but over three seeds `LipFNO-m10-lr-tr`
  reaches 0.0419 ± 0.0032 (seeds 0.0392 / 0.0454 / 0.0411), no better than `LipFNO-m8-lr-tr`'s
  0.0409 ± 0.0013 and over the time target: single-seed differences of 5-10% are within the
  seed spread here. The best Lipschitz model within 1.3x FNO's step stays `LipFNO-m8-lr-tr`,
  1.24x the best FNO: the Darcy target (1.0x) is missed by 24%. Not tried: channel dropout
  between blocks (it would need a training-mode path in the convex-potential chain, and every
  training-only regularizer measured here cost training fit, which the transposed model already
  lacks).
- **Symmetry augmentation helps both families alike; the ratio stays.** Darcy's solver
  commutes with the eight symmetries of the square to rounding on its 64 x 64 grid, but the
  bench reads every second cell from cell 0, and on that read only the transpose stays exact:
  the six flips and rotations pair each input with a target 0.060-0.084 (relative L2) off the
  true coarse target (`darcy_symmetry.md`). Measured (seed 0, 1500 steps): all eight (`d4`)
  hurt both families, LipFNO-m8-lr 0.0668 (training rel. L2 0.0679) and FNO at 2e-2 0.0636
  (0.065), against 0.0481 and 0.0379 unaugmented (FNO's: the bench's `FNO-lr2e-2` row); the
  exact transpose (`tr`, `augment="transpose"`) helps both: LipFNO-m8-lr 0.0412 (training
  0.0342), LipFNO-clip-lr (fused blocks, step 1.11x FNO's) 0.043 (from 0.0496), FNO at 2e-2
  0.0324 (training 0.029). Over
  three seeds in `bench_medium.md`: `LipFNO-m8-lr-tr` 0.0409 ± 0.0013 (from 0.0468) and
  `FNO-lr2e-2-tr` 0.033 ± 0.0008 (from 0.0371): **1.24x the best FNO** (1.26x before), step
  1.27x FNO's, certified 3: the most accurate Lipschitz model within the time target, the
  Darcy target still missed by 24%. Augmentation closes LipFNO's generalization gap (test /
  train 1.69 -> 1.20) by trading training fit (0.0284 -> 0.0342): it now fits the training
  set worse than FNO-tr (0.029) and generalizes a little worse (1.20 against 1.12). Ten times
  the weight decay on top (1e-3) underfits: 0.0456 (training 0.0424).
- **The data's constant is small, the certified ones are not the limit.** The bench's `L_G`
  (largest ratio over calibration pairs, estimated) is 0.53 on this task; every LipFNO here is
  certified at 1-6 and FNO at 59 (500 steps) to 186 (1500 steps). Raising the budget of the fused
  blocks helps a little at first (k 1 -> 3: 0.935x -> 0.868x FNO at 500 steps) and then hurts
  (k 6 at 1500 steps: 1.10x against k 3's 1.05x).
- **Screening at 500 steps misleads.** At a third of the preset's budget every Lipschitz
  configuration beats FNO (0.868x-0.967x) and fits the training set better (training rel. L2
  0.0617-0.0731 against FNO's 0.0830): FNO catches up only with the longer schedule, so the
  configurations that matter were rerun at the preset's 1500 steps.
- **At 1500 steps LipFNO-clip overfits; it does not underfit.** Fused blocks, clipped
  multipliers, k = 3 (the bench's `LipFNO-clip`): training rel. L2 0.0320 against FNO's 0.0423,
  test 0.0525 against 0.0500 (1.05x): the constrained model fits the 830 training samples
  *better* than FNO and generalizes worse (test / train 1.64 against FNO's 1.18). Less capacity
  does not fix it: 8 kept modes instead of 12 give 0.0518 (1.04x, training 0.0335); ten times
  the weight decay (1e-3) raises the training error to 0.0413 but the test error too (0.0534,
  1.07x).
- **Larger steps close the gap.** The same model at learning rate 1e-2 instead of 3e-3 (same
  steps, cosine schedule): training 0.0294 and test 0.0496, **0.992x FNO** (seed 0), certified
  3. But FNO gains more from it: FNO at 1e-2 reaches 0.0389 (training 0.0287), so at equal
  learning rates LipFNO-clip is 1.27x FNO (seed 0). The medium preset's 3e-3 under-trains FNO
  on Darcy. Three seeds in `bench_medium.md`: `LipFNO-clip-lr` (this configuration,
  `liponet.bench.MODEL_TRAINING`) 0.0494 ± 0.0005, 0.99x FNO at 3e-3 but 1.26x `FNO-lr`
  (FNO at 1e-2, 0.0391 ± 0.0009), certified 3, train time 1.13x `FNO-lr`'s. The bench's
  tables take the ratio against `FNO-lr`, so this is **not** a win.
- **LipFNO-wide** (convex-potential blocks, `hidden = 2 width`, k = 1.3, the Burgers study's
  winner) on Darcy over three seeds in `bench_medium.md`: 0.0501 ± 0.0004 against FNO's
  0.0499 ± 0.0008, **1.005x** at certified 1.3 (target 1.0x: missed by 0.5%, within the seeds'
  spread), at 3.03x FNO's train time (measured before main's faster convex-potential blocks).
  It is the best Lipschitz model on Darcy at the preset's settings. An unconstrained last layer
  instead (the bench's `LipFNO-free`, fused blocks; 0.967x at 500 steps) trails at 1500 steps:
  0.0558 (seed 0, certified 1.4), 1.12x.
- **Each family at its own best learning rate (the fair comparison).** Bench rows, seed 0,
  1500 steps, cosine schedule (`bench_medium.md`; `-lr1e-3`, `-lr`, `-lr2e-2` are the same
  networks at 1e-3, 1e-2, 2e-2, `liponet.bench.MODEL_TRAINING`): FNO at 1e-3 / 3e-3 / 1e-2 /
  2e-2 reaches 0.0779 / 0.0500 / 0.0389 / 0.0379; LipFNO-wide at 3e-3 / 1e-2 / 2e-2 reaches
  0.0505 / 0.0413 / 0.0477. LipFNO-wide is best at 1e-2, FNO at 2e-2. Over three seeds:
  `LipFNO-wide-lr` 0.0426 ± 0.0014, `FNO-lr` 0.0391 ± 0.0009 (1.09x at equal rates),
  `FNO-lr2e-2` 0.0371 ± 0.0009: **1.15x; against the best FNO over every rate tried (the
  bench's targets table) the Darcy target (<= 1.0x) is missed by 15%**. At the preset's 3e-3
  the same model is 1.005x FNO; the apparent near-tie there came from a rate that under-trains
  FNO more than LipFNO.
- **Within 1.3x FNO's train time the constrained models stay near 1.3x the best FNO** (seed
  0, lr 1e-2, 1500 steps; `step / FNO` below is sequential under load, the interleaved figure
  of the bench models is `medium_step_time.md`'s). Fewer convex-potential blocks underfit: two
  / three blocks reach 0.0534 / 0.0509 with training rel. L2 0.041 / 0.034 against FNO-lr's
  0.0287 (interleaved step ratios about 0.9x / 1.25x). Four blocks with 8 kept modes instead
  of 12 cost about 1.26-1.3x (in 2-D the kept spectrum's products are what a convex-potential
  block adds to an FNO block): 0.0488 at k = 1.3, 0.0481 at k = 3. At k = 3 that model fits
  the training set as well as FNO at the same rate (0.0284 against 0.0287) and is 1.24x FNO-lr
  on the test set: the same generalization gap as the fused blocks (test / train 1.69 against
  FNO's 1.36). Three seeds of it, the bench's `LipFNO-m8-lr` (`bench_medium.md`): 0.0468 ±
  0.0017, **1.26x the best FNO** (`FNO-lr2e-2`, 0.0371) and 1.20x `FNO-lr`, certified 3, step
  1.25x FNO's (`medium_step_time.md`): the most accurate Lipschitz model within the time target
  (`LipFNO-clip-lr`: 1.33x at 1.14x), 26% short of the accuracy target. A smooth
  activation inside the blocks (softplus, three blocks) does not fit at all (test 0.141,
  training 0.139; one seed, cause not established).
- **ReLU features per block are the lever, and in 2-D they are expensive.** LipFNO-wide
  (`hidden = 2 width`) at 1e-2 reaches 0.0413 (12 modes, seed 0) and 0.0424 with 8 modes; the
  8-mode model fits the training set *better* than FNO-lr (0.0266 against 0.0287) and
  generalizes worse (test / train 1.59 against 1.36), which answers the question left open
  before: the wide model's remaining gap is the generalization gap too, not underfitting. The
  features cost physical-space work: each block transforms and multiplies `hidden` channels on
  the padded 36 x 36 grid twice per direction, so the step stays 2.4-2.5x FNO's with 8 modes
  (3.1-3.4x with 12). A block whose `K` is a pointwise expansion of a `width`-channel Fourier
  multiplier (`K = V M`: transforms on `width` channels only, the ReLU features pointwise) would
  take most of that cost away. Built since (`block="cpl-factored"`, benchmarks/README.md
  "Factored convex-potential blocks"): four factored blocks step at 2.05x FNO's instead of
  3.05x, still over the 1.3x budget, and the factored networks within it (two or three blocks,
  or a 12- or 16-channel stream) trail LipFNO-m8-lr-tr (seed 0: 0.0453-0.0556 against 0.0412);
  the four factored blocks themselves reach 0.0392 (LipFNO-fw-lr-tr, seed 0).
- **Why LipFNO trails, in short:** not a binding budget (the data's estimated constant is 0.53,
  the model is certified at 1.3; k = 6 on the fused blocks is worse than k = 3, k = 3 on the
  8-mode convex-potential blocks a little better than 1.3) and not underfitting wherever the
  model has the capacity: fused blocks, convex-potential blocks with 8 modes at k = 3 and the
  wide blocks all fit the 830 training samples as well as FNO or better and generalize worse
  (test / train 1.59-1.69 against FNO's 1.36 at 1e-2; 1.64 against 1.18 at 3e-3), and FNO
  profits more from larger steps. The configurations cheap enough for the 1.3x time target
  either underfit (two or three blocks) or overfit (8 modes at k = 3); the wide blocks narrow
  the gap most (1.09x at equal rates, 1.15x the best FNO) at 2.4-3.4x FNO's time.
- **Padding, input scaling and the place of the budget are not the cause.** The bench builds
  every FNO and LipFNO on this non-periodic task with the same domain padding (1/8,
  `liponet.bench.fno_padding`). The rest follows from a derivation, not a run: every activation
  of these LipFNOs (ReLU in the convex-potential blocks, MaxMin in the fused blocks and the
  projection) is positively homogeneous and every bias is free: a block scaled by `f > 0` is
  the same block applied to its input scaled by `f` with its bias times `f` (`x - 2 K^T relu(K
  x + b)` sends `f x` with bias `f b` to `f` times its output). Factors `f_i` on the lifting,
  the blocks and the projection (`budget="learned"`) therefore move to the output as their
  product, and so does a last layer of norm `k`: every placement of a total `k` (and a vector
  output scale, with this task's one output channel) represents the same functions, `k` times
  a network of 1-Lipschitz layers; only the optimizer's path differs. Scaling the input by a
  constant is the same up to the grid-coordinate channels, which share the lifting's
  normalization and are not scaled with it. The global/QR
  normalization, output-scale, learned-budget, modes-16 and width-32 configurations stay
  defined in `CONFIGS` and unrun; width 32 or 16 modes add capacity to a model that already
  fits the training set better than it generalizes.
"""


def quick_preset() -> Preset:
    """A tiny Darcy problem for the smoke test (16 x 16 cells, 24 samples, 4 steps)."""
    return with_overrides(
        PRESETS["tiny"],
        tasks=(TASK,),
        nx={TASK: 16},
        nt={TASK: None},
        strides={TASK: (1, 1)},
        initial_step={TASK: 1},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny Darcy)")
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        choices=tuple(CONFIGS),
        help="study configurations (default: all, or none with --bench-models)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    parser.add_argument("--work-dir", default=None, help="generated data (reused when present)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--from-csv", action="store_true", help="only rebuild md/png")
    parser.add_argument("--no-fno", action="store_true", help="do not add the FNO reference")
    parser.add_argument(
        "--bench-models",
        nargs="+",
        default=[],
        metavar="NAME",
        help="also run these liponet bench models (their MODEL_TRAINING settings on the "
        "medium preset): a study row named after the model, and with --bench-csv its bench row",
    )
    parser.add_argument(
        "--bench-csv",
        default=None,
        help="append the --bench-models rows to this bench CSV (e.g. "
        "benchmarks/results/bench_medium.csv; the same row `liponet bench --append` writes)",
    )
    args = parser.parse_args()
    unknown = [name for name in args.bench_models if name not in MODELS]
    if unknown:
        parser.error(f"--bench-models: unknown liponet bench model {unknown[0]!r}")
    if args.bench_csv and (args.steps is not None or args.quick):
        parser.error("--bench-csv: bench rows run the medium preset as it is (no --steps/--quick)")
    torch.set_num_threads(1)
    preset = with_overrides(quick_preset() if args.quick else PRESETS["medium"], steps=args.steps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{STEM}.csv"
    skip = ("samples", "steps", "modes")  # per row: the tables show each row's steps
    settings = {k: v for k, v in preset_settings(preset).items() if k not in skip}
    settings.update(
        {
            "task": TASK,
            "modes": per_task(preset.modes, TASK),
            "samples": per_task(preset.n_samples, TASK),
            "data seed": 0,
            "torch threads": 1,
            "machine": platform.machine(),
        }
    )
    if not args.from_csv:
        done = {
            (r["config"], r["steps_target"], r["seed"])
            for r in read(csv_path)
            if r["status"] == "ok"
        }
        first = [] if args.no_fno else ["FNO"]
        chosen = args.configs if args.configs is not None else [] if args.bench_models else CONFIGS
        configs = [*first, *(c for c in chosen if c not in first), *args.bench_models]
        with tempfile.TemporaryDirectory(prefix="liponet-darcy-") as tmp:
            data = load_task(TASK, preset, None, args.work_dir or tmp, 0)
            steps = per_task(preset.steps, TASK)
            pick = torch.randperm(
                data.x_train.shape[0], generator=torch.Generator().manual_seed(2)
            )[:2048]
            for seed in args.seeds:
                for config in configs:
                    if (config, steps, seed) in done:
                        continue
                    start = time.perf_counter()
                    if config in args.bench_models:  # registered: its MODEL_TRAINING settings
                        r = run_row(config, data, preset, seed)
                        if args.bench_csv:
                            append_row(args.bench_csv, r)
                    else:
                        r = run_row(
                            config,
                            data,
                            config_preset(preset, config),
                            seed,
                            builder=builder(config),
                        )
                    fno = [
                        f
                        for f in read(csv_path)
                        if (f["config"], f["steps_target"], f["seed"]) == ("FNO", steps, seed)
                        and f["status"] == "ok"
                    ]
                    per_step = r["train_s"] / max(1, r["steps"])
                    row = {
                        **{c: r[c] for c in r if not c.startswith("_")},
                        "config": config,
                        "steps_target": steps,
                        "s_per_step": per_step,
                        "one_step_test": one_step_error(r, data.x_test, data.y_test),
                        "one_step_train": one_step_error(r, data.x_train[pick], data.y_train[pick]),
                        "nrmse_ratio": r["nrmse"] / fno[0]["nrmse"] if fno else math.nan,
                        "step_ratio": per_step / fno[0]["s_per_step"] if fno else math.nan,
                    }
                    append(csv_path, row)
                    print(
                        f"{TASK} {steps} seed {seed} {config}: nrmse {r['nrmse']:.4g} "
                        f"({row['nrmse_ratio']:.3g}x FNO), train rel. L2 "
                        f"{row['one_step_train']:.4g}, certified L "
                        f"{r['lipschitz_certified']:.3g}, {1000 * per_step:.1f} ms/step "
                        f"({row['step_ratio']:.2f}x), {time.perf_counter() - start:.0f} s wall",
                        flush=True,
                    )
    rows = with_ratios(read(csv_path))
    (out / f"{STEM}.md").write_text(markdown(rows, settings, "" if args.quick else FINDINGS))
    plot(rows, out / f"{STEM}.png")
    print(out / f"{STEM}.md")


if __name__ == "__main__":
    main()
