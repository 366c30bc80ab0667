"""Guaranteed error bounds for neural operators: "how wrong can the surrogate be on this input?".

The plain certificate. For a true operator ``G`` with constant ``L_G``, a surrogate ``Ĝ`` with
constant ``L_Ĝ`` and calibration pairs ``(a_i, G(a_i))``, the triangle inequality gives, for any
query ``a``,

    ||G(a) - Ĝ(a)|| <= ||G(a_i) - Ĝ(a_i)|| + ||G(a) - G(a_i)|| + ||Ĝ(a_i) - Ĝ(a)||
                    <= e_i + (L_G + L_Ĝ) ||a - a_i||,

and the minimum over ``i`` is the bound. Every constant carries a **label**: the bound is
``"certified"`` only when every constant it uses is (a theorem for ``L_G``, a weight-based
certificate for ``L_Ĝ``); a constant estimated from data makes it ``"estimated"``. Bounds hold for
the operators as evaluated in exact arithmetic; compute in float64 where an equality case matters
(a query equal to a calibration input), since float32 evaluation of the same network in different
batch shapes can differ by ~1e-7 relative.

Each constant may hold between different norms (``LipschitzConstant.input_norm`` ->
``output_norm``); each then contributes its own distance term ``L_k d_k(a, a_i)``. This is how the
sup-norm (pointwise) variant and the weaker-norm bounds are expressed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..functional import SVD_RELATIVE_MARGIN
from ..layers import CertifiedModule
from .norms import check_norm, field_norm, pairwise_distances
from .premises import (
    ANY_GRID,
    CONTINUOUS,
    PremiseError,
    Premises,
    check_eval_mode,
    check_inputs,
    check_weights,
    discretization_note,
    input_ball,
    weights_fingerprint,
)

if TYPE_CHECKING:
    from .symmetry import SymmetryGroup

__all__ = [
    "LABELS",
    "Certificate",
    "ErrorBound",
    "LipschitzConstant",
    "as_constant",
    "available_true_operators",
    "certified_radius",
    "certify_rollout",
    "estimate_true_lipschitz",
    "max_pair_ratio",
    "model_constant",
    "operator_error_bound",
    "register_true_constant",
    "robustness_bound",
    "rollout_error_bound",
    "sup_output_constant",
    "true_lipschitz",
    "weakest_label",
]

#: What a number rests on, from strongest to weakest: a proof, a statistical guarantee under
#: exchangeability, an estimate from data (no guarantee).
LABELS = ("certified", "statistical", "estimated")

#: Default number of rows (queries, calibration samples) per block of distance computations.
BLOCK = 1024


def weakest_label(*labels: str) -> str:
    """The weakest of several labels (what a bound combining them can claim).

    Examples
    --------
    >>> weakest_label("certified", "estimated")
    'estimated'
    """
    for label in labels:
        if label not in LABELS:
            raise ValueError(f"unknown label {label!r}; available: {', '.join(LABELS)}")
    return max(labels, key=LABELS.index, default="certified")


@dataclass(frozen=True)
class LipschitzConstant:
    """A Lipschitz constant with the norms it holds in and what it rests on.

    Parameters
    ----------
    value
        The constant (finite, >= 0).
    label
        ``"certified"`` (a proof or a weight-based certificate) or ``"estimated"`` (from data).
    input_norm, output_norm
        Norm names of :mod:`liponet.certify.norms` (``"function"``, ``"sup"``, ``"sobolev:S"``...).
    source
        One line saying where the number comes from (required for ``"certified"``: a constant
        that cannot say what it rests on is not a certificate).
    premises
        What the constant rests on beyond its norms (:class:`~liponet.certify.Premises`): input
        ball or value range, the discretization it is proved for, the model weights it was
        computed from. Checked by every bound that uses it.

    Examples
    --------
    >>> LipschitzConstant(1.0, "certified", source="whole-cell shifts permute the values").label
    'certified'
    >>> LipschitzConstant(1.0, "certified")
    Traceback (most recent call last):
    ...
    ValueError: a certified LipschitzConstant needs source= (the theorem or computation it rests \
on); a number without one is 'estimated'
    """

    value: float
    label: str = "certified"
    input_norm: str = "function"
    output_norm: str = "function"
    source: str = ""
    premises: Premises = field(default_factory=Premises)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ValueError(f"a Lipschitz constant must be finite and >= 0, got {self.value}")
        if self.label not in ("certified", "estimated"):
            raise ValueError(
                f"a Lipschitz constant is 'certified' or 'estimated', got {self.label!r}"
            )
        if self.label == "certified" and not self.source.strip():
            raise ValueError(
                "a certified LipschitzConstant needs source= (the theorem or computation it rests "
                "on); a number without one is 'estimated'"
            )
        check_norm(self.input_norm)
        check_norm(self.output_norm)


#: What may stand for a constant: a labelled constant, a certified model, or a bare number
#: (taken as "estimated": liponet cannot check a number given without its argument).
ConstantLike = LipschitzConstant | CertifiedModule | float | int


def as_constant(value: ConstantLike, norm: str = "function") -> LipschitzConstant:
    """Turn a constant-like value into a :class:`LipschitzConstant` in ``norm -> norm``.

    A :class:`~liponet.layers.CertifiedModule` gives its ``lipschitz_bound()``, labelled
    certified (an operator's certificate is in liponet's function norm, so only
    ``norm="function"`` is accepted for modules). A bare number is labelled ``"estimated"``:
    to vouch for it, pass ``LipschitzConstant(value, "certified", source=...)``.

    Examples
    --------
    >>> as_constant(2.0).label  # a bare number is never certified
    'estimated'
    >>> from liponet.models import LipMLP
    >>> as_constant(LipMLP(2, 1, width=4, depth=2).eval()).label
    'certified'
    """
    norm = check_norm(norm)
    if isinstance(value, LipschitzConstant):
        return value
    if isinstance(value, CertifiedModule):
        if norm not in ("function", "sup"):
            raise ValueError(
                f"a model's lipschitz_bound() holds from the function norm, not {norm!r}; pass "
                "its constant as a LipschitzConstant"
            )
        return model_constant(value)
    if isinstance(value, nn.Module):
        raise TypeError(
            f"{type(value).__name__} has no certified constant (not a CertifiedModule); pass "
            "its constant as a LipschitzConstant"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"expected a LipschitzConstant, CertifiedModule or number, got {type(value).__name__}"
        )
    return LipschitzConstant(
        float(value), "estimated", norm, norm, "a number given without proof (label estimated)"
    )


def model_constant(model: CertifiedModule) -> LipschitzConstant:
    """A certified operator's constant with its norms and premises (labelled certified).

    Field models (FNOs, sensor MLPs): ``lipschitz_bound()`` holds from the function norm into
    the function norm. DeepONets (models with ``branch_coefficients``) certify more: their bound
    holds for every query point ``y`` of the declared domain, ``|Ĝ(u)(y) - Ĝ(u')(y)| <= L
    ||u - u'||``, i.e. into the sup norm over any query points in the domain (see
    :class:`~liponet.models.LipDeepONet`), so the pointwise bound needs no ``sqrt(n)`` factor.

    Premises recorded: the weights' fingerprint (:func:`~liponet.certify.weights_fingerprint`)
    and, for auxiliary-scale models, the input ball (``radius``) the certificate holds on; every
    bound built on the constant checks its inputs against that ball.

    Raises
    ------
    PremiseError
        If the model is in training mode: ``lipschitz_bound()`` certifies the eval-mode forward
        (training forwards use power-iteration weights it does not bound).

    Examples
    --------
    >>> from liponet.models import LipFNO
    >>> c = model_constant(LipFNO(1, 1, modes=(4,), width=4, depth=1).eval())
    >>> c.label, c.value <= 1 + 1e-6, c.input_norm
    ('certified', True, 'function')
    """
    check_eval_mode(model)
    pointwise = hasattr(model, "branch_coefficients")
    ball = input_ball(model)
    premises = Premises(
        radius=None if ball is None else ball[0],
        centre=None if ball is None else ball[1],
        ball_norm="function" if ball is None else ball[2],
        weights=weights_fingerprint(model),
    )
    return LipschitzConstant(
        float(model.lipschitz_bound()),
        "certified",
        "function",
        "sup" if pointwise else "function",
        f"{type(model).__name__}.lipschitz_bound()" + (" (pointwise in y)" if pointwise else ""),
        premises,
    )


def sup_output_constant(constant: LipschitzConstant, n_points: int) -> LipschitzConstant:
    """Turn a constant into the function norm into one into the sup (pointwise) norm.

    A function-norm Lipschitz constant does **not** bound pointwise errors independently of the
    grid. What it does give, on a grid of ``n_points`` points: for any field ``v``,
    ``max_j |v_j| <= sqrt(sum_j |v_j|^2) = sqrt(n_points) ||v||_function`` (``|v_j|`` the Euclidean
    norm over channels), hence ``||Ĝ(a) - Ĝ(b)||_sup <= sqrt(n_points) L ||a - b||``. The factor is
    attained by a difference concentrated on one grid point, so nothing better follows from the
    function-norm certificate alone. The label is kept.

    Examples
    --------
    >>> c = sup_output_constant(as_constant(2.0), n_points=16)
    >>> c.value, c.output_norm  # sup norm <= sqrt(n) x function norm on n grid points
    (8.0, 'sup')
    """
    if constant.output_norm != "function":
        raise ValueError(
            f"sup_output_constant converts a constant into the function norm, got output norm "
            f"{constant.output_norm!r}"
        )
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    return replace(
        constant,
        value=constant.value * math.sqrt(n_points),
        output_norm="sup",
        source=f"sqrt({n_points}) x [{constant.source}] (sup <= sqrt(n) x function norm)",
    )


@dataclass
class ErrorBound:
    """Per-query error bounds with what they rest on.

    Attributes
    ----------
    bound
        ``(n_query,)`` float64 (``(batch, n_steps)`` for rollouts): the bounds.
    label
        ``"certified"``, ``"statistical"`` or ``"estimated"``.
    name
        Which bound (``"plain"``, ``"error-lipschitz"``, ``"conformal"``, ``"rollout"``, ...).
    norm
        The norm in which the error is bounded.
    index, distance, calib_error
        For nearest-sample bounds: the calibration sample attaining the minimum, its distance
        to the query (one column per distance term) and its error; ``None`` otherwise.
    constants
        The constants used, by role (``"model"``, ``"true"``, ``"error"``).
    premises
        What the bound rests on, one line each (checked premises, calibration data).
    notes
        Why the label is lower than the constants' labels would give, one line each.

    Examples
    --------
    >>> import torch
    >>> b = ErrorBound(torch.tensor([0.5, 2.0]), "certified", "plain", "function")
    >>> b.label, b.bound.tolist()
    ('certified', [0.5, 2.0])
    """

    bound: Tensor
    label: str
    name: str
    norm: str
    index: Tensor | None = None
    distance: Tensor | None = None
    calib_error: Tensor | None = None
    constants: dict[str, LipschitzConstant] = field(default_factory=dict)
    premises: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def violations(self, observed: Tensor) -> Tensor:
        """Boolean mask of the queries whose observed error exceeds the bound."""
        return observed.to(self.bound) > self.bound


@dataclass(frozen=True)
class Certificate:
    """A single labelled number (a robustness bound, a radius) and the premises it rests on.

    Examples
    --------
    >>> from liponet.models import LipMLP
    >>> cert = certified_radius(LipMLP(2, 1, width=4, depth=2).eval(), tolerance=0.1)
    >>> isinstance(cert, Certificate), cert.label
    (True, 'certified')
    """

    value: float
    label: str
    what: str
    premises: tuple[str, ...] = ()


def error_fields(calib_targets: Tensor, calib_preds: Tensor) -> Tensor:
    """``G(a_i) - Ĝ(a_i)`` in float64, after checking the two shapes agree."""
    if calib_targets.shape != calib_preds.shape:
        raise ValueError(
            f"calib_targets {tuple(calib_targets.shape)} and calib_preds "
            f"{tuple(calib_preds.shape)} must have the same shape"
        )
    return calib_targets.to(torch.float64) - calib_preds.to(torch.float64)


def calib_errors_from(
    calib_errors: Tensor | None,
    calib_targets: Tensor | None,
    calib_preds: Tensor | None,
    norm: str,
) -> Tensor:
    """Calibration errors ``||G(a_i) - Ĝ(a_i)||`` in ``norm``: given, or from targets and preds."""
    if calib_errors is not None:
        if calib_targets is not None or calib_preds is not None:
            raise ValueError("give either calib_errors or calib_targets + calib_preds, not both")
        errors = torch.as_tensor(calib_errors, dtype=torch.float64).reshape(-1)
    else:
        if calib_targets is None or calib_preds is None:
            raise ValueError("give calib_errors, or both calib_targets and calib_preds")
        errors = field_norm(error_fields(calib_targets, calib_preds), norm)
    if not bool(torch.isfinite(errors).all()) or bool((errors < 0).any()):
        raise ValueError("calibration errors must be finite and >= 0")
    return errors


def min_over_calibration(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_errors: Tensor,
    terms: Sequence[tuple[float, str]],
    block: int = BLOCK,
) -> tuple[Tensor, Tensor, Tensor]:
    """``min_i [e_i + sum_k c_k d_k(a, a_i)]`` for every query, streamed over blocks.

    Memory is ``O(block^2)`` whatever the number of queries and calibration samples.

    Parameters
    ----------
    query_inputs, calib_inputs
        ``(n_query, ...)`` and ``(n_calib, ...)`` fields of the same shape.
    calib_errors
        ``(n_calib,)`` errors ``e_i``.
    terms
        ``(c_k, norm_k)`` pairs: slope and the norm of its distance.
    block
        Rows of queries and of calibration samples per block.

    Returns
    -------
    tuple of Tensor
        ``bound (n_query,)``, ``index (n_query,)`` of the minimizing sample and its
        ``distances (n_query, n_terms)``, all float64 / long.
    """
    if query_inputs.shape[1:] != calib_inputs.shape[1:]:
        raise ValueError(
            f"query inputs {tuple(query_inputs.shape[1:])} and calibration inputs "
            f"{tuple(calib_inputs.shape[1:])} must have the same per-sample shape"
        )
    n_calib = calib_inputs.shape[0]
    if n_calib == 0 or calib_errors.numel() != n_calib:
        raise ValueError(
            f"need one error per calibration input (>= 1), got {calib_errors.numel()} errors for "
            f"{n_calib} inputs"
        )
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    device = query_inputs.device
    errors = calib_errors.to(device=device, dtype=torch.float64)
    dists = [pairwise_distances(query_inputs, calib_inputs, norm) for _, norm in terms]
    slopes = [float(c) for c, _ in terms]
    n_query = query_inputs.shape[0]
    bound = torch.empty(n_query, dtype=torch.float64, device=device)
    index = torch.empty(n_query, dtype=torch.long, device=device)
    chosen = torch.empty(n_query, len(terms), dtype=torch.float64, device=device)
    for q0 in range(0, n_query, block):
        rows = slice(q0, min(q0 + block, n_query))
        m = rows.stop - rows.start
        best = torch.full((m,), math.inf, dtype=torch.float64, device=device)
        best_idx = torch.zeros(m, dtype=torch.long, device=device)
        best_d = torch.zeros(m, len(terms), dtype=torch.float64, device=device)
        for c0 in range(0, n_calib, block):
            cols = slice(c0, min(c0 + block, n_calib))
            blocks = [dist(rows, cols) for dist in dists]  # each (m, n)
            total = errors[cols][None, :].expand(m, -1).clone()
            for slope, d in zip(slopes, blocks, strict=True):
                total += slope * d
            value, arg = total.min(1)
            better = value < best
            best = torch.where(better, value, best)
            best_idx = torch.where(better, arg + c0, best_idx)
            picked = torch.stack([d.gather(1, arg[:, None])[:, 0] for d in blocks], 1)
            best_d = torch.where(better[:, None], picked, best_d)
        bound[rows], index[rows], chosen[rows] = best, best_idx, best_d
    return bound * (1 + SVD_RELATIVE_MARGIN), index, chosen


def _symmetric(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_errors: Tensor | None,
    calib_targets: Tensor | None,
    calib_preds: Tensor | None,
    lipschitz_model: ConstantLike,
    lipschitz_true: ConstantLike,
    norm: str,
    input_noise: float,
    symmetry: SymmetryGroup,
    operator: str | None,
    data_discretization: str | None,
) -> ErrorBound:
    """The ``symmetry=`` option of :func:`operator_error_bound` (premise-checked there)."""
    from .symmetry import symmetric_error_bound

    if not isinstance(lipschitz_model, nn.Module):
        raise ValueError(
            "a symmetry-reduced bound needs the model itself as lipschitz_model (its "
            f"architecture is checked), got {type(lipschitz_model).__name__}"
        )
    if norm != "function" or input_noise:
        raise ValueError("symmetry-reduced bounds are in the function norm, without input_noise")
    assert isinstance(lipschitz_model, CertifiedModule)
    return symmetric_error_bound(
        query_inputs,
        calib_inputs,
        calib_errors,
        calib_targets=calib_targets,
        calib_preds=calib_preds,
        model=lipschitz_model,
        lipschitz_true=lipschitz_true,
        group=symmetry,
        operator=operator,
        data_discretization=data_discretization,
    )


def operator_error_bound(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_errors: Tensor | None = None,
    *,
    calib_targets: Tensor | None = None,
    calib_preds: Tensor | None = None,
    lipschitz_model: ConstantLike,
    lipschitz_true: ConstantLike,
    norm: str = "function",
    input_noise: float = 0.0,
    block: int = BLOCK,
    data_discretization: str | None = None,
    symmetry: SymmetryGroup | None = None,
    operator: str | None = None,
) -> ErrorBound:
    """The plain operator certificate, batched over queries.

    ``||G(a) - Ĝ(a)|| <= min_i [ e_i + L_G d_G(a, a_i) + L_Ĝ d_Ĝ(a, a_i) ] (+ L_G eps)``
    with ``e_i = ||G(a_i) - Ĝ(a_i)||`` and ``d_G``, ``d_Ĝ`` the input norms of the constants
    (both ``norm`` unless a :class:`LipschitzConstant` says otherwise).

    Parameters
    ----------
    query_inputs
        ``(n_query, channels, *spatial)`` inputs ``a`` (or ``ã = a + δ`` with ``input_noise``).
    calib_inputs
        ``(n_calib, channels, *spatial)`` calibration inputs ``a_i``.
    calib_errors
        ``(n_calib,)`` errors ``||G(a_i) - Ĝ(a_i)||`` in ``norm``; or pass ``calib_targets`` and
        ``calib_preds`` (``(n_calib, out_channels, *spatial)``) instead.
    lipschitz_model
        ``L_Ĝ``: a certified model (its ``lipschitz_bound()``), a :class:`LipschitzConstant`,
        or a number (labelled estimated).
    lipschitz_true
        ``L_G``: e.g. ``true_lipschitz("advection")`` (certified) or
        ``estimate_true_lipschitz(...)`` (estimated); a bare number is labelled estimated.
    norm
        Norm of the error: ``"function"`` (default) or ``"sup"`` (pointwise; a model constant
        into the function norm is then converted by :func:`sup_output_constant`).
    input_noise
        ``eps >= 0``: the queries are noisy observations ``ã`` of the inputs of interest ``a``,
        ``d_G(ã, a) <= eps``. The bound is then on ``||G(a) - Ĝ(ã)||`` (true output at the clean
        input against the prediction made from the noisy one) and grows by ``L_G eps`` only:
        ``||G(a) - Ĝ(ã)|| <= ||G(a) - G(a_i)|| + e_i + ||Ĝ(a_i) - Ĝ(ã)||`` with
        ``||G(a) - G(a_i)|| <= L_G (d(ã, a_i) + eps)``.
    block
        Block size of the streamed nearest-sample search.
    data_discretization
        How the data's outputs were made from their inputs (a data file's ``discretization``
        attribute), matched against the discretization ``L_G`` is proved for.
    symmetry, operator
        A :class:`~liponet.certify.symmetry.SymmetryGroup` (cyclic shifts, reflection) to
        minimize over the calibration inputs' orbits too, and the true operator's name in the
        symmetry-theorem registry (``None``: the bound is labelled estimated). Premise-checked:
        ``lipschitz_model`` must be the model itself, whose architecture must commute with the
        group (see :func:`~liponet.certify.symmetry.symmetric_error_bound`; function norm, no
        ``input_noise``).

    Returns
    -------
    ErrorBound
        ``name="plain"`` (``"mixed-norm"`` when the constants use different input norms,
        ``"pointwise"`` for ``norm="sup"``); ``label`` certified iff both constants are and
        their premises hold. ``premises`` lists what it rests on; ``notes`` why a label was
        lowered (``L_G`` proved for the continuous operator or another discretization than the
        data's: the bound is then ``"estimated"``).

    Raises
    ------
    PremiseError
        If a query or calibration input lies outside a constant's domain (an auxiliary-scale
        model's ``radius``, ``L_G``'s value range).

    Examples
    --------
    >>> import torch
    >>> a = torch.zeros(3, 1, 8); a[1] += 1.0; a[2] += 3.0
    >>> b = operator_error_bound(
    ...     torch.full((1, 1, 8), 2.0), a, torch.tensor([0.5, 0.1, 0.1]),
    ...     lipschitz_model=1.0, lipschitz_true=true_lipschitz("advection"))
    >>> round(float(b.bound[0]), 6), int(b.index[0]), b.label
    (2.1, 1, 'estimated')
    """
    norm = check_norm(norm)
    if not (math.isfinite(input_noise) and input_noise >= 0):
        raise ValueError(f"input_noise must be finite and >= 0, got {input_noise}")
    if symmetry is not None:
        args = (calib_errors, calib_targets, calib_preds, lipschitz_model, lipschitz_true)
        return _symmetric(
            query_inputs, calib_inputs, *args, norm, input_noise, symmetry, operator,
            data_discretization,
        )  # fmt: skip
    errors = calib_errors_from(calib_errors, calib_targets, calib_preds, norm)
    n_out = _n_points(calib_targets if calib_targets is not None else calib_inputs)
    model = _into_norm(as_constant(lipschitz_model, norm), norm, n_out)
    true = _into_norm(as_constant(lipschitz_true, norm), norm, n_out)
    constants, premises, notes = check_constant_premises(
        {"model": model, "true": true},
        {"query": query_inputs, "calibration input": calib_inputs},
        data_discretization,
    )
    model, true = constants["model"], constants["true"]
    terms = _merge_terms([(model.value, model.input_norm), (true.value, true.input_norm)])
    out = nearest_sample_bound(
        query_inputs,
        calib_inputs,
        errors,
        terms,
        block,
        label=weakest_label(model.label, true.label),
        name="pointwise" if norm == "sup" else "plain" if len(terms) == 1 else "mixed-norm",
        norm=norm,
        constants={"model": model, "true": true},
    )
    out.bound = out.bound + true.value * input_noise
    out.premises, out.notes = premises, notes
    return out


def check_constant_premises(
    constants: dict[str, LipschitzConstant],
    inputs: dict[str, Tensor],
    data_discretization: str | None = None,
) -> tuple[dict[str, LipschitzConstant], tuple[str, ...], tuple[str, ...]]:
    """The one premise check of every bound built from constants and inputs.

    Refuses inputs outside a constant's domain (:class:`PremiseError`); lowers to ``"estimated"``
    a true-operator constant proved for another discretization than the data's (see
    :func:`~liponet.certify.discretization_note`).

    Returns
    -------
    tuple
        The constants (lowered where needed), the premises (one line each: role, label, source,
        checked premises) and the notes saying why a label was lowered.
    """
    out, premises, notes = {}, [], []
    for role, c in constants.items():
        for what, x in inputs.items():
            check_inputs(c.premises, x, what, f"{role} constant ({c.source or 'no source'})")
        note = discretization_note(c.premises, data_discretization) if role == "true" else None
        if note is not None and c.label == "certified":
            c = replace(c, label="estimated", source=f"{c.source} [not certified here: {note}]")
            notes.append(f"{role}: {note}")
        checked = "; ".join(c.premises.describe())
        premises.append(
            f"{role}: {c.value:.6g} ({c.label}; {c.source or 'no source'})"
            + (f"; premises checked: {checked}" if checked else "")
        )
        out[role] = c
    return out, tuple(premises), tuple(notes)


def nearest_sample_bound(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_errors: Tensor,
    terms: Sequence[tuple[float, str]],
    block: int,
    *,
    label: str,
    name: str,
    norm: str,
    constants: dict[str, LipschitzConstant],
) -> ErrorBound:
    """:func:`min_over_calibration` wrapped as an :class:`ErrorBound` (minimizing sample kept)."""
    bound, index, dist = min_over_calibration(
        query_inputs, calib_inputs, calib_errors, terms, block
    )
    return ErrorBound(
        bound=bound,
        label=label,
        name=name,
        norm=norm,
        index=index,
        distance=dist,
        calib_error=calib_errors.to(index.device)[index],
        constants=constants,
    )


def _n_points(fields: Tensor) -> int:
    return math.prod(fields.shape[2:]) if fields.ndim >= 3 else 1


def _into_norm(constant: LipschitzConstant, norm: str, n_points: int) -> LipschitzConstant:
    """Check a constant ends in the error norm (converting function <-> sup where valid).

    Into the sup norm is also into the function norm (a mean over the grid is at most the
    maximum), with the same value; into the function norm gives into the sup norm with a factor
    ``sqrt(n_points)`` (:func:`sup_output_constant`).
    """
    if constant.output_norm == norm:
        return constant
    if norm == "function" and constant.output_norm == "sup":
        return replace(constant, output_norm="function", source=f"{constant.source} (sup >= L2)")
    if norm == "sup" and constant.output_norm == "function":
        return sup_output_constant(constant, n_points)
    raise ValueError(
        f"a constant into the {constant.output_norm!r} norm cannot bound errors in the {norm!r} "
        f"norm ({constant.source or 'no source'})"
    )


def _merge_terms(terms: Sequence[tuple[float, str]]) -> list[tuple[float, str]]:
    """Sum the slopes of terms that share a distance norm (one distance computation each)."""
    merged: dict[str, float] = {}
    for slope, norm in terms:
        merged[norm] = merged.get(norm, 0.0) + slope
    return [(slope, norm) for norm, slope in merged.items()]


# --------------------------------------------------------------------------------------------
# Perturbations and rollouts


def robustness_bound(lipschitz_model: ConstantLike, epsilon: float) -> Certificate:
    """``||Ĝ(a + δ) - Ĝ(a)|| <= L_Ĝ eps`` for every ``||δ|| <= eps`` (certified robustness).

    Examples
    --------
    >>> robustness_bound(LipschitzConstant(2.0, "certified", source="a proof"), 0.1)
    Certificate(value=0.2, label='certified', what='max ||Ĝ(a+δ) - Ĝ(a)|| for ||δ|| <= 0.1', \
premises=())
    """
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon must be finite and >= 0, got {epsilon}")
    c = as_constant(lipschitz_model)
    return Certificate(
        c.value * epsilon,
        c.label,
        f"max ||Ĝ(a+δ) - Ĝ(a)|| for ||δ|| <= {epsilon:g}",
        _ball_premises(c),
    )


def _ball_premises(c: LipschitzConstant) -> tuple[str, ...]:
    """A perturbation certificate holds only while ``a`` and ``a + δ`` stay in the domain."""
    return tuple(f"a and a + δ: {p}" for p in c.premises.describe() if p.startswith("input"))


def certified_radius(lipschitz_model: ConstantLike, tolerance: float) -> Certificate:
    """Largest ``eps`` with ``||Ĝ(a + δ) - Ĝ(a)|| <= tolerance`` guaranteed for ``||δ|| <= eps``.

    ``tolerance / L_Ĝ`` (infinite for a constant model).

    Examples
    --------
    >>> from liponet.models import LipMLP
    >>> model = LipMLP(2, 1, width=4, depth=2).eval()
    >>> r = certified_radius(model, tolerance=0.1)  # inputs within r move outputs <= 0.1
    >>> r.label, round(r.value * model.lipschitz_bound(), 9)
    ('certified', 0.1)
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be finite and >= 0, got {tolerance}")
    c = as_constant(lipschitz_model)
    radius = math.inf if c.value == 0 else tolerance / c.value
    return Certificate(
        radius,
        c.label,
        f"input radius keeping the output within {tolerance:g}",
        _ball_premises(c),
    )


