"""Batched torch solvers writing PDEBench layouts; one registered family per PDE."""

from . import advection as advection
from . import advection2d as advection2d
from . import burgers as burgers
from . import darcy as darcy
from . import fitzhugh_nagumo as fitzhugh_nagumo
from . import reaction_diffusion as reaction_diffusion
from .base import Family as Family
from .base import available_families as available_families
from .base import generate as generate
from .base import get_family as get_family
from .base import register_family as register_family
from .base import simulate as simulate

__all__ = [
    "Family",
    "available_families",
    "generate",
    "get_family",
    "register_family",
    "simulate",
]
