"""The function-regression study: fit Lipschitz MLP variants to a PDE solution and certify them.

Target ``f``: the bilinear interpolant of a py-pde solution ``u(x, t)`` of 1-D viscous Burgers on a
fine grid (:func:`liponet.studies.burgers.solve_burgers`). Its Lipschitz constant ``L_f`` is
computed rigorously (:class:`liponet.certify.GridInterpolant`), so every bound of the study is
certified for ``f``; how far ``f`` is from the exact solution (Cole-Hopf) is measured on the
validation points and reported (a sampled figure, not a bound).

Each variant is trained on a coarse tensor grid of ``(x, t)``, switched to eval mode, certified by
every method of :func:`liponet.certify.max_error_bound`, and validated on random dense points.
The library returns rows; the CLI (``liponet regress``) and ``benchmarks/function_regression.py``
print and save them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..certify import (
    BOUND_METHODS,
    GridInterpolant,
    estimate_target_lipschitz,
    max_error_bound,
)
from ..layers import CertifiedSequential
from ..models import MLP, LipMLP
from ..models.deeponet import PeriodicEmbedding
from .burgers import burgers_exact, solve_burgers

__all__ = [
    "VARIANTS",
    "RegressionConfig",
    "RegressionStudy",
    "fourier_lipmlp",
    "harmonics_for",
    "plot_study",
    "run_regression_study",
]

Progress = Callable[[str], None]
DOMAIN = ([0.0, 0.0], [1.0, 1.0])


@dataclass
class RegressionConfig:
    """Settings of the study (defaults: the demo, a few minutes on 2 CPU cores).

    Attributes
    ----------
    nu
        Viscosity of Burgers.
    n_train
        Training nodes per axis (the coarse grid is ``n_train x n_train`` on ``[0, 1]^2``).
    n_reference
        py-pde cells in ``x`` and stored time intervals.
    width, depth
        Hidden width and number of hidden layers of every network.
    epochs, lr
        Full-batch Adam steps and learning rate (cosine decay).
    k
        Constant of variant "a (k>1)", and the slope budget variant "e" needs (its harmonics:
        :func:`harmonics_for`); ``None`` takes ``ceil(L_f)``.
    n_validation
        Random validation points.
    subdivisions
        Sub-intervals per axis of each cell's certification sub-grid.
    variants
        Keys of :data:`VARIANTS` to run.
    seed
        Seed of initializations and validation points.

    Examples
    --------
    >>> cfg = RegressionConfig(n_train=9, epochs=50, variants=("a1", "interp"))
    >>> cfg.check()
    >>> RegressionConfig(n_train=1).check()
    Traceback (most recent call last):
    ...
    ValueError: n_train must be an integer >= 2, got 1
    """

    nu: float = 0.03
    n_train: int = 33
    n_reference: int = 256
    width: int = 64
    depth: int = 3
    epochs: int = 1500
    lr: float = 5e-3
    k: float | None = None
    n_validation: int = 1_000_000
    subdivisions: int = 8
    variants: tuple[str, ...] = ("a1", "ak", "b", "c", "d", "e", "mlp", "interp")
    seed: int = 0

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        positive_ints = {
            "n_reference": (self.n_reference, 4),
            "n_train": (self.n_train, 2),
            "width": (self.width, 2),
            "depth": (self.depth, 1),
            "epochs": (self.epochs, 0),
            "n_validation": (self.n_validation, 1),
            "subdivisions": (self.subdivisions, 1),
        }
        for name, (value, low) in positive_ints.items():
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value}")
        if not (math.isfinite(self.nu) and self.nu > 0):
            raise ValueError(f"nu must be a finite number > 0, got {self.nu}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if self.k is not None and not (math.isfinite(self.k) and self.k > 0):
            raise ValueError(f"k must be a finite number > 0, got {self.k}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or not self.variants:
            raise ValueError(
                f"variants must be among {', '.join(VARIANTS)}, got {', '.join(self.variants)}"
            )


def harmonics_for(k: float) -> int:
    """The fewest harmonics ``J`` whose embedding constant reaches ``k``.

    ``Omega = 2 pi sqrt(sum_j j**2)`` (period 1): the slope budget the data needs, from its
    constant.
    """
    j = 1
    while 2 * math.pi * math.sqrt(j * (j + 1) * (2 * j + 1) / 6) < k:
        j += 1
    return j


def fourier_lipmlp(width: int, depth: int, harmonics: int) -> CertifiedSequential:
    """Variant (e): Fourier features of the periodic ``x``, ``t`` scaled by ``Omega``, a LipMLP.

    ``(x, t) -> (cos 2 pi j x, sin 2 pi j x, Omega t)_{j <= J}`` (a
    :class:`~liponet.models.deeponet.PeriodicEmbedding` with ``scale = Omega``, exact constant
    ``Omega``), then a 1-Lipschitz :class:`~liponet.models.LipMLP`: certified constant
    ``Omega``, and the same slope budget in ``x`` and ``t``.
    """
    omega = PeriodicEmbedding(harmonics, 1.0, 1).lipschitz_bound()
    embedding = PeriodicEmbedding(harmonics, 1.0, 2, scale=omega)
    return CertifiedSequential(embedding, LipMLP(embedding.out_features, 1, width, depth))


@dataclass
class _Variant:
    label: str
    build: Callable[[RegressionConfig, float], nn.Module] | None  # None: the interpolant


VARIANTS: dict[str, _Variant] = {
    "a1": _Variant("LipMLP a (k=1)", lambda c, k: LipMLP(2, 1, c.width, c.depth, k=1.0)),
    "ak": _Variant("LipMLP a (k={k:g})", lambda c, k: LipMLP(2, 1, c.width, c.depth, k=k)),
    "b": _Variant(
        "LipMLP b (free last layer)",
        lambda c, k: LipMLP(2, 1, c.width, c.depth, free_last_layer=True),
    ),
    "c": _Variant(
        "LipMLP c (vector scale)",
        lambda c, k: LipMLP(2, 1, c.width, c.depth, output_scale="vector"),
    ),
    "d": _Variant(
        "LipMLP d (auxiliary scale)",
        lambda c, k: LipMLP(2, 1, c.width, c.depth, output_scale="auxiliary", domain=DOMAIN),
    ),
    "e": _Variant(
        "LipMLP e (Fourier x, J={j})",
        lambda c, k: fourier_lipmlp(c.width, c.depth, harmonics_for(k)),
    ),
    "mlp": _Variant("MLP (GELU, unconstrained)", lambda c, k: MLP(2, 1, c.width, c.depth)),
    "interp": _Variant("bilinear interpolation (baseline)", None),
}


@dataclass
class RegressionStudy:
    """What :func:`run_regression_study` returns.

    Attributes
    ----------
    rows
        One dict per variant: ``variant``, ``L_g`` (certified), ``rmse``, ``max_error`` (observed
        on the validation points), ``bound_<method>``, ``floor``, ``violations_<method>``,
        ``tightness_<method>`` (bound / observed max), ``label``, ``train_s``.
    info
        Facts about the target: ``L_f`` (certified, of the interpolated reference),
        ``L_exact_estimate`` (ESTIMATE for the exact solution), ``reference_error`` (sampled max
        ``|f - u_exact|``), grid sizes, timings.
    plots
        Per variant: prediction, error and envelope per-cell bound on a plotting grid.

    Examples
    --------
    >>> study = RegressionStudy(rows=[{"variant": "x", "rmse": 0.1}], info={})
    >>> study.rows[0]["rmse"]
    0.1
    """

    rows: list[dict[str, Any]]
    info: dict[str, Any]
    plots: dict[str, dict[str, Tensor]] = field(default_factory=dict, repr=False)


def _train(
    model: nn.Module, x: Tensor, y: Tensor, cfg: RegressionConfig, name: str, progress: Progress
) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.epochs, 1))
    every = max(1, cfg.epochs // 5)
    model.train()
    for epoch in range(1, cfg.epochs + 1):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
        sched.step()
        if epoch % every == 0 or epoch == cfg.epochs:
            progress(f"[{name}] epoch {epoch}/{cfg.epochs}  train mse {float(loss.detach()):.3e}")
    model.eval()


@torch.no_grad()
def _predict(model: Callable[[Tensor], Tensor], points: Tensor, dtype: torch.dtype) -> Tensor:
    return torch.cat([model(p.to(dtype)).double()[:, 0] for p in points.split(2**16)])


def run_regression_study(
    cfg: RegressionConfig | None = None, progress: Progress | None = None
) -> RegressionStudy:
    """Solve Burgers, train every variant, certify by every method, validate densely.

    Parameters
    ----------
    cfg
        Settings (defaults: :class:`RegressionConfig`).
    progress
        Called with one line of text per stage and training chunk (the library never prints).
    """
    cfg = cfg or RegressionConfig()
    cfg.check()
    say: Progress = progress or (lambda _: None)
    start = time.perf_counter()
    say(f"solving Burgers (nu={cfg.nu}) with py-pde on {cfg.n_reference} cells ...")
    ref = solve_burgers(cfg.nu, cfg.n_reference, cfg.n_reference)
    target = GridInterpolant([ref.x, ref.t], ref.u)
    l_f = target.lipschitz_bound()
    solve_s = time.perf_counter() - start

    gen = torch.Generator().manual_seed(cfg.seed)
    points = torch.rand(cfg.n_validation, 2, generator=gen, dtype=torch.float64)
    f_val = _predict(target, points, torch.float64)
    exact = burgers_exact(points, cfg.nu)
    fine = torch.linspace(0, 1, 2 * cfg.n_reference + 1, dtype=torch.float64)
    exact_grid = burgers_exact(torch.cartesian_prod(fine, fine), cfg.nu).reshape(fine.numel(), -1)
    l_exact = estimate_target_lipschitz(exact_grid, [fine, fine])

    axis = torch.linspace(0, 1, cfg.n_train, dtype=torch.float64)
    grid = [axis, axis]
    nodes = torch.cartesian_prod(axis, axis)  # (n_train**2, 2)
    values = target(nodes)  # (n_train**2, 1)
    k = cfg.k if cfg.k is not None else float(math.ceil(l_f))
    plot_axis = torch.linspace(0, 1, 201, dtype=torch.float64)
    plot_points = torch.cartesian_prod(plot_axis, plot_axis)
    f_plot = _predict(target, plot_points, torch.float64).reshape(201, 201)

    info: dict[str, Any] = {
        "pde": f"Burgers u_t + u u_x = {cfg.nu} u_xx, x in [0,1] periodic, t in [0,1], "
        "u(x,0) = sin(2 pi x)",
        "reference": f"py-pde, {cfg.n_reference} cells x {cfg.n_reference} time intervals, "
        "bilinear interpolation",
        "L_f": l_f,
        "L_exact_estimate": l_exact.value,
        "reference_error": float((f_val - exact).abs().max()),
        "max_abs_target": float(f_val.abs().max()),
        "n_train": cfg.n_train,
        "n_validation": cfg.n_validation,
        "subdivisions": cfg.subdivisions,
        "k": k,
        "solve_s": solve_s,
        "f_plot": f_plot,
    }
    say(f"target: L_f = {l_f:.3f} (certified); |f - u_exact| <= ~{info['reference_error']:.1e}")

    rows: list[dict[str, Any]] = []
    plots: dict[str, dict[str, Tensor]] = {}
    x_train = nodes.float()
    y_train = values.float()
    for key in cfg.variants:
        variant = VARIANTS[key]
        name = variant.label.format(k=k, j=harmonics_for(k))
        t0 = time.perf_counter()
        model: nn.Module
        if variant.build is None:
            model = GridInterpolant(grid, values.reshape(cfg.n_train, cfg.n_train, 1))
            dtype = torch.float64
        else:
            torch.manual_seed(cfg.seed)
            model = variant.build(cfg, k)
            _train(model, x_train, y_train, cfg, name, say)
            dtype = torch.float32
        train_s = time.perf_counter() - t0
        model.eval()  # certify the eval-mode function, the one used below
        row: dict[str, Any] = {"variant": name, "L_g": model.lipschitz_bound()}  # type: ignore[operator]
        g_val = _predict(model, points, dtype)
        err = (f_val - g_val).abs()
        row["rmse"] = float(err.pow(2).mean().sqrt())
        row["max_error"] = float(err.max())
        results = {}
        for method in BOUND_METHODS:
            res = max_error_bound(
                model,
                grid,
                values.reshape(cfg.n_train, cfg.n_train, 1),
                l_f,
                method=method,
                subdivisions=cfg.subdivisions,
            )
            results[method] = res
            row[f"bound_{method}"] = res.bound
            row[f"violations_{method}"] = res.violations(points, err)
            row[f"tightness_{method}"] = res.bound / max(row["max_error"], 1e-300)
        row["floor"] = results["envelope"].floor
        row["label"] = results["envelope"].label
        row["train_s"] = train_s
        rows.append(row)
        g_plot = _predict(model, plot_points, dtype).reshape(201, 201)
        plots[name] = {
            "prediction": g_plot,
            "error": (g_plot - f_plot).abs(),
            "bound": results["envelope"].per_cell,
        }
        say(
            f"[{name}] rmse {row['rmse']:.2e}  max err {row['max_error']:.2e}  "
            f"envelope bound {row['bound_envelope']:.2e}  floor {row['floor']:.2e}"
        )
    info["total_s"] = time.perf_counter() - start
    return RegressionStudy(rows=rows, info=info, plots=plots)


def plot_study(study: RegressionStudy, path: str) -> None:
    """Save a PNG: per variant, prediction, |error| and the per-cell envelope bound.

    Needs matplotlib (``pip install liponet[plot]``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(study.plots)
    fig, axes = plt.subplots(len(names), 3, figsize=(11, 2.6 * len(names)), squeeze=False)
    extent = (0.0, 1.0, 0.0, 1.0)
    for i, name in enumerate(names):
        data = study.plots[name]
        err_max = float(data["error"].max())
        panels = [
            (data["prediction"], f"{name}\nprediction g(x, t)", None),
            (data["error"], f"|f - g| (max {err_max:.2e})", err_max),
            (
                data["bound"],
                f"envelope bound per cell (max {float(data['bound'].max()):.2e})",
                float(data["bound"].max()),
            ),
        ]
        for j, (img, title, top) in enumerate(panels):
            ax = axes[i, j]
            im = ax.imshow(
                img.T.numpy(),
                origin="lower",
                extent=extent,
                aspect="auto",
                vmax=top,
                vmin=0 if top else None,
                cmap="viridis" if j else "RdBu_r",
            )
            ax.set_title(title, fontsize=8)
            ax.set_xlabel("x", fontsize=7)
            ax.set_ylabel("t", fontsize=7)
            ax.tick_params(labelsize=6)
            fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
