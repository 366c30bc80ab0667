"""1-D viscous Burgers ``u_t + u u_x = nu u_xx``, periodic on ``[0, 1]``, ``u(x, 0) = sin(2 pi x)``.

Two solutions: a numerical one by py-pde (finite differences; the reference the studies regress)
and the exact one by the Cole-Hopf transform (to measure the numerical one's own error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["BurgersReference", "burgers_exact", "solve_burgers"]

#: Stability factor of the explicit Euler step: ``dt <= SAFETY * h**2 / nu``.
EULER_SAFETY = 0.3


@dataclass
class BurgersReference:
    """A numerical solution on a tensor grid of ``(x, t)``.

    Attributes
    ----------
    x, t
        1-D float64 node coordinates; ``x`` covers ``[0, 1]`` (the periodic cell centres of the
        solver plus one periodic copy at each end), ``t`` covers ``[0, t_final]``.
    u
        ``(len(x), len(t))`` float64 values.
    nu
        Viscosity.
    """

    x: Tensor
    t: Tensor
    u: Tensor
    nu: float


def solve_burgers(
    nu: float, n_x: int = 256, n_t: int = 256, t_final: float = 1.0
) -> BurgersReference:
    """Solve Burgers with py-pde (central differences, explicit Euler, numpy backend).

    Parameters
    ----------
    nu
        Viscosity (> 0).
    n_x
        Grid cells in ``x`` (periodic, cell centres ``(i + 1/2) / n_x``).
    n_t
        Stored time intervals (snapshots at ``j t_final / n_t``).
    t_final
        Final time.

    Raises
    ------
    ValueError
        If an argument is out of range.
    ImportError
        If py-pde is missing (``pip install liponet[pde]``).
    """
    if not (math.isfinite(nu) and nu > 0):
        raise ValueError(f"nu must be a finite number > 0, got {nu}")
    if n_x < 4 or n_t < 1:
        raise ValueError(f"n_x must be >= 4 and n_t >= 1, got {n_x}, {n_t}")
    if not (math.isfinite(t_final) and t_final > 0):
        raise ValueError(f"t_final must be a finite number > 0, got {t_final}")
    import pde

    class _Burgers(pde.PDEBase):
        def evolution_rate(self, state, t=0):
            grad = state.gradient(bc="periodic")[0]
            return -state * grad + nu * state.laplace(bc="periodic")

    grid = pde.CartesianGrid([(0.0, 1.0)], [n_x], periodic=True)
    centres = np.asarray(grid.axes_coords[0])
    state = pde.ScalarField(grid, np.sin(2 * np.pi * centres))
    interval = t_final / n_t
    dt_max = EULER_SAFETY * (1.0 / n_x) ** 2 / nu
    steps = max(1, math.ceil(interval / dt_max))
    storage = pde.MemoryStorage()
    _Burgers().solve(
        state,
        t_range=t_final,
        dt=interval / steps,
        backend="numpy",
        solver="euler",
        tracker=[storage.tracker(interval)],
    )
    data = np.asarray(storage.data)  # (snapshots, n_x)
    if data.shape[0] != n_t + 1 or not np.isfinite(data).all():
        raise RuntimeError(f"py-pde returned {data.shape[0]} snapshots (expected {n_t + 1})")
    t = torch.linspace(0.0, t_final, n_t + 1, dtype=torch.float64)
    # Periodic copies at both ends so the grid covers [0, 1].
    u = torch.as_tensor(data, dtype=torch.float64).T  # (n_x, n_t + 1)
    u = torch.cat([u[-1:], u, u[:1]], dim=0)
    x = torch.as_tensor(centres, dtype=torch.float64)
    x = torch.cat([x[:1] - 1.0 / n_x, x, x[-1:] + 1.0 / n_x])
    return BurgersReference(x=x, t=t, u=u, nu=nu)


def burgers_exact(points: Tensor, nu: float, tol: float = 1e-16) -> Tensor:
    """The exact solution at ``(n, 2)`` points ``(x, t)`` by the Cole-Hopf transform.

    ``u = -2 nu phi_x / phi`` with ``phi`` solving the heat equation from
    ``phi_0 = exp(cos(2 pi x) / (4 pi nu))``, whose Fourier coefficients are modified Bessel
    functions: ``phi = I_0(a) + 2 sum_n I_n(a) exp(-nu (2 pi n)^2 t) cos(2 pi n x)``,
    ``a = 1 / (4 pi nu)`` (evaluated with exponentially scaled Bessel functions; the series is cut
    where ``I_n(a) / I_0(a) < tol``).

    Returns
    -------
    Tensor
        ``(n,)`` float64.
    """
    from scipy.special import ive

    a = 1.0 / (4 * math.pi * nu)
    coeffs = [float(ive(0, a))]
    while coeffs[-1] > tol * coeffs[0] and len(coeffs) < 10_000:
        coeffs.append(float(ive(len(coeffs), a)))
    n = torch.arange(1, len(coeffs), dtype=torch.float64)  # (K,)
    c = torch.tensor(coeffs[1:], dtype=torch.float64)  # (K,)
    out = []
    for chunk in points.double().split(2**16):
        x, t = chunk[:, :1], chunk[:, 1:2]  # (n, 1) each
        decay = c * torch.exp(-nu * (2 * math.pi * n) ** 2 * t)  # (n, K)
        phase = 2 * math.pi * n * x  # (n, K)
        phi = coeffs[0] + 2 * (decay * torch.cos(phase)).sum(dim=1)
        phi_x = -2 * (decay * 2 * math.pi * n * torch.sin(phase)).sum(dim=1)
        out.append(-2 * nu * phi_x / phi)
    return torch.cat(out)
