"""New-user checks: the DeepONet and regression remedies on problems no issue names.

1. **2-D Allen-Cahn one-step map** ``u(t) -> u(t + 0.1)`` for ``u_t = eps^2 Lap u + u - u^3`` on
   a periodic 24 x 24 grid (``eps^2 = 2e-3``), from smoothed random initial states (explicit
   Euler, 10 sub-steps per frame). LipLocalDeepONet and LocalDeepONet against the global
   LipDeepONet / DeepONet and the FNO, same steps, batch and learning rate; one-step relative
   error on test windows and the relative error after an 8-step rollout.
2. **Function regression on Franke's function** on ``[0, 1]^2`` (not periodic): the target is
   the bilinear interpolant of a 257 x 257 sampling (its constant certified), trained on a
   33 x 33 grid like ``liponet regress``; LipMLP a (k = ceil(L_f)), d (auxiliary scale), e
   (Fourier features with period 2, i.e. no periodicity imposed) against the GELU MLP; RMSE on
   random points and the certified envelope bound.

Run from the repository root: ``.venv/bin/python benchmarks/new_user_checks.py`` (``--quick``:
smoke run). Writes ``benchmarks/results/new_user_checks.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _plot import agg_pyplot
from torch import Tensor, nn

from liponet.certify import GridInterpolant, field_operator, max_error_bound
from liponet.layers import CertifiedSequential
from liponet.models import (
    FNO,
    MLP,
    DeepONet,
    LipDeepONet,
    LipLocalDeepONet,
    LipMLP,
    LocalDeepONet,
)
from liponet.models.deeponet import PeriodicEmbedding

RESULTS = Path("benchmarks/results")
N, EPS2, DT, SUB = 24, 2e-3, 0.1, 10


def allen_cahn(n_traj: int, frames: int, seed: int) -> Tensor:
    """``(n_traj, frames, 1, N, N)`` trajectories of periodic 2-D Allen-Cahn."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_traj, N, N, generator=gen, dtype=torch.float64)
    k = torch.fft.fftfreq(N, d=1.0 / N)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    u = torch.fft.ifft2(torch.fft.fft2(noise) * torch.exp(-k2 / 8.0)).real
    u = u / u.std(dim=(1, 2), keepdim=True)
    dx, dt = 1.0 / N, DT / SUB
    out = [u]
    for _ in range(frames - 1):
        for _ in range(SUB):
            lap = (
                torch.roll(u, 1, 1) + torch.roll(u, -1, 1) + torch.roll(u, 1, 2)
                + torch.roll(u, -1, 2) - 4 * u
            ) / dx**2  # fmt: skip
            u = u + dt * (EPS2 * lap + u - u**3)
        out.append(u)
    return torch.stack(out, 1)[:, :, None].float()


def train_field(
    model: nn.Module, x: Tensor, y: Tensor, steps: int, seed: int = 0
) -> tuple[Callable[[Tensor], Tensor], float]:
    """Adam on the relative MSE, batch 32, lr 3e-3 halved twice; returns the field map, CPU s."""
    f = field_operator(model)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, max(1, steps // 3), 0.5)
    cpu = time.process_time()
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (32,), generator=gen)
        pred, target = f(x[idx]), y[idx]
        loss = (pred - target).pow(2).sum() / target.pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return f, time.process_time() - cpu


def rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm())


def pde_rows(steps: int) -> list[dict[str, Any]]:
    train, test = allen_cahn(64, 10, seed=0), allen_cahn(16, 10, seed=1)
    x, y = train[:, :-1].flatten(0, 1), train[:, 1:].flatten(0, 1)
    xt, yt = test[:, :-1].flatten(0, 1), test[:, 1:].flatten(0, 1)
    box = ([0.0, 0.0], [1.0, 1.0])
    builders: dict[str, Callable[[], nn.Module]] = {
        "LipLocalDeepONet": lambda: LipLocalDeepONet((N, N), box, n_basis=16, width=64),
        "LocalDeepONet": lambda: LocalDeepONet((N, N), box, n_basis=16, width=64),
        "LipDeepONet (global)": lambda: LipDeepONet(N * N, box, n_basis=32, width=64),
        "DeepONet (global)": lambda: DeepONet(N * N, box, n_basis=32, width=64),
        "FNO": lambda: FNO(1, 1, (12, 12), width=16, depth=4),
    }
    rows = []
    for name, build in builders.items():
        torch.manual_seed(0)
        model = build()
        f, cpu = train_field(model, x, y, steps)
        with torch.no_grad():
            one = rel(f(xt), yt)
            u = test[:, 0]
            for _ in range(8):
                u = f(u)
            roll = rel(u, test[:, 8])
        rows.append(
            {
                "check": "Allen-Cahn 2-D one step",
                "model": name,
                "error": one,
                "error_2": roll,
                "certified_L": float(model.lipschitz_bound()),
                "train_cpu_s": cpu,
            }
        )
        print(f"{name}: one-step {one:.4g}, 8-step rollout {roll:.4g}", flush=True)
    persistence = rel(xt, yt)
    rows.append(
        {
            "check": "Allen-Cahn 2-D one step",
            "model": "persistence (u(t+0.1) = u(t))",
            "error": persistence,
            "error_2": rel(test[:, 0], test[:, 8]),
            "certified_L": 1.0,
            "train_cpu_s": 0.0,
        }
    )
    return rows


