"""Multi-pair operator certificates: the true answer lies in every calibration pair's ball.

Each calibration pair ``(a_i, G(a_i))`` and each element ``g`` of a symmetry group of the true
operator ``G`` (``G(g a_i) = g G(a_i)``) say where ``G(a)`` can be for a query ``a``:

    G(a) in B_i = B(c_i, r_i),   c_i = g G(a_i),   r_i = L_G ||a - g a_i||.

The single-pair certificate uses one ball and the triangle inequality. Several balls pin
``G(a)`` down much more: for any weights ``w_i >= 0`` with ``W = sum_i w_i > 0`` and their
weighted centre ``m = sum_i w_i c_i / W``, every ``y`` in all balls satisfies

    W ||y - m||^2 + sum_i w_i ||c_i - m||^2 = sum_i w_i ||y - c_i||^2 <= sum_i w_i r_i^2

(the parallel-axis identity of a Hilbert norm; liponet's function norm is one), so the
intersection lies in the ball ``B(m, R_w)``, ``R_w^2 = (sum_i w_i r_i^2 - sum_i w_i ||c_i -
m||^2) / W``, and for the surrogate's prediction ``p = Ĝ(a)``

    ||G(a) - Ĝ(a)|| <= ||m - p|| + R_w        (the **multi-pair bound**).

It holds for *any* weights: an optimizer (here Adam on a softmax, a few hundred steps) only
chooses them, and the bound is evaluated for the chosen weights in float64 with every rounding
accounted for (:func:`centroid_bound`). A one-hot ``w`` gives the single-pair form ``||c_i -
p|| + r_i``, itself never larger than the classical ``e_i + (L_G + L_Ĝ) ||a - g a_i||`` (triangle
inequality through ``Ĝ(g a_i)``). If ``sum_i w_i r_i^2 < sum_i w_i ||c_i - m||^2`` for some
weights, the balls do not meet: a premise is false (``L_G``, the symmetry, or the pairs), and
:class:`EmptyIntersectionError` says so instead of printing a number.

**What it rests on.** ``L_G`` (certified constant in the function norm), the true operator's
symmetry (a theorem of :func:`~liponet.certify.operator_symmetry`), and calibration targets that
are ``G`` at their inputs (exact, or within the declared storage noise). **Not** on the
surrogate: it is evaluated at the query, so neither its Lipschitz constant nor its equivariance
enters. The bound therefore applies as it is to exported modules, to LipFNOs with coordinate
channels or padding, to LipDeepONet (through :func:`~liponet.certify.field_operator`) and to
2-D fields; what each of those still needs is only the operator's symmetry.

**Cost.** The search keeps, per query, the ``neighbours`` nearest moved calibration inputs over
the whole orbit (:class:`NeighbourSearch`, streamed, exact: group-invariant lower bounds prune,
an FFT correlation finds each pair's best shift), and their moved targets: memory ``n_query x
neighbours x 2`` fields, flat in the calibration size; no model evaluation on calibration
inputs at all.

For a linear isometry (the demo's advection, ``L_G = 1``) and weights summing to one, ``R_w =
||a - sum_i w_i g a_i||`` exactly (expand both sums around the weighted means): the bound is as
good as the best convex combination of moved calibration inputs near the query, which is why a
few tens of neighbours tighten it several-fold there. For a contraction (heat) the radii
overstate how far ``G`` moves the answer and the gain is smaller.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from .calibration import _check_calibration_chunk
from .discrete import float32_storage_noise
from .operator import (
    ConstantLike,
    ErrorBound,
    as_constant,
    check_constant_premises,
    weakest_label,
)
from .premises import PremiseError, check_inputs
from .symmetry import (
    SymmetryGroup,
    _direct_distance,
    _pair_orbit_distances,
    invariant_features,
    operator_symmetry,
)

__all__ = [
    "EmptyIntersectionError",
    "MultiPairErrorBound",
    "NeighbourSearch",
    "apply_elements",
    "centroid_bound",
    "multi_pair_error_bound",
    "single_bounds",
]

#: Unit roundoff of float64, and the smallest normal float64 (an absolute margin).
_EPS64 = 2.0**-53
_TINY = math.sqrt(torch.finfo(torch.float64).tiny)

#: Optimizer steps and learning rate of the weight search (any weights give a valid bound).
WEIGHT_STEPS = 300
WEIGHT_LR = 0.1


class EmptyIntersectionError(PremiseError):
    """A query's calibration balls do not meet: ``L_G``, the symmetry or a pair is wrong."""


