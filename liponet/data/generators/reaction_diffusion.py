"""1-D diffusion-reaction ``u_t = nu u_xx + rho u (1 - u)`` on [0, 1], periodic."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import register_family
from .one_d import Periodic1D, dx_of

__all__ = ["DiffusionReaction1D", "logistic_step"]

#: Explicit diffusion step as a fraction of the stability limit ``dx^2 / (2 nu)``.
DIFFUSION_SAFETY = 0.5


def logistic_step(u: Tensor, rho: float, dt: float) -> Tensor:
    """Exact solution of ``u' = rho u (1 - u)`` after time ``dt``."""
    growth = math.exp(rho * dt)
    return u * growth / (1.0 + u * (growth - 1.0))


@register_family
class DiffusionReaction1D(Periodic1D):
    """Strang operator splitting: exact logistic half steps around an explicit diffusion step.

    The diffusion step is forward Euler on the 3-point Laplacian with
    ``dt <= DIFFUSION_SAFETY * dx^2 / (2 nu)``, uniform within each frame interval. With
    ``rho = 0`` this is exactly the heat equation ``u_t = nu u_xx`` (each discrete Fourier mode
    ``m`` is multiplied by ``1 - 4 nu dt/dx^2 sin^2(pi m dx)`` per step). Initial conditions are
    PDEBench's sine series rescaled to [0, 1] per sample. Defaults: ``nu = 0.5``, ``rho = 1``,
    ``t_final = 1``, 101 frames.
    """

    name: ClassVar[str] = "diffusion_reaction_1d"
    defaults: ClassVar[dict[str, float]] = {"nu": 0.5, "rho": 1.0, "t_final": 1.0}
    default_nt: ClassVar[int | None] = 101
    discretization: ClassVar[str] = "strang-logistic-ftcs"

    def attributes(self) -> dict[str, Any]:
        """``Nu`` and ``rho``."""
        return {"Nu": self.params["nu"], "rho": self.params["rho"]}

    def discretization_attributes(self) -> dict[str, Any]:
        """Adds ``rho`` and the diffusion number ``nu dt_sub / dx^2`` of the substeps."""
        dx = 1.0 / self.nx
        coef = self.params["nu"] * (self.dt_save / self.substeps(dx)) / (dx * dx)
        return {**super().discretization_attributes(), "rho": self.params["rho"],
                "diffusion_number": coef}  # fmt: skip

    def prepare(self, u0: Tensor) -> Tensor:
        """Rescale each sample to [0, 1]."""
        low = u0.amin(dim=-1, keepdim=True)
        high = u0.amax(dim=-1, keepdim=True)
        return (u0 - low) / (high - low).clamp_min(1e-12)

    def substeps(self, dx: float) -> int:
        """Number of equal steps per frame interval."""
        nu = self.params["nu"]
        if nu <= 0:
            return 1
        return max(1, math.ceil(self.dt_save / (DIFFUSION_SAFETY * dx * dx / (2.0 * nu))))

    def advance(self, u: Tensor, duration: float) -> Tensor:
        """March by ``duration`` in equal Strang steps."""
        nu, rho = self.params["nu"], self.params["rho"]
        dx = dx_of(u)
        n = self.substeps(dx)
        dt = duration / n
        coef = nu * dt / (dx * dx)
        for _ in range(n):
            if rho != 0:
                u = logistic_step(u, rho, 0.5 * dt)
            u = u + coef * (torch.roll(u, -1, dims=-1) - 2.0 * u + torch.roll(u, 1, dims=-1))
            if rho != 0:
                u = logistic_step(u, rho, 0.5 * dt)
        return u
