"""Bounds that beat the plain certificate's nearest-sample floor, each labelled by what it rests on.

* :func:`error_lipschitz_bound` (**estimated**): replaces ``L_G + L_Ĝ`` by an estimate of the
  Lipschitz constant of the *error operator* ``E = G - Ĝ`` from calibration pairs. When ``Ĝ`` is
  good, ``E`` varies slowly and its constant is small; but a maximum over pairs is a lower bound
  of the true constant, so the bound can fail (queries outside the calibration family).
* :func:`conformal_error_bound` (**statistical**): split conformal prediction on the same
  calibration errors. ``P(error <= bound) >= 1 - alpha`` for a query exchangeable with the
  calibration samples; no per-query guarantee, and none under distribution shift.
* Weaker input norms (**certified**, where a theorem allows): pass
  ``true_lipschitz("heat", "sobolev:-S", "function", nu=..., t=...)`` as ``lipschitz_true`` to
  :func:`~liponet.certify.operator_error_bound`; the smoothing of the heat semigroup turns a
  high-frequency input difference into a small output difference (see the docs for why
  advection gains nothing this way).
* :func:`residual_error_bound` (**estimated** unless the residual integral is bounded
  rigorously): the a-posteriori bound of L2-stable PDEs for space-time surrogates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import Tensor

from .norms import check_norm, field_norm
from .operator import (
    BLOCK,
    ErrorBound,
    LipschitzConstant,
    calib_errors_from,
    error_fields,
    estimate_true_lipschitz,
    nearest_sample_bound,
)

__all__ = [
    "conformal_error_bound",
    "conformal_quantile",
    "error_lipschitz_bound",
    "estimate_error_lipschitz",
    "residual_error_bound",
]


def estimate_error_lipschitz(
    calib_inputs: Tensor,
    calib_targets: Tensor,
    calib_preds: Tensor,
    norm: str = "function",
    safety: float = 1.0,
    block: int = BLOCK,
) -> LipschitzConstant:
    """Estimate of the constant of ``E = G - Ĝ``: max pair ratio ``||E_i - E_j|| / ||a_i - a_j||``.

    The error *fields* (not their norms) are compared, so this estimates the constant of the
    operator ``E``; times ``safety``. Labelled ``"estimated"``.

    Examples
    --------
    >>> import torch
    >>> a = torch.stack([torch.full((1, 8), v) for v in (0.0, 1.0, 2.0)])
    >>> c = estimate_error_lipschitz(a, 2 * a, a)  # error E(a) = a: constant 1
    >>> c.label, round(c.value, 6)
    ('estimated', 1.0)
    """
    errors = error_fields(calib_targets, calib_preds)
    const = estimate_true_lipschitz(calib_inputs, errors, norm, safety, block)
    return replace(const, source=const.source.replace("estimate:", "estimate: error-operator"))


def error_lipschitz_bound(
    query_inputs: Tensor,
    calib_inputs: Tensor,
    calib_targets: Tensor,
    calib_preds: Tensor,
    norm: str = "function",
    safety: float = 1.0,
    block: int = BLOCK,
) -> ErrorBound:
    """``||E(a)|| <= min_i [ ||E(a_i)|| + L_E ||a - a_i|| ]``, ``L_E`` estimated (label estimated).

    Parameters
    ----------
    query_inputs, calib_inputs
        ``(n, channels, *spatial)`` queries and calibration inputs.
    calib_targets, calib_preds
        ``G(a_i)`` and ``Ĝ(a_i)``.
    norm
        Hilbert norm of inputs and errors (``"function"`` by default).
    safety
        Factor (>= 1) on the estimated constant.
    block
        Block size of the streamed search.

    Examples
    --------
    >>> import torch
    >>> a = torch.randn(20, 1, 8)
    >>> b = error_lipschitz_bound(a[:4], a[4:], 2 * a[4:], 1.5 * a[4:])  # E(a) = a / 2
    >>> b.label, round(b.constants["error"].value, 4)
    ('estimated', 0.5)
    """
    if check_norm(norm) == "sup":
        raise ValueError("error_lipschitz_bound needs a Hilbert norm (function, sobolev:S)")
    const = estimate_error_lipschitz(calib_inputs, calib_targets, calib_preds, norm, safety, block)
    errors = calib_errors_from(None, calib_targets, calib_preds, norm)
    return nearest_sample_bound(
        query_inputs,
        calib_inputs,
        errors,
        [(const.value, norm)],
        block,
        label="estimated",
        name="error-lipschitz",
        norm=norm,
        constants={"error": const},
    )


def conformal_quantile(calib_errors: Tensor, alpha: float) -> float:
    """The split-conformal threshold: the ``ceil((n + 1)(1 - alpha))``-th smallest score.

    ``inf`` when that rank exceeds ``n`` (too few samples for the level).

    Examples
    --------
    >>> import torch
    >>> conformal_quantile(torch.arange(1.0, 20.0), 0.1)  # n = 19: rank ceil(20 * 0.9) = 18
    18.0
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    scores = torch.as_tensor(calib_errors, dtype=torch.float64).reshape(-1)
    n = scores.numel()
    if n == 0:
        raise ValueError("conformal_quantile needs at least one calibration error")
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-12)
    if rank > n:
        return math.inf
    return float(torch.sort(scores).values[rank - 1])