def centroid_bound(
    centres: Tensor, radii: Tensor, point: Tensor, weights: Tensor
) -> tuple[Tensor, Tensor]:
    """Rounded-up ``||m - p|| + R_w`` for given weights (see the module docstring).

    Parameters
    ----------
    centres
        ``(n_query, k, channels, *spatial)`` the balls' centres ``c_i``.
    radii
        ``(n_query, k)`` their radii ``r_i`` (already rounded up by the caller).
    point
        ``(n_query, channels, *spatial)`` the prediction ``p``.
    weights
        ``(n_query, k)`` non-negative, not all zero per query (need not sum to one).

    Returns
    -------
    tuple of Tensor
        ``bound (n_query,)``, an upper bound of ``max ||y - p||`` over ``y`` in every ball, and
        ``slack (n_query,)``: the rounded-up ``W R_w^2``; negative (beyond rounding) means the
        balls provably do not meet.

    Notes
    -----
    Rounding: with ``γ = 4 (f + k + 16) u`` (``f`` values per field, ``u = 2^-53``) the computed
    centre ``m̃`` is within ``δ = γ sum_i w_i ||c_i|| / W`` of the exact ``m``; since
    ``sum_i w_i ||c_i - m||^2 = sum_i w_i ||c_i - m̃||^2 - W ||m̃ - m||^2``, the exact radius obeys
    ``R_w^2 <= S / W + δ^2`` with ``S = sum_i w_i r_i^2 - sum_i w_i ||c_i - m̃||^2``, and
    ``||y - p|| <= ||m̃ - p|| + sqrt(S / W) + 2 δ``. Each sum is rounded outward by ``γ``; the
    centres relative to ``p`` are float differences, so each radius first grows by ``2u`` times
    its centre's norm (the ball around the rounded centre holds the exact one).

    Examples
    --------
    >>> import torch
    >>> c = torch.tensor([[[[1.0]], [[-1.0]]]], dtype=torch.float64)   # two balls on a line
    >>> r = torch.tensor([[1.5, 1.5]], dtype=torch.float64)
    >>> b, s = centroid_bound(c, r, torch.zeros(1, 1, 1, dtype=torch.float64),
    ...                       torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    >>> round(float(b[0]), 6), round(float(s[0]), 6)      # sqrt(1.5^2 - 1) = 1.118...
    (1.118034, 1.25)
    """
    c, norms, radii_up, gamma = _relative(centres, radii, point)
    w = weights.to(torch.float64).clamp_min(0)
    big_w = w.sum(1)
    if bool((big_w <= 0).any()):
        raise ValueError("every query needs a positive weight")
    m = (w[..., None] * c.reshape(*c.shape[:2], -1)).sum(1) / big_w[:, None]  # (q, f)
    m = m.reshape(c.shape[0], *c.shape[2:])
    spread = _fnorm_lead(c - m[:, None], 2).pow(2)  # (q, k)
    delta = gamma * (w * norms).sum(1) / big_w
    slack = (w * radii_up.pow(2)).sum(1) * (1 + gamma) - (w * spread).sum(1) * (1 - gamma)
    rad = (slack.clamp_min(0) / big_w).sqrt() * (1 + gamma)
    bound = (_fnorm_lead(m, 1) * (1 + gamma) + rad + 2 * delta) * (1 + gamma)
    return bound + _TINY, slack


