"""2-D diffusion-reaction (FitzHugh-Nagumo) on [-1, 1]^2 with no-flux boundaries."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .base import Family, register_family
from .initial import normal_noise

__all__ = ["DiffusionReaction2D", "fhn_rate", "neumann_laplacian"]

#: Explicit step limits: fraction of the 2-D diffusion limit dx^2 / (4 D), and a cap for the
#: cubic reaction term (its slope reaches ~ -3 u^2 ~ -50 for the initial normal noise).
DIFFUSION_SAFETY = 0.5
MAX_DT = 0.01


def neumann_laplacian(u: Tensor, dx: float) -> Tensor:
    """Five-point Laplacian of ``(b, n, n)`` fields, zero normal derivative (mirrored ghosts)."""
    g = F.pad(u[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    return (g[:, 2:, 1:-1] + g[:, :-2, 1:-1] + g[:, 1:-1, 2:] + g[:, 1:-1, :-2] - 4 * u) / dx**2


def fhn_rate(
    u: Tensor, v: Tensor, dx: float, du: float, dv: float, k: float
) -> tuple[Tensor, Tensor]:
    """``(u_t, v_t) = (Du Lap u + u - u^3 - k - v, Dv Lap v + u - v)``."""
    return (
        du * neumann_laplacian(u, dx) + u - u**3 - k - v,
        dv * neumann_laplacian(v, dx) + u - v,
    )


@register_family
class DiffusionReaction2D(Family):
    """FitzHugh-Nagumo as PDEBench's 2-D diffusion-reaction set, group-per-sample layout.

    Forward Euler on the five-point Laplacian with ``dt <= DIFFUSION_SAFETY dx^2 / (4 D)`` and
    ``dt <= MAX_DT``, equal steps per frame; initial ``u, v`` standard normal per cell. Each sample
    is a group ``data`` ``(nt, n, n, 2)`` (lzf) with ``grid/x``, ``grid/y`` (cell centres on
    [-1, 1]) and ``grid/t = linspace(0, t_final, nt)``. Defaults: ``Du = 1e-3``, ``Dv = 5e-3``,
    ``k = 5e-3``, ``t_final = 5``, 101 frames, 128 x 128.
    """

    name: ClassVar[str] = "diffusion_reaction_2d"
    layout: ClassVar[str] = "group"
    defaults: ClassVar[dict[str, float]] = {"Du": 1e-3, "Dv": 5e-3, "k": 5e-3, "t_final": 5.0}
    default_nx: ClassVar[int] = 128
    default_nt: ClassVar[int | None] = 101
    discretization: ClassVar[str] = "forward-euler-five-point"

    @property
    def x(self) -> np.ndarray:
        """Cell centres on [-1, 1]."""
        return -1.0 + (np.arange(self.nx) + 0.5) * (2.0 / self.nx)

    def coordinates(self) -> dict[str, np.ndarray]:
        """``grid/x``, ``grid/y``, ``grid/t``."""
        assert self.nt is not None
        x = self.x.astype(np.float32)
        t = np.linspace(0.0, self.params["t_final"], self.nt).astype(np.float32)
        return {"grid/x": x, "grid/y": x.copy(), "grid/t": t}

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """``data`` ``(nt, n, n, 2)``."""
        assert self.nt is not None
        return {"data": (self.nt, self.nx, self.nx, 2)}

    def solve(
        self, seed: int, indices: range, device: torch.device, tick: Callable[[], None]
    ) -> dict[str, Tensor]:
        """March the noise initial state; ``data`` ``(b, nt, n, n, 2)``."""
        assert self.nt is not None
        p = self.params
        dx = 2.0 / self.nx
        noise = normal_noise(seed, indices, (2, self.nx, self.nx)).to(device)
        u, v = noise[:, 0], noise[:, 1]
        dt_save = p["t_final"] / (self.nt - 1)
        dt_max = min(MAX_DT, DIFFUSION_SAFETY * dx * dx / (4 * max(p["Du"], p["Dv"], 1e-300)))
        n_sub = max(1, math.ceil(dt_save / dt_max))
        dt = dt_save / n_sub
        frames = [torch.stack([u, v], dim=-1)]
        tick()
        for _ in range(self.nt - 1):
            for _ in range(n_sub):
                ru, rv = fhn_rate(u, v, dx, p["Du"], p["Dv"], p["k"])
                u, v = u + dt * ru, v + dt * rv
            frames.append(torch.stack([u, v], dim=-1))
            tick()
        return {"data": torch.stack(frames, dim=1)}
