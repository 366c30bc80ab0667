"""Certified error bounds (function approximation, operators) and empirical estimates."""

from .empirical import estimate_lipschitz as estimate_lipschitz
from .empirical import jacobian_lipschitz as jacobian_lipschitz
from .empirical import pair_ratios as pair_ratios

__all__ = ["estimate_lipschitz", "jacobian_lipschitz", "pair_ratios"]
