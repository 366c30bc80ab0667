"""Where the Lipschitz constraint helps: noise, out-of-distribution inputs, few samples, rollouts.

One task, 1-D advection (beta = 0.1, generated PDEBench-style data, grid 64 after the stride,
one-step map u(t) -> u(t + dt) with dt = 0.05, i.e. ``initial_step = 1``): its true operator is an
isometry (``L_G = 1``, certified), so the certified growth ``L eps`` of a model can be compared
with what the data allows. Models (``liponet.bench``): LipFNO, LipFNO-best, FNO, neuraloperator's
FNO, LipDeepONet, DeepONet, all trained alike (Adam, relative MSE, same steps, batch, seed).

(a) **Noise.** For test inputs ``a`` and perturbations ``delta`` of function norm ``eps``:
    Gaussian (white noise rescaled), sparse (1 % of the grid points, here 1 of 64, carrying the
    whole norm) and worst case (projected gradient ascent on ``||Ĝ(a + delta) - Ĝ(a)||``, 20
    steps). Reported: the mean output change ``||Ĝ(a + delta) - Ĝ(a)||`` next to the certified
    ``L eps`` (``L`` = ``lipschitz_bound()``; none for neuraloperator's FNO), and the mean error
    against the clean truth ``||Ĝ(a + delta) - G(a)||``.
(b) **Out of distribution.** Test inputs scaled by 2, 5, 10 (advection is linear: the truth is
    the scaled truth), and single sines of 12 and 20 periods (training inputs have at most 8).
    The exact shift (Fourier) gives the truth. nRMSE per case.
(c) **Few samples.** Training on 64, 256, 1024 one-step pairs; test nRMSE (one step).
(d) **Rollouts.** From the first test frame to the last (40 steps): nRMSE per step. For the
    certified models, the rollout bound ``e_{t+1} <= L e_t + delta_t`` with the measured one-step
    defects ``delta_t`` (``liponet.certify.rollout_error_bound``; labelled "measured defects": the
    defects are measured, not certified).

Run from the repository root: ``.venv/bin/python benchmarks/implicit_bias.py`` (``--quick``:
smoke run). Writes ``benchmarks/results/implicit_bias.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from _plot import agg_pyplot
from torch import Tensor

from liponet.bench import PRESETS, BenchData, load_task, neuralop_available, rollout_fields, run_row
from liponet.certify import reference, rollout_error_bound

RESULTS = Path("benchmarks/results")
MODELS = ("LipFNO", "LipFNO-best", "FNO", "neuralop-FNO", "LipDeepONet", "DeepONet")


def fn_norm(v: Tensor) -> Tensor:
    """liponet's function norm per sample, ``(batch,)``."""
    return v.pow(2).sum(1).mean(dim=tuple(range(1, v.ndim - 1))).sqrt()


def nrmse(pred: Tensor, target: Tensor) -> float:
    return float((fn_norm(pred - target) / fn_norm(target)).mean())


