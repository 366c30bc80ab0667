"""Validation of error bounds against the truth: coverage and tightness.

*Coverage* is the fraction of held-out queries whose observed error is at most the bound (it
must be 1 for a certified bound); *tightness* is ``bound / observed`` (median and max over the
queries with a non-zero error): how far the guarantee is from what actually happened.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..models.fno import grid_coordinates
from .norms import field_norm
from .operator import ErrorBound

__all__ = [
    "CoverageReport",
    "calibration_sweep",
    "coverage_report",
    "field_operator",
    "observed_errors",
]


def field_operator(model: nn.Module, coords: Tensor | None = None) -> Callable[[Tensor], Tensor]:
    """The model as a map of fields ``(batch, channels, *spatial) -> (batch, out, *spatial)``.

    Field models (FNOs, ...) are returned as they are. DeepONets (models with
    ``branch_coefficients``) read the input field at its grid points as sensors and are
    evaluated at ``coords`` (default: the cell centres of the input's unit grid), the output
    reshaped to the input's spatial shape when the points are that grid.

    Examples
    --------
    >>> import torch
    >>> from liponet.models import LipFNO
    >>> fno = LipFNO(1, 1, modes=(4,), width=4, depth=1)
    >>> field_operator(fno) is fno  # field models are returned as they are
    True
    """
    if not hasattr(model, "branch_coefficients"):
        return model

    def apply(a: Tensor) -> Tensor:
        spatial = tuple(a.shape[2:])
        if coords is None:  # cell centres, (n_points, d) in row-major order
            points = grid_coordinates(a[:1]).flatten(2)[0].T
        else:
            points = coords.to(a)
        out = model(a.reshape(a.shape[0], a.shape[1], -1), points)  # (batch, out, n_points)
        if coords is None:
            return out.reshape(out.shape[0], out.shape[1], *spatial)
        return out

    return apply


def observed_errors(targets: Tensor, preds: Tensor, norm: str = "function") -> Tensor:
    """``||G(a) - Ĝ(a)||`` per sample, float64 ``(batch,)``.

    Examples
    --------
    >>> import torch
    >>> target = torch.ones(2, 1, 8)
    >>> [round(e, 6) for e in observed_errors(target + 1.0, target).tolist()]  # function norm
    [1.0, 1.0]
    """
    if targets.shape != preds.shape:
        raise ValueError(
            f"targets {tuple(targets.shape)} and preds {tuple(preds.shape)} must match"
        )
    return field_norm(targets.to(torch.float64) - preds.to(torch.float64), norm)


@dataclass(frozen=True)
class CoverageReport:
    """Coverage and tightness of one bound on one set of queries.

    Attributes
    ----------
    name, label
        The bound's name and label (certified / statistical / estimated).
    n_queries, violations
        Number of queries, and of those whose observed error exceeds the bound.
    coverage
        ``1 - violations / n_queries``.
    tightness_median, tightness_max
        Median and max of ``bound / observed`` over queries with a non-zero observed error
        (``nan`` if there are none).
    bound_median, observed_median
        Medians of the bound and of the observed error.

    Examples
    --------
    >>> import torch
    >>> from liponet.certify import ErrorBound, coverage_report
    >>> b = ErrorBound(torch.tensor([1.0, 2.0]), "certified", "plain", "function")
    >>> report = coverage_report(b, torch.tensor([0.5, 1.0]))
    >>> isinstance(report, CoverageReport), report.coverage, report.n_queries
    (True, 1.0, 2)
    """

    name: str
    label: str
    n_queries: int
    violations: int
    coverage: float
    tightness_median: float
    tightness_max: float
    bound_median: float
    observed_median: float


def coverage_report(bound: ErrorBound, observed: Tensor) -> CoverageReport:
    """Compare a bound with observed errors of the same queries.

    Examples
    --------
    >>> import torch
    >>> from liponet.certify import ErrorBound
    >>> b = ErrorBound(torch.tensor([1.0, 2.0]), "certified", "plain", "function")
    >>> r = coverage_report(b, torch.tensor([0.5, 2.5]))
    >>> r.coverage, r.violations, r.tightness_median
    (0.5, 1, 1.4)
    """
    bounds = bound.bound.to(torch.float64).reshape(-1)
    obs = observed.to(torch.float64).reshape(-1).to(bounds.device)
    if bounds.numel() != obs.numel() or bounds.numel() == 0:
        raise ValueError(
            f"need one observed error per bound (>= 1), got {obs.numel()} for {bounds.numel()}"
        )
    violations = int((obs > bounds).sum())
    positive = obs > 0
    ratios = bounds[positive] / obs[positive]
    median = float(ratios.quantile(0.5)) if ratios.numel() else math.nan
    worst = float(ratios.max()) if ratios.numel() else math.nan
    return CoverageReport(
        name=bound.name,
        label=bound.label,
        n_queries=bounds.numel(),
        violations=violations,
        coverage=1.0 - violations / bounds.numel(),
        tightness_median=median,
        tightness_max=worst,
        bound_median=float(bounds.quantile(0.5)),
        observed_median=float(obs.quantile(0.5)),
    )


def calibration_sweep(
    make_bound: Callable[[int], ErrorBound], sizes: Sequence[int], observed: Tensor
) -> list[tuple[int, CoverageReport]]:
    """Coverage and tightness as the calibration set grows.

    Parameters
    ----------
    make_bound
        ``n -> ErrorBound`` on the fixed queries, using the first ``n`` calibration samples.
    sizes
        Calibration-set sizes.
    observed
        Observed errors of the queries.

    Examples
    --------
    >>> import torch
    >>> from liponet.certify import conformal_error_bound
    >>> calib, observed = torch.arange(1.0, 21.0), torch.full((4,), 10.5)
    >>> sweep = calibration_sweep(
    ...     lambda n: conformal_error_bound(torch.zeros(4, 1, 8), calib[:n], alpha=0.2),
    ...     [5, 20], observed)
    >>> [(n, r.coverage) for n, r in sweep]
    [(5, 0.0), (20, 1.0)]
    """
    return [(n, coverage_report(make_bound(n), observed)) for n in sizes]
