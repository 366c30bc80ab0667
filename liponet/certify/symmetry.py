"""Symmetry-reduced operator certificates: every calibration pair certifies through its orbit.

If a grid transformation ``g`` (a cyclic shift along periodic axes, or the point reflection
``x -> -x``) commutes with both the true operator ``G`` and the surrogate ``Ĝ``, it commutes with
the error operator ``E = G - Ĝ``: ``E(g a_i) = g E(a_i)``. Every ``g`` used here permutes grid
values, so it preserves liponet's function norm, and ``(g a_i, g G(a_i))`` is a calibration pair
with the same error ``e_i``. The plain certificate applied to the whole orbit gives

    ||G(a) - Ĝ(a)|| <= min_i min_g [ e_i + (L_G + L_Ĝ) ||a - g a_i|| ],

still a guaranteed bound, with no extra model evaluation. Over the ``n`` cyclic shifts of a grid
the minimum costs one FFT correlation per pair: ``||a - τ_s b||^2 = ||a||^2 + ||b||^2 - 2
<a, τ_s b>`` and ``s -> <a, τ_s b>`` is ``irfft(rfft(a) conj(rfft(b)))``.

**Premises, checked.** The bound needs both commutations *exactly*, so neither is sampled:

* the model: :func:`check_model_symmetry` walks its modules and accepts only parts whose
  equivariance follows from their kind (pointwise layers without coordinate channels, Fourier
  multipliers, channel activations, per-channel scales, mean pooling, no domain padding); a
  reflection additionally needs real multipliers (checked on the weights). Anything else is
  refused with the module's name.
* the true operator: a theorem in :func:`operator_symmetry`'s registry (advection, heat,
  diffusion-reaction on periodic grids, for the discretizations liponet's generators realise);
  without one, a symmetry the caller asserts makes the bound ``"estimated"``.

The FFT search only *chooses* the pair and the group element; the bound reported for the choice
is recomputed from the transformed fields directly (float64, rounded up). Any pair and element
give a valid bound, so a search that misses the true minimum (rounding, approximate indexes:
:mod:`liponet.certify.calibration`) loosens the bound but never invalidates it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..functional import SVD_RELATIVE_MARGIN
from ..layers import CertifiedModule
from ..layers.activation import GELU, Abs, GroupSort, MaxMin, ReLU
from ..layers.base import CertifiedSequential
from ..layers.budget import Budget, BudgetScaled, _PlainScaled
from ..layers.fourier import (
    FourierBlock,
    LipSpectralConv,
    PaddedDomain,
    SpectralMultiplier,
    _PlainPadded,
)
from ..layers.residual import ConvexPotentialBlock, _PlainConvexPotential
from ..layers.scaling import AuxiliaryScale, Multiply, OutputScale, _FrozenScale
from ..layers.shortcut import PlainSpectralShortcut, SpectralShortcut
from ..models.fno import (
    FieldLinear,
    Increment,
    MeanPool,
    _FNOBase,
    _PlainFieldLinear,
    _PlainIncrement,
)
from .operator import (
    ConstantLike,
    ErrorBound,
    LipschitzConstant,
    as_constant,
    calib_errors_from,
    check_constant_premises,
    weakest_label,
)

__all__ = [
    "SymmetricErrorBound",
    "SymmetryGroup",
    "SymmetryPremiseError",
    "apply_element",
    "available_operator_symmetries",
    "check_model_symmetry",
    "cyclic_shifts",
    "invariant_features",
    "operator_symmetry",
    "orbit_distances",
    "register_operator_symmetry",
    "symmetric_error_bound",
]

#: Unit roundoff of float64.
_EPS64 = 2.0**-53

#: Generator discretizations (the ``discretization`` attribute liponet's generators write) whose
#: discrete map is the one a symmetry theorem below is about: the exact solution sampled at cell
#: centres (advection) and the periodic Strang logistic / FTCS scheme (diffusion-reaction, heat
#: for ``rho = 0``). Others (finite volumes with limiters, non-periodic boundaries): no theorem.
DISCRETIZATION_OPERATORS = {
    "exact-samples": "advection",
    "exact-samples-2d": "advection",
    "strang-logistic-ftcs": "diffusion_reaction",
}

#: Elements of the correlation tensor held at once by the orbit search (~32 MB in float64).
_CORR_ELEMENTS = 2**22


class SymmetryPremiseError(ValueError):
    """A symmetry the certificate needs does not hold by construction (model or operator)."""


@dataclass(frozen=True)
class SymmetryGroup:
    """A group of exact grid symmetries: cyclic shifts along axes, optionally the point reflection.

    Parameters
    ----------
    shift_axes
        Spatial axes (0 = the first spatial axis, i.e. dim 2 of a ``(batch, channels,
        *spatial)`` field) along which every cyclic shift by whole cells is in the group. They
        must be periodic directions of the problem.
    reflection
        Whether the point reflection ``u_j -> u_{-j mod n}`` on every axis is in the group (then
        every spatial axis must be a shift axis).

    Examples
    --------
    >>> g = SymmetryGroup((0,))
    >>> g.order((128,)), g.describe()
    (128, 'cyclic shifts along spatial axis 0')
    """

    shift_axes: tuple[int, ...] = (0,)
    reflection: bool = False

    def __post_init__(self) -> None:
        axes = tuple(int(a) for a in self.shift_axes)
        if len(set(axes)) != len(axes) or any(a < 0 for a in axes):
            raise ValueError(f"shift_axes must be distinct spatial axes >= 0, got {axes}")
        object.__setattr__(self, "shift_axes", tuple(sorted(axes)))

    def check(self, spatial: tuple[int, ...]) -> None:
        """Raise ``ValueError`` unless the group acts on fields with this spatial shape."""
        if any(a >= len(spatial) for a in self.shift_axes):
            raise ValueError(
                f"shift axes {self.shift_axes} do not exist on fields with spatial shape {spatial}"
            )
        if self.reflection and len(self.shift_axes) != len(spatial):
            raise ValueError(
                "the point reflection needs shifts along every spatial axis (shift_axes="
                f"{tuple(range(len(spatial)))}), got {self.shift_axes}"
            )

    def shift_sizes(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """Number of shifts along each shift axis."""
        return tuple(spatial[a] for a in self.shift_axes)

    def order(self, spatial: tuple[int, ...]) -> int:
        """Number of group elements on fields with this spatial shape."""
        self.check(spatial)
        return math.prod(self.shift_sizes(spatial)) * (2 if self.reflection else 1)

    def describe(self) -> str:
        """One line for reports."""
        if not self.shift_axes:
            return "trivial group"
        what = f"cyclic shifts along spatial axis {', '.join(map(str, self.shift_axes))}"
        return what + (" and the point reflection" if self.reflection else "")


def cyclic_shifts(spatial_dims: int, reflection: bool = False) -> SymmetryGroup:
    """All cyclic shifts of a periodic grid with ``spatial_dims`` axes (and the reflection)."""
    return SymmetryGroup(tuple(range(spatial_dims)), reflection)


def apply_element(u: Tensor, group: SymmetryGroup, element: Tensor | int) -> Tensor:
    """Apply group elements to fields: ``(batch, channels, *spatial)`` -> same shape.

    ``element`` (an int, or ``(batch,)`` ints, one per field) codes ``reflect * n_shifts +
    flat shift index``; the shift ``s`` moves values forward, ``(τ_s u)_j = u_{j - s}``
    (``torch.roll(u, s)``), the reflection is applied first, ``(R u)_j = u_{-j}``.
    """
    spatial = tuple(u.shape[2:])
    group.check(spatial)
    sizes = group.shift_sizes(spatial)
    n_shifts = math.prod(sizes)
    codes = torch.as_tensor(element, dtype=torch.long).reshape(-1).tolist()
    if len(codes) == 1 and u.shape[0] != 1:
        codes = codes * u.shape[0]
    if len(codes) != u.shape[0]:
        raise ValueError(f"need one element per field, got {len(codes)} for {u.shape[0]}")
    out = []
    dims = tuple(2 + a for a in group.shift_axes)
    for field_, code in zip(u.split(1), codes, strict=True):
        if not 0 <= code < group.order(spatial):
            raise ValueError(f"group element {code} out of range [0, {group.order(spatial)})")
        reflect, flat = divmod(code, n_shifts)
        v = field_
        if reflect:
            v = torch.roll(torch.flip(v, dims), (1,) * len(dims), dims)  # u_j -> u_{-j mod n}
        shifts = []
        for size in reversed(sizes):
            flat, s = divmod(flat, size)
            shifts.append(s)
        out.append(torch.roll(v, tuple(reversed(shifts)), dims) if dims else v)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# The model premise: equivariance by construction


def _spectral_real(
    conv: LipSpectralConv | SpectralMultiplier | SpectralShortcut | PlainSpectralShortcut,
) -> bool:
    if isinstance(conv, LipSpectralConv):
        r, _ = conv.effective_weights()
    elif isinstance(conv, SpectralShortcut):
        r = conv.eval_multipliers()
    elif isinstance(conv, PlainSpectralShortcut):
        r = torch.view_as_complex(conv.multipliers)
    else:
        r = torch.view_as_complex(conv.kept)
    return bool((r.imag == 0).all())


def check_model_symmetry(model: nn.Module, group: SymmetryGroup) -> str:
    """Verify from the architecture that ``model`` commutes with every element of ``group``.

    Walks the module tree. Accepted parts and why they commute with every permutation of grid
    points that the group makes (cyclic shifts; the point reflection):

    * :class:`~liponet.models.fno.FieldLinear` (and its ``export()``) without coordinate
      channels (``grid=False``): the same matrix at every grid point. With coordinate channels
      the output depends on the position: **refused**.
    * :class:`~liponet.layers.fourier.LipSpectralConv` / ``FourierBlock``: a Fourier multiplier
      (plus a pointwise skip) commutes with every cyclic shift. Under the reflection, mode ``k``
      of a real field becomes the conjugate of mode ``k``, so the layer commutes with it only
      if every kept multiplier is real: checked exactly on the current weights.
    * :class:`~liponet.layers.SpectralShortcut` (and its export): a Fourier multiplier at every
      mode, the same argument (its eval multipliers are checked for the reflection).
    * Channel activations (over dim 1), :class:`~liponet.layers.scaling.OutputScale`,
      :class:`~liponet.models.fno.MeanPool` (its output is invariant), products of accepted
      parts (the auxiliary output scale), and ``PaddedDomain`` with ``padding == 0`` (the
      identity around its inner part). Zero padding moves the period: **refused**.
    * The ``export()`` of each of these (plain torch modules of the same structure: the plain
      field linear, padded domain, increment and scaled part), so exported modules are verified
      the same way.

    Returns
    -------
    str
        One line saying what was verified.

    Raises
    ------
    SymmetryPremiseError
        Naming the first part that does not commute, and why.

    Examples
    --------
    >>> from liponet.models import LipFNO
    >>> check_model_symmetry(LipFNO(1, 1, modes=(4,), grid=False), SymmetryGroup((0,)))
    'architecture verified: LipFNO commutes with cyclic shifts along spatial axis 0'
    >>> check_model_symmetry(LipFNO(1, 1, modes=(4,), grid=True), SymmetryGroup((0,)))
    Traceback (most recent call last):
    ...
    liponet.certify.symmetry.SymmetryPremiseError: LipFNO does not commute with cyclic shifts \
