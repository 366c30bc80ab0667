"""2-D linear advection ``u_t + bx u_x + by u_y = 0`` on the unit torus, solved exactly."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from .base import Family, register_family
from .initial import sample_rng

__all__ = ["FOURIER_MODES", "Advection2D", "fourier_series_2d"]

#: Random Fourier modes per initial condition, integer wavenumbers in ``[-K, K]^2`` (not 0).
FOURIER_MODES = 4
FOURIER_MAX_K = 3


def fourier_series_2d(seed: int, indices: range) -> tuple[Tensor, Tensor, Tensor]:
    """Amplitudes ``(b, M)``, integer wavenumbers ``(b, M, 2)`` and phases ``(b, M)`` (float64).

    ``u0(x, y) = sum_m A_m sin(2 pi (k_m . (x, y)) + phi_m)`` with ``A ~ U[0, 1)``, ``phi ~
    U[0, 2 pi)`` and each ``k_m`` uniform among the nonzero integer vectors of ``[-3, 3]^2``:
    exactly periodic (no jump at the wrap), smooth, zero mean. Sample ``i`` uses its own stream
    ``(seed, i)``.
    """
    amps, ks, phases = [], [], []
    for i in indices:
        rng = sample_rng(seed, i)
        k = rng.integers(-FOURIER_MAX_K, FOURIER_MAX_K + 1, size=(FOURIER_MODES, 2))
        zero = (k == 0).all(1)
        k[zero, 0] = 1  # no constant mode
        amps.append(rng.uniform(0.0, 1.0, FOURIER_MODES))
        ks.append(k)
        phases.append(rng.uniform(0.0, 2.0 * math.pi, FOURIER_MODES))
    f64 = torch.float64
    return (
        torch.as_tensor(np.stack(amps), dtype=f64),
        torch.as_tensor(np.stack(ks), dtype=f64),
        torch.as_tensor(np.stack(phases), dtype=f64),
    )


@register_family
class Advection2D(Family):
    """Exact solution ``u(x, t) = u0((x - b t) mod 1)`` of 2-D periodic advection.

    Cell centres ``(i + 0.5) / nx`` on both axes; the initial condition is evaluated at the
    wrapped feet of the characteristics, so a shift ``b t`` by whole cells is exactly a
    permutation of the grid values (``L_G = 1`` exactly; cyclic shifts commute with it).
    Defaults: ``bx = 0.25``, ``by = 0.125``, ``t_final = 1``, 11 frames, 32 x 32.
    """

    name: ClassVar[str] = "advection_2d"
    layout: ClassVar[str] = "single"
    defaults: ClassVar[dict[str, float]] = {"bx": 0.25, "by": 0.125, "t_final": 1.0}
    default_nx: ClassVar[int] = 32
    default_nt: ClassVar[int | None] = 11
    discretization: ClassVar[str] = "exact-samples-2d"

    @property
    def x(self) -> np.ndarray:
        """Cell centres ``(i + 0.5) / nx`` (float64), both axes."""
        return (np.arange(self.nx) + 0.5) / self.nx

    def coordinates(self) -> dict[str, np.ndarray]:
        """``x-coordinate``, ``y-coordinate`` (nx,) and ``t-coordinate`` (nt + 1,), float32."""
        assert self.nt is not None
        dt = self.params["t_final"] / (self.nt - 1)
        return {
            "x-coordinate": self.x.astype(np.float32),
            "y-coordinate": self.x.astype(np.float32),
            "t-coordinate": (dt * np.arange(self.nt + 1)).astype(np.float32),
        }

    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """``tensor``: ``(nt, nx, nx)`` per sample."""
        assert self.nt is not None
        return {"tensor": (self.nt, self.nx, self.nx)}

    def attributes(self) -> dict[str, Any]:
        """``bx``, ``by`` (``discretization = "exact-samples-2d"``: exact solution at centres)."""
        return {"bx": self.params["bx"], "by": self.params["by"]}

    def solve(
        self, seed: int, indices: range, device: torch.device, tick: Callable[[], None]
    ) -> dict[str, Tensor]:
        """Evaluate the series at the feet of the characteristics; ``tensor`` ``(b, nt, n, n)``."""
        assert self.nt is not None
        amp, k, phase = (t.to(device) for t in fourier_series_2d(seed, indices))
        x = torch.as_tensor(self.x, dtype=torch.float64, device=device)
        dt = self.params["t_final"] / (self.nt - 1)
        frames = []
        for n in range(self.nt):
            px = torch.remainder(x - self.params["bx"] * dt * n, 1.0)  # (nx,)
            py = torch.remainder(x - self.params["by"] * dt * n, 1.0)
            arg = (
                k[:, :, 0, None, None] * px[None, None, :, None]
                + k[:, :, 1, None, None] * py[None, None, None, :]
            )  # (b, M, nx, ny)
            u = torch.einsum(
                "bm,bmxy->bxy", amp, torch.sin(2 * math.pi * arg + phase[..., None, None])
            )
            frames.append(u)
            tick()
        return {"tensor": torch.stack(frames, dim=1)}