def franke(p: Tensor) -> Tensor:
    x, y = 9 * p[..., 0], 9 * p[..., 1]
    return (
        0.75 * torch.exp(-((x - 2) ** 2) / 4 - (y - 2) ** 2 / 4)
        + 0.75 * torch.exp(-((x + 1) ** 2) / 49 - (y + 1) / 10)
        + 0.5 * torch.exp(-((x - 7) ** 2) / 4 - (y - 3) ** 2 / 4)
        - 0.2 * torch.exp(-((x - 4) ** 2) - (y - 7) ** 2)
    )


def regression_rows(epochs: int, n_validation: int) -> list[dict[str, Any]]:
    fine = torch.linspace(0, 1, 257, dtype=torch.float64)
    target = GridInterpolant(
        [fine, fine], franke(torch.cartesian_prod(fine, fine)).reshape(257, 257, 1)
    )
    l_f = target.lipschitz_bound()
    k = float(math.ceil(l_f))
    axis = torch.linspace(0, 1, 33, dtype=torch.float64)
    nodes = torch.cartesian_prod(axis, axis)
    values = target(nodes)
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(n_validation, 2, generator=gen, dtype=torch.float64)
    f_val = target(points)[:, 0]
    box = ([0.0, 0.0], [1.0, 1.0])
    j = 1
    while math.pi * math.sqrt(j * (j + 1) * (2 * j + 1) / 6) < k:  # period 2: Omega = pi sqrt(..)
        j += 1

    def fourier() -> nn.Module:
        omega = PeriodicEmbedding(j, 2.0, 1).lipschitz_bound()
        emb = PeriodicEmbedding(j, 2.0, 2, scale=omega)
        return CertifiedSequential(emb, LipMLP(emb.out_features, 1, 64, 3))

    builders: dict[str, Callable[[], nn.Module]] = {
        f"LipMLP a (k={k:g})": lambda: LipMLP(2, 1, 64, 3, k=k),
        "LipMLP d (auxiliary scale)": lambda: LipMLP(
            2, 1, 64, 3, output_scale="auxiliary", domain=box
        ),
        f"LipMLP e (Fourier x, period 2, J={j})": fourier,
        "MLP (GELU, unconstrained)": lambda: MLP(2, 1, 64, 3),
    }
    rows = []
    for name, build in builders.items():
        torch.manual_seed(0)
        model = build()
        opt = torch.optim.Adam(model.parameters(), lr=5e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        cpu = time.process_time()
        xs, ys = nodes.float(), values.float()
        for _ in range(epochs):
            loss = (model(xs) - ys).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        cpu = time.process_time() - cpu
        with torch.no_grad():
            g = torch.cat([model(p.float()).double()[:, 0] for p in points.split(65536)])
        res = max_error_bound(model, [axis, axis], values.reshape(33, 33, 1), l_f)
        err = (g - f_val).abs()
        assert res.violations(points, err) == 0
        rows.append(
            {
                "check": f"Franke regression (L_f = {l_f:.3g})",
                "model": name,
                "error": float(err.pow(2).mean().sqrt()),
                "error_2": res.bound,
                "certified_L": float(model.lipschitz_bound()),
                "train_cpu_s": cpu,
            }
        )
        print(f"{name}: rmse {rows[-1]['error']:.3g}, envelope bound {res.bound:.3g}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    start, cpu0 = time.perf_counter(), time.process_time()
    rows = pde_rows(5 if args.quick else 300)
    rows += regression_rows(20 if args.quick else 1500, 2000 if args.quick else 200_000)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("new_user_checks_quick" if args.quick else "new_user_checks")
    cols = ["check", "model", "error", "error_2", "certified_L", "train_cpu_s"]
    with stem.with_suffix(".csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [
        "# New-user checks: problems no issue names",
        "",
        "Produced by `.venv/bin/python benchmarks/new_user_checks.py"
        + (" --quick" if args.quick else "")
        + f"` (seed 0; torch {torch.__version__}, 1 thread, {platform.machine()}; wall "
        f"{time.perf_counter() - start:.0f} s, CPU {time.process_time() - cpu0:.0f} s).",
        "",
        "See the script's docstring for the settings. Allen-Cahn rows: `error` = one-step relative "
        "L2 error on 144 test windows, `error_2` = relative error after an 8-step rollout. "
        "Franke rows: `error` = RMSE on random points, `error_2` = certified envelope bound of "
        "sup |f - g| (0 violations checked). `certified_L`: the model's certified constant.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += ["| " + " | ".join(fmt(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", f"![errors]({stem.name}.png)", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    plt = agg_pyplot()

    checks = list(dict.fromkeys(r["check"] for r in rows))
    fig, axes = plt.subplots(1, len(checks), figsize=(11, 3.6))
    for ax, check in zip(axes, checks, strict=True):
        sub = [r for r in rows if r["check"] == check]
        ax.barh(range(len(sub)), [r["error"] for r in sub])
        ax.set_yticks(range(len(sub)))
        ax.set_yticklabels([r["model"] for r in sub], fontsize=7)
        ax.set_xscale("log")
        ax.invert_yaxis()
        what = ": one-step rel. error" if "Allen" in check else ": RMSE"
        ax.set_title(check + what, fontsize=8)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=80)
    plt.close(fig)
    print(f"wrote {stem}.{{md,csv,png}}")


if __name__ == "__main__":
    main()
