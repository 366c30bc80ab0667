"""Certified error bounds (function approximation, operators) and empirical estimates."""

from .empirical import estimate_lipschitz as estimate_lipschitz
from .empirical import jacobian_lipschitz as jacobian_lipschitz
from .empirical import pair_ratios as pair_ratios
from .function import BOUND_METHODS as BOUND_METHODS
from .function import ErrorBound as ErrorBound
from .function import TargetLipschitzEstimate as TargetLipschitzEstimate
from .function import estimate_target_lipschitz as estimate_target_lipschitz
from .function import max_error_bound as max_error_bound
from .interpolation import GridInterpolant as GridInterpolant

__all__ = [
    "BOUND_METHODS",
    "ErrorBound",
    "GridInterpolant",
    "TargetLipschitzEstimate",
    "estimate_lipschitz",
    "estimate_target_lipschitz",
    "jacobian_lipschitz",
    "max_error_bound",
    "pair_ratios",
]
