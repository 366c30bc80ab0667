"""Model families (constrained and unconstrained twins) and the model registry."""

from .deeponet import DeepONet as DeepONet
from .deeponet import LipDeepONet as LipDeepONet
from .deeponet import LipLocalDeepONet as LipLocalDeepONet
from .deeponet import LocalDeepONet as LocalDeepONet
from .fno import FNO as FNO
from .fno import Increment as Increment
from .fno import LipFNO as LipFNO
from .mlp import MLP as MLP
from .mlp import LipMLP as LipMLP
from .registry import available_models as available_models
from .registry import build_model as build_model
from .registry import get_model_class as get_model_class
from .registry import register_model as register_model
from .rollout import rollout as rollout

__all__ = [
    "FNO",
    "MLP",
    "DeepONet",
    "Increment",
    "LipDeepONet",
    "LipFNO",
    "LipLocalDeepONet",
    "LipMLP",
    "LocalDeepONet",
    "available_models",
    "build_model",
    "get_model_class",
    "register_model",
    "rollout",
]
