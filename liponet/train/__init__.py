"""Trainer, checkpoints and distributed training (``torchrun``)."""

from .allocator import tune_cpu_allocator as tune_cpu_allocator
from .checkpoint import Checkpoint as Checkpoint
from .checkpoint import CheckpointError as CheckpointError
from .checkpoint import load_checkpoint as load_checkpoint
from .checkpoint import load_model as load_model
from .checkpoint import save_checkpoint as save_checkpoint
from .config import ConfigError as ConfigError
from .config import DataConfig as DataConfig
from .config import ModelConfig as ModelConfig
from .config import TrainConfig as TrainConfig
from .config import apply_overrides as apply_overrides
from .config import config_from_dict as config_from_dict
from .config import config_to_dict as config_to_dict
from .constraint import ConstraintWarning as ConstraintWarning
from .constraint import data_constant as data_constant
from .constraint import resolve_auto_k as resolve_auto_k
from .datasets import DataBundle as DataBundle
from .datasets import available_datasets as available_datasets
from .datasets import build_dataset as build_dataset
from .datasets import register_dataset as register_dataset
from .distributed import DistContext as DistContext
from .distributed import cleanup_distributed as cleanup_distributed
from .distributed import init_distributed as init_distributed
from .runfolder import RunFolder as RunFolder
from .runfolder import RunFolderError as RunFolderError
from .schedule import WarmupCosineLR as WarmupCosineLR
from .schedule import warmup_cosine_lr as warmup_cosine_lr
from .trainer import GlobalBatchSampler as GlobalBatchSampler
from .trainer import NonFiniteLossError as NonFiniteLossError
from .trainer import Trainer as Trainer
from .trainer import TrainingInterrupted as TrainingInterrupted
from .trainer import noisy_inputs as noisy_inputs
from .trainer import seed_everything as seed_everything
from .unroll import unrolled_sample_loss as unrolled_sample_loss

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "ConstraintWarning",
    "DataBundle",
    "DataConfig",
    "DistContext",
    "GlobalBatchSampler",
    "ModelConfig",
    "NonFiniteLossError",
    "RunFolder",
    "RunFolderError",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "WarmupCosineLR",
    "apply_overrides",
    "available_datasets",
    "build_dataset",
    "cleanup_distributed",
    "config_from_dict",
    "config_to_dict",
    "data_constant",
    "init_distributed",
    "load_checkpoint",
    "load_model",
    "noisy_inputs",
    "register_dataset",
    "resolve_auto_k",
    "save_checkpoint",
    "seed_everything",
    "tune_cpu_allocator",
    "unrolled_sample_loss",
    "warmup_cosine_lr",
]
