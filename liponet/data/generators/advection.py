"""1-D linear advection ``u_t + beta u_x = 0`` on [0, 1], periodic, solved exactly (a shift)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import register_family
from .initial import SineSeries
from .one_d import Periodic1D

__all__ = ["Advection"]


@register_family
class Advection(Periodic1D):
    """Exact solution ``u(x, t) = u0((x - beta t) mod 1)`` (the periodic extension of ``u0``).

    PDEBench integrates the same equation with finite volumes; the exact shift is the
    reference those schemes approximate. Defaults: ``beta = 0.1``, ``t_final = 2``, 201 frames.
    """

    name: ClassVar[str] = "advection"
    defaults: ClassVar[dict[str, float]] = {"beta": 0.1, "t_final": 2.0}
    default_nt: ClassVar[int | None] = 201
    discretization: ClassVar[str] = "exact-samples"

    def attributes(self) -> dict[str, Any]:
        """``beta`` (``discretization = "exact-samples"``: the exact solution at cell centres)."""
        return {"beta": self.params["beta"]}

    def march(self, series: SineSeries, x: Tensor, tick: Callable[[], None]) -> Tensor:
        """Evaluate the initial series at the periodically wrapped feet of the characteristics."""
        assert self.nt is not None
        frames = []
        for n in range(self.nt):
            shift = self.params["beta"] * self.dt_save * n
            frames.append(series(torch.remainder(x - shift, 1.0)))
            tick()
        return torch.stack(frames, dim=1)