along spatial axis 0: net.layers.0 (FieldLinear) appends coordinate channels (grid=True): the \
output depends on the position
    """
    if not group.shift_axes:
        return "trivial group: nothing to verify"
    if not isinstance(model, nn.Module):
        raise SymmetryPremiseError(
            f"expected the model itself (an nn.Module) to verify its symmetry, got "
            f"{type(model).__name__}"
        )

    def refuse(path: str, why: str) -> SymmetryPremiseError:
        return SymmetryPremiseError(
            f"{type(model).__name__} does not commute with {group.describe()}: {path or 'model'} "
            f"{why}"
        )

    def walk(module: nn.Module, path: str) -> None:
        kind = type(module).__name__
        where = f"{path} ({kind})" if path else kind
        if isinstance(module, (FieldLinear, _PlainFieldLinear)):  # the model's or its export's
            if module.grid:
                raise refuse(
                    where,
                    "appends coordinate channels (grid=True): the output depends on the position",
                )
            return
        if isinstance(
            module, (LipSpectralConv, SpectralMultiplier, SpectralShortcut, PlainSpectralShortcut)
        ):
            if group.reflection and not _spectral_real(module):
                raise refuse(
                    where,
                    "has complex Fourier multipliers: mode k of a reflected real field is the "
                    "conjugate of mode k, so only real multipliers commute with the reflection",
                )
            return
        if isinstance(module, (PaddedDomain, _PlainPadded)):  # the layer or its export
            if module.padding != 0:
                raise refuse(
                    where,
                    f"pads the domain (padding={module.padding:g}): zero padding moves the "
                    "period, so cyclic shifts no longer commute",
                )
            walk(module.inner, f"{path}.inner")
            return
        if isinstance(module, (MaxMin, GroupSort)):
            if module.dim != 1:
                raise refuse(where, f"sorts along dim {module.dim}, not over channels (dim 1)")
            return
        if isinstance(module, (ReLU, Abs, GELU, OutputScale, MeanPool, Budget)):
            return  # pointwise maps, scalar scales; a Budget only holds the learned factors
        if (
            isinstance(
                module,
                (FourierBlock, AuxiliaryScale, _FNOBase, nn.Sequential, nn.ModuleList, nn.Identity),
            )
            or isinstance(
                module,
                (CertifiedSequential, Multiply, _FrozenScale, BudgetScaled, ConvexPotentialBlock),
            )
            or isinstance(module, (_PlainConvexPotential, Increment))
            or isinstance(module, (_PlainIncrement, _PlainScaled))  # exports: same structure
        ):
            # compositions of the parts walked here (Increment adds the input's last frames:
            # a channel selection; the convex-potential block applies K, relu and K^T)
            for name, child in module.named_children():
                walk(child, f"{path}.{name}" if path else name)
            return
        raise refuse(
            where,
            "is not a part whose equivariance liponet can verify from the architecture "
            "(DeepONets read fixed sensors and evaluate at given points: no exact shift "
            "equivariance)",
        )

    walk(model, "")
    return f"architecture verified: {type(model).__name__} commutes with {group.describe()}"


# --------------------------------------------------------------------------------------------
# The operator premise: a theorem per PDE

SymmetryTheorem = Callable[..., str]
_THEOREMS: dict[str, SymmetryTheorem] = {}


def register_operator_symmetry(name: str) -> Callable[[SymmetryTheorem], SymmetryTheorem]:
    """Register ``fn(group, **params) -> str`` (the argument) under a true-operator name.

    ``fn`` raises :class:`SymmetryPremiseError` when the group is not a symmetry of the operator.
    """

    def decorator(fn: SymmetryTheorem) -> SymmetryTheorem:
        if name in _THEOREMS:
            raise ValueError(f"a symmetry theorem for {name!r} is already registered")
        _THEOREMS[name] = fn
        return fn

    return decorator


def available_operator_symmetries() -> list[str]:
    """True-operator names with a symmetry theorem."""
    return sorted(_THEOREMS)


def operator_symmetry(
    operator: str | None, group: SymmetryGroup, **params: float
) -> tuple[str, str]:
    """``(label, source)`` of the claim that the true operator commutes with ``group``.

    Parameters
    ----------
    operator
        A name of :func:`available_operator_symmetries` (``"certified"`` by its theorem), or
        ``None``: the symmetry is only asserted by the caller (``"estimated"``).
    group
        The group.
    **params
        Parameters of the theorem (none of the registered ones needs any).

    Examples
    --------
    >>> operator_symmetry("advection", SymmetryGroup((0,)))[0]
    'certified'
    >>> operator_symmetry(None, SymmetryGroup((0,)))[0]
    'estimated'
    """
    if not group.shift_axes:
        return "certified", "trivial group"
    if operator is None:
        return "estimated", f"{group.describe()} asserted without a theorem (label estimated)"
    if operator not in _THEOREMS:
        raise ValueError(
            f"no symmetry theorem for {operator!r}; available: "
            f"{', '.join(available_operator_symmetries())} (or operator=None: estimated)"
        )
    return "certified", _THEOREMS[operator](group, **params)


def _no_params(name: str, params: dict[str, float]) -> None:
    if params:
        raise ValueError(f"{name}: its symmetry theorem takes no parameters, got {sorted(params)}")


@register_operator_symmetry("advection")
def _advection_symmetry(group: SymmetryGroup, **params: float) -> str:
    """Periodic advection commutes with every cyclic shift; not with the reflection.

    The solution operator is a translation ``T``, and translations commute. On the grid the data
    define ``T`` as a shift by ``beta t / dx`` cells: for a whole number of cells (liponet's
    generator evaluates the exact solution at the wrapped feet, so this is a permutation of the
    values) or a spectral (Fourier) shift, it commutes exactly with every shift by whole cells.
    ``R T R = T^{-1}``: the reflection is a symmetry only for ``beta t = 0``.
    """
    _no_params("advection", params)
    if group.reflection:
        raise SymmetryPremiseError(
            "advection does not commute with the reflection (it reverses the velocity)"
        )
    return "theorem: periodic advection is a translation; translations commute"


def _diffusive(name: str, group: SymmetryGroup) -> str:
    return (
        f"theorem: {name} has constant coefficients on a periodic grid (a stencil or Fourier "
        f"multiplier with even symbol, plus a pointwise reaction): commutes with "
        f"{group.describe()}"
    )


@register_operator_symmetry("heat")
def _heat_symmetry(group: SymmetryGroup, **params: float) -> str:
    """Periodic heat ``u_t = nu Δu``: cyclic shifts and the point reflection.

    Exact and discrete: the solution operator is the Fourier multiplier ``exp(-nu |2 pi k|^2 t)``
    (even in ``k``); liponet's generator (``diffusion_reaction_1d`` with ``rho = 0``) applies the
    symmetric 3-point stencil with ``torch.roll`` the same way at every cell, which commutes with
    every shift and with ``j -> -j``, even in floating point (the same operations on permuted
    values).
    """
    _no_params("heat", params)
    return _diffusive("periodic heat", group)


@register_operator_symmetry("diffusion_reaction")
def _diffusion_reaction_symmetry(group: SymmetryGroup, **params: float) -> str:
    """``u_t = nu Δu + rho u(1-u)``, periodic: the heat symmetries (the reaction is pointwise).

    A pointwise nonlinearity commutes with every permutation of grid values, so the split scheme
    of ``diffusion_reaction_1d`` (exact logistic half steps around the symmetric stencil) commutes
    with every cyclic shift and the reflection.
    """
    _no_params("diffusion_reaction", params)
    return _diffusive("periodic diffusion-reaction", group)


# --------------------------------------------------------------------------------------------
# Orbit distances


def _flat_shift_layout(u: Tensor, group: SymmetryGroup) -> Tensor:
    """``(b, c, *spatial)`` -> ``(b, f, *shift_sizes)``: shift axes last, the rest flattened."""
    spatial = tuple(u.shape[2:])
    shift_dims = [2 + a for a in group.shift_axes]
    other = [d for d in range(1, u.ndim) if d not in shift_dims]
    x = u.permute(0, *other, *shift_dims)
    return x.reshape(u.shape[0], -1, *group.shift_sizes(spatial))


def invariant_features(u: Tensor, group: SymmetryGroup) -> Tensor:
    """Group-invariant features whose distance is a lower bound of the orbit distance.

    Fourier magnitudes along the shift axes, weighted so that the Euclidean norm of the
    features is liponet's function norm of ``u`` (Parseval, orthonormal FFT; rfft bins that
    stand for two conjugate modes weigh twice). Since ``|x_k - e^{iθ} y_k| >= ||x_k| - |y_k||``
    mode by mode, ``||F(a) - F(b)|| <= min_g ||a - g b||`` for every shift, and for the reflection
    too (it conjugates modes of a real field). For the trivial group the features are the
    field itself and the bound is the distance.

    Returns
    -------
    Tensor
        ``(batch, n_features)`` float64.
    """
    x = u.to(torch.float64)
    spatial = tuple(x.shape[2:])
    n_points = math.prod(spatial)
    if not group.shift_axes:
        return x.reshape(x.shape[0], -1) / math.sqrt(n_points)
    group.check(spatial)
    flat = _flat_shift_layout(x, group)
    k = len(group.shift_axes)
    dims = tuple(range(2, 2 + k))
    spec = torch.fft.rfftn(flat, dim=dims, norm="ortho").abs()  # (b, f, ..., n_last // 2 + 1)
    n_last = flat.shape[-1]
    weight = torch.full((spec.shape[-1],), 2.0, dtype=torch.float64, device=x.device)
    weight[0] = 1.0
    if n_last % 2 == 0:
        weight[-1] = 1.0
    spec = spec * weight.sqrt()
    return spec.reshape(x.shape[0], -1) / math.sqrt(n_points)


def orbit_distances(query: Tensor, calib: Tensor, group: SymmetryGroup) -> tuple[Tensor, Tensor]:
    """``min_g ||q - g c||`` and the minimizing element for every pair of two sets (approximate).

    One FFT correlation per pair over the shift axes (twice with the reflection), streamed so
    that at most ``2**22`` correlation values are held. The distances are float64 values from
    ``||q||^2 + ||c||^2 - 2 max_s <q, τ_s c>``: good for choosing, **not** rounded up; the
    certificate recomputes the distance of the chosen element directly (:func:`_direct_distance`).

    Parameters
    ----------
    query, calib
        ``(m, channels, *spatial)`` and ``(n, channels, *spatial)``.
    group
        The group (the trivial group gives plain distances).

    Returns
    -------
    tuple of Tensor
        ``distance (m, n)`` float64 and ``element (m, n)`` long (see :func:`apply_element`).
    """
    if query.shape[1:] != calib.shape[1:]:
        raise ValueError(
            f"query fields {tuple(query.shape[1:])} and calibration fields "
            f"{tuple(calib.shape[1:])} must have the same shape"
        )
    q = query.to(torch.float64)
    c = calib.to(torch.float64)
    spatial = tuple(q.shape[2:])
    n_points = math.prod(spatial)
    group.check(spatial)
    qn = q.reshape(q.shape[0], -1).pow(2).sum(1)
    cn = c.reshape(c.shape[0], -1).pow(2).sum(1)
    if not group.shift_axes:
        inner = torch.einsum("mf,nf->mn", q.reshape(q.shape[0], -1), c.reshape(c.shape[0], -1))
        d2 = (qn[:, None] + cn[None] - 2 * inner).clamp_min(0) / n_points
        return d2.sqrt(), torch.zeros(d2.shape, dtype=torch.long, device=q.device)
    sizes = group.shift_sizes(spatial)
    n_shifts = math.prod(sizes)
    k = len(sizes)
    dims = tuple(range(2, 2 + k))
    qf = torch.fft.rfftn(_flat_shift_layout(q, group), dim=dims)  # (m, f, *half)
    variants = [c]
    if group.reflection:
        variants.append(apply_element(c, group, n_shifts))  # R c
    best = torch.full((q.shape[0], c.shape[0]), -math.inf, dtype=torch.float64, device=q.device)
    element = torch.zeros(best.shape, dtype=torch.long, device=q.device)
    rows = max(1, _CORR_ELEMENTS // max(1, c.shape[0] * n_shifts))
    for r, var in enumerate(variants):
        cf = torch.fft.rfftn(_flat_shift_layout(var, group), dim=dims).conj()  # (n, f, *half)
        cf = cf.reshape(cf.shape[0], cf.shape[1], -1)
        for q0 in range(0, q.shape[0], rows):
            part = qf[q0 : q0 + rows]
            part = part.reshape(part.shape[0], part.shape[1], -1)
            prod = torch.einsum("mfp,nfp->mnp", part, cf)  # (m,f,p),(n,f,p)->(m,n,p)
            prod = prod.reshape(part.shape[0], c.shape[0], *qf.shape[2:])
            corr = torch.fft.irfftn(prod, s=sizes, dim=tuple(range(2, 2 + k)))  # <q, τ_s c>
            value, arg = corr.reshape(part.shape[0], c.shape[0], -1).max(2)
            sl = slice(q0, q0 + part.shape[0])
            better = value > best[sl]
            best[sl] = torch.where(better, value, best[sl])
            element[sl] = torch.where(better, arg + r * n_shifts, element[sl])
    d2 = (qn[:, None] + cn[None] - 2 * best).clamp_min(0) / n_points
    return d2.sqrt(), element


def _direct_distance(query: Tensor, moved: Tensor) -> Tensor:
    """``||q - g c||`` per row from the transformed fields, float64, rounded up.

    The float64 difference, squares and sum each add at most one rounding per term; the factor
    ``1 + 4 (f + 8) eps`` bounds their effect on the root with room to spare.
    """
    diff = query.to(torch.float64) - moved.to(torch.float64)
    f = diff[0].numel()
    n_points = math.prod(diff.shape[2:])
    d = diff.reshape(diff.shape[0], -1).pow(2).sum(1).div(n_points).sqrt()
    return d * (1 + 4 * (f + 8) * _EPS64) + math.sqrt(torch.finfo(torch.float64).tiny)


@dataclass
class SymmetricErrorBound(ErrorBound):
    """An :class:`ErrorBound` certified through group orbits.

    Attributes
    ----------
    element
        ``(n_query,)`` the group element (see :func:`apply_element`) of the minimizing pair.
    group
        The group used.

    ``premises`` (inherited) lists what the bound rests on, one line per role (``"model: ..."``
    and ``"operator: ..."`` for the symmetry, then the constants' checked premises).

    Examples
    --------
    >>> import torch
    >>> b = SymmetricErrorBound(torch.tensor([0.3]), "certified", "shift-reduced", "function",
    ...                         element=torch.tensor([5]), group=SymmetryGroup((0,)))
    >>> b.violations(torch.tensor([0.2])).tolist(), int(b.element[0])
    ([False], 5)
    """

    element: Tensor | None = None
    group: SymmetryGroup | None = None


def verify_premises(
    model: nn.Module, group: SymmetryGroup, operator: str | None, **params: float
) -> tuple[str, dict[str, str]]:
    """Check both premises; ``(label, premises)`` or :class:`SymmetryPremiseError`."""
    model_reason = check_model_symmetry(model, group)
    label, operator_reason = operator_symmetry(operator, group, **params)
    return label, {"model": model_reason, "operator": operator_reason}


def symmetric_error_bound(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_errors: Tensor | None = None,
    *,
    calib_targets: Tensor | None = None,
    calib_preds: Tensor | None = None,
    model: CertifiedModule,
    lipschitz_true: ConstantLike,
    group: SymmetryGroup,
    operator: str | None,
    operator_params: dict[str, float] | None = None,
    block: int = 256,
    data_discretization: str | None = None,
    input_noise: float = 0.0,
) -> SymmetricErrorBound:
    """The operator certificate minimized over calibration pairs and their group orbits.

    ``||G(a) - Ĝ(a)|| <= min_i min_g [ e_i + (L_G + L_Ĝ) ||a - g a_i|| ]`` in liponet's function
    norm, with both premises checked (see the module docstring): the model's equivariance from
    its architecture (refused otherwise), the true operator's from a registered theorem
    (``operator``; ``None`` labels the bound ``"estimated"``).

    Parameters
    ----------
    query_inputs, calib_inputs
        ``(n_query, channels, *spatial)`` and ``(n_calib, channels, *spatial)``.
    calib_errors, calib_targets, calib_preds
        As in :func:`~liponet.certify.operator_error_bound` (function norm).
    model
        The surrogate itself: its architecture is checked and ``lipschitz_bound()`` used.
    lipschitz_true
        ``L_G`` (function norm), e.g. ``true_lipschitz("advection")``.
    group
        The symmetry group, e.g. ``SymmetryGroup((0,))`` for the shifts of a 1-D periodic grid.
    operator, operator_params
        The true operator's name in the symmetry registry and the theorem's parameters.
    block
        Calibration samples per block of the orbit search.
    input_noise
        ``eps >= 0`` as in :func:`~liponet.certify.operator_error_bound`: adds ``L_G eps``
        (e.g. :func:`~liponet.certify.float32_storage_noise` for float32-stored pairs).
    data_discretization
        The data's discretization, matched against ``L_G``'s (as in
        :func:`~liponet.certify.operator_error_bound`; every constant's premises are checked
        there too: radius, value range, a continuous theorem on grid data lowers the label).

    Returns
    -------
    SymmetricErrorBound
        ``name="shift-reduced"``; ``index``, ``element``, ``distance`` (recomputed directly,
        rounded up), ``calib_error`` of the minimizing pair.

    Examples
    --------
    >>> import torch
    >>> from liponet.models import LipFNO
    >>> from liponet.certify import grid_lipschitz
    >>> model = LipFNO(1, 1, modes=(4,), width=4, depth=1, grid=False).eval().double()
    >>> a = torch.randn(5, 1, 16, dtype=torch.float64)
    >>> truth = torch.roll(a, 3, -1)                      # advection by 3 whole cells
    >>> with torch.no_grad():
    ...     b = symmetric_error_bound(torch.roll(a[:2], 5, -1), a, calib_targets=truth,
    ...         calib_preds=model(a), model=model, lipschitz_true=grid_lipschitz("advection", 16,
    ...         shift=3 / 16),
    ...         group=SymmetryGroup((0,)), operator="advection")
    >>> b.label, b.index.tolist(), b.element.tolist()
    ('certified', [0, 1], [5, 5])
    """
    label_sym, premises = verify_premises(model, group, operator, **(operator_params or {}))
    if not isinstance(model, CertifiedModule):
        raise TypeError(f"model must be a CertifiedModule, got {type(model).__name__}")
    l_model = as_constant(model)
    l_true = as_constant(lipschitz_true)
    constants, lines, notes = check_constant_premises(
        {"model": l_model, "true": l_true},
        {"query": query_inputs, "calibration input": calib_inputs},
        data_discretization,
    )
    l_model, l_true = constants["model"], constants["true"]
    for c in (l_model, l_true):
        if c.input_norm != "function" or c.output_norm not in ("function", "sup"):
            raise ValueError(
                f"symmetry-reduced bounds are in the function norm; got a constant from "
                f"{c.input_norm!r} to {c.output_norm!r}"
            )
    errors = calib_errors_from(calib_errors, calib_targets, calib_preds, "function")
    if calib_inputs.shape[0] == 0 or errors.numel() != calib_inputs.shape[0]:
        raise ValueError(
            f"need one error per calibration input (>= 1), got {errors.numel()} for "
            f"{calib_inputs.shape[0]}"
        )
    slope = l_model.value + l_true.value
    search = OrbitSearch(query_inputs, group, slope)
    for c0 in range(0, calib_inputs.shape[0], block):
        search.update(calib_inputs[c0 : c0 + block], errors[c0 : c0 + block], c0)
    if not (math.isfinite(input_noise) and input_noise >= 0):
        raise ValueError(f"input_noise must be finite and >= 0, got {input_noise}")
    return search.result(
        l_model, l_true, label_sym, premises, lines, notes, offset=l_true.value * input_noise
    )


class OrbitSearch:
    """Running ``min_i min_g [e_i + slope ||a - g a_i||]`` for fixed queries, fed chunk by chunk.

    Memory is that of the queries plus one chunk. Each chunk: group-invariant lower bounds
    (:func:`invariant_features`) of every pair's value; pairs that cannot beat a query's current
    best are skipped; the others are searched over the orbit by FFT, ``candidates`` at a time in
    increasing order of their lower bound, until no remaining lower bound beats the best
    (``exact=True``: the true minimum up to float rounding) or after the first round
    (``exact=False``: an approximate nearest-neighbour search). The running best is always a
    value recomputed directly for an actual pair and element, so it is a valid bound either way.

    Parameters
    ----------
    query_inputs
        ``(n_query, channels, *spatial)``.
    group
        The symmetry group (trivial: plain nearest-sample search).
    slope
        ``L_G + L_Ĝ``.
    exact, candidates
        Search mode and pairs per query and round.
    """

    def __init__(
        self,
        query_inputs: Tensor,
        group: SymmetryGroup,
        slope: float,
        exact: bool = True,
        candidates: int = 16,
    ) -> None:
        if candidates < 1:
            raise ValueError(f"candidates must be >= 1, got {candidates}")
        self.query = query_inputs.to(torch.float64)
        group.check(tuple(self.query.shape[2:]))
        self.group = group
        self.slope = float(slope)
        self.exact = exact
        self.candidates = candidates
        n, dev = self.query.shape[0], self.query.device
        self.features = invariant_features(self.query, group)
        self.bound = torch.full((n,), math.inf, dtype=torch.float64, device=dev)
        self.index = torch.full((n,), -1, dtype=torch.long, device=dev)
        self.element = torch.zeros(n, dtype=torch.long, device=dev)
        self.distance = torch.zeros(n, dtype=torch.float64, device=dev)
        self.calib_error = torch.zeros(n, dtype=torch.float64, device=dev)
        self.seen = 0
        self.searched_pairs = 0
        self.unproven = torch.zeros(n, dtype=torch.bool, device=dev)

    def lower_bounds(self, calib_inputs: Tensor) -> Tensor:
        """``slope * LB(a, a_i)`` for every query and calibration input ``(n_query, n)``.

        A lower bound of each pair's value without its error ``e_i >= 0``: inputs whose column
        is ``>=`` every query's current best cannot improve any bound (their model evaluation
        can be skipped).
        """
        feats = invariant_features(calib_inputs, self.group)
        return self.slope * torch.cdist(self.features, feats.to(self.features.device))

    def useful(self, calib_inputs: Tensor) -> Tensor:
        """``(n,)`` mask of the calibration inputs that may still improve some query's bound."""
        if not bool(torch.isfinite(self.bound).all()):
            return torch.ones(calib_inputs.shape[0], dtype=torch.bool, device=self.bound.device)
        return (self.lower_bounds(calib_inputs) < self.bound[:, None]).any(0)

    def update(self, calib_inputs: Tensor, calib_errors: Tensor, offset: int | Tensor) -> None:
        """Search one chunk; ``offset``: global index of its first sample, or of each sample."""
        c = calib_inputs.to(device=self.query.device, dtype=torch.float64)
        e = calib_errors.to(device=self.query.device, dtype=torch.float64)
        self.seen += c.shape[0]
        if c.shape[0] == 0:
            return
        lb = e[None] + self.lower_bounds(c)  # (q, n): lower bound of each pair's value
        best_val = self.bound.clone()
        best_col = torch.full_like(self.index, -1)
        best_el = torch.zeros_like(self.element)
        first = True
        while True:
            open_ = lb < best_val[:, None]
            if not bool(open_.any()) or (not first and not self.exact):
                if not first and not self.exact:
                    self.unproven |= open_.any(1)
                break
            first = False
            masked = torch.where(open_, lb, math.inf)
            k = min(self.candidates, c.shape[0])
            vals, cols = masked.topk(k, dim=1, largest=False)  # (q, k)
            rows_, slot = torch.nonzero(torch.isfinite(vals), as_tuple=True)
            pick = cols[rows_, slot]
            lb[rows_, pick] = math.inf  # searched
            self.searched_pairs += int(pick.numel())
            for p0 in range(0, pick.numel(), 1024):
                qi, ci = rows_[p0 : p0 + 1024], pick[p0 : p0 + 1024]
                d, el = _pair_orbit_distances(self.query[qi], c[ci], self.group)
                value = e[ci] + self.slope * d
                new_best = best_val.scatter_reduce(0, qi, value, "amin", include_self=True)
                won = (value <= new_best[qi]) & (value < best_val[qi])
                best_col[qi[won]] = ci[won]
                best_el[qi[won]] = el[won]
                best_val = new_best
        rows = torch.nonzero(best_col >= 0).reshape(-1)
        if rows.numel() == 0:
            return
        cols = best_col[rows]
        moved = apply_element(c[cols], self.group, best_el[rows])
        d = _direct_distance(self.query[rows], moved)
        value = (e[cols] + self.slope * d) * (1 + SVD_RELATIVE_MARGIN)
        better = value < self.bound[rows]
        rows, cols, d, value = rows[better], cols[better], d[better], value[better]
        self.bound[rows] = value
        if isinstance(offset, Tensor):
            self.index[rows] = offset.to(self.index)[cols]
        else:
            self.index[rows] = cols + offset
        self.element[rows] = best_el[rows]
        self.distance[rows] = d
        self.calib_error[rows] = e[cols]

    def result(
        self,
        l_model: LipschitzConstant,
        l_true: LipschitzConstant,
        symmetry_label: str,
        premises: dict[str, str],
        lines: tuple[str, ...] = (),
        notes: tuple[str, ...] = (),
        offset: float = 0.0,
    ) -> SymmetricErrorBound:
        """The bound so far as a :class:`SymmetricErrorBound`, labelled by what it rests on.

        The label is the weakest of the two constants' and the symmetry premise's; ``premises``
        (checked, by name) and ``lines`` are recorded; ``offset`` (an input-noise or storage
        term, already multiplied by ``L_G``) is added to every bound.
        """
        if bool((self.index < 0).any()):
            raise ValueError("no calibration pair was searched: give at least one")
        return SymmetricErrorBound(
            bound=self.bound + offset,
            label=weakest_label(l_model.label, l_true.label, symmetry_label),
            name=_bound_name(self.group),
            norm="function",
            index=self.index.clone(),
            distance=self.distance[:, None].clone(),
            calib_error=self.calib_error.clone(),
            constants={"model": l_model, "true": l_true},
            element=self.element.clone(),
            group=self.group,
            premises=(*(f"{k}: {v}" for k, v in premises.items()), *lines),
            notes=notes,
        )


