"""What the spectral shortcut learns on advection: per-mode phase and amplitude of the step.

The exact one-step map of the ``medium`` preset's advection task shifts the last frame by 0.64
cells: the Fourier multiplier ``m_k = exp(-2 pi i k c / n)`` on the last frame, zero on the other
frames of the window. This script trains bench models (``liponet.bench.run_row``: the same data,
Trainer, recipe, metrics and certificate as ``liponet bench --preset medium --tasks
advection_1d``) and measures, on the test windows:

- ``nrmse`` (the bench's test rollout nRMSE), ``one_step`` (relative L2 error of one step from
  true windows), ``growth`` (rollout error at the last frame over the first rollout frame's);
- the model's *effective* per-mode multiplier on the data: the least-squares ratio
  ``M_k = sum Yhat_k conj(X_k) / sum |X_k|^2`` of the predicted next frame's mode ``k`` to the
  last input frame's, over the test windows (a linear summary of the step on the data, also for
  models without a shortcut), against the data's own ratio (the exact multiplier, measured the
  same way from the true next frames): its phase error ``arg(M_k / m_k)`` and amplitude
  ``|M_k| / |m_k|``;
- for models with a shortcut, the same for ``S`` alone: ``sum_j S_k^j r^j_k`` with ``r^j_k``
  the data's ratio of frame ``j`` to the last frame (what ``S`` does to a window of the data).

The model name ``S-lstsq-f0`` (:data:`LSTSQ_ONLY`) is no bench model: ``S`` alone, fitted by
least squares to the training windows (:meth:`liponet.layers.SpectralShortcut.fit_`, ball
``max_k ||S_k|| <= 1``), no ``f``, no training: the best a linear shift-invariant step of the
window reaches on the data, against which the trained rows are read. ``S-rollout-f0``,
``S-rollout-b1.25-f0``, ``S-rollout-b1.5-f0`` and ``S-rollout-auto-f0`` (:data:`FIT_ONLY`):
``S`` alone fitted to the rollout of the training trajectories (``shortcut_init="rollout"``)
in the ball 1, 1.25, 1.5 and free: accuracy against the certified constant.

Summaries weight each mode by its energy in the test frames (``rms_phase``: the energy-weighted
RMS phase error in radians) and list the phase error at a few modes.

Run from the repository root (one torch thread, rows appended; a rerun skips rows present)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spectral_shortcut.py \\
        --models LipFNO-inc0.3-d2 LipFNO-sc-inc0.3-d2 FNO-lr3e-4 FNO-sc --seeds 0
    .venv/bin/python benchmarks/spectral_shortcut.py --from-csv

``--quick``: a tiny problem (smoke test, writes to a temporary folder unless ``--out``).
Writes ``benchmarks/results/spectral_shortcut.{csv,md,png}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from _plot import pyplot
from fno_common import append_row, markdown_table
from torch import Tensor

from liponet.bench import (
    MODELS,
    PRESETS,
    BenchData,
    Preset,
    fitted_shortcut,
    load_task,
    rollout_fields,
    run_row,
    training_preset,
)
from liponet.bench import with_overrides as preset_with
from liponet.layers import SpectralShortcut
from liponet.metrics import pdebench_metrics

RESULTS = Path("benchmarks/results")
STEM = "spectral_shortcut"
TASK = "advection_1d"
#: Modes whose phase error the summary lists.
SHOWN_MODES = (1, 2, 4, 8, 16, 32)
COLUMNS = (
    "model",
    "seed",
    "nrmse",
    "one_step",
    "growth",
    "rms_phase",
    "rms_phase_S",
    "lipschitz_certified",
    "train_s",
    "phase",
    "amp",
    "phase_S",
    "amp_S",
    "energy",
)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """Least-squares per-mode ratio ``sum num conj(den) / sum |den|^2`` over the batch."""
    return (num * den.conj()).sum(0) / den.abs().pow(2).sum(0)


@torch.no_grad()
def spectra(f: Any, data: BenchData) -> dict[str, Any]:
    """Per-mode exact and effective multipliers, one-step error, rollout error growth."""
    x, y = data.x_test, data.y_test  # (n, frames, x), (n, 1, x)
    pred = torch.cat([f(x[i : i + 512]) for i in range(0, len(x), 512)])
    one = float(((pred - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean())
    xk = torch.fft.rfft(x.double(), norm="ortho")  # (n, frames, K)
    last = xk[:, -1]
    exact = _ratio(torch.fft.rfft(y[:, 0].double(), norm="ortho"), last)  # (K,)
    model = _ratio(torch.fft.rfft(pred[:, 0].double(), norm="ortho"), last)
    energy = last.abs().pow(2).mean(0)
    traj = data.traj_test
    assert traj is not None
    k = data.initial_step
    roll = rollout_fields(f, traj, k)[:, k:]
    true = traj[:, k:]
    err = ((roll - true).flatten(2).norm(dim=2) / true.flatten(2).norm(dim=2)).mean(0)
    frames = torch.stack([_ratio(xk[:, j], last) for j in range(xk.shape[1])], -1)  # (K, frames)
    return {
        "one_step": one,
        "growth": float(err[-1] / err[0]),
        "exact": exact,
        "model": model,
        "energy": energy / energy.sum(),
        "frames": frames,
    }


def _phase_amp(m: Tensor, exact: Tensor) -> tuple[Tensor, Tensor]:
    ratio = m / exact
    return ratio.angle(), ratio.abs()


def _rms(phase: Tensor, energy: Tensor) -> float:
    return float((energy * phase.pow(2)).sum().sqrt())


def _shortcut(model: torch.nn.Module) -> SpectralShortcut | None:
    return next((m for m in model.modules() if isinstance(m, SpectralShortcut)), None)


#: The study's untrained row: ``S`` alone (``f = 0``), the least-squares step of the training
#: windows (:meth:`liponet.layers.SpectralShortcut.fit_`, ball ``max_k ||S_k|| <= 1``).
LSTSQ_ONLY = "S-lstsq-f0"
#: The untrained rows: ``S`` alone by ``(shortcut_init, ball)``; ``S-rollout-f0``: the rollout
#: fit (:func:`liponet.train.shortcut_fit.rollout_multipliers`) in the unit ball, ``-b1.25`` /
#: ``-b1.5``: in the ball of that radius, ``S-rollout-auto-f0``: free (the ball
#: ``shortcut_bound="auto"`` gives it): accuracy against the certified constant.
FIT_ONLY: dict[str, tuple[str, float | None]] = {
    LSTSQ_ONLY: ("lstsq", 1.0),
    "S-rollout-f0": ("rollout", 1.0),
    "S-rollout-b1.25-f0": ("rollout", 1.25),
    "S-rollout-b1.5-f0": ("rollout", 1.5),
    "S-rollout-auto-f0": ("rollout", None),
}


def lstsq_row(data: BenchData, name: str = LSTSQ_ONLY) -> dict[str, Any]:
    """A :data:`FIT_ONLY` row as a bench row: test rollout nRMSE, certificate, no training."""
    how, ball = FIT_ONLY[name]
    model = fitted_shortcut(data, how, ball).eval()
    traj = data.traj_test
    assert traj is not None
    with torch.no_grad():
        pred = rollout_fields(model, traj, data.initial_step)
    metrics = pdebench_metrics(pred.movedim(1, -1), traj.movedim(1, -1), time_axis=True,
                               input_frames=data.initial_step)  # fmt: skip
    return {
        "nrmse": float(metrics["nrmse"]),
        "lipschitz_certified": model.lipschitz_bound(),
        "train_s": 0.0,
        "_model": model,
        "_f": model,
    }


def run(model_name: str, data: BenchData, preset: Preset, seed: int) -> dict[str, Any]:
    """Train one bench model (``run_row``) and measure its per-mode step."""
    if model_name in FIT_ONLY:
        row = lstsq_row(data, model_name)
    else:
        row = run_row(model_name, data, preset, seed)
    model = row["_model"].eval()
    s = spectra(row["_f"], data)
    phase, amp = _phase_amp(s["model"], s["exact"])
    out: dict[str, Any] = {
        "model": model_name,
        "seed": seed,
        "nrmse": row["nrmse"],
        "one_step": s["one_step"],
        "growth": s["growth"],
        "rms_phase": _rms(phase, s["energy"]),
        "rms_phase_S": math.nan,
        "lipschitz_certified": row["lipschitz_certified"],
        "train_s": row["train_s"],
        "phase": _join(phase),
        "amp": _join(amp),
        "phase_S": "",
        "amp_S": "",
        "energy": _join(s["energy"]),
    }
    shortcut = _shortcut(model)
    if shortcut is not None:
        stored = shortcut.eval_multipliers().to(torch.complex128)[:, 0]  # (K, frames)
        on_data = (stored * s["frames"]).sum(-1)  # S applied to a window of the data
        phase_s, amp_s = _phase_amp(on_data, s["exact"])
        out.update(
            rms_phase_S=_rms(phase_s, s["energy"]), phase_S=_join(phase_s), amp_S=_join(amp_s)
        )
    return out


def _join(values: Tensor) -> str:
    return " ".join(f"{float(v):.5g}" for v in values)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split()] if text else []


def read(path: Path) -> list[dict[str, Any]]:
    """The study's rows (``[]`` without a file)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["seed"] = int(r["seed"])
        for key in COLUMNS[2:9]:
            r[key] = float(r[key])
    return rows


def summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model (mean over seeds): errors, RMS phase errors, phase error at a few modes."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]

        def mean(key: str, mine: list[Mapping[str, Any]] = mine) -> float:
            return statistics.fmean(float(r[key]) for r in mine)

        phases = [_floats(r["phase"]) for r in mine]
        entry: dict[str, Any] = {
            "model": name,
            "seeds": len(mine),
            "nrmse": mean("nrmse"),
            "one_step": mean("one_step"),
            "growth": mean("growth"),
            "rms_phase": mean("rms_phase"),
            "rms_phase_S": mean("rms_phase_S"),
        }
        for m in SHOWN_MODES:
            at = [p[m] for p in phases if len(p) > m]
            entry[f"phase k={m}"] = statistics.fmean(at) if at else math.nan
        amps = [_floats(r["amp"]) for r in mine]
        entry["max abs phase k=1-32"] = max(
            max(map(abs, p[1:33]), default=math.nan) for p in phases
        )
        high = [v for a in amps for v in a[40:-1]]  # modes 40 .. the last below Nyquist
        entry["amp k>=40 min"] = min(high, default=math.nan)
        entry["amp k>=40 max"] = max(high, default=math.nan)
        entry["L"] = max(float(r["lipschitz_certified"]) for r in mine)
        out.append(entry)
    return out