def single_bounds(centres: Tensor, radii: Tensor, point: Tensor) -> Tensor:
    """``(n_query, k)`` rounded-up ``||c_i - p|| + r_i``: :func:`centroid_bound` at one-hot weights.

    Examples
    --------
    >>> import torch
    >>> c = torch.tensor([[[[1.0]], [[-1.0]]]], dtype=torch.float64)
    >>> b = single_bounds(c, torch.tensor([[1.5, 0.5]], dtype=torch.float64),
    ...                   torch.zeros(1, 1, 1, dtype=torch.float64))
    >>> [round(v, 9) for v in b[0].tolist()], bool((b >= torch.tensor([[2.5, 1.5]])).all())
    ([2.5, 1.5], True)
    """
    _, norms, radii_up, gamma = _relative(centres, radii, point)
    rad = radii_up * math.sqrt(1 + gamma) * (1 + gamma)
    return (norms * (1 + gamma) + rad + 2 * gamma * norms) * (1 + gamma) + _TINY


def _relative(
    centres: Tensor, radii: Tensor, point: Tensor
) -> tuple[Tensor, Tensor, Tensor, float]:
    """Centres relative to the point, their norms, radii grown by the subtraction's rounding.

    ``c̃_i = fl(c_i - p)`` is within ``u ||c_i - p|| <= 2u ||c̃_i||`` of the exact difference, so
    the ball of radius ``r_i + 2u ||c̃_i||`` around ``c̃_i`` holds the exact one.
    """
    c = centres.to(torch.float64) - point.to(torch.float64)[:, None]
    norms = _fnorm_lead(c, 2)
    radii_up = radii.to(torch.float64) + 2 * _EPS64 * norms
    gamma = 4 * (c[0, 0].numel() + c.shape[1] + 16) * _EPS64
    return c, norms, radii_up, gamma


def _fnorm_lead(u: Tensor, lead: int) -> Tensor:
    """Function norm of ``(*lead dims, channels, *spatial)`` fields -> ``lead`` dims."""
    n_points = math.prod(u.shape[lead + 1 :])
    return u.reshape(*u.shape[:lead], -1).pow(2).sum(-1).div(n_points).sqrt()


def _optimal_weights(centres: Tensor, radii: Tensor, point: Tensor, steps: int) -> Tensor:
    """Weights that (approximately) minimize ``||m - p|| + R_w``; any result is usable."""
    c = (centres.to(torch.float64) - point.to(torch.float64)[:, None]).reshape(
        *centres.shape[:2], -1
    )
    n_points = math.prod(centres.shape[3:])
    gram = torch.einsum("qif,qjf->qij", c, c) / n_points  # (q,k,f),(q,k,f)->(q,k,k)
    sq = torch.diagonal(gram, dim1=1, dim2=2)
    r2 = radii.to(torch.float64).pow(2)
    logits = torch.zeros(r2.shape, dtype=torch.float64, requires_grad=True)
    # start near the nearest ball: its single-pair bound is the one to beat
    with torch.no_grad():
        logits -= (sq.sqrt() + radii) / (sq.sqrt() + radii).min(1, keepdim=True).values.clamp_min(
            1e-300
        )
    opt = torch.optim.Adam([logits], lr=WEIGHT_LR)
    for _ in range(steps):
        w = torch.softmax(logits, 1)
        mm = (w * torch.bmm(gram, w[..., None])[..., 0]).sum(1)  # w^T K w = ||m||^2
        rad = (w * (r2 - sq)).sum(1) + mm
        value = mm.clamp_min(1e-300).sqrt() + rad.clamp_min(1e-300).sqrt()
        opt.zero_grad()
        value.sum().backward()
        opt.step()
    return torch.softmax(logits.detach(), 1)


