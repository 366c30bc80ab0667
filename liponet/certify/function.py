"""Certified bounds of ``sup |f - g|`` over a box, from grid samples and Lipschitz constants.

Setting: a target ``f`` (``L_f``-Lipschitz, Euclidean norms) known at the nodes of a tensor grid,
and an approximation ``g`` (``L_g``-Lipschitz, e.g. a model with a certified
``lipschitz_bound()``). With ``L = L_f + L_g`` the error ``e = f - g`` is ``L``-Lipschitz, and for
any point ``x`` of a grid cell with corners ``x_i`` (node errors ``e_i``):

- ``"global"``: ``|e(x)| <= max_i |e_i| + L * fill`` with ``fill`` the fill distance of the grid
  (exactly the largest cell half-diagonal for a tensor grid);
- ``"cell"``: ``|e(x)| <= min_i(|e_i| + L ||x - x_i||)`` over the cell's corners, maximized over the
  cell (exactly in 1-D: ``min((|e_a| + |e_b| + L h) / 2, min(|e_a|, |e_b|) + L h)``; in higher
  dimensions on a sub-grid of the cell, see below);
- ``"envelope"`` (the sandwich): ``f`` lies between the Lipschitz envelopes of the corner values,
  ``lo(x) = max_i(f_i - L_f d_i) <= f(x) <= up(x) = min_i(f_i + L_f d_i)`` with
  ``d_i = ||x - x_i||``, so ``|f(x) - g(x)|`` is at most ``E(x) = ||max(up - g, g - lo)||``
  (per component, then the Euclidean norm over components).

Sub-grid safety term: methods evaluated on a sub-grid of each cell (``m`` sub-intervals per axis,
nodes on the cell's faces included) use that every point ``x`` of the cell lies within
``delta = ||h|| / (2 m)`` (half the diagonal of a sub-cell, ``h`` the cell's widths) of a sub-grid
point ``s`` of the same cell. Since ``e`` is ``L``-Lipschitz, ``|e(x)| <= |e(s)| + L delta``, and
``|e(s)|`` is bounded by the method's pointwise bound at ``s`` (which uses the cell's corners,
valid at ``s`` because ``s`` is in the cell). Hence the rigorous cell bound is
``max over s of the pointwise bound + (L_f + L_g) delta``.

The floor: any ``L_f``-Lipschitz function between ``lo`` and ``up`` is consistent with the data, so
no method that knows only the grid values and ``L_f`` can certify less than
``max over x of ||up(x) - lo(x)|| / 2``. It is reported next to every bound (evaluated on the same
sub-grid, so it is at most ``L_f delta`` below the exact floor).

Certified or not: a result is ``certified`` only if ``L_f`` was given as a true bound (not an
:class:`TargetLipschitzEstimate`), ``L_g`` is certified (``model.lipschitz_bound()`` or given),
and the training values are consistent with ``L_f`` (``|f_i - f_j| <= L_f ||x_i - x_j||`` for the
corners of every cell; otherwise no ``L_f``-Lipschitz ``f`` has these values and the bound is void).
Model outputs are evaluated in the model's own dtype; floating-point rounding of ``g`` itself is
not part of the bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..layers import CertifiedModule
from .interpolation import check_grid, check_values, corner_offsets, locate, multilinear_lipschitz
from .operator import LipschitzConstant
from .premises import check_eval_mode

__all__ = [
    "BOUND_METHODS",
    "MaxErrorBound",
    "TargetLipschitzEstimate",
    "estimate_target_lipschitz",
    "max_error_bound",
]

#: Number of float64 entries a chunk of cells may hold in its largest intermediate tensor.
DEFAULT_CHUNK_ENTRIES = 2**22

#: Labels of results (``certified`` and ``estimated`` as in :data:`liponet.certify.LABELS`), and
#: the note that explains each.
LABEL_CERTIFIED = "certified"
LABEL_ESTIMATE = "estimated"
LABEL_VOID = "void"
NOTES = {
    LABEL_CERTIFIED: "guaranteed: L_f given, L_g certified, data consistent with L_f",
    LABEL_ESTIMATE: "not certified: rests on an ESTIMATED L_f",
    LABEL_VOID: "not certified: the training values violate L_f (no L_f-Lipschitz f fits them)",
}


@dataclass(frozen=True)
class TargetLipschitzEstimate:
    """An ESTIMATE of the target's Lipschitz constant ``L_f`` (not a guaranteed bound).

    Passing one to :func:`max_error_bound` labels the result as resting on an estimate.

    Attributes
    ----------
    value
        The estimated constant.
    how
        How it was estimated.

    Examples
    --------
    >>> est = TargetLipschitzEstimate(2.5, "ESTIMATE: slopes of a reference")
    >>> float(est)
    2.5
    """

    value: float
    how: str

    def __float__(self) -> float:
        return self.value


@dataclass
class MaxErrorBound:
    """Result of :func:`max_error_bound`.

    Attributes
    ----------
    bound
        The global bound of ``sup |f - g|`` over the grid's box (max of ``per_cell``).
    per_cell
        ``(*cell_shape)`` float64 bound per grid cell (``cell_shape = grid_shape - 1``).
    method
        ``"global"``, ``"cell"`` or ``"envelope"``.
    floor
        ``max`` over cells of ``sup ||up - lo|| / 2``: no method can certify less from the grid
        values and ``L_f``.
    floor_per_cell
        ``(*cell_shape)`` the floor per cell.
    lipschitz_target, lipschitz_model
        ``L_f`` and ``L_g`` used.
    target_is_estimate
        Whether ``L_f`` is an estimate.
    consistent
        Whether the training values are consistent with ``L_f`` in every cell.
    certified
        True only if the bound is guaranteed (see the module docstring).
    label
        ``"certified"``, ``"estimated"`` (``L_f`` is an estimate) or ``"void"`` (the training
        values contradict ``L_f``).
    note
        One sentence explaining the label.
    grid
        The per-axis node coordinates (float64).
    subdivisions
        Sub-intervals per axis of the sub-grid of each cell.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 5, dtype=torch.float64)
    >>> g = lambda p: torch.zeros(p.shape[0], 1, dtype=torch.float64)
    >>> res = max_error_bound(g, [x], torch.zeros(5), 1.0, lipschitz_model=0.0, subdivisions=2)
    >>> res.floor, res.bound  # floor L_f h / 2; bound adds the safety term L h / (2 m)
    (0.125, 0.1875)
    >>> res.violations(torch.tensor([[0.5]]), torch.tensor([0.2]))
    1
    """

    bound: float
    per_cell: Tensor
    method: str
    floor: float
    floor_per_cell: Tensor
    lipschitz_target: float
    lipschitz_model: float
    target_is_estimate: bool
    consistent: bool
    certified: bool
    label: str
    note: str
    grid: tuple[Tensor, ...] = field(repr=False)
    subdivisions: int

    def bound_at(self, points: Tensor) -> Tensor:
        """The bound of the cell containing each point, ``(n, dim)`` -> ``(n,)`` float64.

        Raises
        ------
        ValueError
            If a point lies outside the grid's box or is not finite.
        """
        points = _check_points(points, self.grid, "points")
        index, _ = locate(self.grid, points)
        return self.per_cell[tuple(index.T)]

    def violations(self, points: Tensor, errors: Tensor) -> int:
        """How many observed errors ``|f - g|`` (``(n,)``) exceed the bound of their cell."""
        errors = torch.as_tensor(errors, dtype=torch.float64).reshape(-1)
        if errors.numel() != points.shape[0]:
            raise ValueError(
                f"errors must hold one value per point ({points.shape[0]}), got {errors.numel()}"
            )
        return int((errors > self.bound_at(points)).sum())


def _check_points(points: Tensor, grid: tuple[Tensor, ...], name: str) -> Tensor:
    points = torch.as_tensor(points).detach().to(dtype=torch.float64, device="cpu")
    if points.ndim != 2 or points.shape[1] != len(grid):
        raise ValueError(f"{name} must have shape (n, {len(grid)}), got {tuple(points.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise ValueError(f"{name} holds NaN or inf values")
    lo = torch.stack([a[0] for a in grid])
    hi = torch.stack([a[-1] for a in grid])
    outside = ((points < lo) | (points > hi)).any(dim=1)
    if bool(outside.any()):
        raise ValueError(
            f"{name}: {int(outside.sum())} points lie outside the domain [{lo.tolist()}, "
            f"{hi.tolist()}]"
        )
    return points


def estimate_target_lipschitz(values: Tensor, grid: Sequence[Tensor]) -> TargetLipschitzEstimate:
    """ESTIMATE ``L_f`` from values of ``f`` on a fine grid (e.g. a reference solution).

    Largest neighbour slopes: per cell, the Euclidean norm of the per-axis maximal slopes between
    neighbouring nodes (the constant of the multilinear interpolant, see
    :func:`liponet.certify.interpolation.multilinear_lipschitz`), maximized over cells. It is an
    estimate, not a bound: slopes between samples can miss steeper variation between them.

    Parameters
    ----------
    values
        ``(*grid_shape)`` or ``(*grid_shape, channels)``.
    grid
        One 1-D tensor of node coordinates per axis.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 101)
    >>> est = estimate_target_lipschitz(torch.sin(3 * x), [x])
    >>> round(est.value, 3)
    3.0
    """
    axes = check_grid(grid)
    vals = check_values(values, axes)
    value = float(multilinear_lipschitz(axes, vals).max())
    shape = "x".join(str(a.numel()) for a in axes)
    return TargetLipschitzEstimate(value, f"ESTIMATE: largest neighbour slopes on a {shape} grid")


def _check_constant(value: float, name: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


def _model_domain_check(model: object, grid: tuple[Tensor, ...]) -> None:
    lo = getattr(model, "domain_lo", None)
    hi = getattr(model, "domain_hi", None)
    if lo is None or hi is None:
        return
    lo = torch.as_tensor(lo, dtype=torch.float64).cpu()
    hi = torch.as_tensor(hi, dtype=torch.float64).cpu()
    box_lo = torch.stack([a[0] for a in grid])
    box_hi = torch.stack([a[-1] for a in grid])
    tol = 1e-6 * (hi - lo).abs().clamp_min(1.0)
    if bool((box_lo < lo - tol).any() or (box_hi > hi + tol).any()):
        raise ValueError(
            f"grid: its box [{box_lo.tolist()}, {box_hi.tolist()}] is not inside the model's "
            f"declared domain [{lo.tolist()}, {hi.tolist()}], where its certificate holds"
        )


class _Model:
    """Evaluate ``g`` in its own dtype/device, return float64 on the CPU."""

    def __init__(self, model: Callable[[Tensor], Tensor]) -> None:
        self.model = model
        self.dtype = torch.float64
        self.device = torch.device("cpu")
        if isinstance(model, nn.Module):
            param = next(iter(model.parameters()), None)
            if param is not None:
                self.dtype, self.device = param.dtype, param.device

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        out = self.model(x.to(dtype=self.dtype, device=self.device))
        out = torch.as_tensor(out).to(dtype=torch.float64, device="cpu").reshape(x.shape[0], -1)
        if not bool(torch.isfinite(out).all()):
            raise ValueError("model returned NaN or inf values")
        return out


def _subgrid(dim: int, m: int) -> Tensor:
    """Local coordinates ``((m + 1)**dim, dim)`` of the sub-grid of the unit cell."""
    t = torch.linspace(0.0, 1.0, m + 1, dtype=torch.float64)
    return torch.cartesian_prod(*([t] * dim)).reshape(-1, dim)


def _cells(grid: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
    """Cells: lower corners ``(n, d)``, widths ``(n, d)``, corner node ids ``(n, P)``."""
    dim = len(grid)
    shape = [int(a.numel()) for a in grid]
    ranges = [torch.arange(n - 1) for n in shape]
    index = torch.cartesian_prod(*ranges).reshape(-1, dim)  # (n_cells, d)
    lower = torch.stack([grid[k][index[:, k]] for k in range(dim)], dim=1)
    width = torch.stack([grid[k][index[:, k] + 1] - grid[k][index[:, k]] for k in range(dim)], 1)
    strides = torch.tensor([math.prod(shape[k + 1 :]) for k in range(dim)], dtype=torch.int64)
    offsets = corner_offsets(dim)  # (P, d)
    corner_ids = ((index[:, None, :] + offsets[None]) * strides).sum(-1)  # (n_cells, P)
    return lower, width, corner_ids


#: Valid values of ``method``.
BOUND_METHODS: tuple[str, ...] = ("global", "cell", "envelope")


def max_error_bound(
    model: Callable[[Tensor], Tensor],
    grid: Sequence[Tensor],
    values: Tensor,
    lipschitz_target: float | TargetLipschitzEstimate,
    lipschitz_model: float | LipschitzConstant | None = None,
    method: str = "envelope",
    subdivisions: int = 8,
    domain: tuple[Sequence[float], Sequence[float]] | None = None,
    chunk_entries: int = DEFAULT_CHUNK_ENTRIES,
) -> MaxErrorBound:
    """Bound ``sup |f - g|`` over the grid's box from the values of ``f`` at the grid's nodes.

    See the module docstring for the three methods, the sub-grid safety term and the floor.

    Parameters
    ----------
    model
        ``g``: maps ``(n, dim)`` points to ``(n, channels)`` (or ``(n,)`` for one channel). An
        ``nn.Module`` must be in eval mode (certificates hold for the eval-mode function).
    grid
        One 1-D tensor of strictly increasing node coordinates per axis (the training points are
        the tensor product; the domain is the box they span).
    values
        ``(*grid_shape)`` or ``(*grid_shape, channels)``: ``f`` at the nodes.
    lipschitz_target
        ``L_f`` (Euclidean norms): a float taken as a true bound, or a
        :class:`TargetLipschitzEstimate` (the result is then labelled as resting on an estimate).
    lipschitz_model
        ``L_g``; by default ``model.lipschitz_bound()`` (required for other callables). A
        :class:`~liponet.certify.LipschitzConstant` keeps its label; a bare number is an
        unverified claim and labels the result ``"estimated"`` (``note`` says so).
    method
        ``"global"``, ``"cell"`` or ``"envelope"``.
    subdivisions
        Sub-intervals per axis of each cell's sub-grid (``"envelope"``, and ``"cell"`` beyond 1-D;
        the floor always).
    domain
        Optional declared box ``(lo, hi)``: must be the grid's box (nodes outside it, or a box the
        grid does not cover, are errors).
    chunk_entries
        Memory budget of a chunk of cells (float64 entries of the largest intermediate).

    Returns
    -------
    MaxErrorBound
        Global number, per-cell map, floor and whether the result is certified.

    Raises
    ------
    ValueError
        On NaN/inf or mismatched shapes in ``grid``/``values``, an empty training set, negative
        constants, an unknown method, a model in training mode, nodes outside ``domain``, or a grid
        outside the model's declared domain.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 9)
    >>> g = lambda p: torch.sin(3 * p)
    >>> from liponet.certify import LipschitzConstant
    >>> l_g = LipschitzConstant(3.0, "certified", "euclidean", "euclidean", "|d/dx sin 3x| <= 3")
    >>> res = max_error_bound(g, [x], torch.sin(3 * x), 3.0, lipschitz_model=l_g, method="cell")
    >>> res.certified, round(res.bound, 4)  # (L_f + L_g) h / 2 where g = f at the nodes
    (True, 0.375)
    >>> max_error_bound(g, [x], torch.sin(3 * x), 3.0, lipschitz_model=3.0).label  # bare number
    'estimated'
    """
    if method not in BOUND_METHODS:
        raise ValueError(f"method must be one of {', '.join(BOUND_METHODS)}, got {method!r}")
    if int(subdivisions) != subdivisions or subdivisions < 1:
        raise ValueError(f"subdivisions must be an integer >= 1, got {subdivisions}")
    axes = check_grid(grid)
    vals = check_values(values, axes)
    dim = len(axes)
    if domain is not None:
        _check_domain(domain, axes)
    is_estimate = isinstance(lipschitz_target, TargetLipschitzEstimate)
    l_f = _check_constant(float(lipschitz_target), "lipschitz_target")
    if isinstance(model, nn.Module):
        check_eval_mode(model)
    model_note = ""
    if lipschitz_model is None:
        if not isinstance(model, CertifiedModule):
            raise ValueError(
                "lipschitz_model is required when model has no certified lipschitz_bound()"
            )
        lipschitz_model = model.lipschitz_bound()
    elif isinstance(lipschitz_model, LipschitzConstant):
        if lipschitz_model.label != LABEL_CERTIFIED:
            model_note = f"not certified: L_g is {lipschitz_model.label} ({lipschitz_model.source})"
        lipschitz_model = lipschitz_model.value
    else:
        model_note = (
            "not certified: L_g given as a bare number (pass the certified model, or "
            "LipschitzConstant(value, 'certified', source=...))"
        )
    l_g = _check_constant(lipschitz_model, "lipschitz_model")
    _model_domain_check(model, axes)
    g = _Model(model)

    nodes = torch.cartesian_prod(*axes).reshape(-1, dim)  # (N, d)
    flat_values = vals.reshape(-1, vals.shape[-1])  # (N, c)
    g_nodes = g(nodes)
    if g_nodes.shape != flat_values.shape:
        raise ValueError(
            f"model returned shape {tuple(g_nodes.shape)} at the nodes, values have "
            f"{tuple(flat_values.shape)}"
        )
    node_err = torch.linalg.vector_norm(g_nodes - flat_values, dim=-1)  # (N,)
    lower, width, corner_ids = _cells(axes)
    lip = l_f + l_g
    local = _subgrid(dim, subdivisions)  # (S, d)
    delta = torch.linalg.vector_norm(width, dim=1) / (2 * subdivisions)  # (n_cells,)
    n_cells, n_corners = corner_ids.shape
    per_chunk = max(1, chunk_entries // (local.shape[0] * n_corners * flat_values.shape[1]))

    bounds, floors, consistent = [], [], True
    for start in range(0, n_cells, per_chunk):
        sl = slice(start, start + per_chunk)
        ids, lo_c, h = corner_ids[sl], lower[sl], width[sl]
        corners = lo_c[:, None, :] + corner_offsets(dim)[None] * h[:, None, :]  # (n, P, d)
        points = lo_c[:, None, :] + local[None] * h[:, None, :]  # (n, S, d)
        dist = torch.cdist(points, corners)  # (n, S, P)
        f_corner = flat_values[ids]  # (n, P, c)
        up = (f_corner[:, None] + l_f * dist[..., None]).amin(dim=2)  # (n, S, c)
        lo = (f_corner[:, None] - l_f * dist[..., None]).amax(dim=2)  # (n, S, c)
        floors.append(torch.linalg.vector_norm((up - lo).clamp_min(0) / 2, dim=-1).amax(dim=1))
        pair = torch.cdist(corners, corners)  # (n, P, P)
        jump = torch.cdist(f_corner, f_corner)  # (n, P, P)
        consistent &= bool((jump <= l_f * pair * (1 + 1e-12) + 1e-12).all())
        if method == "envelope":
            g_pts = g(points.reshape(-1, dim)).reshape(*points.shape[:2], -1)  # (n, S, c)
            gap = torch.maximum(up - g_pts, g_pts - lo).clamp_min(0)
            bounds.append(torch.linalg.vector_norm(gap, dim=-1).amax(dim=1) + lip * delta[sl])
        elif method == "cell":
            e_corner = node_err[ids]  # (n, P)
            if dim == 1:
                a, b, w = e_corner[:, 0], e_corner[:, 1], h[:, 0]
                exact = torch.minimum((a + b + lip * w) / 2, torch.minimum(a, b) + lip * w)
                bounds.append(exact)
            else:
                cone = (e_corner[:, None, :] + lip * dist).amin(dim=2)  # (n, S)
                bounds.append(cone.amax(dim=1) + lip * delta[sl])
    cell_shape = tuple(int(a.numel()) - 1 for a in axes)
    floor_map = torch.cat(floors).reshape(cell_shape)
    if method == "global":
        fill = float(torch.linalg.vector_norm(torch.stack([torch.diff(a).max() for a in axes]) / 2))
        per_cell = torch.full(cell_shape, float(node_err.max()) + lip * fill, dtype=torch.float64)
    else:
        per_cell = torch.cat(bounds).reshape(cell_shape)
    note = ""
    if not consistent:
        label = LABEL_VOID
    elif is_estimate or model_note:
        label = LABEL_ESTIMATE
        note = NOTES[label] if is_estimate else model_note
    else:
        label = LABEL_CERTIFIED
    return MaxErrorBound(
        bound=float(per_cell.max()),
        per_cell=per_cell,
        method=method,
        floor=float(floor_map.max()),
        floor_per_cell=floor_map,
        lipschitz_target=l_f,
        lipschitz_model=l_g,
        target_is_estimate=is_estimate,
        consistent=consistent,
        certified=label == LABEL_CERTIFIED,
        label=label,
        note=note or NOTES[label],
        grid=axes,
        subdivisions=int(subdivisions),
    )


def _check_domain(
    domain: tuple[Sequence[float], Sequence[float]], axes: tuple[Tensor, ...]
) -> None:
    lo = torch.as_tensor(domain[0], dtype=torch.float64).reshape(-1)
    hi = torch.as_tensor(domain[1], dtype=torch.float64).reshape(-1)
    dim = len(axes)
    if lo.numel() != dim or hi.numel() != dim:
        raise ValueError(f"domain must be (lo, hi) with {dim} coordinates each")
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()) or bool((lo > hi).any()):
        raise ValueError(f"domain must satisfy lo <= hi with finite values, got {domain}")
    for k, axis in enumerate(axes):
        if bool(axis[0] < lo[k]) or bool(axis[-1] > hi[k]):
            raise ValueError(
                f"grid[{k}]: training points lie outside the declared domain "
                f"[{float(lo[k])}, {float(hi[k])}] (nodes span [{float(axis[0])}, "
                f"{float(axis[-1])}])"
            )
        if bool(axis[0] > lo[k]) or bool(axis[-1] < hi[k]):
            raise ValueError(
                f"grid[{k}] spans [{float(axis[0])}, {float(axis[-1])}] and does not cover the "
                f"declared domain [{float(lo[k])}, {float(hi[k])}]: no bound outside the grid"
            )
