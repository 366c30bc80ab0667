"""LipDeepONet vs DeepONet vs LipFNO (and FNO) on generated 1-D advection and diffusion-reaction.

Equal budget: every model gets the same data, optimizer (Adam, cosine-annealed learning rate),
batch size and number of steps. Reported per model: test nRMSE (PDEBench definition), train
time, the certified input-function constant ``lipschitz_bound()`` (liponet's function norm in;
function norm out for FNOs, every query point for DeepONets), empirical lower bounds of that
constant on the trained model (gradient-ascent pairs, and exact local Jacobians for DeepONets)
and the tightness ratio certified / lower.

Run from the repository root: ``.venv/bin/python benchmarks/deeponet_operators.py`` (about
5 minutes on 2 shared CPU cores with the defaults). A script imports the *installed*
``liponet``; in a checkout that is not the editable install, prefix ``PYTHONPATH=.``. Results go
to ``benchmarks/results/deeponet_operators.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import math
import pathlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from _plot import agg_pyplot
from torch import Tensor, nn

from liponet.certify import estimate_lipschitz
from liponet.certify.function import estimate_target_lipschitz, max_error_bound
from liponet.data import PDEBenchDataset, generate
from liponet.metrics import pdebench_metrics
from liponet.models import FNO, DeepONet, LipDeepONet, LipFNO

plt = agg_pyplot()

RESULTS = pathlib.Path(__file__).parent / "results"

PROBLEMS = {
    "advection": dict(beta=0.4, t_final=1.0),
    "diffusion_reaction_1d": dict(nu=0.5, rho=1.0, t_final=1.0),
}


@dataclass
class Data:
    x_train: Tensor  # (n, 1, nx)
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    coords: Tensor  # (nx, 1): the output grid's cell centres
    fine_coords: Tensor  # (2 nx, 1) when stride 2: the file's full grid
    fine_y_test: Tensor  # (n_test, 1, 2 nx)


def load(family: str, folder: pathlib.Path, args: argparse.Namespace) -> Data:
    path = generate(
        family,
        folder / f"{family}.hdf5",
        n_samples=args.samples,
        nx=args.nx,
        nt=11,
        seed=args.seed,
        **PROBLEMS[family],
    )
    common = dict(task="step", t_in=0, t_out=-1, reduced_resolution=args.stride)
    train = PDEBenchDataset(path, split="train", **common)
    test = PDEBenchDataset(path, split="test", **common)
    x_train, y_train = train.to_tensors()
    x_test, y_test = test.to_tensors()
    coords = train.grid["x"].float().reshape(-1, 1)
    fine = PDEBenchDataset(path, split="test", **{**common, "reduced_resolution": 1})
    fine_coords = fine.grid["x"].float().reshape(-1, 1)
    return Data(x_train, y_train, x_test, y_test, coords, fine_coords, fine.to_tensors()[1])


def model_zoo(n: int, width: int) -> dict[str, tuple[Callable[[], nn.Module], bool]]:
    """name -> (factory, is_deeponet)."""
    onet = dict(domain=([0.0], [1.0]), n_basis=32, width=width, depth=3, harmonics=8)
    fno = dict(modes=(16,), width=32, depth=4)
    return {
        "LipDeepONet": (lambda: LipDeepONet(n, **onet), True),
        "LipDeepONet-vector": (lambda: LipDeepONet(n, output_scale="vector", **onet), True),
        "DeepONet": (lambda: DeepONet(n, **onet), True),
        "LipFNO": (lambda: LipFNO(1, 1, **fno), False),
        "FNO": (lambda: FNO(1, 1, **fno), False),
    }


def apply(model: nn.Module, is_onet: bool, u: Tensor, coords: Tensor) -> Tensor:
    return model(u, coords) if is_onet else model(u)


def train(model: nn.Module, is_onet: bool, data: Data, args: argparse.Namespace) -> float:
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    n, nx = data.x_train.shape[0], data.coords.shape[0]
    model.train()
    start = time.perf_counter()
    for _ in range(args.steps):
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        u, target = data.x_train[idx], data.y_train[idx]
        if is_onet:  # a random subset of query points per batch
            points = torch.randperm(nx, generator=gen)[: args.queries]
            pred = model(u, data.coords[points])
            target = target[:, :, points]
        else:
            pred = model(u)
        loss = (pred - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - start


def pointwise_jacobian_lower(model: nn.Module, u: Tensor, coords: Tensor) -> float:
    """max over samples and query points of the exact local constant from ||u||_fn to |G(u)(y)|.

    The Jacobian row of point j w.r.t. the sensor vector v has 2-norm ||J_j||; since
    ||v||_2 = sqrt(m) ||u||_fn, the local pointwise constant is sqrt(m) ||J_j||.
    """
    m = u.shape[-1]
    best = 0.0
    for ui in u:
        jac = torch.autograd.functional.jacobian(lambda z: model(z[None], coords)[0], ui)
        rows = jac.reshape(coords.shape[0], -1)  # one output channel: (n_points, m)
        best = max(best, float(torch.linalg.vector_norm(rows, dim=1).max()) * math.sqrt(m))
    return best


def evaluate(model: nn.Module, is_onet: bool, data: Data, args: argparse.Namespace) -> dict:
    model.eval()
    with torch.no_grad():
        pred = apply(model, is_onet, data.x_test, data.coords)
    metrics = pdebench_metrics(pred, data.y_test)
    bound = model.lipschitz_bound()
    f = (lambda u: model(u, data.coords)) if is_onet else model
    lower = estimate_lipschitz(f, data.x_test, norm="function", n_steps=args.attack_steps)
    row = dict(
        nrmse=float(metrics["nrmse"]),
        certified_bound=bound,
        estimated_lower_fn=lower,
        tightness_fn=bound / lower,
        estimated_lower_pointwise=float("nan"),
        tightness_pointwise=float("nan"),
        coord_bound_median=float("nan"),
        max_error_bound=float("nan"),
        max_error_floor=float("nan"),
        max_error_observed_fine=float("nan"),
        max_error_label="",
    )
    if is_onet:
        point = pointwise_jacobian_lower(model, data.x_test[: args.jacobian_samples], data.coords)
        row["estimated_lower_pointwise"] = point
        row["tightness_pointwise"] = bound / point
        row["coord_bound_median"] = float(model.coordinate_lipschitz_bound(data.x_test).median())
        row.update(certify_one_prediction(model, data))
    return row


def certify_one_prediction(model: nn.Module, data: Data) -> dict:
    """Bound sup_x |u(T, x) - G(u0)(x)| for the first test input with ``max_error_bound``.

    g = G(u0) with its certified coordinate constant; f = the reference u(T) known at the
    coarse grid's nodes; L_f ESTIMATED from the reference on the file's full grid (so the
    result is labelled as resting on an estimate). Checked against the actual max error on the
    full grid, whose odd points the model never saw as queries.
    """
    u0 = data.x_test[:1]
    l_g = float(model.coordinate_lipschitz_bound(u0)[0])
    fine_x = data.fine_coords[:, 0].double()
    l_f = estimate_target_lipschitz(data.fine_y_test[0, 0].double(), [fine_x])
    g = lambda p: model(u0, p.float())[0].T.double()  # noqa: E731  (n, 1) -> (n, 1)
    res = max_error_bound(
        g, [data.coords[:, 0].double()], data.y_test[0, 0].double(), l_f, lipschitz_model=l_g
    )
    inside = (fine_x >= data.coords[0, 0]) & (fine_x <= data.coords[-1, 0])
    with torch.no_grad():
        err = (model(u0, data.fine_coords)[0, 0] - data.fine_y_test[0, 0]).abs()
    return dict(
        max_error_bound=res.bound,
        max_error_floor=res.floor,
        max_error_observed_fine=float(err[inside].max()),
        max_error_label=res.label,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--nx", type=int, default=128)
    parser.add_argument("--stride", type=int, default=2, help="sensor/query grid stride")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--queries", type=int, default=32, help="query points per batch")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--attack-steps", type=int, default=50)
    parser.add_argument("--jacobian-samples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in PROBLEMS:
            data = load(family, pathlib.Path(tmp), args)
            n_sensors = data.x_train.shape[-1]
            for name, (make, is_onet) in model_zoo(n_sensors, args.width).items():
                torch.manual_seed(args.seed)
                model = make()
                seconds = train(model, is_onet, data, args)
                row = dict(pde=family, model=name, train_s=seconds)
                row["params"] = sum(p.numel() for p in model.parameters())
                row.update(evaluate(model, is_onet, data, args))
                rows.append(row)
                print(
                    f"{family:22s} {name:20s} nRMSE {row['nrmse']:.4f}  bound "
                    f"{row['certified_bound']:.3g}  lower {row['estimated_lower_fn']:.3g}  "
                    f"train {seconds:.1f}s",
                    flush=True,
                )
    write(rows, args)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "deeponet_operators"
    with open(stem.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# LipDeepONet vs DeepONet vs LipFNO at equal budget",
        "",
        f"Settings: {args.samples} generated samples per PDE (PDEBench split: first 10% test, "
        f"10% of the rest validation, unused here), nx={args.nx} with stride {args.stride} "
        f"(sensors = query grid = {args.nx // args.stride} cell centres), task u(t=0) -> u(t=1); "
        f"advection beta=0.4; diffusion-reaction nu=0.5, rho=1. Every model: Adam lr {args.lr} "
        f"cosine-annealed, {args.steps} steps, batch {args.batch}; DeepONets see "
        f"{args.queries} random query points per batch. DeepONets: width {args.width}, depth 3, "
        "32 basis functions, 8 periodic harmonics of x in the trunk; FNOs: 16 modes, width 32, "
        "depth 4. Seed "
        f"{args.seed}; torch threads {torch.get_num_threads()} (CPU).",
        "",
        "Columns: `bound` = certified `lipschitz_bound()` (function norm of u in; DeepONets: "
        "every query point out, which implies the function norm out; FNOs: function norm out). "
        "`lower fn` = largest ratio ||G(u)-G(u')||_fn / ||u-u'||_fn found by random + "
        f"gradient-ascent pairs ({args.attack_steps} steps) on the test inputs (an estimate, "
        "lower bound). `lower pt` = largest exact local pointwise constant sqrt(m)·||J_j|| over "
        f"{args.jacobian_samples} test inputs and all grid points (DeepONets; a lower bound of "
        "what the bound certifies). `coord` = median over test inputs of the certified "
        "constant of y -> G(u)(y). `sup err bound` = `max_error_bound` (envelope method) of "
        "sup_x |u(T, x) - G(u0)(x)| for the first test input from the reference at the "
        "coarse nodes, the certified coordinate constant of the prediction and L_f ESTIMATED "
        "from the reference on the full grid (so labelled: rests on an estimate); `observed` = "
        "the actual max error on the full grid (half of its points never queried in "
        "training); `floor` = the least any method could certify from these data.",
        "",
        "| PDE | model | params | train s | nRMSE | bound | lower fn | bound/lower fn | "
        "lower pt | bound/lower pt | coord | sup err bound | floor | observed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['pde']} | {r['model']} | {r['params']} | {r['train_s']:.1f} | "
            f"{r['nrmse']:.4f} | {r['certified_bound']:.3g} | {r['estimated_lower_fn']:.3g} | "
            f"{r['tightness_fn']:.3g} | {r['estimated_lower_pointwise']:.3g} | "
            f"{r['tightness_pointwise']:.3g} | {r['coord_bound_median']:.3g} | "
            f"{r['max_error_bound']:.3g} | {r['max_error_floor']:.3g} | "
            f"{r['max_error_observed_fine']:.3g} |"
        )
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    families = list(dict.fromkeys(r["pde"] for r in rows))
    names = list(dict.fromkeys(r["model"] for r in rows))
    for ax, key, title in zip(
        axes,
        ("nrmse", "certified_bound", "train_s"),
        ("test nRMSE", "certified Lipschitz bound", "train time (s)"),
        strict=True,
    ):
        w = 0.8 / len(families)
        for i, fam in enumerate(families):
            sel = {r["model"]: r[key] for r in rows if r["pde"] == fam}
            vals = [sel[n] for n in names]
            ax.bar([j + i * w for j in range(len(names))], vals, width=w, label=fam)
        ax.set_xticks([j + w * (len(families) - 1) / 2 for j in range(len(names))], names)
        ax.tick_params(axis="x", rotation=30)
        ax.set_yscale("log")
        ax.set_title(title)
    axes[0].legend(loc="best")
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    main()