#: The models the plot shows when the study holds more than :data:`PLOT_ALL_UP_TO` (the
#: screens' rate variants are in the tables only).
PLOTTED = (
    "LipFNO-inc0.3-d2",
    "FNO-lr3e-4",
    "LipFNO-sc-inc-d2-cos-wd0",
    "FNO-sc-cos-wd0",
    LSTSQ_ONLY,
    "LipFNO-sc-kres-d2-lsfz-g-cos-wd0",
    "FNO-sc-lsfz-g-lr2e-3-cos-wd0",
    "S-rollout-f0",
    "S-rollout-auto-f0",
)
PLOT_ALL_UP_TO = 8


def plot(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Phase error and amplitude ratio per mode (seed 0 of each model), energy per mode."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    names = list(dict.fromkeys(r["model"] for r in rows))
    if len(names) > PLOT_ALL_UP_TO:
        names = [n for n in names if n in PLOTTED]
        rows = [r for r in rows if r["model"] in names]
    for r in rows:
        if r["seed"] != min(q["seed"] for q in rows if q["model"] == r["model"]):
            continue
        color = f"C{names.index(r['model']) % 10}"  # one color per model in every panel
        phase, amp = _floats(r["phase"]), _floats(r["amp"])
        axes[0].plot(range(1, len(phase)), [abs(v) for v in phase[1:]], color, label=r["model"])
        axes[1].plot(range(1, len(amp)), amp[1:], color, label=r["model"])
        if r["phase_S"]:
            phase_s = _floats(r["phase_S"])
            axes[0].plot(
                range(1, len(phase_s)),
                [abs(v) for v in phase_s[1:]],
                color,
                linestyle="--",
                label=f"{r['model']}: S alone",
            )
    energy = _floats(rows[0]["energy"])
    axes[2].semilogy(range(1, len(energy)), [max(e, 1e-30) for e in energy[1:]])
    axes[0].set(yscale="log", xlabel="mode k", ylabel="|phase error| (rad), one step",
                title="phase error per mode")  # fmt: skip
    axes[1].set(xlabel="mode k", ylabel="|M_k| / |m_k|", title="amplitude ratio per mode")
    axes[2].set(xlabel="mode k", ylabel="fraction of energy", title="test frames' energy")
    axes[0].legend(loc="best", fontsize=7)
    axes[1].legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows: Sequence[Mapping[str, Any]], path: Path, preset: Preset) -> None:
    """Summary table, findings, every row."""
    table = summary(rows)
    detail = [c for c in COLUMNS[:9]]
    text = [
        "# Spectral shortcut on advection: what the step learns per mode (issue 13)",
        "",
        "Regenerate: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/spectral_shortcut.py "
        "--models ... --seeds ...` (rows appended), then `--from-csv`.",
        "",
        f"Settings: the `{preset.name}` preset's `{TASK}` (as `liponet bench --preset medium "
        "--tasks advection_1d`: same generated data, Trainer, recipe, metrics and certificate; "
        "each model with its bench training settings), one torch thread.",
        "",
        "Columns: `nrmse` = test rollout nRMSE (31 frames); `one_step` = relative L2 error of "
        "one step from true windows; `growth` = rollout error at the last frame / at the first "
        "rollout frame; `rms_phase` = energy-weighted RMS over modes of the phase error (rad) of "
        "the model's effective per-mode multiplier on the test windows against the data's own "
        "(the exact shift); `rms_phase_S` = the same for the shortcut `S` alone; `phase k=m` = "
        "the model's phase error at mode m; `max abs phase k=1-32`: the largest over modes 1-32; "
        "`amp k>=40 min/max`: the range of the model's amplitude ratio `|M_k| / |m_k|` over "
        "modes 40 to 63 (1 = exact; these modes hold below 1e-5 of the energy, see the plot); "
        "`L` = certified bound.",
        "",
        "## Per model (mean over seeds)",
        "",
        markdown_table(table, list(table[0])),
        "",
        "## Findings",
        "",
        *findings(table),
        "",
        "## Every row",
        "",
        markdown_table([{c: r[c] for c in detail} for r in rows], detail),
        "",
    ]
    path.write_text("\n".join(text))


