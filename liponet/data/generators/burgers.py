"""1-D viscous Burgers ``u_t + (u^2/2)_x = (nu/pi) u_xx`` on [0, 1], periodic, finite volumes."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import register_family
from .one_d import Periodic1D, dx_of

__all__ = ["Burgers", "burgers_rate", "van_leer_slope"]

#: Courant number of the time step.
CFL = 0.25


def van_leer_slope(u: Tensor) -> Tensor:
    """Van Leer limited slope per cell of a periodic ``(b, nx)`` field (times the cell width)."""
    back = u - torch.roll(u, 1, dims=-1)
    fwd = torch.roll(u, -1, dims=-1) - u
    prod = back * fwd
    safe = torch.where(prod > 0, back + fwd, torch.ones_like(u))
    return torch.where(prod > 0, 2.0 * prod / safe, torch.zeros_like(u))


def burgers_rate(u: Tensor, viscosity: float) -> Tensor:
    """``du/dt`` of the semi-discrete scheme: MUSCL + Rusanov flux + central viscous flux.

    ``u`` is ``(b, nx)`` cell averages on a periodic grid of width 1; face ``i + 1/2`` gets the
    reconstructed states ``u_i + s_i/2`` and ``u_{i+1} - s_{i+1}/2``.
    """
    dx = dx_of(u)
    slope = van_leer_slope(u)
    left = u + 0.5 * slope
    right = torch.roll(u - 0.5 * slope, -1, dims=-1)
    speed = torch.maximum(left.abs(), right.abs())
    flux = 0.25 * (left**2 + right**2) - 0.5 * speed * (right - left)
    flux = flux - viscosity * (torch.roll(u, -1, dims=-1) - u) / dx
    return -(flux - torch.roll(flux, 1, dims=-1)) / dx


@register_family
class Burgers(Periodic1D):
    """Burgers with cell-centred finite volumes as PDEBench.

    2nd-order MUSCL (van Leer limiter), Rusanov flux, midpoint predictor-corrector, CFL-limited
    step per sample (``CFL = 0.25``).

    Each sample takes its own time steps (so a sample never depends on the others of its batch);
    the last step before a stored frame is shortened to land on it. Defaults: ``nu = 0.01``,
    ``t_final = 2``, 201 frames; the diffusion coefficient is ``nu / pi`` (PDEBench).
    """

    name: ClassVar[str] = "burgers"
    defaults: ClassVar[dict[str, float]] = {"nu": 0.01, "t_final": 2.0}
    default_nt: ClassVar[int | None] = 201
    discretization: ClassVar[str] = "finite-volume-muscl-rusanov"

    def attributes(self) -> dict[str, Any]:
        """``Nu``."""
        return {"Nu": self.params["nu"]}

    def advance(self, u: Tensor, duration: float) -> Tensor:
        """March every sample by ``duration`` with its own CFL-limited steps."""
        visc = self.params["nu"] / math.pi
        dx = dx_of(u)
        left = torch.full((*u.shape[:1], 1), duration, dtype=u.dtype, device=u.device)
        while bool((left > 0).any()):
            speed = u.abs().amax(dim=-1, keepdim=True).clamp_min(1e-12)
            dt = CFL * dx / speed
            if visc > 0:
                dt = torch.clamp(dt, max=CFL * dx * dx / visc)
            dt = torch.minimum(dt, left)
            # land exactly on the frame when the remainder is a sliver
            dt = torch.where(left - dt < 1e-12 * duration, left, dt)
            half = u + 0.5 * dt * burgers_rate(u, visc)
            u = u + dt * burgers_rate(half, visc)
            left = left - dt
            left = torch.where(left <= 1e-12 * duration, torch.zeros_like(left), left)
        return u