def rollout_error_bound(
    step_bounds: Tensor | ErrorBound | Sequence[ErrorBound] | Sequence[float],
    lipschitz: ConstantLike,
    initial_error: Tensor | float = 0.0,
    step_label: str = "estimated",
    window: int = 1,
) -> ErrorBound:
    """Compose one-step bounds over an autoregressive rollout: ``e_{t+1} <= L e_t + δ_t``.

    Two valid readings (same recursion): with ``L = L_Ĝ``, ``δ_t`` must bound the one-step error
    at the *true* state, ``||G(u_t) - Ĝ(u_t)||`` (e.g. defects measured on the true trajectory);
    with ``L = L_G``, ``δ_t`` must bound it at the *predicted* state, ``||G(û_t) - Ĝ(û_t)||``,
    which :func:`operator_error_bound` computes (see :func:`certify_rollout`). Proof of the
    second: ``||u_{t+1} - û_{t+1}|| <= ||G(u_t) - G(û_t)|| + ||G(û_t) - Ĝ(û_t)|| <= L_G e_t + δ_t``.

    Windows (PDEBench's ``initial_step``): when the step reads the last ``window`` frames stacked
    as channels, the function norm of the window error is the root sum of squares of its frame
    errors, so ``e_{t+1} <= L sqrt(e_{t-window+1}^2 + ... + e_t^2) + δ_t``. For ``window = 1``
    this is ``e_t <= L^t e_0 + sum_s L^(t-1-s) δ_s``: errors stay below ``δ / (1 - L)`` if
    ``L < 1``, grow at most linearly (``t δ``) if ``L = 1``, and may grow like ``L^t`` otherwise.

    Parameters
    ----------
    step_bounds
        One :class:`ErrorBound` per step (each ``(batch,)``), one :class:`ErrorBound` of
        ``(batch, n_steps)``, or bare numbers: a ``(batch, n_steps)`` tensor of ``δ_t`` (a 1-D
        tensor or list of numbers is one sample), which are labelled ``"estimated"``: liponet
        cannot check a number given without what it rests on.
    lipschitz
        ``L`` (``L_Ĝ`` or ``L_G`` as above): a certified model (``model.lipschitz_bound()``), a
        :class:`LipschitzConstant`, or a number (labelled estimated).
    initial_error
        Errors of the ``window`` initial frames: a number, ``(batch,)`` (the same for each frame
        of a sample's window) or anything broadcastable to ``(batch, window)``; 0 when the
        rollout starts from the exact state.
    step_label
        Label of bare-number ``step_bounds``: only ``"estimated"`` (the default); asking for
        ``"certified"`` or ``"statistical"`` raises :class:`PremiseError`, pass
        :class:`ErrorBound` objects instead (e.g. ``ErrorBound(defects, "certified",
        "measured defects", "function", premises=("exact one-step defects on the true
        states, float64",))`` when you computed them exactly).
    window
        Frames per input window (PDEBench's ``initial_step``).

    Returns
    -------
    ErrorBound
        ``bound`` ``(batch, n_steps)``: ``e_1 ... e_n``; ``name="rollout"``.

    Examples
    --------
    >>> one = LipschitzConstant(1.0, "certified", source="a contraction, by proof")
    >>> rollout_error_bound([0.1, 0.1, 0.1], one).bound.tolist()
    [[0.1, 0.2, 0.30000000000000004]]
    >>> b = rollout_error_bound([0.1, 0.1, 0.1], 0.5)
    >>> b.bound.tolist(), b.label
    ([[0.1, 0.15000000000000002, 0.17500000000000002]], 'estimated')
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    steps = (
        []
        if isinstance(step_bounds, (Tensor, ErrorBound))
        else [b for b in step_bounds if isinstance(b, ErrorBound)]
    )
    premises: list[str] = []
    if isinstance(step_bounds, ErrorBound):
        deltas = step_bounds.bound.to(torch.float64)
        deltas = deltas[None] if deltas.ndim == 1 else deltas
        labels = [step_bounds.label]
        premises = [f"steps: {p}" for p in step_bounds.premises]
    elif steps and len(steps) == len(step_bounds):
        deltas = torch.stack([b.bound.to(torch.float64) for b in steps], 1)
        labels = [b.label for b in steps]
        premises = sorted({f"steps: {p}" for b in steps for p in b.premises})
    else:
        if step_label != "estimated":
            raise PremiseError(
                f"step_bounds are bare numbers, which cannot be {step_label!r}: pass ErrorBound "
                "objects (from operator_error_bound, or built from exactly computed defects, "
                "saying what they rest on)"
            )
        deltas = torch.as_tensor(step_bounds, dtype=torch.float64)
        deltas = deltas[None] if deltas.ndim == 1 else deltas
        if deltas.ndim != 2 or deltas.shape[1] == 0:
            raise ValueError(
                f"step_bounds must be (batch, n_steps) with n_steps >= 1, got {tuple(deltas.shape)}"
            )
        labels = [step_label]
    if not bool(torch.isfinite(deltas).all()) or bool((deltas < 0).any()):
        raise ValueError("step_bounds must be finite and >= 0")
    c = as_constant(lipschitz)
    e0 = torch.as_tensor(initial_error, dtype=torch.float64, device=deltas.device)
    e0 = e0[:, None] if e0.ndim == 1 else e0
    try:
        errors = e0.expand(deltas.shape[0], window)  # (batch, window)
    except RuntimeError:
        raise ValueError(
            f"initial_error of shape {tuple(e0.shape)} does not broadcast to (batch, window) = "
            f"({deltas.shape[0]}, {window})"
        ) from None
    out = []
    for t in range(deltas.shape[1]):
        e = c.value * errors.pow(2).sum(1).sqrt() + deltas[:, t]
        errors = torch.cat([errors[:, 1:], e[:, None]], 1)
        out.append(e)
    return ErrorBound(
        bound=torch.stack(out, 1),
        label=weakest_label(c.label, *labels),
        name="rollout",
        norm=c.output_norm,
        constants={"step": c},
        premises=(f"step constant: {c.source}", *premises),
    )


def certify_rollout(
    step: Callable[[Tensor], Tensor],
    initial: Tensor,
    n_steps: int,
    calib_inputs: Tensor,
    calib_errors: Tensor,
    lipschitz_model: ConstantLike,
    lipschitz_true: ConstantLike,
    initial_error: Tensor | float = 0.0,
) -> tuple[Tensor, ErrorBound]:
    """Roll a one-step surrogate out and certify every predicted state.

    Each predicted state ``û_t`` is a query of the one-step certificate
    (:func:`operator_error_bound` with the one-step calibration pairs), giving ``δ_t``; the steps
    compose with ``L_G`` (:func:`rollout_error_bound`, second reading).

    Parameters
    ----------
    step
        The surrogate of one step, ``(batch, channels, *spatial) -> same shape``.
    initial
        ``(batch, channels, *spatial)`` starting states.
    n_steps
        Number of steps.
    calib_inputs, calib_errors
        One-step calibration pairs: states ``u`` and ``||G(u) - Ĝ(u)||``.
    lipschitz_model, lipschitz_true
        ``L_Ĝ`` and ``L_G`` of one step.
    initial_error
        Error of the starting states (0 when exact).

    Returns
    -------
    tuple
        Predictions ``(batch, n_steps, channels, *spatial)`` and the rollout
        :class:`ErrorBound` ``(batch, n_steps)``.

    Examples
    --------
    >>> import torch
    >>> u0 = torch.randn(2, 1, 8)
    >>> preds, bound = certify_rollout(lambda u: u, u0, 3, calib_inputs=u0,
    ...                               calib_errors=torch.zeros(2), lipschitz_model=1.0,
    ...                               lipschitz_true=1.0)
    >>> preds.shape, bound.bound.shape, bound.label  # bare numbers: estimated
    (torch.Size([2, 3, 1, 8]), torch.Size([2, 3]), 'estimated')
    """
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    if isinstance(step, nn.Module):
        check_eval_mode(step, "step")
        if isinstance(lipschitz_model, LipschitzConstant):
            check_weights(lipschitz_model.premises, step, "model constant")
    states, steps = [], []
    u = initial
    with torch.no_grad():
        for _ in range(n_steps):
            steps.append(
                operator_error_bound(
                    u,
                    calib_inputs,
                    calib_errors,
                    lipschitz_model=lipschitz_model,
                    lipschitz_true=lipschitz_true,
                )
            )
            u = step(u)
            states.append(u)
    true = as_constant(lipschitz_true)
    return torch.stack(states, 1), rollout_error_bound(steps, true, initial_error)


# --------------------------------------------------------------------------------------------
# The true operator's constant

TrueConstantFn = Callable[..., LipschitzConstant]
_TRUE_CONSTANTS: dict[str, TrueConstantFn] = {}


def register_true_constant(name: str) -> Callable[[TrueConstantFn], TrueConstantFn]:
    """Register ``fn(input_norm, output_norm, **params) -> LipschitzConstant`` under ``name``.

    Examples
    --------
    >>> @register_true_constant("doc-identity")
    ... def _identity(norm, out, **params):
    ...     return LipschitzConstant(1.0, "certified", norm, out, "the identity map")
    >>> true_lipschitz("doc-identity").value
    1.0
    >>> del _TRUE_CONSTANTS["doc-identity"]  # (keep the registry as it was)
    """

    def decorator(fn: TrueConstantFn) -> TrueConstantFn:
        if name in _TRUE_CONSTANTS:
            raise ValueError(f"a true-operator constant named {name!r} is already registered")
        _TRUE_CONSTANTS[name] = fn
        return fn

    return decorator


def available_true_operators() -> list[str]:
    """Names with a theoretical constant (see :func:`true_lipschitz`).

    Examples
    --------
    >>> available_true_operators()[:2]
    ['advection', 'diffusion_reaction']
    """
    return sorted(_TRUE_CONSTANTS)


def true_lipschitz(
    pde: str, norm: str = "function", output_norm: str | None = None, **params: float
) -> LipschitzConstant:
    """The theoretical Lipschitz constant of a PDE's solution operator (labelled certified).

    A theorem about the **continuous** operator (premise ``discretization="continuous"``): it
    does not certify the map between grid samples that a data set defines, and a bound built on
    it for grid data is labelled ``"estimated"`` with a note. For the discrete maps use
    :func:`~liponet.certify.grid_lipschitz` (reference operators) or
    :func:`~liponet.certify.generator_lipschitz` (generated files).

    Parameters
    ----------
    pde
        A registered name: ``advection``, ``heat``, ``diffusion_reaction``. Burgers has no global
        constant: use :func:`estimate_true_lipschitz`.
    norm, output_norm
        Input and output norms (``output_norm`` defaults to ``norm``).
    **params
        The PDE's parameters where the constant depends on them (see each entry).

    Examples
    --------
    >>> true_lipschitz("advection").value
    1.0
    >>> true_lipschitz("burgers")
    Traceback (most recent call last):
    ...
    ValueError: no theoretical constant for 'burgers'; available: advection, diffusion_reaction, \