def perturbation(kind: str, a: Tensor, eps: float, f: Callable, gen: torch.Generator) -> Tensor:
    """A perturbation of function norm ``eps`` per sample."""
    if kind == "gaussian":
        d = torch.randn(a.shape, generator=gen)
    elif kind == "sparse":
        n = a.shape[-1]
        k = max(1, n // 100)
        d = torch.zeros_like(a)
        idx = torch.stack([torch.randperm(n, generator=gen)[:k] for _ in range(a.shape[0])])
        d.scatter_(-1, idx[:, None, :], torch.randn(a.shape[0], 1, k, generator=gen))
    elif kind == "worst":
        d = perturbation("gaussian", a, eps, f, gen).requires_grad_(True)
        with torch.no_grad():
            base = f(a)
        for _ in range(20):
            gain = fn_norm(f(a + d) - base).sum()
            (grad,) = torch.autograd.grad(gain, d)
            with torch.no_grad():
                d += 0.5 * eps * grad / fn_norm(grad).clamp_min(1e-12)[:, None, None]
                d *= eps / fn_norm(d).clamp_min(1e-12)[:, None, None]
        return d.detach()
    else:
        raise ValueError(kind)
    return d * (eps / fn_norm(d).clamp_min(1e-12))[:, None, None]


def study_noise(rows: list[dict], trained: dict, data: BenchData, eps_list: list[float]) -> None:
    gen = torch.Generator().manual_seed(3)
    a, y = data.x_test[:128], data.y_test[:128]
    for name, (_, f, bound) in trained.items():
        with torch.no_grad():
            clean = f(a)
        for kind in ("gaussian", "sparse", "worst"):
            for eps in eps_list:
                d = perturbation(kind, a, eps, f, gen)
                with torch.no_grad():
                    out = f(a + d)
                rows.append(
                    {
                        "study": "noise",
                        "model": name,
                        "case": kind,
                        "x": eps,
                        "value": float(fn_norm(out - clean).mean()),
                        "certified": bound * eps if math.isfinite(bound) else float("nan"),
                        "extra": float(fn_norm(out - y).mean()),
                    }
                )


def study_ood(rows: list[dict], trained: dict, data: BenchData, shift: float) -> None:
    a, y = data.x_test[:128], data.y_test[:128]
    n = a.shape[-1]
    x = (torch.arange(n) + 0.5) / n
    cases: dict[str, tuple[Tensor, Tensor]] = {"in distribution": (a, y)}
    for s in (2, 5, 10):
        cases[f"amplitude x{s}"] = (s * a, s * y)
    for k in (12, 20):
        phases = torch.rand(64, 1, 1, generator=torch.Generator().manual_seed(k)) * 2 * math.pi
        u = torch.sin(2 * math.pi * k * x + phases)
        cases[f"sine, {k} periods"] = (u, reference.advection(u.double(), shift).float())
    for name, (_, f, _) in trained.items():
        for case, (u, target) in cases.items():
            with torch.no_grad():
                rows.append(
                    {
                        "study": "ood",
                        "model": name,
                        "case": case,
                        "x": float("nan"),
                        "value": nrmse(f(u), target),
                        "certified": float("nan"),
                        "extra": float("nan"),
                    }
                )


def study_rollout(rows: list[dict], trained: dict, data: BenchData) -> None:
    traj = data.traj_test
    assert traj is not None
    true_next = traj[:, 1:]
    for name, (_, f, bound) in trained.items():
        pred = rollout_fields(f, traj, 1)[:, 1:]  # (n, steps, C, x)
        errs = [nrmse(pred[:, t], true_next[:, t]) for t in range(pred.shape[1])]
        with torch.no_grad():
            one = torch.stack([f(traj[:, t]) for t in range(traj.shape[1] - 1)], 1)
        defects = [float(fn_norm(one[:, t] - true_next[:, t]).max()) for t in range(len(errs))]
        abs_err = [float(fn_norm(pred[:, t] - true_next[:, t]).max()) for t in range(len(errs))]
        cert = (
            rollout_error_bound(defects, bound).bound[0].tolist()
            if math.isfinite(bound)
            else [float("nan")] * len(errs)
        )
        for t, (e, m, c) in enumerate(zip(errs, abs_err, cert, strict=True)):
            rows.append(
                {
                    "study": "rollout",
                    "model": name,
                    "case": "nrmse / max error / bound",
                    "x": float(t + 1),
                    "value": e,
                    "certified": c,
                    "extra": m,
                }
            )


def study_samples(
    rows: list[dict], data: BenchData, preset, sizes: list[int], models: tuple[str, ...]
) -> None:
    gen = torch.Generator().manual_seed(5)
    for n in sizes:
        idx = torch.randperm(data.x_train.shape[0], generator=gen)[:n]
        sub = replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])
        for name in models:
            row = run_row(name, sub, preset)
            if row["status"] != "ok":
                continue
            with torch.no_grad():
                value = nrmse(row["_f"](data.x_test), data.y_test)
            rows.append(
                {
                    "study": "samples",
                    "model": name,
                    "case": "one-step test nRMSE",
                    "x": float(n),
                    "value": value,
                    "certified": row["lipschitz_certified"],
                    "extra": float("nan"),
                }
            )