def conformal_error_bound(
    query_inputs: Tensor,
    calib_errors: Tensor | None = None,
    alpha: float = 0.1,
    *,
    calib_targets: Tensor | None = None,
    calib_preds: Tensor | None = None,
    norm: str = "function",
    held_out: bool = False,
) -> ErrorBound:
    """Split-conformal bound: the same threshold for every query (label statistical).

    Guarantee: for a query drawn exchangeably with the calibration samples,
    ``P(||G(a) - Ĝ(a)|| <= bound) >= 1 - alpha`` (marginally over calibration set and query).
    Nothing is promised for an individual query or under distribution shift.

    The premise that makes calibration and query errors exchangeable: the calibration samples
    took no part in training the model or in choosing its checkpoint (on training samples the
    errors are smallest, and the threshold under-covers). Say so with ``held_out=True``;
    otherwise the bound is labelled ``"estimated"`` and ``notes`` says why.

    Parameters
    ----------
    query_inputs
        ``(n_query, ...)`` (only their number is used).
    calib_errors
        ``(n_calib,)`` calibration errors, or ``calib_targets`` + ``calib_preds``.
    alpha
        Miscoverage level in ``(0, 1)``.
    calib_targets, calib_preds
        Fields to compute the errors from, in ``norm``.
    norm
        Norm of the errors.
    held_out
        Whether the calibration samples are disjoint from the training data and from the data
        that selected the checkpoint (and drawn like the queries).

    Examples
    --------
    >>> import torch
    >>> errors = torch.arange(1.0, 20.0)
    >>> conformal_error_bound(torch.zeros(2, 1, 4), errors, held_out=True).label
    'statistical'
    >>> b = conformal_error_bound(torch.zeros(2, 1, 4), errors)
    >>> b.label, b.notes[0][:44]
    ('estimated', 'calibration data not declared held out from ')
    """
    norm = check_norm(norm)
    errors = calib_errors_from(calib_errors, calib_targets, calib_preds, norm)
    q = conformal_quantile(errors, alpha)
    bound = torch.full((query_inputs.shape[0],), q, dtype=torch.float64, device=errors.device)
    premise = (
        f"{errors.numel()} calibration errors held out from training and checkpoint selection, "
        "exchangeable with the queries"
    )
    notes: tuple[str, ...] = ()
    if not held_out:
        notes = (
            "calibration data not declared held out from training and checkpoint selection "
            "(held_out=True): no coverage guarantee",
        )
    return ErrorBound(
        bound=bound,
        label="statistical" if held_out else "estimated",
        name=f"conformal-{alpha:g}",
        norm=norm,
        premises=(premise,) if held_out else (),
        notes=notes,
    )


def residual_error_bound(
    initial_error: Tensor,
    residual: Callable[[float], Tensor],
    t_final: float,
    n_times: int = 64,
    stability: float = 1.0,
) -> ErrorBound:
    """A-posteriori bound of an L2-stable linear PDE: ``||e(T)|| <= C (||e(0)|| + ∫ ||r(t)|| dt)``.

    For ``u_t = A u`` with ``A`` generating a contraction semigroup (periodic advection, heat:
    ``C = stability = 1``), a surrogate ``û(x, t)`` with residual ``r = û_t - A û`` has error
    ``e = u - û`` solving ``e_t = A e - r``; Duhamel's formula and the contraction give
    ``||e(T)|| <= ||e(0)|| + ∫_0^T ||r(t)|| dt``. The integral is computed here by the composite
    midpoint rule on ``n_times`` sub-intervals and the residual's norm by the grid quadrature of
    ``residual``: both are approximations, so the result is labelled ``"estimated"``.

    Parameters
    ----------
    initial_error
        ``(batch,)``: ``||a - û(., 0)||`` (function norm).
    residual
        ``t -> (batch, channels, *spatial)`` residual fields at time ``t``.
    t_final
        ``T``.
    n_times
        Midpoint-rule intervals.
    stability
        ``C``: the semigroup's growth bound on ``[0, T]`` (1 for contractions).

    Examples
    --------
    >>> import torch
    >>> b = residual_error_bound(torch.tensor([0.5]), lambda t: torch.ones(1, 1, 8), t_final=1.0)
    >>> b.label, [round(v, 6) for v in b.bound.tolist()]  # 0.5 + integral of ||r|| = 1
    ('estimated', [1.5])
    """
    if not (t_final >= 0 and n_times >= 1 and stability >= 1):
        raise ValueError(
            f"need t_final >= 0, n_times >= 1, stability >= 1; got {t_final}, {n_times}, "
            f"{stability}"
        )
    dt = t_final / n_times
    integral = torch.zeros_like(initial_error, dtype=torch.float64)
    for j in range(n_times):
        integral = integral + dt * field_norm(residual((j + 0.5) * dt), "function")
    bound = stability * (initial_error.to(torch.float64) + integral)
    return ErrorBound(bound=bound, label="estimated", name="residual", norm="function")
