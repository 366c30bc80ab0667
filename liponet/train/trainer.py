"""The trainer: seeded, resumable, DDP-aware; rank 0 writes checkpoints and a JSON-lines log."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import random
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler
from torchmetrics import MeanMetric
from tqdm.auto import tqdm

from ..layers import CertifiedModule
from ..metrics import PDEBenchMetrics
from ..models.rollout import rollout
from . import checkpoint as _ckpt
from .augment import augment_pair, check_augmentation
from .averaging import WeightAverage
from .checkpoint import (
    CheckpointError,
    check_finite_weights,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .config import (
    LOSSES,
    OPTIMIZERS,
    SAMPLE_LOSSES,
    SCHEDULERS,
    ConfigError,
    TrainConfig,
    config_to_dict,
)
from .distributed import DistContext, all_gather_floats, all_reduce_sum
from .runfolder import RunFolder, RunFolderError, atomic_copy
from .schedule import WarmupCosineLR
from .unroll import curriculum_frames, one_step_view, unrolled_sample_loss

__all__ = [
    "RESUME_KEYS",
    "Callback",
    "GlobalBatchSampler",
    "NonFiniteLossError",
    "Trainer",
    "TrainingInterrupted",
    "noisy_inputs",
    "seed_everything",
]

#: Settings a resumed run must share with its checkpoint (others, e.g. ``epochs`` upwards,
#: ``device`` or ``save_every_steps``, may change).
RESUME_KEYS = (
    "model",
    "data",
    "batch_size",
    "seed",
    "optimizer",
    "lr",
    "weight_decay",
    "scheduler",
    "step_size",
    "gamma",
    "schedule_unit",
    "warmup_steps",
    "lr_min",
    "grad_clip",
    "input_noise",
    "augment",
    "ema",
    "unroll",
    "unroll_gradient",
    "unroll_curriculum",
    "loss",
    "monitor",
)

#: Resume keys newer than some checkpoints: a checkpoint without one ran with this value.
_RESUME_DEFAULTS: dict[str, Any] = {
    "schedule_unit": "epoch",
    "warmup_steps": 0,
    "lr_min": 0.0,
    "augment": "none",
    "ema": 0.0,
    "unroll": 1,
    "unroll_gradient": "all",
    "unroll_curriculum": 0,
}

#: ``callback(event, record)`` with event ``"step"`` (after each optimizer step), ``"epoch"``
#: (after validation and checkpointing) or ``"end"``; called on every rank (``record["rank"]``).
Callback = Callable[[str, dict[str, Any]], None]


class NonFiniteLossError(FloatingPointError, ValueError):
    """The loss or the gradient norm became NaN or infinite; training stopped.

    Also a ``ValueError``: it follows from the data or the settings (e.g. the learning rate),
    so the CLI reports it as a one-line user error.
    """


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped :meth:`Trainer.fit` after a resumable ``last.pt`` was written.

    Attributes
    ----------
    signal_number
        The signal received.
    checkpoint
        The checkpoint written (``None`` without a run folder, or on ranks other than 0).
    """

    def __init__(self, signal_number: int, checkpoint: Path | None, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.checkpoint = checkpoint


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (all devices).

    Examples
    --------
    >>> import torch
    >>> seed_everything(3); a = torch.rand(2)
    >>> seed_everything(3); torch.equal(a, torch.rand(2))
    True
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator is what libraries use)
    torch.manual_seed(seed)


def noisy_inputs(x: Tensor, std: float, generator: torch.Generator | None = None) -> Tensor:
    """``x`` plus white Gaussian noise of ``std`` times each sample's RMS.

    ``x``: ``(batch, channels, *spatial)`` (or any ``(batch, ...)``); the RMS is over every
    entry of a sample, so ``std`` is the noise-to-signal ratio of each sample. The
    :class:`Trainer`'s ``input_noise`` (training inputs only).

    Examples
    --------
    >>> import torch
    >>> x = torch.ones(2, 1, 10_000)
    >>> noise = noisy_inputs(x, 0.01, torch.Generator().manual_seed(0)) - x
    >>> round(float(noise.std()), 3)
    0.01
    """
    rms = x.detach().flatten(1).pow(2).mean(1).sqrt().view(-1, *(1,) * (x.dim() - 1))
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return x + std * rms * noise