def findings(table: Sequence[Mapping[str, Any]]) -> list[str]:
    """Sentences from the figures (each only when its models are present)."""
    by = {r["model"]: r for r in table}
    lines = []
    for sc in (m for m in by if "-sc" in m):
        base = sc.replace("-sc", "") if sc != "FNO-sc" else "FNO"
        r = by[sc]
        line = (
            f"- {sc}: nRMSE {r['nrmse']:.3g}, one step {r['one_step']:.3g}, rollout error "
            f"growth x{r['growth']:.2f}, RMS phase error {r['rms_phase']:.2e} rad (S alone "
            f"{r['rms_phase_S']:.2e})"
        )
        if base in by:
            b = by[base]
            line += (
                f"; {base}: nRMSE {b['nrmse']:.3g}, one step {b['one_step']:.3g}, growth "
                f"x{b['growth']:.2f}, RMS phase error {b['rms_phase']:.2e} rad"
            )
        lines.append(line + ".")
    if LSTSQ_ONLY in by:
        r = by[LSTSQ_ONLY]
        trained = [m for m in by if m not in FIT_ONLY and "-ls" not in m and "-ro" not in m]
        fitted = [m for m in by if "-ls" in m]
        line = (
            f"- {LSTSQ_ONLY} (S alone, f = 0, no training: the least-squares step of the "
            f"training windows, `SpectralShortcut.fit_`): nRMSE {r['nrmse']:.4g}, one step "
            f"{r['one_step']:.3g}, RMS phase error {r['rms_phase']:.2e} rad, certified "
            f"{r['L']:.3g}"
        )
        if trained:
            best = min(trained, key=lambda m: by[m]["nrmse"])
            line += (
                f"; the best row trained from S's identity start: {best} {by[best]['nrmse']:.4g} "
                f"(one step {by[best]['one_step']:.3g})"
            )
        if fitted:
            best = min(fitted, key=lambda m: by[m]["nrmse"])
            line += (
                f"; the best row trained from the fit (`-ls...`): {best} "
                f"{by[best]['nrmse']:.4g} ({by[best]['nrmse'] / r['nrmse']:.3f}x S alone)"
            )
        lines.append(line + ".")
    for name in (m for m in FIT_ONLY if m != LSTSQ_ONLY and m in by):
        r = by[name]
        line = (
            f"- {name} (S alone, f = 0: the rollout fit of the training trajectories, "
            f'`shortcut_init="rollout"`, ball {FIT_ONLY[name][1] or "auto (free)"}): nRMSE '
            f"{r['nrmse']:.4g}, one step {r['one_step']:.3g}, growth x{r['growth']:.2f}, "
            f"certified {r['L']:.3g}"
        )
        if LSTSQ_ONLY in by:
            line += f" ({r['nrmse'] / by[LSTSQ_ONLY]['nrmse']:.3f}x {LSTSQ_ONLY})"
        fitted = [m for m in by if "-ro" in m and m not in FIT_ONLY]
        if fitted:
            best = min(fitted, key=lambda m: by[m]["nrmse"])
            line += f"; the best row trained from a rollout fit: {best} {by[best]['nrmse']:.4g}"
        lines.append(line + ".")
    rest = [m for m in by if "-sc" not in m and f"{m}-sc" not in by and m not in FIT_ONLY]
    rest = [m for m in rest if not any(s.replace("-sc", "") == m for s in by if "-sc" in s)]
    for m in rest:
        r = by[m]
        lines.append(
            f"- {m}: nRMSE {r['nrmse']:.3g}, one step {r['one_step']:.3g}, growth "
            f"x{r['growth']:.2f}, RMS phase error {r['rms_phase']:.2e} rad."
        )
    return lines