def _bound_name(group: SymmetryGroup) -> str:
    if not group.shift_axes:
        return "plain"
    return "symmetry-reduced" if group.reflection else "shift-reduced"


def _pair_orbit_distances(q: Tensor, c: Tensor, group: SymmetryGroup) -> tuple[Tensor, Tensor]:
    """Orbit distances of matched pairs ``(q_j, c_j)``: ``(p,)`` distances and elements."""
    spatial = tuple(q.shape[2:])
    n_points = math.prod(spatial)
    qn = q.reshape(q.shape[0], -1).pow(2).sum(1)
    cn = c.reshape(c.shape[0], -1).pow(2).sum(1)
    if not group.shift_axes:
        d2 = (q - c).reshape(q.shape[0], -1).pow(2).sum(1) / n_points
        return d2.sqrt(), torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    sizes = group.shift_sizes(spatial)
    n_shifts = math.prod(sizes)
    k = len(sizes)
    dims = tuple(range(2, 2 + k))
    qf = torch.fft.rfftn(_flat_shift_layout(q, group), dim=dims)  # (p, f, *half)
    variants = [c] + ([apply_element(c, group, n_shifts)] if group.reflection else [])
    best = torch.full((q.shape[0],), -math.inf, dtype=torch.float64, device=q.device)
    element = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    for r, var in enumerate(variants):
        cf = torch.fft.rfftn(_flat_shift_layout(var, group), dim=dims).conj()
        corr = torch.fft.irfftn((qf * cf).sum(1), s=sizes, dim=tuple(range(1, 1 + k)))
        value, arg = corr.reshape(q.shape[0], -1).max(1)
        better = value > best
        best = torch.where(better, value, best)
        element = torch.where(better, arg + r * n_shifts, element)
    return ((qn + cn - 2 * best).clamp_min(0) / n_points).sqrt(), element