heat (estimate one with estimate_true_lipschitz)
    """
    if pde not in _TRUE_CONSTANTS:
        raise ValueError(
            f"no theoretical constant for {pde!r}; available: "
            f"{', '.join(available_true_operators())} (estimate one with estimate_true_lipschitz)"
        )
    norm = check_norm(norm)
    out = check_norm(output_norm if output_norm is not None else norm)
    constant = _TRUE_CONSTANTS[pde](norm, out, **params)
    if constant.premises.discretization != ANY_GRID:
        return constant
    return replace(constant, premises=replace(constant.premises, discretization=CONTINUOUS))


def _require(params: dict[str, float], pde: str, *names: str) -> list[float]:
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"{pde}: this constant needs parameter(s) {', '.join(missing)}")
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"{pde}: unknown parameter(s) {', '.join(unknown)}")
    values = [float(params[n]) for n in names]
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise ValueError(f"{pde}: parameters {names} must be finite and >= 0, got {values}")
    return values


def _same_norm_only(pde: str, norm: str, out: str) -> None:
    if norm != out:
        raise ValueError(f"{pde}: no constant registered from {norm!r} to {out!r}")


@register_true_constant("advection")
def _advection(norm: str, out: str, **params: float) -> LipschitzConstant:
    """Periodic advection ``u_t + beta . grad u = 0``: ``L_G = 1`` in every norm, any beta, t.

    The solution operator is the translation ``a -> a(. - beta t)``. It is linear, and a
    translation preserves every translation-invariant norm: the L2 (function) norm and the sup
    norm of the periodic field, and each Sobolev norm ``H^s`` (it multiplies Fourier coefficient
    ``k`` by ``exp(-2 pi i k.beta t)``, of modulus 1). So ``||G a - G b|| = ||a - b||``. Exact
    for the exact operator and for Fourier-shift discretizations; a finite-volume solver's
    numerical diffusion only contracts further, but limiters make it nonlinear: treat solver data
    with its own error in mind.

    On grid values: liponet's advection generator evaluates the exact solution at cell centres,
    so the discrete map is exactly an isometry only for shifts ``beta t`` by whole cells (a
    permutation of the values) or for band-limited data. For a fractional-cell shift of
    non-band-limited samples (PDEBench's nearly periodic series, ``|u|``, tanh windows) the grid
    norm is a quadrature that moves with the shift: pair ratios of 0.965 to 1.032 were measured
    (nx = 32, 2.5 cells; ``datasets/advection.md``), so ``L_G = 1`` does not hold for that data.
    """
    _same_norm_only("advection", norm, out)
    _require(params, "advection")
    return LipschitzConstant(
        1.0, "certified", norm, out, "theory: periodic advection is a translation (isometry)"
    )


@register_true_constant("heat")
def _heat(norm: str, out: str, **params: float) -> LipschitzConstant:
    """Periodic heat equation ``u_t = nu Δu``: a contraction, ``L_G = 1``; smoothing into L2.

    Same norm: Fourier coefficient ``k`` is multiplied by ``exp(-nu |2 pi k|^2 t) <= 1``, so the
    operator (linear) contracts L2 and every ``H^s``; in the sup norm the heat kernel is a
    probability density (maximum principle). ``L_G = 1`` for every ``nu, t >= 0``.

    From ``sobolev:S`` (``S <= 0``) into the function norm, with parameters ``nu``, ``t`` (and
    ``dim``, default 1): the operator multiplies coefficient ``k`` (an integer vector on the unit
    periodic box) by ``exp(-nu t q)``, ``q = |2 pi k|^2``, and the input norm weighs it by
    ``(1 + q)^(S/2)``, so the constant is ``max_k f(q_k)`` with ``f(q) = (1 + q)^σ exp(-a q)``,
    ``σ = -S/2``, ``a = nu t``. ``f`` increases up to ``q* = σ/a - 1`` and decreases after, so
    the maximum over the feasible ``q`` is at the feasible values next to ``q*``: ``k`` the
    integers around ``sqrt(q*)/(2 pi)`` in 1-D; for ``dim > 1`` every integer ``m = |k|^2`` is
    allowed (a superset of the sums of squares, so still an upper bound).
    """
    if norm == out:
        _require(params, "heat")
        return LipschitzConstant(1.0, "certified", norm, out, "theory: heat is a contraction")
    if not (norm.startswith("sobolev:") and out == "function"):
        raise ValueError(f"heat: no constant registered from {norm!r} to {out!r}")
    dim = int(params.pop("dim", 1))
    nu, t = _require(params, "heat", "nu", "t")
    sigma = -float(norm.split(":", 1)[1]) / 2
    if sigma < 0 or dim < 1:
        raise ValueError(f"heat: needs a weaker input norm (S <= 0) and dim >= 1: {norm}, {dim}")
    a = nu * t
    if sigma > 0 and a == 0:
        raise ValueError("heat: nu * t must be > 0 to map a negative Sobolev norm into L2")
    two_pi_sq = (2 * math.pi) ** 2
    q_star = sigma / a - 1 if a > 0 else 0.0
    if dim == 1:
        k_star = math.sqrt(max(q_star, 0.0) / two_pi_sq)
        candidates = [two_pi_sq * k**2 for k in {0, math.floor(k_star), math.ceil(k_star)}]
    else:
        m_star = max(q_star, 0.0) / two_pi_sq
        candidates = [two_pi_sq * m for m in {0, math.floor(m_star), math.ceil(m_star)}]
    value = max((1 + q) ** sigma * math.exp(-a * q) for q in candidates)
    return LipschitzConstant(
        value * (1 + SVD_RELATIVE_MARGIN),
        "certified",
        norm,
        out,
        f"theory: heat smoothing H^{-2 * sigma:g} -> L2 at nu*t={a:g}, dim={dim}",
    )


@register_true_constant("diffusion_reaction")
def _diffusion_reaction(norm: str, out: str, **params: float) -> LipschitzConstant:
    """``u_t = nu Δu + rho u (1 - u)`` (periodic), data in ``[0, 1]``: ``L_G = exp(rho t)``.

    ``[0, 1]`` is invariant (0 and 1 are steady states; comparison principle). For two solutions
    with values in ``[0, 1]`` the difference ``w`` solves ``w_t = nu Δw + rho (1 - u - v) w`` with
    ``|1 - u - v| <= 1``, so ``d/dt ||w||^2 <= 2 rho ||w||^2`` in L2 (the diffusion term only
    dissipates) and likewise in sup (maximum principle): ``||w(t)|| <= exp(rho t) ||w(0)||``.
    Valid only for inputs with values in ``[0, 1]`` (PDEBench rescales its initial conditions so).
    """
    _same_norm_only("diffusion_reaction", norm, out)
    if norm not in ("function", "sup", "euclidean"):
        raise ValueError(f"diffusion_reaction: no constant registered in {norm!r}")
    rho, t = _require(params, "diffusion_reaction", "rho", "t")
    return LipschitzConstant(
        math.exp(rho * t) * (1 + SVD_RELATIVE_MARGIN),
        "certified",
        norm,
        out,
        f"theory: logistic reaction, values in [0,1]: exp(rho t) = exp({rho:g}*{t:g})",
        Premises(value_range=(0.0, 1.0)),
    )


def max_pair_ratio(
    inputs: Tensor,
    outputs: Tensor,
    input_norm: str = "function",
    output_norm: str = "function",
    block: int = BLOCK,
) -> tuple[float, int]:
    """Largest ``||f_i - f_j|| / ||a_i - a_j||`` over all pairs (an empirical lower bound).

    Pairs of (numerically) equal inputs are skipped. Streams over blocks: ``O(block^2)`` memory.

    Returns
    -------
    tuple
        The ratio and the number of pairs compared.
    """
    if inputs.shape[0] != outputs.shape[0]:
        raise ValueError(
            f"inputs and outputs must have the same number of samples, got {inputs.shape[0]} "
            f"and {outputs.shape[0]}"
        )
    n = inputs.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 samples to estimate a constant, got {n}")
    d_in = pairwise_distances(inputs, inputs, input_norm)
    d_out = pairwise_distances(outputs, outputs, output_norm)
    best, pairs = 0.0, 0
    for r0 in range(0, n, block):
        rows = slice(r0, min(r0 + block, n))
        for c0 in range(r0, n, block):
            cols = slice(c0, min(c0 + block, n))
            din, dout = d_in(rows, cols), d_out(rows, cols)
            upper = torch.ones_like(din, dtype=torch.bool)
            if c0 == r0:  # same block: strict upper triangle only
                upper = torch.triu(upper, diagonal=1)
            scale = din.amax().clamp_min(torch.finfo(din.dtype).tiny)
            keep = upper & (din > 1e-6 * scale)
            pairs += int(keep.sum())
            if bool(keep.any()):
                best = max(best, float((dout[keep] / din[keep]).max()))
    return best, pairs


def estimate_true_lipschitz(
    inputs: Tensor,
    outputs: Tensor,
    norm: str = "function",
    safety: float = 1.0,
    block: int = BLOCK,
) -> LipschitzConstant:
    """Data estimate of ``L_G``: the largest pair ratio times ``safety`` (labelled estimated).

    A maximum over finitely many pairs is a *lower* bound of the true constant; the safety factor
    only makes violations less likely. Every bound built on it is labelled ``"estimated"``.

    Examples
    --------
    >>> import torch
    >>> a = torch.randn(6, 1, 8)
    >>> c = estimate_true_lipschitz(a, 2 * a, safety=1.5)
    >>> round(c.value, 4), c.label
    (3.0, 'estimated')
    """
    if not (math.isfinite(safety) and safety >= 1.0):
        raise ValueError(f"safety must be a finite factor >= 1, got {safety}")
    ratio, pairs = max_pair_ratio(inputs, outputs, norm, norm, block)
    return LipschitzConstant(
        ratio * safety,
        "estimated",
        norm,
        norm,
        f"estimate: max ratio over {pairs} pairs x safety {safety:g}",
    )