#: Columns of ``spectral_shortcut_init.csv`` (``--init``: the models before training).
INIT_COLUMNS = ("model", "seed", "f_over_y", "f_mean_over_rms_y", "S_error", "step_error")


@torch.no_grad()
def init_row(model_name: str, data: BenchData, preset: Preset, seed: int) -> dict[str, Any]:
    """One model as ``run_row`` builds it (same seed), before training, on the test windows.

    ``f_over_y``: mean ``||f(x)|| / ||y||`` of the increment network's output;
    ``f_mean_over_rms_y``: its mean over grid and windows over the frames' RMS (the constant
    part); ``S_error``: the shortcut's (or ``u_last``'s) relative one-step error;
    ``step_error``: the model's.
    """
    torch.manual_seed(seed)
    model = MODELS[model_name](data, training_preset(preset, model_name)).eval()
    x, y = data.x_test, data.y_test
    base = model.net.shortcut(x) if model.net.shortcut is not None else x[:, -1:]
    f = model.net.inner(x)

    def rel(a: Tensor) -> float:
        return float((a.flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean())

    return {
        "model": model_name,
        "seed": seed,
        "f_over_y": rel(f),
        "f_mean_over_rms_y": float(f.mean() / y.pow(2).mean().sqrt()),
        "S_error": rel(base - y),
        "step_error": rel(base + f - y),
    }


def write_init(rows: Sequence[Mapping[str, Any]], out: Path) -> None:
    """``spectral_shortcut_init.{csv,md,png}``."""
    csv_path = out / f"{STEM}_init.csv"
    csv_path.unlink(missing_ok=True)
    for r in rows:
        append_row(csv_path, r, INIT_COLUMNS)
    text = [
        "# Spectral shortcut on advection: the models before training (issue 13)",
        "",
        f"Regenerate: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/{STEM}.py --init --models "
        "...`. Each model built as `liponet bench --preset medium --tasks advection_1d` builds "
        "it (the seed's initial weights, a fitted shortcut where the name says `-ls`), before "
        "any optimizer step, on the test windows.",
        "",
        "Columns: `f_over_y` = mean `||f(x)|| / ||y||` of the increment network's output; "
        "`f_mean_over_rms_y` = its mean over grid and windows over the frames' RMS (its "
        "constant part); `S_error` = relative one-step error of the shortcut (or `u_last`) "
        "alone; `step_error` = the model's.",
        "",
        markdown_table(list(rows), list(INIT_COLUMNS)),
        "",
    ]
    (out / f"{STEM}_init.md").write_text("\n".join(text))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    names = [r["model"] for r in rows]
    ax.barh(names, [r["f_over_y"] for r in rows], label="||f(x)|| / ||y||")
    ax.barh(names, [r["S_error"] for r in rows], alpha=0.6, label="shortcut alone: error")
    ax.set(xscale="log", xlabel="relative to the next frame, before training")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{STEM}_init.png", dpi=110)
    plt.close(fig)


def main() -> None:
    """Train the requested models (rows appended) or rebuild the outputs from the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["LipFNO-inc0.3-d2", "LipFNO-sc-inc0.3-d2"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--work-dir", type=Path, default=None, help="generated data folder")
    parser.add_argument("--from-csv", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--init", action="store_true", help="the models before training only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    preset = PRESETS["medium"]
    if args.quick:
        preset = preset_with(PRESETS["tiny"], steps=20)
    out = args.out or (Path(tempfile.mkdtemp()) if args.quick else RESULTS)
    csv_path = out / f"{STEM}.csv"
    if args.init:
        data = load_task(TASK, preset, None, args.work_dir or Path(tempfile.mkdtemp()))
        write_init([init_row(m, data, preset, s) for s in args.seeds for m in args.models], out)
        print(f"wrote {out / STEM}_init.{{csv,md,png}}")
        return
    if not args.from_csv:
        work = args.work_dir or Path(tempfile.mkdtemp())
        data = load_task(TASK, preset, None, work)
        done = {(r["model"], r["seed"]) for r in read(csv_path)}
        for seed in args.seeds:
            for name in args.models:
                if (name, seed) in done:
                    continue
                row = run(name, data, preset, seed)
                append_row(csv_path, row, COLUMNS)
                print(f"{name} seed {seed}: nrmse {row['nrmse']:.4g}", flush=True)
    rows = read(csv_path)
    if rows:
        markdown(rows, out / f"{STEM}.md", preset)
        plot(rows, out / f"{STEM}.png")
        print(f"wrote {out / STEM}.{{csv,md,png}}")


if __name__ == "__main__":
    main()
