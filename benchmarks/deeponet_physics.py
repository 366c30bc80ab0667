"""Effect of the physics-informed term on a LipDeepONet (and its twin), 1-D diffusion-reaction.

Task: the space-time operator u0 -> u(x, t) on [0, 1) x [0, 1] (trunk coordinates (x, t), x
periodic through the trunk's harmonics). Data are scarce in time: the training loss sees only
the first and last frames; the physics term ``weight * mean residual**2`` (residual
``u_t - nu u_xx - rho u (1 - u)``, autograd through the trunk,
:class:`liponet.physics.PhysicsLoss`) is evaluated at random collocation points (x, t) of the
whole domain for the same training inputs. ``--family advection`` runs the same for advection.
Reported: test nRMSE over every frame and over the frames never observed, the certified
input-function constant, an attack lower bound of it, and the median certified (x, t)-constant.

Run from the repository root: ``.venv/bin/python benchmarks/deeponet_physics.py`` (about 3
minutes on 2 shared CPU cores). A script imports the *installed* ``liponet``; in a checkout that
is not the editable install, prefix ``PYTHONPATH=.``. Results:
``benchmarks/results/deeponet_physics_<family>.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import tempfile
import time
from collections.abc import Callable

import torch
from _plot import agg_pyplot
from torch import Tensor, nn

from liponet.certify import estimate_lipschitz
from liponet.data import PDEBenchDataset, generate
from liponet.models import DeepONet, LipDeepONet
from liponet.physics import PhysicsLoss, make_pde

plt = agg_pyplot()

RESULTS = pathlib.Path(__file__).parent / "results"
#: family -> (generator parameters, PDE name and coefficients of the residual)
PROBLEMS = {
    "diffusion_reaction_1d": (dict(nu=0.5, rho=1.0), "diffusion_reaction", dict(nu=0.5, rho=1.0)),
    "advection": (dict(beta=0.4), "advection", dict(beta=0.4)),
}
DOMAIN = ([0.0, 0.0], [1.0, 1.0])


def trajectories(ds: PDEBenchDataset) -> Tensor:
    """``(samples, frames, nx)`` of one split."""
    return torch.stack([ds.trajectory(i)[:, 0] for i in range(len(ds.indices))])


def space_time(x: Tensor, t: Tensor) -> Tensor:
    """``(nt * nx, 2)`` points (x, t), time-major (matches ``u.reshape(-1)`` of ``(nt, nx)``)."""
    tt, xx = torch.meshgrid(t, x, indexing="ij")
    return torch.stack([xx.reshape(-1), tt.reshape(-1)], dim=-1)


def models(n: int, width: int) -> dict[str, Callable[[], nn.Module]]:
    kw = dict(domain=DOMAIN, n_basis=32, width=width, depth=3, harmonics=8)
    return {
        "LipDeepONet-vector": lambda: LipDeepONet(n, output_scale="vector", **kw),
        "DeepONet": lambda: DeepONet(n, **kw),
    }


def train(
    model: nn.Module,
    u0: Tensor,
    target: Tensor,
    points: Tensor,
    weight: float,
    args: argparse.Namespace,
) -> float:
    """``target`` ``(n, n_obs)`` at ``points`` ``(n_obs, 2)``; physics at random (x, t)."""
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    pde = make_pde(PROBLEMS[args.family][1], **PROBLEMS[args.family][2])
    physics = PhysicsLoss(pde, weight=weight, ic_weight=0.0)
    model.train()
    start = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, u0.shape[0], (args.batch,), generator=gen)
        obs = torch.randperm(points.shape[0], generator=gen)[: args.queries]
        pred = model(u0[idx], points[obs])[:, 0]
        loss = (pred - target[idx][:, obs]).pow(2).mean()
        if weight > 0:
            colloc = torch.rand(args.batch, args.collocation, 2, generator=gen)
            batch_u0 = u0[idx]
            terms = physics.pointwise(lambda c, v=batch_u0: model(v, c), colloc)
            loss = loss + terms.total
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - start


def nrmse(pred: Tensor, target: Tensor) -> float:
    """PDEBench nRMSE per frame (space only), averaged over samples and frames."""
    err = (pred - target).pow(2).mean(-1).sqrt() / target.pow(2).mean(-1).sqrt()
    return float(err.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--family", choices=sorted(PROBLEMS), default="diffusion_reaction_1d")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--train-samples", type=int, default=160)
    parser.add_argument("--nx", type=int, default=128)
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--nt", type=int, default=21)
    parser.add_argument("--observed", type=int, nargs="+", default=[0, 20])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.001, 0.01, 0.1])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--collocation", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--attack-steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    with tempfile.TemporaryDirectory() as tmp:
        path = generate(
            args.family,
            pathlib.Path(tmp) / "data.hdf5",
            n_samples=args.samples,
            nx=args.nx,
            nt=args.nt,
            seed=args.seed,
            t_final=1.0,
            **PROBLEMS[args.family][0],
        )
        common = dict(task="step", reduced_resolution=args.stride)
        train_ds = PDEBenchDataset(path, split="train", **common)
        test_ds = PDEBenchDataset(path, split="test", **common)
        x = train_ds.grid["x"].float()
        t = train_ds.grid["t"].float()[: args.nt]
        train_u = trajectories(train_ds)[: args.train_samples]  # (n, nt, nx)
        test_u = trajectories(test_ds)
    nx = x.shape[0]
    observed = sorted(set(args.observed))
    unseen = [k for k in range(len(t)) if k not in observed]
    obs_points = space_time(x, t[observed])
    obs_target = train_u[:, observed].reshape(train_u.shape[0], -1)
    all_points = space_time(x, t)
    u0_train, u0_test = train_u[:, :1], test_u[:, :1]  # sensors: the initial frame
    rows = []
    for name, make in models(nx, args.width).items():
        for weight in args.weights:
            torch.manual_seed(args.seed)
            model = make()
            seconds = train(model, u0_train, obs_target, obs_points, weight, args)
            model.eval()
            with torch.no_grad():
                pred = model(u0_test, all_points)[:, 0].reshape(test_u.shape)
            f = lambda u, m=model: m(u, all_points)  # noqa: E731
            lower = estimate_lipschitz(f, u0_test, norm="function", n_steps=args.attack_steps)
            bound = model.lipschitz_bound()
            row = dict(
                model=name,
                physics_weight=weight,
                train_s=seconds,
                nrmse_all=nrmse(pred, test_u),
                nrmse_unseen=nrmse(pred[:, unseen], test_u[:, unseen]),
                certified_bound=bound,
                estimated_lower_fn=lower,
                tightness_fn=bound / lower,
                coord_bound_median=float(model.coordinate_lipschitz_bound(u0_test).median()),
            )
            rows.append(row)
            print(
                f"{name:20s} w={weight:<6g} nRMSE all {row['nrmse_all']:.4f} unseen "
                f"{row['nrmse_unseen']:.4f} bound {bound:.3g} lower {lower:.3g} "
                f"train {seconds:.1f}s",
                flush=True,
            )
    write(rows, args, len(train_u), len(test_u), observed, t)


def write(
    rows: list[dict], args: argparse.Namespace, n_train: int, n_test: int, observed, t
) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"deeponet_physics_{args.family}"
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    times = ", ".join(f"{float(t[k]):.2f}" for k in observed)
    lines = [
        f"# Physics-informed term on a DeepONet: {args.family} u0 -> u(x, t)",
        "",
        f"Settings: {args.family} {PROBLEMS[args.family][2]}, generated ({args.samples} "
        f"samples, nx={args.nx} "
        f"stride {args.stride}, {args.nt} frames on t in [0, 1]); training on {n_train} "
        f"trajectories observed only at t = {times}; test on {n_test} trajectories, every "
        "frame. DeepONets: sensors = initial frame, trunk (x, t) with 8 periodic harmonics of "
        f"x, width {args.width}, depth 3, 32 basis functions. Adam lr {args.lr} cosine, "
        f"{args.steps} steps, batch {args.batch}, {args.queries} observed points per sample "
        f"per batch; physics term weight * mean residual^2 at {args.collocation} random "
        "(x, t) points per sample per batch (autograd through the trunk). Seed "
        f"{args.seed}; torch threads {torch.get_num_threads()} (CPU).",
        "",
        "`bound` = certified input-function constant (function norm of u0 in, every query "
        "point out); `lower` = attack estimate (function norm in and out, lower bound); "
        "`coord` = median over test inputs of the certified constant of (x, t) -> G(u0)(x, t).",
        "",
        "| model | physics weight | train s | nRMSE all frames | nRMSE unseen frames | "
        "bound | lower | bound/lower | coord |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['physics_weight']:g} | {r['train_s']:.1f} | "
            f"{r['nrmse_all']:.4f} | {r['nrmse_unseen']:.4f} | {r['certified_bound']:.3g} | "
            f"{r['estimated_lower_fn']:.3g} | {r['tightness_fn']:.3g} | "
            f"{r['coord_bound_median']:.3g} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(rows, stem)


def plot(rows: list[dict], stem: pathlib.Path) -> None:
    zero_at = min(float(r["physics_weight"]) for r in rows if float(r["physics_weight"]) > 0) / 10
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == name]
        ws = [float(r["physics_weight"]) or zero_at for r in sel]
        axes[0].plot(ws, [float(r["nrmse_unseen"]) for r in sel], "o-", label=name)
        axes[1].plot(ws, [float(r["certified_bound"]) for r in sel], "o-", label=name)
    for ax, title in zip(axes, ("test nRMSE, unseen frames", "certified bound"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"physics weight (0 plotted at {zero_at:g})")
        ax.set_title(title)
    axes[0].legend(loc="best")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