def apply_elements(u: Tensor, group: SymmetryGroup, element: Tensor) -> Tensor:
    """:func:`~liponet.certify.symmetry.apply_element` for a batch, vectorized (same codes).

    One gather per shift axis instead of one ``torch.roll`` per field.

    Examples
    --------
    >>> import torch
    >>> u = torch.arange(8.0).reshape(2, 1, 4)
    >>> apply_elements(u, SymmetryGroup((0,)), torch.tensor([1, 3])).tolist()
    [[[3.0, 0.0, 1.0, 2.0]], [[5.0, 6.0, 7.0, 4.0]]]
    """
    spatial = tuple(u.shape[2:])
    group.check(spatial)
    codes = element.to(device=u.device, dtype=torch.long).reshape(-1)
    if codes.numel() != u.shape[0]:
        raise ValueError(f"need one element per field, got {codes.numel()} for {u.shape[0]}")
    if not group.shift_axes or u.shape[0] == 0:
        return u.clone()
    sizes = group.shift_sizes(spatial)
    n_shifts = math.prod(sizes)
    if bool(((codes < 0) | (codes >= group.order(spatial))).any()):
        raise ValueError(f"group elements out of range [0, {group.order(spatial)})")
    reflect, flat = codes // n_shifts, codes % n_shifts
    dims = tuple(2 + a for a in group.shift_axes)
    v = u
    if group.reflection:
        mirrored = torch.roll(torch.flip(u, dims), (1,) * len(dims), dims)  # u_j -> u_{-j mod n}
        mask = (reflect == 1).reshape(-1, *([1] * (u.ndim - 1)))
        v = torch.where(mask, mirrored, u)
    shifts = []
    for size in reversed(sizes):
        shifts.append(flat % size)
        flat = flat // size
    for dim, size, s in zip(dims, sizes, reversed(shifts), strict=True):
        idx = (torch.arange(size, device=u.device)[None] - s[:, None]) % size  # (b, n)
        shape = [u.shape[0]] + [1] * (u.ndim - 1)
        shape[dim] = size
        v = v.gather(dim, idx.reshape(shape).expand(v.shape))  # (τ_s u)_j = u_{j - s}
    return v