def write(rows: list[dict], settings: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    cols = ["study", "model", "case", "x", "value", "certified", "extra"]
    with (RESULTS / "implicit_bias.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows({k: r[k] for k in cols} for r in rows)
    md = ["# Where the constraint helps (implicit bias)", "", f"Settings: {settings}", ""]
    md += _tables(rows)
    (RESULTS / "implicit_bias.md").write_text("\n".join(md) + "\n")
    _plot(rows)


def _g(v: float) -> str:
    return "n/a" if not math.isfinite(v) else f"{v:.3g}"


def _pivot(rows: list[dict], study: str, key: Callable[[dict], str], cell: Callable) -> list[str]:
    sel = [r for r in rows if r["study"] == study]
    models = list(dict.fromkeys(r["model"] for r in sel))
    cols = list(dict.fromkeys(key(r) for r in sel))
    out = ["| case | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
    for c in cols:
        cells = []
        for m in models:
            r = next((r for r in sel if r["model"] == m and key(r) == c), None)
            cells.append(cell(r) if r else "-")
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return out


def _tables(rows: list[dict]) -> list[str]:
    md = [
        "## (a) Noise: mean output change ||Ĝ(a+δ) − Ĝ(a)|| (certified L·ε in brackets)",
        "",
        *_pivot(
            rows,
            "noise",
            lambda r: f"{r['case']} ε={r['x']:g}",
            lambda r: f"{_g(r['value'])} [{_g(r['certified'])}]",
        ),
        "",
        "## (a') Noise: mean error against the clean truth ||Ĝ(a+δ) − G(a)||",
        "",
        *_pivot(rows, "noise", lambda r: f"{r['case']} ε={r['x']:g}", lambda r: _g(r["extra"])),
        "",
        "## (b) Out of distribution: nRMSE",
        "",
        *_pivot(rows, "ood", lambda r: r["case"], lambda r: _g(r["value"])),
        "",
        "## (c) Few training samples: one-step test nRMSE (certified bound in brackets)",
        "",
        *_pivot(
            rows,
            "samples",
            lambda r: f"{int(r['x'])} pairs",
            lambda r: f"{_g(r['value'])} [{_g(r['certified'])}]",
        ),
        "",
        "## (d) Rollout: nRMSE at step t (max error; rollout bound from measured defects)",
        "",
        *_pivot(
            [r for r in rows if r["study"] != "rollout" or int(r["x"]) in (1, 5, 10, 20, 40)],
            "rollout",
            lambda r: f"step {int(r['x'])}",
            lambda r: f"{_g(r['value'])} ({_g(r['extra'])}; {_g(r['certified'])})",
        ),
    ]
    return md


def _plot(rows: list[dict]) -> None:
    plt = agg_pyplot()

    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    sel = [r for r in rows if r["study"] == "noise" and r["case"] == "worst"]
    for m in dict.fromkeys(r["model"] for r in sel):
        pts = [r for r in sel if r["model"] == m]
        line = axes[0].loglog([r["x"] for r in pts], [r["value"] for r in pts], "o-", label=m)
        if math.isfinite(pts[0]["certified"]):
            axes[0].loglog(
                [r["x"] for r in pts],
                [r["certified"] for r in pts],
                "--",
                color=line[0].get_color(),
                lw=0.8,
            )
    axes[0].set(title="worst-case perturbation: change (dashed: L·ε)", xlabel="ε")
    sel = [r for r in rows if r["study"] == "ood"]
    cases = list(dict.fromkeys(r["case"] for r in sel))
    models = list(dict.fromkeys(r["model"] for r in sel))
    w = 0.8 / max(1, len(models))
    for j, m in enumerate(models):
        vals = [next(r["value"] for r in sel if r["model"] == m and r["case"] == c) for c in cases]
        axes[1].bar([i + j * w for i in range(len(cases))], vals, w, label=m)
    axes[1].set_xticks(range(len(cases)), cases, rotation=25, fontsize=6)
    axes[1].set(title="OOD nRMSE", yscale="log")
    for study, ax, title in (
        ("samples", axes[2], "nRMSE vs training pairs"),
        ("rollout", axes[3], "rollout nRMSE vs step"),
    ):
        sel = [r for r in rows if r["study"] == study]
        for m in dict.fromkeys(r["model"] for r in sel):
            pts = [r for r in sel if r["model"] == m]
            ax.plot([r["x"] for r in pts], [r["value"] for r in pts], "o-", ms=3, label=m)
        ax.set(title=title, yscale="log", xscale="log" if study == "samples" else "linear")
    axes[3].legend(loc="best", fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / "implicit_bias.png", dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny preset sizes)")
    parser.add_argument("--steps", type=int, default=600)
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    base = PRESETS["tiny" if args.quick else "small"]
    preset = replace(
        base,
        initial_step={"advection_1d": 1},
        steps=5 if args.quick else args.steps,
    )
    models = tuple(m for m in MODELS if m != "neuralop-FNO" or neuralop_available())
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = load_task("advection_1d", preset, None, tmp)
    shift = 0.1 * data.dt  # beta * dt on the unit periodic domain
    trained = {}
    for name in models:
        row = run_row(name, data, preset)
        bound = row["lipschitz_certified"]
        trained[name] = (row["_model"], row["_f"], bound)
    eps_list = [0.01, 0.1, 1.0] if not args.quick else [0.1]
    study_noise(rows, trained, data, eps_list)
    study_ood(rows, trained, data, shift)
    study_rollout(rows, trained, data)
    sizes = [8, 16] if args.quick else [64, 256, 1024]
    study_samples(rows, data, preset, sizes, models)
    settings = (
        f"{'quick (tiny sizes)' if args.quick else 'small'} preset data, advection beta=0.1, "
        f"grid {data.spatial[0]}, {data.x_train.shape[0]} training pairs, "
        f"{data.traj_test.shape[0] if data.traj_test is not None else 0} test trajectories, "
        f"{preset.steps} Adam steps, batch {preset.batch}, lr {preset.lr}, width {preset.width}, "
        f"modes {preset.modes}, 1 torch thread, {platform.machine()}; "
        f"total {time.perf_counter() - start:.0f} s"
    )
    write(rows, settings)
    print(f"wrote {RESULTS}/implicit_bias.{{md,csv,png}} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
