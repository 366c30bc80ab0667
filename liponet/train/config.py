"""Typed training configuration: dataclasses, validation, conversions, ``key=value`` overrides.

The library never reads files: the CLI parses TOML/YAML into a dict and calls
:func:`config_from_dict`. Every bad value raises :class:`ConfigError` (a ``ValueError``) with a
one-line message naming the key, the value and what is accepted.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import yaml
from torch import Tensor, nn

from ..metrics import METRIC_NAMES
from .augment import AUGMENTATIONS
from .schedule import WarmupCosineLR
from .unroll import UNROLL_GRADIENTS

__all__ = [
    "LOSSES",
    "MAX_LR",
    "OPTIMIZERS",
    "SAMPLE_LOSSES",
    "SCHEDULERS",
    "SCHEDULE_UNITS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
]


class ConfigError(ValueError):
    """A bad configuration key or value (one-line message)."""


def _mse(pred: Tensor, target: Tensor) -> Tensor:
    return nn.functional.mse_loss(pred, target)


def _relative_l2(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over samples of ||pred - target|| / ||target|| (all non-batch axes)."""
    err = torch.linalg.vector_norm((pred - target).flatten(1), dim=1)
    return (err / torch.linalg.vector_norm(target.flatten(1), dim=1)).mean()


#: Loss name -> function ``(pred, target) -> scalar``.
LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": _mse, "rel_l2": _relative_l2}


def _mse_per_sample(pred: Tensor, target: Tensor) -> Tensor:
    return (pred - target).square().flatten(1).mean(1)


def _relative_l2_per_sample(pred: Tensor, target: Tensor) -> Tensor:
    err = torch.linalg.vector_norm((pred - target).flatten(1), dim=1)
    return err / torch.linalg.vector_norm(target.flatten(1), dim=1)


#: Loss name -> per-sample function ``(pred, target) -> (batch,)``; the mean over a batch is
#: the :data:`LOSSES` value (the trainer weights samples with it, see ``Trainer``).
SAMPLE_LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "mse": _mse_per_sample,
    "rel_l2": _relative_l2_per_sample,
}

#: Largest accepted learning rate: above it every optimizer here diverges at once.
MAX_LR = 10.0


def _adam(params: Iterable[nn.Parameter], lr: float, wd: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def _adamw(params: Iterable[nn.Parameter], lr: float, wd: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=wd)


def _sgd(params: Iterable[nn.Parameter], lr: float, wd: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)


#: Optimizer name -> factory ``(params, lr, weight_decay)``.
OPTIMIZERS: dict[str, Callable[[Iterable[nn.Parameter], float, float], torch.optim.Optimizer]] = {
    "adam": _adam,
    "adamw": _adamw,
    "sgd": _sgd,
}


def _constant(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _cosine(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    if cfg.schedule_unit == "step":
        total = cfg.epochs * steps_per_epoch
        if cfg.warmup_steps >= total:
            raise ConfigError(
                f"warmup_steps: must be below the run's {total} optimizer steps "
                f"({cfg.epochs} epochs of {steps_per_epoch}), got {cfg.warmup_steps}"
            )
        return WarmupCosineLR(opt, total, cfg.warmup_steps, cfg.lr_min)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=cfg.lr_min)


def _step(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Any:
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)


#: Scheduler name -> factory ``(optimizer, config, optimizer steps per epoch)``; stepped once
#: per epoch, or after every optimizer step with ``schedule_unit="step"``.
SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, TrainConfig, int], Any]] = {
    "none": _constant,
    "cosine": _cosine,
    "step": _step,
}

#: Units a schedule counts: epochs, or optimizer steps.
SCHEDULE_UNITS: tuple[str, ...] = ("epoch", "step")

#: Quantities a run can monitor to pick its best checkpoint (all: lower is better).
MONITORS: tuple[str, ...] = ("val_loss", *(f"val_{name}" for name in METRIC_NAMES))