class NeighbourSearch:
    """The ``k`` nearest moved calibration inputs ``g a_i`` of each query, fed chunk by chunk.

    Exact: a chunk's pairs whose group-invariant lower bound (:func:`~liponet.certify.symmetry.
    invariant_features`) is not below a query's current ``k``-th distance are skipped; the others
    are searched over the orbit (one FFT correlation per pair) in increasing order of that lower
    bound until none can enter. Kept per query: distances, moved inputs and moved targets.

    Parameters
    ----------
    query_inputs
        ``(n_query, channels, *spatial)``.
    group
        The symmetry group (the trivial ``SymmetryGroup(())``: plain nearest neighbours).
    k
        Neighbours kept per query.

    Examples
    --------
    >>> import torch
    >>> q = torch.randn(2, 1, 8, dtype=torch.float64)
    >>> s = NeighbourSearch(q, SymmetryGroup((0,)), k=3)
    >>> s.update(torch.roll(q, 2, -1), torch.roll(q, 5, -1), 0)   # each query's own shift
    >>> bool(s.distance[:, 0].max() < 1e-6)  # found at distance 0, up to the estimate's error
    True

    The distances rank candidates only: from an FFT correlation, ``||q||^2 + ||c||^2 - 2 max
    corr``, they are accurate to about ``sqrt(eps) ||q||`` near 0 (``~1e-8`` here, not 0).
    The bounds are evaluated afresh from the kept moved inputs, with every rounding covered.
    """

    def __init__(self, query_inputs: Tensor, group: SymmetryGroup, k: int = 32) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.query = query_inputs.to(torch.float64)
        group.check(tuple(self.query.shape[2:]))
        self.group, self.k = group, k
        self.features = invariant_features(self.query, group)
        n = self.query.shape[0]
        self.distance = torch.full((n, 0), math.inf, dtype=torch.float64)
        self.inputs = self.query.new_zeros((n, 0, *self.query.shape[1:]))
        self.targets: Tensor | None = None
        self.index = torch.zeros((n, 0), dtype=torch.long)
        self.element = torch.zeros((n, 0), dtype=torch.long)
        self.seen = 0
        self.searched_pairs = 0

    def kth(self) -> Tensor:
        """``(n_query,)`` the current ``k``-th smallest distance (``inf`` until ``k`` are kept)."""
        if self.distance.shape[1] < self.k:
            return torch.full((self.query.shape[0],), math.inf, dtype=torch.float64)
        return self.distance[:, -1]

    def update(self, calib_inputs: Tensor, calib_targets: Tensor, offset: int) -> None:
        """Search one chunk (``offset``: global index of its first pair)."""
        x = calib_inputs.to(torch.float64)
        y = calib_targets.to(torch.float64)
        self.seen += x.shape[0]
        if x.shape[0] == 0:
            return
        if self.targets is None:
            self.targets = self.query.new_zeros((self.query.shape[0], 0, *y.shape[1:]))
        lb = torch.cdist(self.features, invariant_features(x, self.group))  # (q, n)
        rounds = max(2 * self.k, 16)
        while True:
            open_ = lb < self.kth()[:, None]
            if not bool(open_.any()):
                break
            masked = torch.where(open_, lb, math.inf)
            vals, cols = masked.topk(min(rounds, x.shape[0]), dim=1, largest=False)
            rows, slot = torch.nonzero(torch.isfinite(vals), as_tuple=True)
            pick = cols[rows, slot]
            lb[rows, pick] = math.inf
            self.searched_pairs += int(pick.numel())
            d, el = _pair_orbit_distances(self.query[rows], x[pick], self.group)
            self._merge(rows, pick, d, el, x, y, offset)

    def _merge(
        self, rows: Tensor, pick: Tensor, d: Tensor, el: Tensor, x: Tensor, y: Tensor, offset: int
    ) -> None:
        """Merge searched (query, pair) candidates into each query's ``k`` nearest."""
        assert self.targets is not None
        n = self.query.shape[0]
        counts = torch.bincount(rows, minlength=n)
        width = int(counts.max())
        order = torch.argsort(rows, stable=True)
        rows, pick, d, el = rows[order], pick[order], d[order], el[order]
        slot = torch.arange(rows.numel()) - (torch.cumsum(counts, 0) - counts)[rows]
        # the candidates as a padded (n, width) block, padding at distance inf
        nd = torch.full((n, width), math.inf, dtype=torch.float64)
        nidx = torch.zeros((n, width), dtype=torch.long)
        nel = torch.zeros((n, width), dtype=torch.long)
        nin = self.inputs.new_zeros((n, width, *x.shape[1:]))
        nout = self.targets.new_zeros((n, width, *y.shape[1:]))
        nd[rows, slot], nidx[rows, slot], nel[rows, slot] = d, pick + offset, el
        nin[rows, slot] = apply_elements(x[pick], self.group, el)
        nout[rows, slot] = apply_elements(y[pick], self.group, el)
        dist = torch.cat([self.distance, nd], 1)
        keep = dist.topk(min(self.k, dist.shape[1]), dim=1, largest=False).indices  # sorted
        keep = keep[:, : int(torch.isfinite(dist.gather(1, keep)).sum(1).min())]
        self.distance = dist.gather(1, keep)
        self.index = torch.cat([self.index, nidx], 1).gather(1, keep)
        self.element = torch.cat([self.element, nel], 1).gather(1, keep)
        sel_in = keep.reshape(*keep.shape, *([1] * (x.ndim - 1))).expand(-1, -1, *x.shape[1:])
        sel_out = keep.reshape(*keep.shape, *([1] * (y.ndim - 1))).expand(-1, -1, *y.shape[1:])
        self.inputs = torch.cat([self.inputs, nin], 1).gather(1, sel_in)
        self.targets = torch.cat([self.targets, nout], 1).gather(1, sel_out)


@dataclass
class MultiPairErrorBound(ErrorBound):
    """An :class:`ErrorBound` from the intersection of every neighbour's ball.

    Attributes
    ----------
    single
        ``(n_query,)`` the best single-pair bound ``min_i ||c_i - p|| + r_i`` over the same
        neighbours (the multi-pair bound is never above it).
    weights
        ``(n_query, neighbours)`` the weights used (``index`` holds the pairs' global indices,
        ``distance`` their orbit distances, both ``(n_query, neighbours)``).
    n_calib, searched_pairs
        Calibration pairs seen; (query, pair) orbit searches run.
    group
        The symmetry group.

    Examples
    --------
    >>> import torch
    >>> b = MultiPairErrorBound(torch.tensor([0.1]), "certified", "multi-pair", "function",
    ...                         single=torch.tensor([0.4]))
    >>> float(b.bound[0] / b.single[0])
    0.25
    """

    single: Tensor | None = None
    weights: Tensor | None = None
    n_calib: int = 0
    searched_pairs: int = 0
    group: SymmetryGroup | None = None


