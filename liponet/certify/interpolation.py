"""Tensor grids of samples: validation, cell enumeration, multilinear interpolation.

The non-network baseline of the function-approximation certificates lives here:
:class:`GridInterpolant`, the piecewise-(multi)linear interpolant of grid values, a certified
module like any network of liponet.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers import CertifiedModule

__all__ = [
    "GridInterpolant",
    "check_grid",
    "check_values",
    "corner_offsets",
    "locate",
    "multilinear_lipschitz",
]


def check_grid(grid: Sequence[Tensor], name: str = "grid") -> tuple[Tensor, ...]:
    """Validate per-axis node coordinates and return them as float64 tensors.

    Parameters
    ----------
    grid
        One 1-D tensor of node coordinates per axis, strictly increasing, >= 2 nodes each.
    name
        The argument's name, used in error messages.

    Raises
    ------
    ValueError
        If the grid is empty, an axis is not 1-D, has fewer than 2 nodes, holds NaN/inf, or is not
        strictly increasing.
    """
    if len(grid) == 0:
        raise ValueError(f"{name} is empty: give one 1-D tensor of node coordinates per axis")
    axes = []
    for k, axis in enumerate(grid):
        axis = torch.as_tensor(axis).detach().to(dtype=torch.float64, device="cpu")
        if axis.ndim != 1:
            raise ValueError(f"{name}[{k}] must be 1-D, got shape {tuple(axis.shape)}")
        if axis.numel() == 0:
            raise ValueError(f"{name}[{k}] is empty: the training set has no points")
        if axis.numel() < 2:
            raise ValueError(f"{name}[{k}] needs >= 2 nodes to form cells, got {axis.numel()}")
        if not bool(torch.isfinite(axis).all()):
            raise ValueError(f"{name}[{k}] holds NaN or inf values")
        if not bool((axis[1:] > axis[:-1]).all()):
            raise ValueError(f"{name}[{k}] must be strictly increasing")
        axes.append(axis)
    return tuple(axes)


def check_values(values: Tensor, grid: tuple[Tensor, ...], name: str = "values") -> Tensor:
    """Validate grid values; return them as float64 ``(*grid_shape, channels)``.

    ``values`` may be ``(*grid_shape)`` (one channel) or ``(*grid_shape, channels)``.

    Raises
    ------
    ValueError
        If the shape does not match the grid, the set is empty, or a value is NaN/inf.
    """
    values = torch.as_tensor(values).detach().to(dtype=torch.float64, device="cpu")
    shape = tuple(int(a.numel()) for a in grid)
    if tuple(values.shape) == shape:
        values = values.unsqueeze(-1)
    if values.ndim != len(shape) + 1 or tuple(values.shape[:-1]) != shape:
        raise ValueError(
            f"{name} must have shape {shape} or {(*shape, 'channels')} to match the grid, got "
            f"{tuple(values.shape)}"
        )
    if values.numel() == 0:
        raise ValueError(f"{name} is empty: the training set has no values")
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{name} holds NaN or inf values")
    return values


def corner_offsets(dim: int) -> Tensor:
    """The ``2**dim`` corners of the unit cell, ``(2**dim, dim)`` of 0/1 (int64)."""
    return torch.tensor(list(itertools.product((0, 1), repeat=dim)), dtype=torch.int64)


def locate(grid: tuple[Tensor, ...], points: Tensor) -> tuple[Tensor, Tensor]:
    """Cell index and local coordinates in ``[0, 1]`` of points inside the grid's box.

    Parameters
    ----------
    grid
        Validated axes (see :func:`check_grid`).
    points
        ``(n, dim)`` float64 points inside the box (callers check or clamp).

    Returns
    -------
    tuple of Tensor
        ``(n, dim)`` int64 cell indices (per axis, in ``[0, n_k - 2]``) and ``(n, dim)`` local
        coordinates. A point on a face shared by two cells is given to one of them.
    """
    index = []
    local = []
    for k, axis in enumerate(grid):
        x = points[:, k].contiguous()
        j = (torch.searchsorted(axis, x, right=True) - 1).clamp(0, axis.numel() - 2)
        index.append(j)
        local.append((x - axis[j]) / (axis[j + 1] - axis[j]))
    return torch.stack(index, dim=1), torch.stack(local, dim=1)


def multilinear_lipschitz(grid: tuple[Tensor, ...], values: Tensor) -> Tensor:
    """Per-cell Lipschitz bound of the multilinear interpolant of grid values.

    Inside a cell, the derivative along axis ``k`` is a convex combination of the slopes
    ``(f(edge end) - f(edge start)) / h_k`` of the cell's ``2**(d-1)`` edges along ``k``. The
    Jacobian's spectral norm is at most its Frobenius norm, so it is bounded by
    ``sqrt(sum_k max_edges ||slope_k||**2)``: exact in 1-D, an upper bound otherwise.

    Parameters
    ----------
    grid
        Validated axes.
    values
        ``(*grid_shape, channels)`` float64.

    Returns
    -------
    Tensor
        ``(*cell_shape)`` float64 per-cell bounds (``cell_shape = grid_shape - 1``).
    """
    dim = len(grid)
    total = torch.zeros(tuple(a.numel() - 1 for a in grid), dtype=torch.float64)
    for k, axis in enumerate(grid):
        diff = torch.diff(values, dim=k)  # (..., n_k - 1, ..., channels)
        h = torch.diff(axis).reshape([-1 if i == k else 1 for i in range(dim)] + [1])
        slope = torch.linalg.vector_norm(diff / h, dim=-1)  # (*grid_shape with n_k - 1)
        # The cell's edges along k: the two neighbours along every other axis.
        for other in range(dim):
            if other != k:
                slope = torch.maximum(
                    slope.narrow(other, 0, slope.shape[other] - 1),
                    slope.narrow(other, 1, slope.shape[other] - 1),
                )
        total = total + slope**2
    return total.sqrt()


class GridInterpolant(CertifiedModule):
    """Piecewise-(multi)linear interpolant of values on a tensor grid: the non-network baseline.

    Inputs outside the grid's box are first projected onto it (clamped), so the function and its
    certificate are defined on all of ``R^d``.

    Parameters
    ----------
    grid
        One 1-D tensor of strictly increasing node coordinates per axis (>= 2 nodes each).
    values
        ``(*grid_shape)`` or ``(*grid_shape, channels)`` values at the nodes.

    Lipschitz constant
    ------------------
    In the Euclidean norms of ``R^d`` and ``R^c``: the maximum over cells of
    ``sqrt(sum_k max_edges ||slope_k||**2)`` (see :func:`multilinear_lipschitz`); exact in 1-D,
    a rigorous upper bound in higher dimensions (the function is continuous and smooth inside each
    cell of a convex box, and the projection onto the box is 1-Lipschitz). Computed in float64
    from the stored values.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 5)
    >>> interp = GridInterpolant([x], 2 * x)
    >>> interp(torch.tensor([[0.3]]))
    tensor([[0.6000]], dtype=torch.float64)
    >>> round(interp.lipschitz_bound(), 6)
    2.0
    """

    def __init__(self, grid: Sequence[Tensor], values: Tensor) -> None:
        super().__init__()
        axes = check_grid(grid)
        vals = check_values(values, axes)
        self.dim = len(axes)
        self.channels = int(vals.shape[-1])
        self.shape = tuple(int(a.numel()) for a in axes)
        for k, axis in enumerate(axes):
            self.register_buffer(f"axis{k}", axis)
        self.values: Tensor
        self.register_buffer("values", vals.reshape(-1, self.channels))
        self.eval()  # no training behaviour; eval mode lets certificates accept it as is

    @property
    def grid(self) -> tuple[Tensor, ...]:
        """The per-axis node coordinates (float64)."""
        return tuple(getattr(self, f"axis{k}") for k in range(self.dim))

    def forward(self, x: Tensor) -> Tensor:
        """Interpolate at points ``(n, dim)``; returns ``(n, channels)`` float64."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}), got {tuple(x.shape)}")
        grid = self.grid
        lo = torch.stack([a[0] for a in grid])
        hi = torch.stack([a[-1] for a in grid])
        points = torch.clamp(x.to(torch.float64), lo, hi)
        index, local = locate(grid, points)
        offsets = corner_offsets(self.dim).to(points.device)  # (P, d)
        strides = torch.tensor(
            [int(torch.tensor(self.shape[k + 1 :]).prod()) for k in range(self.dim)],
            dtype=torch.int64,
            device=points.device,
        )
        flat = ((index[:, None, :] + offsets[None]) * strides).sum(-1)  # (n, P)
        weights = torch.where(offsets[None].bool(), local[:, None, :], 1 - local[:, None, :])
        weights = weights.prod(-1)  # (n, P)
        corners = self.values[flat]  # (n, P, c)
        return torch.einsum("npc,np->nc", corners, weights)  # (n,P,c),(n,P)->(n,c)

    def lipschitz_bound(self) -> float:
        """Rigorous constant of the interpolant (exact in 1-D), from the stored values."""
        values = self.values.reshape(*self.shape, self.channels)
        return float(multilinear_lipschitz(self.grid, values).max())

    def export(self) -> nn.Module:
        """A copy of this module (it is already a plain, unconstrained function)."""
        return copy.deepcopy(self)
