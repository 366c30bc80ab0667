"""PDE residuals for physics-informed regularization, usable by every model.

Two ways to get the derivatives a residual needs, for 1-D problems in ``(x, t)``:

* :func:`pointwise_derivatives`: autograd through a model that maps coordinates to values
  pointwise (the trunk of a DeepONet, an MLP ``(x, t) -> u``), as in physics-informed neural
  networks. Exact derivatives of the network, at any collocation points.
* :func:`grid_derivatives`: for fields on a periodic grid (an FNO's output ``u(x, t)``, with the
  times as channels), spectral derivatives in ``x`` and second-order finite differences in ``t``,
  as in physics-informed neural operators.

The PDEs follow PDEBench's conventions (x periodic on ``[0, L)``):

=====================  =====================================
``advection``          ``u_t + beta u_x = 0``
``burgers``            ``u_t + u u_x - (nu / pi) u_xx = 0``
``diffusion_reaction`` ``u_t - nu u_xx - rho u (1 - u) = 0``
=====================  =====================================

:class:`PhysicsLoss` adds the mean-square residual, an initial-condition term and (for pointwise
models) a periodic-boundary term, each with its weight.

Piecewise-linear networks (GroupSort, ReLU) of the raw coordinates have zero second derivative
almost everywhere, so second-order residuals (Burgers, diffusion-reaction) through autograd need
smooth networks (the GELU twins) or smooth input features: a :class:`~liponet.models.LipDeepONet`
with ``harmonics > 0`` differentiates through its Fourier features of x, so ``u_xx`` is the
network's slope times their curvature (the kinks' own curvature is still invisible). First-order
residuals (advection) work for every model, and the grid path works for every field model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "PDES",
    "Advection",
    "Burgers",
    "Derivatives",
    "DiffusionReaction",
    "PhysicsLoss",
    "PhysicsTerms",
    "grid_derivatives",
    "make_pde",
    "pointwise_derivatives",
]


class Derivatives(NamedTuple):
    """Values and derivatives of ``u(x, t)`` at the same points (all the same shape).

    Examples
    --------
    >>> import torch
    >>> d = Derivatives(u=torch.ones(2), u_t=torch.zeros(2), u_x=torch.zeros(2), u_xx=None)
    >>> Advection().residual(d)
    tensor([0., 0.])
    """

    u: Tensor
    u_t: Tensor
    u_x: Tensor
    u_xx: Tensor | None


@dataclass(frozen=True)
class Advection:
    """Linear advection ``u_t + beta u_x = 0``.

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(3)
    >>> Advection(beta=2.0).residual(Derivatives(x, -2 * x, x, None))
    tensor([0., 0., 0.])
    """

    beta: float = 0.1
    second_order = False

    def residual(self, d: Derivatives) -> Tensor:
        """``u_t + beta u_x``."""
        return d.u_t + self.beta * d.u_x


@dataclass(frozen=True)
class Burgers:
    """Viscous Burgers ``u_t + u u_x = (nu / pi) u_xx`` (PDEBench's scaling of the viscosity).

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2)
    >>> Burgers(nu=0.0).residual(Derivatives(x, -x, x, torch.zeros(2)))  # u_t + u u_x = 0
    tensor([0., 0.])
    """

    nu: float = 0.01
    second_order = True

    def residual(self, d: Derivatives) -> Tensor:
        """``u_t + u u_x - (nu / pi) u_xx``."""
        assert d.u_xx is not None
        return d.u_t + d.u * d.u_x - (self.nu / math.pi) * d.u_xx


@dataclass(frozen=True)
class DiffusionReaction:
    """1-D diffusion-reaction ``u_t = nu u_xx + rho u (1 - u)`` (logistic reaction).

    Examples
    --------
    >>> import torch
    >>> u = torch.full((2,), 0.5)  # u_t = rho u (1 - u) = 0.25 for a flat field
    >>> DiffusionReaction(nu=0.5, rho=1.0).residual(Derivatives(u, u / 2, 0 * u, 0 * u))
    tensor([0., 0.])
    """

    nu: float = 0.5
    rho: float = 1.0
    second_order = True

    def residual(self, d: Derivatives) -> Tensor:
        """``u_t - nu u_xx - rho u (1 - u)``."""
        assert d.u_xx is not None
        return d.u_t - self.nu * d.u_xx - self.rho * d.u * (1.0 - d.u)


PDE = Advection | Burgers | DiffusionReaction

#: PDE names -> classes (keyword arguments are the coefficients).
PDES: dict[str, type[PDE]] = {
    "advection": Advection,
    "burgers": Burgers,
    "diffusion_reaction": DiffusionReaction,
}


def make_pde(name: str, **coefficients: float) -> PDE:
    """The PDE registered under ``name`` with its coefficients.

    Raises
    ------
    ValueError
        For an unknown name (listing the valid ones) or unknown coefficients.

    Examples
    --------
    >>> make_pde("diffusion_reaction", nu=0.5, rho=1.0)
    DiffusionReaction(nu=0.5, rho=1.0)
    """
    if name not in PDES:
        raise ValueError(f"unknown PDE {name!r}; available: {', '.join(sorted(PDES))}")
    try:
        return PDES[name](**coefficients)
    except TypeError as err:
        raise ValueError(f"bad coefficients for PDE {name!r}: {err}") from None


def pointwise_derivatives(
    fn: Callable[[Tensor], Tensor], coords: Tensor, second_order: bool = True
) -> Derivatives:
    """Derivatives of a pointwise model ``u = fn(coords)`` by autograd (graph kept for training).

    Parameters
    ----------
    fn
        Maps coordinates ``(..., 2)`` with columns ``(x, t)`` to one value per point (any shape
        with ``coords.shape[:-1].numel()`` elements, e.g. ``(batch, 1, n_points)`` for a DeepONet
        given ``(batch, n_points, 2)``). Each value must depend on its own point only (true for
        trunk networks and MLPs; give a DeepONet per-sample coordinates, not shared ones).
    coords
        Collocation points ``(..., 2)``.
    second_order
        Also compute ``u_xx``.

    Returns
    -------
    Derivatives
        Tensors of shape ``coords.shape[:-1]``.

    Raises
    ------
    ValueError
        If ``coords`` is not ``(..., 2)`` or ``fn`` returns the wrong number of values.

    Examples
    --------
    >>> import torch
    >>> coords = torch.tensor([[0.5, 2.0]])  # (x, t)
    >>> d = pointwise_derivatives(lambda c: c[..., 0] ** 2 * c[..., 1], coords)
    >>> [round(float(v.detach()), 6) for v in (d.u_x, d.u_t, d.u_xx)]  # 2 x t, x**2, 2 t
    [2.0, 0.25, 4.0]
    """
    if coords.ndim < 1 or coords.shape[-1] != 2:
        raise ValueError(f"coords must be (..., 2) with columns (x, t), got {tuple(coords.shape)}")
    coords = coords.detach().clone().requires_grad_(True)
    u = fn(coords)
    shape = coords.shape[:-1]
    if u.numel() != shape.numel():
        raise ValueError(
            f"fn must return one value per point ({shape.numel()}), got shape {tuple(u.shape)}"
        )
    u = u.reshape(shape)
    (grad,) = torch.autograd.grad(u.sum(), coords, create_graph=True)
    u_x, u_t = grad[..., 0], grad[..., 1]
    u_xx = None
    if second_order:
        (grad2,) = torch.autograd.grad(u_x.sum(), coords, create_graph=True)
        u_xx = grad2[..., 0]
    return Derivatives(u, u_t, u_x, u_xx)


def grid_derivatives(u: Tensor, length: float, dt: float) -> Derivatives:
    """Derivatives of fields on a periodic grid in ``x`` and a uniform grid in ``t``.

    ``x``: spectral derivatives (``rfft``; the Nyquist mode of odd derivatives set to zero),
    exact for band-limited fields. ``t``: second-order finite differences (central inside,
    one-sided at the first and last frames), error ``O(dt**2)``.

    Parameters
    ----------
    u
        ``(..., nt, nx)``: e.g. ``(batch, nt, nx)`` for an FNO with the times as channels.
    length
        Period ``L`` of the x grid (``nx`` points spaced ``L / nx``).
    dt
        Time step between frames.

    Returns
    -------
    Derivatives
        Tensors of the shape of ``u``.

    Examples
    --------
    >>> import math, torch
    >>> x = torch.arange(32) / 32
    >>> u = torch.stack([torch.sin(2 * math.pi * x)] * 3)  # (nt, nx), constant in time
    >>> d = grid_derivatives(u, length=1.0, dt=0.1)
    >>> torch.allclose(d.u_x[0], 2 * math.pi * torch.cos(2 * math.pi * x), atol=1e-4)
    True
    >>> float(d.u_t.abs().max()) < 1e-6
    True
    """
    if u.ndim < 2 or u.shape[-2] < 3:
        raise ValueError(f"u must be (..., nt, nx) with nt >= 3, got {tuple(u.shape)}")
    if not (length > 0 and dt > 0):
        raise ValueError(f"length and dt must be positive, got {length}, {dt}")
    nx = u.shape[-1]
    k = 2 * math.pi / length * torch.fft.rfftfreq(nx, d=1.0 / nx, dtype=u.dtype, device=u.device)
    spec = torch.fft.rfft(u, dim=-1)
    ik = 1j * k
    if nx % 2 == 0:
        ik[-1] = 0.0  # the Nyquist mode's odd derivative is not real: drop it
    u_x = torch.fft.irfft(ik * spec, n=nx, dim=-1)
    u_xx = torch.fft.irfft(-(k**2) * spec, n=nx, dim=-1)
    inner = (u[..., 2:, :] - u[..., :-2, :]) / (2 * dt)
    first = (-3 * u[..., 0, :] + 4 * u[..., 1, :] - u[..., 2, :]) / (2 * dt)
    last = (3 * u[..., -1, :] - 4 * u[..., -2, :] + u[..., -3, :]) / (2 * dt)
    u_t = torch.cat([first.unsqueeze(-2), inner, last.unsqueeze(-2)], dim=-2)
    return Derivatives(u, u_t, u_x, u_xx)


class PhysicsTerms(NamedTuple):
    """The parts of a physics-informed loss (scalars) and their weighted sum.

    Examples
    --------
    >>> import math, torch
    >>> loss = PhysicsLoss(Advection(beta=0.5))
    >>> exact = lambda c: torch.sin(2 * math.pi * (c[..., 0] - 0.5 * c[..., 1]))
    >>> terms = loss.pointwise(exact, torch.rand(16, 2, dtype=torch.float64))
    >>> terms._fields
    ('residual', 'initial', 'boundary', 'total')
    """

    residual: Tensor
    initial: Tensor
    boundary: Tensor
    total: Tensor


@dataclass
class PhysicsLoss:
    """Weighted physics-informed loss: PDE residual + initial condition + periodic boundary.

    ``total = weight * mean(residual**2) + ic_weight * mean((u(x, t0) - u0)**2)
    + bc_weight * mean((u(x_lo, t) - u(x_hi, t))**2)`` (the boundary term for pointwise models;
    grid fields are periodic by construction of the spectral derivative).

    Parameters
    ----------
    pde
        :class:`Advection`, :class:`Burgers` or :class:`DiffusionReaction` (see :func:`make_pde`).
    weight, ic_weight, bc_weight
        Weights of the three terms.

    Examples
    --------
    >>> import math, torch
    >>> loss = PhysicsLoss(Advection(beta=0.5))
    >>> exact = lambda c: torch.sin(2 * math.pi * (c[..., 0] - 0.5 * c[..., 1]))
    >>> terms = loss.pointwise(exact, torch.rand(64, 2, dtype=torch.float64))
    >>> float(terms.residual.detach()) < 1e-20
    True
    """

    pde: PDE
    weight: float = 1.0
    ic_weight: float = 1.0
    bc_weight: float = 0.0

    def pointwise(
        self,
        fn: Callable[[Tensor], Tensor],
        coords: Tensor,
        initial: tuple[Tensor, Tensor] | None = None,
        x_bounds: tuple[float, float] | None = None,
    ) -> PhysicsTerms:
        """Terms for a pointwise model (autograd derivatives at collocation points).

        Parameters
        ----------
        fn, coords
            As in :func:`pointwise_derivatives`.
        initial
            ``(coords0, u0)``: points ``(..., 2)`` at the initial time and the initial values
            there (``fn(coords0)`` must have ``u0.numel()`` values).
        x_bounds
            ``(x_lo, x_hi)``: compare ``u`` at both ends for the times of ``coords``
            (periodic boundary). Needs ``bc_weight > 0`` to matter.
        """
        d = pointwise_derivatives(fn, coords, second_order=self.pde.second_order)
        residual = self.pde.residual(d).pow(2).mean()
        zero = residual.new_zeros(())
        ic = zero
        if initial is not None:
            coords0, u0 = initial
            ic = (fn(coords0).reshape(u0.shape) - u0).pow(2).mean()
        bc = zero
        if x_bounds is not None:
            lo, hi = (coords.detach().clone() for _ in range(2))
            lo[..., 0], hi[..., 0] = x_bounds
            bc = (fn(lo) - fn(hi)).pow(2).mean()
        return self._combine(residual, ic, bc)

    def grid(self, u: Tensor, length: float, dt: float, u0: Tensor | None = None) -> PhysicsTerms:
        """Terms for fields ``(..., nt, nx)`` on a periodic grid (see :func:`grid_derivatives`).

        ``u0`` (``(..., nx)``), if given, is compared with the first frame ``u[..., 0, :]``.
        """
        residual = self.pde.residual(grid_derivatives(u, length, dt)).pow(2).mean()
        ic = residual.new_zeros(()) if u0 is None else (u[..., 0, :] - u0).pow(2).mean()
        return self._combine(residual, ic, residual.new_zeros(()))

    def _combine(self, residual: Tensor, ic: Tensor, bc: Tensor) -> PhysicsTerms:
        total = self.weight * residual + self.ic_weight * ic + self.bc_weight * bc
        return PhysicsTerms(residual, ic, bc, total)