def multi_pair_error_bound(
    query_inputs: Tensor,
    query_preds: Tensor,
    pairs: Iterable[tuple[Tensor, Tensor]],
    *,
    lipschitz_true: ConstantLike,
    group: SymmetryGroup | None = None,
    operator: str | None = None,
    operator_params: dict[str, float] | None = None,
    neighbours: int = 32,
    data_discretization: str | None = None,
    float32_storage: bool = False,
    weight_steps: int = WEIGHT_STEPS,
) -> MultiPairErrorBound:
    """The multi-pair certificate ``||G(a) - Ĝ(a)|| <= ||m_w - Ĝ(a)|| + R_w`` (module docstring).

    Parameters
    ----------
    query_inputs, query_preds
        ``(n_query, channels, *spatial)`` the queries and the surrogate's predictions there
        (any model: evaluated by the caller; this function never sees it).
    pairs
        Iterable of ``(inputs, targets)`` chunks with ``targets = G(inputs)``, e.g.
        :func:`~liponet.certify.generated_pairs`, :func:`~liponet.certify.file_pairs` (then
        ``float32_storage=True``), or ``[(calib_inputs, calib_targets)]``.
    lipschitz_true
        ``L_G`` in the function norm (its premises are checked on queries and every chunk).
    group, operator, operator_params
        The symmetry group of ``G`` (``None``: the trivial group) and the true operator's name in
        the symmetry registry: its theorem makes the label ``"certified"``; ``operator=None``
        with a non-trivial group labels the bound ``"estimated"``; a group the theorem refuses
        raises :class:`~liponet.certify.SymmetryPremiseError`.
    neighbours
        Balls per query: the ``neighbours`` nearest moved calibration inputs over the orbit,
        and for a non-trivial group also the ``neighbours`` nearest unmoved ones (on the demo's
        data these surround the query better than the best-aligned shifts alone).
    data_discretization
        The data's discretization, matched against ``L_G``'s.
    float32_storage
        The pairs and the queries' targets are float32-stored samples of an exactly proved
        discrete map (:func:`~liponet.certify.float32_storage_noise`): every radius and the bound
        grow by ``ρ = 2^-24 M (1 + L_G)``, ``M`` the largest magnitude seen.
    weight_steps
        Optimizer steps of the weights (0: the best single ball only).

    Returns
    -------
    MultiPairErrorBound
        ``name`` ``"multi-pair"`` or ``"multi-pair shift-reduced"``; label the weaker of ``L_G``'s
        and the symmetry's.

    Raises
    ------
    EmptyIntersectionError
        When some query's balls provably do not meet (a premise is false).

    Examples
    --------
    >>> import torch
    >>> from liponet.certify import generated_pairs, grid_lipschitz
    >>> x, y = next(generated_pairs("advection", 3, nx=16, nt=2, seed=0, t_final=1.25))
    >>> shift = grid_lipschitz("advection", 16, shift=0.125)  # 2 whole cells: a permutation
    >>> b = multi_pair_error_bound(x, y + 0.01, generated_pairs("advection", 300, nx=16, nt=2,
    ...     t_final=1.25, batch_size=100), lipschitz_true=shift, group=SymmetryGroup((0,)),
    ...     operator="advection", neighbours=8)
    >>> b.label, b.name, bool((b.bound >= 0.01).all()), bool((b.bound <= b.single).all())
    ('certified', 'multi-pair shift-reduced', True, True)
    """
    group = group if group is not None else SymmetryGroup(())
    if query_preds.shape[0] != query_inputs.shape[0]:
        raise ValueError(
            f"query_preds has {query_preds.shape[0]} rows for {query_inputs.shape[0]} queries"
        )
    label_sym, sym_source = operator_symmetry(operator, group, **(operator_params or {}))
    l_true = as_constant(lipschitz_true)
    constants, lines, notes = check_constant_premises(
        {"true": l_true}, {"query": query_inputs}, data_discretization
    )
    l_true = constants["true"]
    if l_true.input_norm != "function" or l_true.output_norm != "function":
        raise ValueError(
            f"multi-pair bounds are in the function norm; got L_G from {l_true.input_norm!r} to "
            f"{l_true.output_norm!r}"
        )
    searches = [NeighbourSearch(query_inputs, group, neighbours)]
    if group.shift_axes:  # the unmoved neighbours too: they often surround the query better
        searches.append(NeighbourSearch(query_inputs, SymmetryGroup(()), neighbours))
    seen = 0
    largest = float(query_inputs.abs().max()) if query_inputs.numel() else 0.0
    for inputs, targets in pairs:
        _check_calibration_chunk(inputs, targets, query_inputs)
        if targets.shape[1:] != query_preds.shape[1:]:
            raise ValueError(
                f"calibration targets {tuple(targets.shape[1:])} do not match the predictions "
                f"{tuple(query_preds.shape[1:])}"
            )
        check_inputs(l_true.premises, inputs, "calibration input", "true constant")
        largest = max(largest, float(inputs.abs().max()), float(targets.abs().max()))
        for search in searches:
            search.update(inputs, targets, seen)
        seen += inputs.shape[0]
    if seen == 0:
        raise ValueError("the calibration set is empty")
    rho = 0.0
    if float32_storage:
        rho = float32_storage_noise(l_true.value, torch.tensor([largest])) * l_true.value / 2
    # radii recomputed from the moved fields directly, rounded up (the search only chose them)
    inputs_k = torch.cat([s.inputs for s in searches], 1)
    centres = torch.cat([s.targets for s in searches if s.targets is not None], 1)
    q, k = inputs_k.shape[:2]
    field = tuple(inputs_k.shape[2:])
    queries = searches[0].query[:, None].expand(-1, k, *field).reshape(q * k, *field)
    d = _direct_distance(queries, inputs_k.reshape(q * k, *field)).reshape(q, k)
    radii = (l_true.value * d + rho) * (1 + 4 * _EPS64)
    point = query_preds.to(torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    single, best_i = single_bounds(centres, radii, point).min(1)
    weights = eye[best_i]
    bound = single
    if weight_steps > 0 and k > 1:
        w = _optimal_weights(centres, radii, point, weight_steps)
        multi, slack = centroid_bound(centres, radii, point, w)
        if bool((slack < 0).any()):
            bad = torch.nonzero(slack < 0).reshape(-1).tolist()
            raise EmptyIntersectionError(
                f"the calibration balls of queries {bad[:8]} do not intersect: some premise is "
                f"false (L_G = {l_true.value:g}: {l_true.source}; symmetry: {sym_source}; "
                "or calibration targets that are not G at their inputs)"
            )
        better = multi < bound
        bound = torch.where(better, multi, bound)
        weights = torch.where(better[:, None], w, weights)
    label = weakest_label(l_true.label, label_sym)
    name = "multi-pair" if not group.shift_axes else f"multi-pair {_reduced(group)}"
    premises = (
        f"operator symmetry: {sym_source} ({label_sym})",
        *lines,
        f"calibration: {seen} pairs, targets G(inputs)"
        + (f" up to float32 storage (+{rho:.2e} per radius and bound)" if rho else " exactly"),
        "model: evaluated at the query only (its Lipschitz constant and symmetry are not used)",
    )
    return MultiPairErrorBound(
        bound=bound + rho,
        label=label,
        name=name,
        norm="function",
        index=torch.cat([s.index for s in searches], 1),
        distance=d,
        constants={"true": l_true},
        premises=premises,
        notes=notes,
        single=single + rho,
        weights=weights,
        n_calib=seen,
        searched_pairs=sum(s.searched_pairs for s in searches),
        group=group,
    )


def _reduced(group: SymmetryGroup) -> str:
    return "symmetry-reduced" if group.reflection else "shift-reduced"