def _one_of(key: str, value: str, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}; valid: {', '.join(choices)}")


@dataclass
class ModelConfig:
    """Which registered model to build, and its constructor arguments.

    Examples
    --------
    >>> ModelConfig(name="LipFNO", kwargs={"modes": [16], "width": 32})
    ModelConfig(name='LipFNO', kwargs={'modes': [16], 'width': 32})
    """

    name: str = "LipMLP"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ..models import available_models

        _one_of("model.name", self.name, available_models())


@dataclass
class DataConfig:
    """Which dataset to load (a name of :data:`liponet.train.datasets.DATASETS`) and its options.

    ``path`` is the data file for file-backed datasets; ``kwargs`` are passed to the dataset
    builder (e.g. sizes of a synthetic set, PDEBench subsampling options).

    Examples
    --------
    >>> DataConfig(name="well", path="data/my_well_dataset", kwargs={"initial_step": 4})
    DataConfig(name='well', path='data/my_well_dataset', kwargs={'initial_step': 4})
    """

    name: str = "toy-shift"
    path: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from .datasets import available_datasets

        _one_of("data.name", self.name, available_datasets())


@dataclass
class TrainConfig:
    """Everything a training run needs; serializable to plain data (stored in checkpoints).

    Attributes
    ----------
    model, data
        What to train on what.
    epochs
        Number of passes over the training split.
    batch_size
        GLOBAL batch size (split evenly across ranks; must be divisible by the world size).
    lr, weight_decay, optimizer
        Optimizer settings (``adam``, ``adamw``, ``sgd``).
    scheduler, step_size, gamma
        Learning-rate schedule: ``none``, ``cosine`` (to ``lr_min`` at the end of the run),
        ``step`` (multiply by ``gamma`` every ``step_size`` schedule units).
    schedule_unit
        ``epoch`` (default: the schedule steps once per epoch, so a cosine over few epochs runs
        its last epoch well above ``lr_min``) or ``step`` (after every optimizer step: the
        cosine spans ``epochs * steps per epoch`` steps, see
        :class:`~liponet.train.WarmupCosineLR`; ``step_size`` then counts optimizer steps).
        ``step`` needs a map-style training set (a known number of steps per epoch).
    warmup_steps
        Optimizer steps of linear warmup before the cosine (``scheduler="cosine"`` with
        ``schedule_unit="step"`` only; 0: none).
    lr_min
        The rate a cosine ends at (``scheduler="cosine"`` only; ``0 <= lr_min <= lr``).
    grad_clip
        Maximum global gradient norm; 0 disables clipping (the norm is still checked for NaN).
    input_noise
        Standard deviation, relative to each training input's RMS (over channels and grid), of
        white Gaussian noise added to the training inputs (not to targets, not in validation);
        0 (default) disables it. For autoregressive steppers: the model learns to map slightly
        wrong windows to the clean next frame, meant to damp the accumulation of its own errors
        in a rollout (``benchmarks/advection_study.py``: on advection, 3e-3 helped one seed of
        LipFNO-d2 and hurt another; over three seeds the change is within the seed spread).
    augment
        Symmetry augmentation of the training pairs (:mod:`liponet.train.augment`): ``none``
        (default), ``transpose`` (identity or transpose) or ``d4`` (the eight symmetries of the
        square); one random element per batch, applied to inputs and targets alike. Only for
        square 2-D scalar fields whose true operator has that symmetry (e.g. Darcy flow on its
        generator's grid); validation and test data are never transformed.
    unroll
        Autoregressive frames per training sample (:mod:`liponet.train.unroll`): 1 (default)
        trains one-step windows; ``K > 1`` trains on the model's own ``K``-step rollout from
        each window, whose ``K`` true next frames the training targets hold, stacked
        frame-major (``(K * C, *spatial)``: ``data.kwargs.target_frames=K`` for the PDEBench
        datasets; ``liponet train --unroll K`` sets both). Validation rolls out as many
        frames as its targets hold. A step costs about ``K`` one-step steps (``all``), or
        ``K - 1`` forward passes more than one (``last``).
    unroll_gradient
        ``all`` (default: the mean of the ``K`` frames' losses, differentiated through the
        whole rollout) or ``last`` (the pushforward trick: the first ``K - 1`` frames predicted
        without gradient, only the last frame's loss).
    unroll_curriculum
        Optimizer steps over which the unrolled frames grow from 1 to ``unroll`` (equal shares;
        0, the default: ``unroll`` from the first step).
    shortcut_init
        ``None`` (default), ``"lstsq"`` or ``"lstsq-rel"``: before the first step, set the model's
        spectral shortcut (``increment="spectral"``) to the per-mode least-squares step of the
        training windows (``-rel``: weighted by ``1 / ||y||``), projected to its ball
        (:mod:`liponet.train.shortcut_fit`). A resumed run loads the checkpoint's weights over it.
    shortcut_frozen
        Keep the spectral shortcut where it starts (no gradient); with ``shortcut_init`` the fitted
        step stays and ``f`` learns what it misses.
    loss
        ``mse`` or ``rel_l2``.
    seed
        Seeds torch, numpy and Python on every rank (identical initial weights), and the sampler.
    device
        ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
    bf16
        bfloat16 autocast for forward passes on CUDA (ignored on CPU).
    out_dir
        Folder for ``last.pt``, ``best.pt`` and ``log.jsonl``.
    save_every_steps
        Also write ``last.pt`` every this many optimizer steps inside an epoch (0: epoch ends only).
    monitor
        Validation quantity selecting ``best.pt`` (lower is better).
    num_workers
        DataLoader worker processes.
    dist_timeout_s
        Timeout of collective operations: a rank that hangs makes the others fail after this.

    Examples
    --------
    >>> cfg = TrainConfig(model=ModelConfig("LipMLP"), epochs=3)
    >>> cfg.epochs, cfg.data.name
    (3, 'toy-shift')
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "cosine"
    step_size: int = 100
    gamma: float = 0.5
    schedule_unit: str = "epoch"
    warmup_steps: int = 0
    lr_min: float = 0.0
    grad_clip: float = 1.0
    input_noise: float = 0.0
    augment: str = "none"
    unroll: int = 1
    unroll_gradient: str = "all"
    unroll_curriculum: int = 0
    shortcut_init: str | None = None
    shortcut_frozen: bool = False
    loss: str = "mse"
    seed: int = 0
    device: str = "auto"
    bf16: bool = True
    out_dir: str = "runs/latest"
    save_every_steps: int = 0
    monitor: str = "val_loss"
    num_workers: int = 0
    dist_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        positive_ints = ("epochs", "batch_size", "step_size", "unroll")
        for key in positive_ints:
            if getattr(self, key) < 1:
                raise ConfigError(f"{key}: must be >= 1, got {getattr(self, key)}")
        for key in ("save_every_steps", "num_workers", "seed", "warmup_steps", "unroll_curriculum"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr: must be a finite positive number, got {self.lr}")
        if self.lr > MAX_LR:
            raise ConfigError(
                f"lr: {self.lr:g} is not a usable learning rate (expected <= {MAX_LR:g}; "
                "typical: 1e-4 to 1e-2)"
            )
        for key in ("weight_decay", "grad_clip", "input_noise"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key}: must be a finite number >= 0, got {value}")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"gamma: must be a finite positive number, got {self.gamma}")
        if not (math.isfinite(self.dist_timeout_s) and self.dist_timeout_s > 0):
            raise ConfigError(f"dist_timeout_s: must be positive, got {self.dist_timeout_s}")
        if self.shortcut_init is not None:
            from .shortcut_fit import SHORTCUT_INITS

            _one_of("shortcut_init", self.shortcut_init, SHORTCUT_INITS)
        _one_of("optimizer", self.optimizer, OPTIMIZERS)
        _one_of("scheduler", self.scheduler, SCHEDULERS)
        _one_of("schedule_unit", self.schedule_unit, SCHEDULE_UNITS)
        if not (math.isfinite(self.lr_min) and 0 <= self.lr_min <= self.lr):
            raise ConfigError(
                f"lr_min: must be a finite number in [0, lr={self.lr:g}], got {self.lr_min}"
            )
        if self.lr_min > 0 and self.scheduler != "cosine":
            raise ConfigError(
                f"lr_min: only a cosine schedule has a floor (scheduler={self.scheduler!r}); "
                "set scheduler=cosine or lr_min=0"
            )
        if self.warmup_steps and (self.scheduler, self.schedule_unit) != ("cosine", "step"):
            raise ConfigError(
                f"warmup_steps: needs scheduler=cosine and schedule_unit=step, got "
                f"scheduler={self.scheduler!r}, schedule_unit={self.schedule_unit!r}"
            )
        _one_of("loss", self.loss, LOSSES)
        _one_of("augment", self.augment, AUGMENTATIONS)
        _one_of("unroll_gradient", self.unroll_gradient, UNROLL_GRADIENTS)
        if self.unroll_curriculum and self.unroll == 1:
            raise ConfigError(
                f"unroll_curriculum: grows the unrolled frames up to unroll, which is 1; set "
                f"unroll above 1 or unroll_curriculum=0, got {self.unroll_curriculum}"
            )
        _one_of("device", self.device, ("auto", "cpu", "cuda"))
        _one_of("monitor", self.monitor, MONITORS)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Check ``value`` against a field's type hint (int -> float allowed)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        hint = next(h for h in options if h is not type(None))
        origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table of settings, got {value!r}")
        assert isinstance(hint, type)
        return _build(hint, value, f"{key}.")
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table of settings, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [key for key in data if key not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; valid: "
            + ", ".join(f"{prefix}{name}" for name in names)
        )
    kwargs = {key: _coerce(f"{prefix}{key}", value, hints[key]) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as err:
        if prefix and not str(err).startswith(prefix):
            raise ConfigError(f"{prefix}{err}") from None
        raise


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from nested plain data.

    Raises
    ------
    ConfigError
        For an unknown key (listing the valid ones), a value of the wrong type, or a bad value
        (e.g. an unknown model or dataset name, listing the valid names).

    Examples
    --------
    >>> cfg = config_from_dict({"epochs": 3, "model": {"name": "LipMLP"}})
    >>> cfg.epochs, cfg.model.name
    (3, 'LipMLP')
    >>> config_from_dict({"epoch": 3})
    Traceback (most recent call last):
    ...
    liponet.train.config.ConfigError: unknown config key 'epoch'; valid: model, data, epochs, ...
    """
    if not isinstance(data, dict):
        raise ConfigError(f"a configuration is a table of settings, got {type(data).__name__}")
    result: TrainConfig = _build(TrainConfig, data)
    return result


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain nested data (what checkpoints store), the inverse of :func:`config_from_dict`.

    Examples
    --------
    >>> d = config_to_dict(TrainConfig(epochs=2))
    >>> d["epochs"], d["model"]
    (2, {'name': 'LipMLP', 'kwargs': {}})
    """
    return dataclasses.asdict(config)


def _number_or_same(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as a string; read such strings as numbers."""
    if isinstance(value, str):
        for kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with ``key.sub=value`` assignments applied.

    Values are parsed as YAML scalars or flow collections (``3``, ``1e-3``, ``true``, ``cpu``,
    ``{width: 8}``, ``[16]``).

    Examples
    --------
    >>> apply_overrides({"model": {"name": "LipMLP"}}, ["epochs=2", "model.kwargs.width=8"])
    {'model': {'name': 'LipMLP', 'kwargs': {'width': 8}}, 'epochs': 2}
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. epochs=5)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"override {item!r}: cannot parse the value {raw!r}") from None
        value = _number_or_same(value)
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a table")
            node = child
        node[parts[-1]] = value
    return out
