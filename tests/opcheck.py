"""Tiny certified operators and exact data shared by the operator-certificate tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liponet.certify import LipschitzConstant, SymmetryGroup, reference
from liponet.data.generators.initial import sine_series_batch
from liponet.layers import CertifiedModule
from liponet.models import LipFNO, LipMLP


class SensorMLP(CertifiedModule):
    """An operator on a fixed grid: a LipMLP on the flattened field, same grid in and out.

    Lipschitz constant
    ------------------
    The MLP's Euclidean certificate; input and output have the same number of points, so the
    ``1/sqrt(n)`` of the function norm cancels and the constant holds in the function norm.
    """

    def __init__(self, n_points: int, width: int = 16, k: float = 1.0) -> None:
        super().__init__()
        self.mlp = LipMLP(n_points, n_points, width=width, depth=2, k=k)

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x.flatten(1)).reshape(x.shape)

    def lipschitz_bound(self) -> float:
        return self.mlp.lipschitz_bound()

    def export(self) -> nn.Module:
        return self.mlp.export()


class HeatSurrogate(CertifiedModule):
    """A good surrogate of heat flow: exact heat flow with a slightly wrong viscosity.

    Lipschitz constant
    ------------------
    1 in the function norm (a Fourier multiplier with modulus <= 1), by the heat theorem.
    """

    def __init__(self, nu: float, t: float) -> None:
        super().__init__()
        self.nu, self.t = nu, t
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        return reference.heat(x, self.nu, self.t)

    def lipschitz_bound(self) -> float:
        return 1.0

    def export(self) -> nn.Module:
        return self


CERTIFIED_ONE = LipschitzConstant(1.0, "certified", source="a Fourier multiplier <= 1")


def make_data(n: int, n_points: int = 16, seed: int = 0, **family: float) -> Tensor:
    return reference.sine_sum_inputs(
        n,
        n_points,
        torch.Generator().manual_seed(seed),
        **family,  # type: ignore[arg-type]
    )


def sensor_model(n_points: int = 16, seed: int = 0, k: float = 1.0) -> SensorMLP:
    torch.manual_seed(seed)
    return SensorMLP(n_points, k=k).double().eval()


#: Whole-cell shifts along the one spatial axis of 1-D fields.
SHIFT1 = SymmetryGroup((0,))

#: L_G of :func:`advection_pairs`: torch.roll by whole cells permutes the grid values.
ROLL = LipschitzConstant(1.0, "certified", source="a roll by whole cells permutes the values")


def advection_pairs(n: int, nx: int = 32, cells: int = 8, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Exact grid data: u(T) is u(0) shifted by a whole number of cells."""
    rng = np.random.default_rng(seed)
    x = (torch.arange(nx).double() + 0.5) / nx
    series = sine_series_batch(rng, n, float(x[-1] - x[0]))
    a = series(x)[:, None]
    return a, torch.roll(a, cells, -1)


def grid_free_fno(dim: int = 1, seed: int = 0, **kwargs: Any) -> LipFNO:
    """A tiny float64 eval-mode LipFNO without coordinate channels (shift-equivariant)."""
    torch.manual_seed(seed)
    kw = {"width": 4, "depth": 2, "grid": False} | kwargs
    return LipFNO(1, 1, modes=(4,) * dim, **kw).eval().double()
