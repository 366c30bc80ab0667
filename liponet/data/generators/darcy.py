"""2-D Darcy flow ``-div(a grad u) = beta`` on [0, 1]^2 with ``u = 0`` on the boundary."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Family, register_family
from .initial import darcy_coefficient

__all__ = ["Darcy", "darcy_operator", "solve_darcy"]

#: Relative residual at which conjugate gradients stop.
CG_TOL = 1e-10


def _face_transmissibilities(a: Tensor) -> tuple[Tensor, Tensor]:
    """Harmonic-mean face coefficients (times 1/h^2) with Dirichlet walls at half a cell.

    Returns ``tx`` ``(b, nx + 1, ny)`` on the x-faces and ``ty`` ``(b, nx, ny + 1)``.
    """
    n = a.shape[-1]
    inv_h2 = float(n * n)
    harm_x = 2 * a[:, 1:] * a[:, :-1] / (a[:, 1:] + a[:, :-1])
    harm_y = 2 * a[:, :, 1:] * a[:, :, :-1] / (a[:, :, 1:] + a[:, :, :-1])
    # a wall face sits h/2 from the cell centre: coefficient 2 a / h^2
    tx = torch.cat([2 * a[:, :1], harm_x, 2 * a[:, -1:]], dim=1) * inv_h2
    ty = torch.cat([2 * a[:, :, :1], harm_y, 2 * a[:, :, -1:]], dim=2) * inv_h2
    return tx, ty


def darcy_operator(a: Tensor) -> Callable[[Tensor], Tensor]:
    """The symmetric positive definite finite-volume operator ``u -> -div(a grad u)``.

    Five-point cell-centred scheme on a ``(b, n, n)`` grid of width 1, ``u = 0`` on the walls.
    """
    tx, ty = _face_transmissibilities(a)

    def apply(u: Tensor) -> Tensor:
        ux = F.pad(u, (0, 0, 1, 1))  # zero ghosts (the wall terms are in tx)
        uy = F.pad(u, (1, 1))
        flux_x = tx * (ux[:, 1:] - ux[:, :-1])  # (b, n + 1, n)
        flux_y = ty * (uy[:, :, 1:] - uy[:, :, :-1])  # (b, n, n + 1)
        return -(flux_x[:, 1:] - flux_x[:, :-1]) - (flux_y[:, :, 1:] - flux_y[:, :, :-1])

    return apply


def solve_darcy(a: Tensor, beta: float, tol: float = CG_TOL, max_iter: int = 20000) -> Tensor:
    """Batched Jacobi-preconditioned conjugate gradients for ``-div(a grad u) = beta``.

    Every sample runs its own CG recursion (its own step sizes) in one vectorised loop; a
    converged sample stops changing. Returns ``u`` ``(b, n, n)`` in ``a``'s dtype.
    """
    op = darcy_operator(a)
    tx, ty = _face_transmissibilities(a)
    diag = tx[:, 1:] + tx[:, :-1] + ty[:, :, 1:] + ty[:, :, :-1]
    rhs = torch.full_like(a, beta)
    u = torch.zeros_like(a)
    r = rhs.clone()
    z = r / diag
    p = z.clone()
    rz = torch.einsum("bxy,bxy->b", r, z)
    norm_b = rhs.flatten(1).norm(dim=1).clamp_min(1e-300)
    for _ in range(max_iter):
        active = r.flatten(1).norm(dim=1) > tol * norm_b  # (b,)
        if not bool(active.any()):
            break
        q = op(p)
        pq = torch.einsum("bxy,bxy->b", p, q)
        alpha = torch.where(active, rz / torch.where(active, pq, 1.0), 0.0)
        u = u + alpha[:, None, None] * p
        r = r - alpha[:, None, None] * q
        z = r / diag
        rz_new = torch.einsum("bxy,bxy->b", r, z)
        beta_cg = torch.where(active, rz_new / torch.where(active, rz, 1.0), 0.0)
        p = torch.where(active[:, None, None], z + beta_cg[:, None, None] * p, p)
        rz = torch.where(active, rz_new, rz)
    else:
        raise RuntimeError(f"Darcy CG did not converge in {max_iter} iterations")
    return u


@register_family
class Darcy(Family):
    """Steady Darcy flow, solved directly as an elliptic problem.

    PDEBench integrates the time-dependent problem to steady state: the same limit.

    ``a`` is binary (1 or 0.1) from thresholded Gaussian bumps
    (:func:`~liponet.data.generators.initial.darcy_coefficient`); five-point finite volumes with
    harmonic face averages; batched CG to relative residual ``CG_TOL`` in float64. Writes ``nu``
    ``(N, n, n)`` (= ``a``), ``tensor`` ``(N, 1, n, n)`` (= ``u``), cell-centre coordinates.
    Default: ``beta = 1``, 128 x 128.
    """

    name: ClassVar[str] = "darcy"
    layout: ClassVar[str] = "darcy"
    defaults: ClassVar[dict[str, float]] = {"beta": 1.0}
    default_nx: ClassVar[int] = 128
    default_nt: ClassVar[int | None] = None
    discretization: ClassVar[str] = "finite-volume-cg"

    @property
    def x(self) -> np.ndarray:
        """Cell centres on [0, 1]."""
        return (np.arange(self.nx) + 0.5) / self.nx

    def coordinates(self) -> dict[str, np.ndarray]:
        """``x-coordinate``, ``y-coordinate`` (n,)."""
        x = self.x.astype(np.float32)
        return {"x-coordinate": x, "y-coordinate": x.copy()}

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """``nu`` ``(n, n)`` and ``tensor`` ``(1, n, n)``."""
        return {"nu": (self.nx, self.nx), "tensor": (1, self.nx, self.nx)}

    def attributes(self) -> dict[str, Any]:
        """``beta``."""
        return {"beta": self.params["beta"]}

    def solve(
        self, seed: int, indices: range, device: torch.device, tick: Callable[[], None]
    ) -> dict[str, Tensor]:
        """Coefficients and solutions of samples ``indices``."""
        a = darcy_coefficient(seed, indices, torch.as_tensor(self.x)).to(device)
        u = solve_darcy(a, self.params["beta"])
        tick()
        return {"nu": a, "tensor": u[:, None]}
