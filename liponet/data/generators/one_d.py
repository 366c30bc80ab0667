"""Common grid, coordinates and initial conditions of the 1-D periodic families on [0, 1]."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Family
from .initial import SineSeries, sine_series

__all__ = ["Periodic1D"]


class Periodic1D(Family):
    """A 1-D periodic family on [0, 1] with ``nx`` cell centres and frames every ``dt_save``.

    The stored ``t-coordinate`` has ``nt + 1`` entries ``dt_save * arange(nt + 1)`` as in
    PDEBench's files; ``dt_save = t_final / (nt - 1)``.
    """

    layout: ClassVar[str] = "single"
    default_nx: ClassVar[int] = 1024

    @property
    def x(self) -> np.ndarray:
        """Cell centres ``(i + 0.5) / nx`` (float64)."""
        return (np.arange(self.nx) + 0.5) / self.nx

    @property
    def dt_save(self) -> float:
        """Time between stored frames."""
        assert self.nt is not None
        return self.params["t_final"] / (self.nt - 1)

    def discretization_attributes(self) -> dict[str, Any]:
        """``discretization``, ``nx`` and the time between stored frames ``dt``."""
        return {**super().discretization_attributes(), "dt": self.dt_save}

    def coordinates(self) -> dict[str, np.ndarray]:
        """``x-coordinate`` (nx,) and ``t-coordinate`` (nt + 1,), float32."""
        assert self.nt is not None
        return {
            "x-coordinate": self.x.astype(np.float32),
            "t-coordinate": (self.dt_save * np.arange(self.nt + 1)).astype(np.float32),
        }

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """``tensor``: ``(nt, nx)`` per sample."""
        assert self.nt is not None
        return {"tensor": (self.nt, self.nx)}

    def initial_series(self, seed: int, indices: range) -> SineSeries:
        """PDEBench's random sine series of the samples ``indices``."""
        return sine_series(seed, indices, length=float(self.x[-1] - self.x[0]))

    def solve(
        self, seed: int, indices: range, device: torch.device, tick: Callable[[], None]
    ) -> dict[str, Tensor]:
        """Draw the initial conditions and march them; ``tensor`` ``(b, nt, nx)``."""
        series = self.initial_series(seed, indices).to(device)
        x = torch.as_tensor(self.x, dtype=torch.float64, device=device)
        return {"tensor": self.march(series, x, tick)}

    def march(self, series: SineSeries, x: Tensor, tick: Callable[[], None]) -> Tensor:
        """Frames ``(b, nt, nx)`` from the initial series (default: solve from ``series(x)``)."""
        assert self.nt is not None
        u = self.prepare(series(x))
        frames = [u]
        tick()
        for _ in range(self.nt - 1):
            u = self.advance(u, self.dt_save)
            frames.append(u)
            tick()
        return torch.stack(frames, dim=1)

    def prepare(self, u0: Tensor) -> Tensor:
        """Transform the raw series into the initial condition (identity by default)."""
        return u0

    def advance(self, u: Tensor, duration: float) -> Tensor:
        """March ``u`` ``(b, nx)`` by ``duration``."""
        raise NotImplementedError


def dx_of(u: Tensor) -> float:
    """Cell width of a ``(b, nx)`` field on [0, 1]."""
    return 1.0 / u.shape[-1]
