"""Trainer, checkpoints and distributed training."""

from .checkpoint import Checkpoint as Checkpoint
from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import load_model as load_model
from .checkpoint import save_checkpoint as save_checkpoint

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "load_model",
    "save_checkpoint",
]
