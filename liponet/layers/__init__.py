"""Lipschitz building blocks, each with a certified ``lipschitz_bound()`` and ``export()``."""

from .activation import ACTIVATIONS as ACTIVATIONS
from .activation import GELU as GELU
from .activation import LIPSCHITZ_ACTIVATIONS as LIPSCHITZ_ACTIVATIONS
from .activation import Abs as Abs
from .activation import FullSort as FullSort
from .activation import GroupSort as GroupSort
from .activation import MaxMin as MaxMin
from .activation import ReLU as ReLU
from .activation import make_activation as make_activation
from .base import CertifiedModule as CertifiedModule
from .base import CertifiedSequential as CertifiedSequential
from .base import compose_bounds as compose_bounds
from .budget import Budget as Budget
from .budget import BudgetScaled as BudgetScaled
from .factored import FactoredConvexPotentialBlock as FactoredConvexPotentialBlock
from .factored import FactoredConvexPotentialChain as FactoredConvexPotentialChain
from .fourier import NORMALIZATIONS as NORMALIZATIONS
from .fourier import FourierBlock as FourierBlock
from .fourier import LipSpectralConv as LipSpectralConv
from .fourier import PaddedDomain as PaddedDomain
from .fourier import SpectralMultiplier as SpectralMultiplier
from .fourier import exact_train_norms as exact_train_norms
from .fourier import warm_polar_train as warm_polar_train
from .linear import ClippedLinear as ClippedLinear
from .linear import LipLinear as LipLinear
from .residual import ConvexPotentialBlock as ConvexPotentialBlock
from .residual import ConvexPotentialChain as ConvexPotentialChain
from .scaling import AuxiliaryScale as AuxiliaryScale
from .scaling import OutputScale as OutputScale
from .scaling import sup_norm_bound as sup_norm_bound
from .shortcut import PlainSpectralShortcut as PlainSpectralShortcut
from .shortcut import SpectralShortcut as SpectralShortcut

__all__ = [
    "ACTIVATIONS",
    "GELU",
    "LIPSCHITZ_ACTIVATIONS",
    "NORMALIZATIONS",
    "Abs",
    "AuxiliaryScale",
    "Budget",
    "BudgetScaled",
    "CertifiedModule",
    "CertifiedSequential",
    "ClippedLinear",
    "ConvexPotentialBlock",
    "ConvexPotentialChain",
    "FactoredConvexPotentialBlock",
    "FactoredConvexPotentialChain",
    "FourierBlock",
    "FullSort",
    "GroupSort",
    "LipLinear",
    "LipSpectralConv",
    "MaxMin",
    "OutputScale",
    "PaddedDomain",
    "PlainSpectralShortcut",
    "ReLU",
    "SpectralMultiplier",
    "SpectralShortcut",
    "compose_bounds",
    "exact_train_norms",
    "make_activation",
    "sup_norm_bound",
    "warm_polar_train",
]