class _ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` without padding (evaluation: every sample once)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class GlobalBatchSampler(Sampler[list[int]]):
    """Each rank's part of every global batch: each sample exactly once per epoch, no padding.

    The epoch's order is ``torch.randperm(n)`` seeded with ``seed + epoch`` (or ``0..n-1``
    without ``shuffle``); global step ``s`` takes items ``order[s*B : (s+1)*B]`` and rank ``r``
    the slice ``[r*b, (r+1)*b)`` of it (``b = B / world_size``). The steps hold the same
    samples whatever the number of processes; only the last global batch may be short, and
    there a rank's slice may be short or empty (an empty one is not yielded: the trainer then
    runs a zero-weight step on that rank, see :meth:`Trainer.fit`).

    Examples
    --------
    >>> from liponet.train import GlobalBatchSampler
    >>> [list(GlobalBatchSampler(7, 4, rank=r, world_size=2, shuffle=False)) for r in (0, 1)]
    [[[0, 1], [4, 5]], [[2, 3], [6]]]
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"batch_size: the global batch {batch_size} must be divisible by the number "
                f"of processes {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        self.local = batch_size // world_size
        self.seed, self.shuffle, self.epoch = seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch``."""
        self.epoch = int(epoch)

    @property
    def steps(self) -> int:
        """Global steps per epoch, ``ceil(n / batch_size)``."""
        return -(-self.n // self.batch_size)

    def _slices(self) -> Iterator[tuple[int, int]]:
        for s in range(self.steps):
            stop = min((s + 1) * self.batch_size, self.n)
            start = min(s * self.batch_size + self.rank * self.local, stop)
            end = min(start + self.local, stop)
            if end > start:
                yield start, end

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=generator).tolist()
        else:
            order = list(range(self.n))
        for start, end in self._slices():
            yield order[start:end]

    def __len__(self) -> int:
        return sum(1 for _ in self._slices())


class Trainer:
    """Train a registered model on a dataset of ``(input, target)`` pairs.

    Parameters
    ----------
    config
        The run's :class:`~liponet.train.TrainConfig`; the model is built from ``config.model``
        after seeding (identical initial weights on every rank). ``config.out_dir`` is the run
        folder (``""``: write nothing, e.g. for benchmarks).
    train_data, val_data
        Map-style datasets (split here with :class:`GlobalBatchSampler`; the global batch is
        ``config.batch_size`` whatever the world size) or iterable datasets that shard
        themselves (every sample on exactly one rank, e.g. :class:`~liponet.data.PDEBenchStream`).
    ctx
        Rank, world size and device (:func:`~liponet.train.distributed.init_distributed`).
    normalizer_state
        Normalization statistics saved with every checkpoint.
    callbacks
        Functions ``(event, record)``; the library itself never prints (only the tqdm bar on
        rank 0, to stderr, when ``progress``).
    progress
        Show a progress bar (rank 0 only).
    model
        A prebuilt module to train instead of building ``config.model`` (which is then only
        recorded in checkpoints), e.g. a benchmark variant or a wrapper outside the registry.

    Notes
    -----
    **Every sample once per epoch.** Ranks may hold uneven shares (the last global batch of a
    map-style split, the streams of an iterable one): each step the ranks agree (one small
    all-reduce) on whether any rank still has a batch and on the number of real samples in
    the global batch; a rank without one runs the step on its previous batch with weight 0.
    The loss is the mean per-sample loss over the real samples of the global batch, so a step
    is the same whatever the number of processes.

    **The run folder** (``config.out_dir``) belongs to one run (:class:`RunFolder`): rank 0
    holds its lock for the whole of :meth:`fit`, removes temporary files a killed run left,
    and refuses a folder holding another run's files unless resuming that run or
    ``overwrite``. Every log line and checkpoint carries the run id.

    **Epoch end**, in this order: validation (synchronized metrics), the certified bound
    (identical on every rank), then on rank 0 ``best.pt`` (if the monitored value improved),
    one JSON line in ``log.jsonl``, and ``last.pt`` last: ``last.pt`` is the commit point. A
    kill anywhere in this sequence leaves every checkpoint complete; resuming from
    ``last.pt`` drops the log lines written after it and runs the interrupted epoch again
    (bit-identical), rewriting what it wrote. So ``best.pt`` exists whenever ``last.pt``
    records a completed epoch, and it is never replaced by a worse value or another run's
    file.

    **Interrupts.** SIGINT (Ctrl-C) or SIGTERM during :meth:`fit` (main thread) stops at the
    next step boundary, writes a resumable mid-epoch ``last.pt`` and raises
    :class:`TrainingInterrupted`; a second signal acts as usual. With ``save_every_steps``
    the trainer also writes ``last.pt`` inside the epoch; :meth:`fit` with ``resume_from``
    continues exactly where it stopped (same sample order, optimizer, scheduler, RNG
    states and epoch loss sums).

    Examples
    --------
    >>> import tempfile
    >>> from liponet.train import TrainConfig, Trainer, build_dataset, config_from_dict
    >>> cfg = config_from_dict({
    ...     "model": {"name": "LipMLP", "kwargs": {"in_features": 8, "out_features": 8,
    ...                                            "width": 8, "depth": 1}},
    ...     "data": {"name": "toy-shift", "kwargs": {"n_train": 8, "n_val": 4, "grid": 8}},
    ...     "epochs": 1, "batch_size": 4, "device": "cpu", "out_dir": tempfile.mkdtemp()})
    >>> data = build_dataset(cfg.data)
    >>> record = Trainer(cfg, data.train, data.val, progress=False).fit()
    >>> record["epoch"], record["step"], sorted(p.name for p in Trainer.out_path(cfg).iterdir())
    (1, 2, ['.lock', 'best.pt', 'last.pt', 'log.jsonl'])
    """

    def __init__(
        self,
        config: TrainConfig,
        train_data: Dataset[Any],
        val_data: Dataset[Any],
        *,
        ctx: DistContext | None = None,
        normalizer_state: dict[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        model: nn.Module | None = None,
    ) -> None:
        from ..models import build_model
        from .constraint import resolve_config, warn_if_binding
        from .shortcut_fit import fit_model_shortcut, prepare_shortcut

        # the one-step parts read (window, next frame) pairs: the first of unroll's frames
        one_step = one_step_view(train_data, config.unroll)
        config, data_constant = resolve_config(config, one_step)  # k="auto" -> a number
        config, windows = prepare_shortcut(config, one_step)  # shortcut_bound="auto" -> a number
        self.config = config
        self.ctx = ctx or DistContext()
        self.normalizer_state = normalizer_state
        self.callbacks = list(callbacks)
        self.progress = progress and self.ctx.is_main
        self.out_dir = self.out_path(config)
        self.folder = RunFolder(self.out_dir) if config.out_dir else None
        world = self.ctx.world_size
        if config.batch_size % world:
            raise ValueError(
                f"batch_size: the global batch {config.batch_size} must be divisible by the "
                f"number of processes {world}"
            )
        seed_everything(config.seed)
        if model is None:
            model = build_model(config.model.name, **config.model.kwargs)
        self.model: nn.Module = model
        if config.shortcut_init is not None or config.shortcut_frozen:
            fit_model_shortcut(
                model,
                None if windows is None else windows.x,
                None if windows is None else windows.y,
                config.shortcut_init,
                config.shortcut_frozen,
                free=None if windows is None else windows.free,
            )
        if self.ctx.is_main:  # one ConstraintWarning if the data's constant exceeds the model's
            warn_if_binding(self.model, one_step, data_constant, config.model.kwargs)
        self.model.to(self.ctx.device)
        self.ddp: nn.Module = self.model  # in DistributedDataParallel during fit() only
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.model.parameters(), config.lr, config.weight_decay
        )
        self.average = WeightAverage(self.model, config.ema) if config.ema > 0 else None
        self.loss_fn = LOSSES[config.loss]
        self.sample_loss_fn = SAMPLE_LOSSES[config.loss]
        self.train_data = train_data
        self.val_data = val_data
        if config.augment != "none" and not isinstance(train_data, IterableDataset):
            x0, y0 = train_data[0]  # a stream's batches are checked as they come
            try:
                check_augmentation(config.augment, tuple(x0.shape), tuple(y0.shape))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        self.local_batch = config.batch_size // world
        self.train_sampler: GlobalBatchSampler | None = None
        if not isinstance(train_data, IterableDataset):
            n_train = len(train_data)  # type: ignore[arg-type]
            if n_train < world:
                raise ValueError(
                    f"the training split has {n_train} samples, fewer than the {world} processes"
                )
            self.train_sampler = GlobalBatchSampler(
                n_train, config.batch_size, rank=self.ctx.rank, world_size=world, seed=config.seed
            )
        self.loader_generator = torch.Generator()
        self.train_loader: DataLoader[Any]
        if self.train_sampler is not None:
            self.train_loader = DataLoader(
                train_data,
                batch_sampler=self.train_sampler,
                num_workers=config.num_workers,
                generator=self.loader_generator,
            )
        else:
            self.train_loader = DataLoader(
                train_data,
                batch_size=self.local_batch,
                num_workers=config.num_workers,
                generator=self.loader_generator,
            )
        self.per_step_schedule = config.schedule_unit == "step"
        if self.per_step_schedule and self.train_sampler is None:
            raise ConfigError(
                "schedule_unit: 'step' needs a map-style training set (a stream's number of "
                "steps per epoch is not known in advance); use schedule_unit=epoch"
            )
        steps_per_epoch = self.train_sampler.steps if self.train_sampler is not None else 1
        self.scheduler = SCHEDULERS[config.scheduler](self.optimizer, config, steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        val_sampler = None
        if not isinstance(val_data, IterableDataset):
            n_val = len(val_data)  # type: ignore[arg-type]
            if n_val < world:
                raise ValueError(
                    f"the validation split has {n_val} samples, fewer than the {world} processes"
                )
            val_sampler = _ShardSampler(n_val, self.ctx.rank, world)
        self.val_loader = DataLoader(
            val_data, batch_size=self.local_batch, sampler=val_sampler, num_workers=0
        )
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # completed (global) optimizer steps of the current epoch
        self.global_step = 0
        self.loss_sum = 0.0  # this rank's per-sample training-loss sum and count this epoch
        self.loss_count = 0
        self.best: float | None = None
        self.last_lr: float | None = None  # the rate of the last optimizer step taken
        self.run_id = uuid.uuid4().hex[:12]
        self._signal: int | None = None

    def _wrap(self) -> nn.Module:
        """The module that trains: ``self.model`` in DistributedDataParallel when distributed."""
        if not self.ctx.distributed:
            return self.model
        # DDP's default buffer sync re-sends rank 0's buffers (e.g. the power-iteration
        # vectors) before every forward: the Lipschitz normalization is identical on all
        # ranks. (Not passed explicitly: torch 2.13 renamed the flag and warns on the old one.)
        return DistributedDataParallel(
            self.model,
            device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None,
        )

    def _unwrap(self) -> None:
        """Drop the DDP wrapper (its C++ ``Reducer`` holds a reference to the process group).

        Done at the end of :meth:`fit` (the wrapper exists only inside it), while the process
        group is alive. Otherwise the wrapper
        outlives :func:`~liponet.train.cleanup_distributed` and its ``Reducer`` destroys the
        Gloo group when the trainer is freed, holding the GIL: the group's destructor joins
        its worker thread, which may still be finishing the final barrier and needs the GIL to
        free that barrier's tensor. The rank then deadlocks at exit (seen with torchrun on CPU
        in about one launch in three under load).
        """
        if self.ddp is self.model:
            return
        self.ddp = self.model
        gc.collect()  # the wrapper's reference cycles, if any, go now rather than after cleanup

    @staticmethod
    def out_path(config: TrainConfig) -> Path:
        """The run folder ``config.out_dir``."""
        return Path(config.out_dir)

    # ------------------------------------------------------------------ checkpoints
    def _extra(self) -> dict[str, Any]:
        sums = [self.loss_sum, float(self.loss_count)]
        if self.step_in_epoch:  # identical on every rank: all of them take part
            sums = all_reduce_sum(torch.tensor(sums, dtype=torch.float64), self.ctx).tolist()
        return {
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "loss_sum": sums[0],  # over every rank
            "loss_count": int(sums[1]),
            "best": self.best,
            "world_size": self.ctx.world_size,
            "run_id": self.run_id,
            "data_file": _data_fingerprint(self.config.data.path),
        }

    def _save(self, name: str) -> Path | None:
        """Write ``name`` atomically (rank 0; every rank when mid-epoch, for the loss sums)."""
        extra = self._extra()
        if not self.ctx.is_main or self.folder is None:
            return None
        try:
            with self._deployed() as training:  # the model file holds the averaged weights
                if training is not None and self.average is not None:
                    extra.update(ema_training_weights=training, ema_updates=self.average.updates)
                return save_checkpoint(
                    self.out_dir / name,
                    self.model,
                    config=config_to_dict(self.config),
                    optimizer=self.optimizer,
                    scheduler=self.scheduler,
                    normalizer_state=self.normalizer_state,
                    epoch=self.epoch,
                    extra=extra,
                )
        except OSError as err:
            raise RunFolderError(
                f"out_dir {self.out_dir}: cannot write {name} "
                f"({err.strerror or type(err).__name__}); the previous {name} is kept"
            ) from None

    @contextlib.contextmanager
    def _deployed(self) -> Iterator[dict[str, Tensor] | None]:
        """The model holds the weights it deploys inside.

        With ``ema``: the average (yields the training weights); else its own (yields ``None``).
        """
        if self.average is None:
            yield None
            return
        with self.average.applied() as training:
            yield training

    def _resume(self, path: str | Path) -> str | None:
        """Load ``path``; refuse a finished run or changed settings. Returns its run id."""
        ckpt = load_checkpoint(path, map_location=self.ctx.device)
        check_finite_weights(ckpt.model_state, ckpt.path)
        mine = config_to_dict(self.config)
        for key in RESUME_KEYS:
            if key not in ckpt.config and key not in _RESUME_DEFAULTS:
                continue
            saved = ckpt.config.get(key, _RESUME_DEFAULTS.get(key))
            if saved != mine[key]:
                raise ValueError(
                    f"{ckpt.path}: the run used {key}={saved!r}, now "
                    f"{key}={mine[key]!r}; resume with the run's settings, or start a new run "
                    "in another folder"
                )
        extra = ckpt.extra
        if ckpt.epoch >= self.config.epochs and not extra.get("step_in_epoch", 0):
            raise ValueError(
                f"{ckpt.path}: the run already finished (epoch {ckpt.epoch} of "
                f"epochs={self.config.epochs}); to train further set epochs above {ckpt.epoch}"
            )
        saved_file = extra.get("data_file")
        now_file = _data_fingerprint(self.config.data.path)
        if saved_file is not None and now_file is not None and saved_file != now_file:
            raise ValueError(
                f"{ckpt.path}: the data file {self.config.data.path} changed since this "
                f"checkpoint (size/modification time {saved_file['size']}/"
                f"{saved_file['mtime_ns']} -> {now_file['size']}/{now_file['mtime_ns']}); "
                "resume only on the same data"
            )
        if (
            extra.get("step_in_epoch", 0)
            and isinstance(self.train_data, IterableDataset)
            and ckpt.config.get("num_workers", mine["num_workers"]) != mine["num_workers"]
        ):
            raise ValueError(
                f"{ckpt.path}: written mid-epoch with num_workers="
                f"{ckpt.config.get('num_workers')} (a stream's sample order depends on it); "
                f"resume it with the same number (now {mine['num_workers']})"
            )
        if extra.get("step_in_epoch", 0) and extra.get("world_size") != self.ctx.world_size:
            raise ValueError(
                f"{ckpt.path}: written mid-epoch by {extra.get('world_size')} processes; resume "
                f"it with the same number (now {self.ctx.world_size}) or from an epoch-end file"
            )
        try:
            self.model.load_state_dict(ckpt.model_state)
        except ValueError as err:  # a malformed extra state (e.g. a layer's warm polar basis)
            raise CheckpointError(f"{ckpt.path}: {err}") from None
        if self.average is not None:  # the file's model is the average; training weights beside
            training = extra.get("ema_training_weights")
            if not isinstance(training, dict):
                raise ValueError(f"{ckpt.path}: holds no ema_training_weights to resume from")
            averaged = {name: p.detach().clone() for name, p in self.average.params.items()}
            self.average.load(averaged, training, int(extra.get("ema_updates", 0)))
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        if ckpt.scheduler_state is not None:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
            self._fit_schedule_length()
        self.epoch = ckpt.epoch
        self.step_in_epoch = int(extra.get("step_in_epoch", 0))
        self.global_step = int(extra.get("global_step", 0))
        # the saved sums are over every rank: rank 0 carries them, the others start at 0
        self.loss_sum = float(extra.get("loss_sum", 0.0)) if self.ctx.is_main else 0.0
        self.loss_count = int(extra.get("loss_count", 0)) if self.ctx.is_main else 0
        self.best = extra.get("best")
        if ckpt.normalizer_state is not None and self.normalizer_state is None:
            self.normalizer_state = ckpt.normalizer_state
        restore_rng_state(ckpt.rng_state)
        run_id = extra.get("run_id")
        if isinstance(run_id, str):
            self.run_id = run_id
            return run_id
        return None

    def _fit_schedule_length(self) -> None:
        """A resumed cosine schedule anneals to ``lr_min`` at the end of *this* run's ``epochs``.

        The saved scheduler state holds the length of the run that wrote it (``T_max``, or the
        total steps of a per-step schedule); resumed with more epochs, it would reach its floor
        at the old end and then climb back (the cosine is periodic) or stay there. The length
        becomes ``epochs`` (times the steps per epoch) and the learning rate the closed-form
        value at the resumed epoch or step: from there on the run follows the schedule of a run
        started with ``epochs``.
        """
        sched = self.scheduler
        if isinstance(sched, WarmupCosineLR):
            total = self.config.epochs * self.steps_per_epoch
            if sched.total_steps != total:
                sched.set_total_steps(total)
            return
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR
        if not isinstance(sched, cosine) or sched.T_max == self.config.epochs:
            return
        sched.T_max = self.config.epochs
        phase = (1 + math.cos(math.pi * sched.last_epoch / sched.T_max)) / 2
        for group, base in zip(self.optimizer.param_groups, sched.base_lrs, strict=True):
            group["lr"] = sched.eta_min + (base - sched.eta_min) * phase

    # ------------------------------------------------------------------ preflight
    def _checkpoint_bytes(self) -> int:
        """About the size of one checkpoint (weights, optimizer moments, a margin)."""
        weights = sum(
            t.numel() * t.element_size()
            for t in self.model.state_dict().values()
            if isinstance(t, Tensor)  # extra states (e.g. neuraloperator's) are not tensors
        )
        return 3 * weights + (1 << 20)

    @torch.no_grad()
    def _check_model_fits_data(self) -> None:
        """Check with one eval-mode forward of a validation sample that the model fits the data.

        The model must take the data's inputs and give the targets' shape (e.g. a LipMLP's
        ``in_features`` equal to the grid).
        """
        if isinstance(self.val_data, IterableDataset):
            return
        x, y = self.val_data[0]
        spec = f"model {self.config.model.name} {self.config.model.kwargs}"
        rng = torch.get_rng_state()
        was_training = self.model.training
        self.model.eval()
        try:
            out = self.model(x[None].to(self.ctx.device))
        except (RuntimeError, ValueError, IndexError) as err:
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(
                f"model.kwargs: {spec} does not accept the data's inputs, shaped "
                f"{tuple(x.shape)} per sample ({detail})"
            ) from None
        finally:
            self.model.train(was_training)
            torch.set_rng_state(rng)
        if tuple(out.shape[1:]) != tuple(y.shape) and not _frames_of(out[0], x, y):
            raise ConfigError(
                f"model.kwargs: {spec} outputs {tuple(out.shape[1:])} per sample, the data's "
                f"targets are {tuple(y.shape)}"
            )
        self._check_unroll_targets(tuple(out.shape[1:]))

    def _check_unroll_targets(self, frame: tuple[int, ...]) -> None:
        """The training targets hold ``unroll`` frames shaped as the model's output ``frame``."""
        k = self.config.unroll
        if k == 1 or isinstance(self.train_data, IterableDataset):
            return  # one-step targets: the validation sample's check covers them
        x, y = self.train_data[0]
        want = (k * frame[0], *frame[1:])
        if tuple(y.shape) != want or x.shape[0] % frame[0]:
            hint = (
                f"; build the training split with {k} target frames (pdebench, "
                f"pdebench-stream, toy-shift: data.kwargs.target_frames={k}; liponet train "
                f"--unroll {k} sets it)"
            )
            raise ConfigError(
                f"unroll: {k} needs training targets of {k} frames of the model's output "
                f"{frame}, stacked as {want} per sample, after an input window of whole "
                f"frames; the training split gives inputs {tuple(x.shape)} and targets "
                f"{tuple(y.shape)}{hint}"
            )

    def _prepare_folder(self, resumed_id: str | None, resuming: bool, overwrite: bool) -> None:
        """Rank 0: lock the folder, clean temporary files, check ownership and room."""
        folder = self.folder
        if folder is None or not self.ctx.is_main:
            return
        created = not self.out_dir.exists()
        folder.acquire(self.run_id)
        try:
            folder.clean_tmp()
            owner = folder.owner()
            if resuming:
                if owner is not None and owner not in (resumed_id, "unknown"):
                    raise RunFolderError(
                        f"out_dir {self.out_dir}: holds run {owner}, the checkpoint is of run "
                        f"{resumed_id}; resume into that run's folder"
                    )
                folder.truncate_log(self.run_id, self.epoch)
            elif owner is not None:
                if not overwrite:
                    names = ", ".join(p.name for p in folder.run_files())
                    raise RunFolderError(
                        f"out_dir {self.out_dir}: holds run {owner} ({names}); continue it with "
                        f"--resume {self.out_dir / 'last.pt'}, replace it with --overwrite, "
                        "or choose another --out"
                    )
                folder.remove_run_files()
            folder.check_room(2 * self._checkpoint_bytes())
        except BaseException:
            folder.release()
            if created:  # leave nothing behind
                (self.out_dir / ".lock").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.out_dir.rmdir()
            raise

    def _agree_on_start(self, error: BaseException | None) -> None:
        """All ranks learn whether rank 0's preflight failed (then every rank stops)."""
        if not self.ctx.distributed:
            if error is not None:
                raise error
            return
        flag = all_reduce_sum(torch.tensor([1.0 if error else 0.0]), self.ctx)
        if error is not None:
            raise error
        if float(flag[0]) > 0:
            raise RuntimeError("another rank refused to start the run (see its message)")

    # ------------------------------------------------------------------ loop
    def _emit(self, event: str, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(event, record)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of ``epoch`` (this rank's part of each global step)."""
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        elif hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        self.loader_generator.manual_seed(self.config.seed + epoch)
        return iter(self.train_loader)

    def _next(self, batches: Iterator[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor] | None:
        try:
            return next(batches)
        except StopIteration:
            return None
        except Exception:
            if self._signal is not None:  # e.g. a DataLoader worker stopped by the same Ctrl-C
                return None
            raise

    def _agree(self, batch: tuple[Tensor, Tensor] | None) -> tuple[bool, int, bool]:
        """Whether any rank has a batch, real samples in the global batch, stop requested."""
        mine = [float(batch is not None), float(0 if batch is None else len(batch[0]))]
        mine.append(float(self._signal is not None))
        if self.ctx.distributed:
            mine = all_reduce_sum(torch.tensor(mine, dtype=torch.float64), self.ctx).tolist()
        return mine[0] > 0, int(mine[1]), mine[2] > 0

    def _train_step(self, x: Tensor, y: Tensor, n_global: int, weight: float = 1.0) -> float:
        """Run one optimizer step; ``n_global`` real samples are in the global batch.

        Returns this rank's per-sample loss sum (0 for a zero-weight step).
        """
        device = self.ctx.device
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if self.config.augment != "none":
            x, y = augment_pair(x, y, self.config.augment)
        if self.config.input_noise > 0:
            x = noisy_inputs(x, self.config.input_noise)
        self.ddp.train()
        per_sample = self._sample_losses(x, y) * weight
        local_sum = per_sample.sum()
        # DDP averages gradients over ranks: scaled so that the step's gradient is that of the
        # mean per-sample loss over the n_global real samples of the global batch
        loss = local_sum * (self.ctx.world_size / n_global)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # one host sync for both numbers; the gradient norm is global (gradients were
        # all-reduced), so every rank stops together
        sum_value, grad_value = torch.stack([local_sum.detach(), grad_norm.to(loss.dtype)]).tolist()
        if not (math.isfinite(sum_value) and math.isfinite(grad_value)):
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {self.epoch + 1}, step "
                f"{self.step_in_epoch + 1} (global step {self.global_step + 1}): loss "
                f"{sum_value / max(len(x), 1)}, gradient norm {grad_value}; try a lower lr or "
                "grad_clip"
            )
        self.optimizer.step()
        return sum_value

    def _sample_losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-sample training loss ``(batch,)``: one step, or the unrolled rollout's."""
        autocast = self.ctx.device.type == "cuda" and self.config.bf16
        cfg = self.config
        with torch.autocast(self.ctx.device.type, dtype=torch.bfloat16, enabled=autocast):
            if cfg.unroll == 1:
                pred = self.ddp(x)
                return self.sample_loss_fn(pred.float(), y.float())
            frames = curriculum_frames(cfg.unroll, cfg.unroll_curriculum, self.global_step)
            return unrolled_sample_loss(
                self.ddp, x, y, frames, self.sample_loss_fn,
                target_frames=cfg.unroll, gradient=cfg.unroll_gradient,
            )  # fmt: skip

    def _predict_frames(self, x: Tensor, y: Tensor) -> Tensor:
        """The eval model's prediction of ``y``: one frame, or a rollout of as many as it holds.

        A validation target of ``F`` frames of the model's ``C`` output channels
        (``(batch, F * C, *spatial)``) is compared with the ``F``-step rollout from ``x``.
        """
        pred = self.model(x)
        channels = pred.shape[1]
        if y.ndim < 3 or y.shape[1] == channels or y.shape[1] % channels:
            return pred
        window = torch.cat([x[:, channels:], pred.to(x.dtype)], 1)
        rest = rollout(self.model, window, y.shape[1] // channels - 1)
        return torch.cat([pred, rest.flatten(1, 2)], 1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss and metrics of the eval-mode model, synchronized over ranks."""
        self.model.eval()
        device = self.ctx.device
        loss_metric = MeanMetric(sync_on_compute=self.ctx.distributed).to(device)
        field_metric: PDEBenchMetrics | None = None
        autocast = device.type == "cuda" and self.config.bf16
        for x, y in self.val_loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                pred = self._predict_frames(x, y)
            pred = pred.float()
            loss_metric.update(self.loss_fn(pred, y.float()), weight=x.shape[0])
            if y.ndim >= 3:
                if field_metric is None:
                    field_metric = PDEBenchMetrics(sync_on_compute=self.ctx.distributed).to(device)
                field_metric.update(pred, y)
        out = {"val_loss": float(loss_metric.compute())}
        if field_metric is not None:
            out.update({f"val_{k}": float(v) for k, v in field_metric.compute().items()})
        return out

    def _deployed_scores(self) -> dict[str, Any]:
        """Validation scores and certified bound of the deployed (with ``ema``: averaged) model."""
        with self._deployed():
            return {**self.evaluate(), **self._certified_bound()}

    def _state_checksum(self) -> float:
        """A float64 fingerprint of every parameter and buffer (power-iteration vectors too)."""
        total = 0.0
        for tensor in self.model.state_dict().values():
            if not isinstance(tensor, Tensor):  # an extra state (e.g. warm polar bases)
                continue
            flat = tensor.detach().flatten().to(torch.float64)
            weights = torch.linspace(
                1.0, 2.0, flat.numel(), dtype=torch.float64, device=flat.device
            )
            total += float(torch.dot(flat, weights))
        return total

    def _certified_bound(self) -> dict[str, Any]:
        """Certified bound of the eval-mode model; in DDP, checked identical on every rank."""
        out: dict[str, Any] = {}
        if self.ctx.distributed:
            sums = all_gather_floats(self._state_checksum(), self.ctx)
            if any(v != sums[0] for v in sums):
                raise RuntimeError(f"model states differ across ranks (checksums {sums})")
        if not isinstance(self.model, CertifiedModule):
            return out
        self.model.eval()
        bound = self.model.lipschitz_bound()
        bounds = all_gather_floats(bound, self.ctx)
        if any(b != bounds[0] for b in bounds):
            raise RuntimeError(
                f"certified Lipschitz bounds differ across ranks: {bounds} (weights diverged)"
            )
        out["lipschitz_bound"] = bound
        if self.ctx.distributed:
            out["lipschitz_bound_ranks"] = bounds
        return out

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM set a flag (checked at step boundaries); a second one acts as usual."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            self._signal = signum
            for sig, old in previous.items():
                signal.signal(sig, old)

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _interrupt(self, save: bool = True) -> None:
        signum = self._signal if self._signal is not None else signal.SIGINT
        if save:
            path = self._save("last.pt")
        else:
            path = self.out_dir / "last.pt" if self.folder and self.ctx.is_main else None
        where = (
            f"resumable checkpoint {path} (epoch {self.epoch + 1}, step {self.step_in_epoch} "
            f"of it); continue with --resume {path}"
            if path is not None
            else "no checkpoint (no run folder)"
        )
        raise TrainingInterrupted(
            signum, path, f"interrupted by {signal.Signals(signum).name}: {where}"
        )

    def fit(
        self, resume_from: str | Path | None = None, *, overwrite: bool = False
    ) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs (continuing a checkpoint if given).

        Parameters
        ----------
        resume_from
            A checkpoint of this run (usually ``out_dir/last.pt``).
        overwrite
            Delete the run files another run left in ``out_dir`` instead of refusing it.

        Returns
        -------
        dict
            The last epoch's record (also the last line of ``log.jsonl``).

        Raises
        ------
        NonFiniteLossError
            If the loss or gradient norm becomes NaN/inf (the message names epoch and step).
        RunFolderError
            If ``out_dir`` is in use by a live run, holds another run (without ``overwrite``),
            is not writable or lacks room for a checkpoint.
        ConfigError
            If the model does not take the data's inputs or give the targets' shape.
        ValueError
            If ``resume_from`` is a finished run, or the settings or data changed since it.
        TrainingInterrupted
            On SIGINT/SIGTERM, after writing a resumable ``last.pt``.
        """
        error: BaseException | None = None
        try:
            if resume_from is not None and not Path(resume_from).is_file():
                raise FileNotFoundError(f"checkpoint {resume_from} does not exist")
            self._check_model_fits_data()
            resumed_id = self._resume(resume_from) if resume_from is not None else None
            self._prepare_folder(resumed_id, resume_from is not None, overwrite)
        except Exception as err:
            error = err
        try:
            self._agree_on_start(error)
            with self._signals():
                self.ddp = self._wrap()
                return self._fit()
        finally:
            self._unwrap()
            if self.folder is not None:
                self.folder.release()

    def _fit(self) -> dict[str, Any]:
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        every = self.config.save_every_steps
        while self.epoch < self.config.epochs:
            start = time.perf_counter()
            total = self.train_sampler.steps if self.train_sampler is not None else None
            bar = tqdm(
                total=total,
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                file=sys.stderr,
                disable=not self.progress,
                leave=False,
                dynamic_ncols=True,
            )
            batches = self._batches(self.epoch)
            last: tuple[Tensor, Tensor] | None = None
            for _ in range(self.step_in_epoch):  # resume inside an epoch: skip done steps
                batch = self._next(batches)
                last = batch if batch is not None else last
            while True:
                batch = self._next(batches)
                last = batch if batch is not None else last
                any_batch, n_global, stop = self._agree(batch)
                if stop:
                    bar.close()
                    self._interrupt()
                if not any_batch:
                    break
                if last is None:
                    raise RuntimeError(
                        f"rank {self.ctx.rank} has no training samples this epoch while "
                        "others do (a dataset that does not shard itself evenly)"
                    )
                x, y = batch if batch is not None else last
                weight = 1.0 if batch is not None else 0.0
                lr = self.optimizer.param_groups[0]["lr"]
                local_sum = self._train_step(x, y, n_global, weight)
                if self.average is not None:
                    self.average.update()
                if self.per_step_schedule:
                    self.scheduler.step()
                    self.last_lr = lr
                n_local = len(x) if batch is not None else 0
                self.step_in_epoch += 1
                self.global_step += 1
                self.loss_sum += local_sum
                self.loss_count += n_local
                loss = local_sum / n_local if n_local else math.nan
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.3e}", refresh=False)
                self._emit(
                    "step",
                    {"epoch": self.epoch, "step": self.global_step, "loss": loss, "lr": lr,
                     "rank": self.ctx.rank},
                )  # fmt: skip
                if every and self.global_step % every == 0 and self.step_in_epoch != total:
                    self._save("last.pt")  # (the epoch-end write follows the last step)
            bar.close()
            record = self._end_epoch(time.perf_counter() - start)
            if self.epoch < self.config.epochs and self._agree(None)[2]:
                self._interrupt(save=False)  # last.pt was just written
        if self.average is not None:
            self.average.apply()  # the trained model is the averaged one
        self._emit("end", record)
        return record

    def _write_best(self, value: float) -> bool:
        """Write ``best.pt`` unless the file there is another run's or holds a better value."""
        path = self.out_dir / "best.pt"
        if path.exists():
            try:
                payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                extra = payload.get("extra") or {}
            except Exception:  # an unreadable best.pt is replaced
                extra = {}
            owner = extra.get("run_id")
            if isinstance(owner, str) and owner != self.run_id:
                raise RunFolderError(
                    f"{path}: belongs to run {owner}, not to this run {self.run_id}; not replaced"
                )
            held = extra.get("best")
            if owner == self.run_id and isinstance(held, float) and held < value:
                return False
        self._save("best.pt")
        return True

    def _end_epoch(self, seconds: float) -> dict[str, Any]:
        sums = all_reduce_sum(
            torch.tensor([self.loss_sum, float(self.loss_count)], dtype=torch.float64), self.ctx
        )
        if self.per_step_schedule:  # the rate of the epoch's last step
            lr = self.last_lr if self.last_lr is not None else self.optimizer.param_groups[0]["lr"]
        else:
            lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "train_loss": float(sums[0] / max(float(sums[1]), 1.0)),
            "train_samples": int(sums[1]),
            **self._deployed_scores(),
            "lr": lr,
            "time_s": seconds,
            "run_id": self.run_id,
        }
        self.epoch += 1
        self.step_in_epoch = 0
        self.loss_sum, self.loss_count = 0.0, 0
        value = record[self.config.monitor] if self.config.monitor in record else None
        if value is None:
            raise ValueError(
                f"monitor: {self.config.monitor!r} is not computed for this data; available: "
                + ", ".join(k for k in record if k.startswith("val_"))
            )
        best = self.best
        improved = best is None or value < best or (math.isnan(best) and not math.isnan(value))
        if improved:
            self.best = value
        record["best"] = improved
        if self.ctx.is_main and self.folder is not None:
            best_path = self.out_dir / "best.pt"
            wrote_best = improved and self._write_best(value)
            _ckpt.write_phase("best-written", best_path)
            self.folder.append_log(record)
            _ckpt.write_phase("log-written", self.out_dir / "log.jsonl")
            if wrote_best:
                atomic_copy(best_path, self.out_dir / "last.pt")
            else:
                self._save("last.pt")
            _ckpt.write_phase("last-written", self.out_dir / "last.pt")
        record["rank"] = self.ctx.rank
        self._emit("epoch", record)
        return record


def _frames_of(frame: Tensor, x: Tensor, y: Tensor) -> bool:
    """Whether the target ``y`` is several frames shaped as ``frame``, after whole-frame ``x``."""
    c = frame.shape[0]
    return (
        frame.ndim == y.ndim >= 2
        and tuple(frame.shape[1:]) == tuple(y.shape[1:])
        and y.shape[0] % c == 0
        and x.shape[0] % c == 0
    )


def _data_fingerprint(path: str | None) -> dict[str, Any] | None:
    """Size and modification time of a data file (``None`` without one)."""
    if not path:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"path": str(path), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}
