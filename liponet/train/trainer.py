"""The trainer: seeded, resumable, DDP-aware; rank 0 writes checkpoints and a JSON-lines log."""

from __future__ import annotations

import itertools
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Sampler
from torchmetrics import MeanMetric
from tqdm.auto import tqdm

from ..layers import CertifiedModule
from ..metrics import PDEBenchMetrics
from .checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from .config import LOSSES, OPTIMIZERS, SCHEDULERS, TrainConfig, config_to_dict
from .distributed import DistContext, all_gather_floats, all_reduce_sum

__all__ = ["Callback", "NonFiniteLossError", "Trainer", "seed_everything"]

#: ``callback(event, record)`` with event ``"step"`` (after each optimizer step), ``"epoch"``
#: (after validation and checkpointing) or ``"end"``; called on every rank (``record["rank"]``).
Callback = Callable[[str, dict[str, Any]], None]


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite; training stopped."""


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global generator is what libraries use)
    torch.manual_seed(seed)


class _ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world, ...`` without padding (evaluation: every sample once)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class Trainer:
    """Train a registered model on a dataset of ``(input, target)`` pairs.

    Parameters
    ----------
    config
        The run's :class:`~liponet.train.TrainConfig`; the model is built from ``config.model``
        after seeding (identical initial weights on every rank).
    train_data, val_data
        Map-style datasets (sharded here with ``DistributedSampler``; the global batch is
        ``config.batch_size`` whatever the world size) or iterable datasets that shard themselves.
    ctx
        Rank, world size and device (:func:`~liponet.train.distributed.init_distributed`).
    normalizer_state
        Normalization statistics saved with every checkpoint.
    callbacks
        Functions ``(event, record)``; the library itself never prints (only the tqdm bar on
        rank 0, to stderr, when ``progress``).
    progress
        Show a progress bar (rank 0 only).

    Notes
    -----
    Every epoch ends with an evaluation on ``val_data`` (unwrapped model in eval mode, metrics
    synchronized over ranks: PDEBench metrics for targets with a grid, plus the validation loss),
    the certified Lipschitz bound of the eval-mode model gathered from every rank (they must be
    identical), one JSON line in ``out_dir/log.jsonl``, ``last.pt`` and, when the monitored value
    improved, ``best.pt``. With ``save_every_steps`` the trainer also writes ``last.pt`` inside the
    epoch, recording its position, so :meth:`fit` with ``resume_from`` continues exactly where it
    stopped (same sample order, optimizer, scheduler and RNG states).

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
    (1, 2, ['best.pt', 'last.pt', 'log.jsonl'])
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
    ) -> None:
        from ..models import build_model
        from .constraint import resolve_config, warn_if_binding

        config, data_constant = resolve_config(config, train_data)  # k="auto" -> a number
        self.config = config
        self.ctx = ctx or DistContext()
        self.normalizer_state = normalizer_state
        self.callbacks = list(callbacks)
        self.progress = progress and self.ctx.is_main
        self.out_dir = self.out_path(config)
        world = self.ctx.world_size
        if config.batch_size % world:
            raise ValueError(
                f"batch_size: the global batch {config.batch_size} must be divisible by the "
                f"number of processes {world}"
            )
        seed_everything(config.seed)
        self.model: nn.Module = build_model(config.model.name, **config.model.kwargs)
        if self.ctx.is_main:  # one ConstraintWarning if the data's constant exceeds the model's
            warn_if_binding(self.model, train_data, data_constant)
        self.model.to(self.ctx.device)
        self.ddp: nn.Module = self.model
        if self.ctx.distributed:
            # DDP's default buffer sync re-sends rank 0's buffers (e.g. the power-iteration
            # vectors) before every forward: the Lipschitz normalization is identical on all
            # ranks. (Not passed explicitly: torch 2.13 renamed the flag and warns on the old one.)
            self.ddp = DistributedDataParallel(
                self.model,
                device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None,
            )
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.model.parameters(), config.lr, config.weight_decay
        )
        self.scheduler = SCHEDULERS[config.scheduler](self.optimizer, config)
        self.loss_fn = LOSSES[config.loss]
        self.train_data = train_data
        self.val_data = val_data
        self.local_batch = config.batch_size // world
        self.train_sampler: DistributedSampler[Any] | None = None
        if not isinstance(train_data, IterableDataset):
            self.train_sampler = DistributedSampler(
                train_data,
                num_replicas=world,
                rank=self.ctx.rank,
                shuffle=True,
                seed=config.seed,
                drop_last=False,
            )
        self.loader_generator = torch.Generator()
        self.train_loader = DataLoader(
            train_data,
            batch_size=self.local_batch,
            sampler=self.train_sampler,
            num_workers=config.num_workers,
            generator=self.loader_generator,
            drop_last=False,
        )
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
        self.step_in_epoch = 0  # completed optimizer steps of the current epoch
        self.global_step = 0
        self.loss_sum = 0.0  # this rank's training-loss sum and count in the current epoch
        self.loss_count = 0
        self.best: float | None = None

    @staticmethod
    def out_path(config: TrainConfig) -> Path:
        """The run folder ``config.out_dir``."""
        return Path(config.out_dir)

    # ------------------------------------------------------------------ checkpoints
    def _save(self, name: str) -> Path | None:
        if not self.ctx.is_main:
            return None
        extra = {
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "loss_sum": self.loss_sum,
            "loss_count": self.loss_count,
            "best": self.best,
            "world_size": self.ctx.world_size,
        }
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

    def _resume(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.ctx.device)
        saved_model = ckpt.config.get("model", {})
        if saved_model != config_to_dict(self.config)["model"]:
            raise ValueError(
                f"{ckpt.path}: its model {saved_model} differs from the configured one "
                f"{config_to_dict(self.config)['model']}"
            )
        extra = ckpt.extra
        if extra.get("step_in_epoch", 0) and extra.get("world_size") != self.ctx.world_size:
            raise ValueError(
                f"{ckpt.path}: written mid-epoch by {extra.get('world_size')} processes; resume "
                f"it with the same number (now {self.ctx.world_size}) or from an epoch-end file"
            )
        self.model.load_state_dict(ckpt.model_state)
        if ckpt.optimizer_state is not None:
            self.optimizer.load_state_dict(ckpt.optimizer_state)
        if ckpt.scheduler_state is not None:
            self.scheduler.load_state_dict(ckpt.scheduler_state)
        self.epoch = ckpt.epoch
        self.step_in_epoch = int(extra.get("step_in_epoch", 0))
        self.global_step = int(extra.get("global_step", 0))
        self.loss_sum = float(extra.get("loss_sum", 0.0))
        self.loss_count = int(extra.get("loss_count", 0))
        self.best = extra.get("best")
        if ckpt.normalizer_state is not None and self.normalizer_state is None:
            self.normalizer_state = ckpt.normalizer_state
        restore_rng_state(ckpt.rng_state)

    # ------------------------------------------------------------------ loop
    def _emit(self, event: str, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(event, record)

    def _batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of ``epoch``, skipping those already done (resume inside an epoch)."""
        if self.train_sampler is not None:
            self.train_sampler.set_epoch(epoch)
        elif hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        self.loader_generator.manual_seed(self.config.seed + epoch)
        return itertools.islice(iter(self.train_loader), self.step_in_epoch, None)

    def _train_step(self, x: Tensor, y: Tensor) -> float:
        device = self.ctx.device
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        self.ddp.train()
        autocast = device.type == "cuda" and self.config.bf16
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            pred = self.ddp(x)
        loss = self.loss_fn(pred.float(), y.float())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else math.inf
        grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        # one host sync for both numbers; the gradient norm is global (gradients were
        # all-reduced), so every rank stops together
        loss_value, grad_value = torch.stack([loss.detach(), grad_norm.to(loss.dtype)]).tolist()
        if not (math.isfinite(loss_value) and math.isfinite(grad_value)):
            raise NonFiniteLossError(
                f"non-finite training loss at epoch {self.epoch + 1}, step "
                f"{self.step_in_epoch + 1} (global step {self.global_step + 1}): loss "
                f"{loss_value}, gradient norm {grad_value}; try a lower lr or grad_clip"
            )
        self.optimizer.step()
        return loss_value

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
                pred = self.model(x)
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

    def _state_checksum(self) -> float:
        """A float64 fingerprint of every parameter and buffer (power-iteration vectors too)."""
        total = 0.0
        for tensor in self.model.state_dict().values():
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

    def fit(self, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train for ``config.epochs`` epochs (continuing a checkpoint if given).

        Returns
        -------
        dict
            The last epoch's record (also the last line of ``log.jsonl``).

        Raises
        ------
        NonFiniteLossError
            If the loss or gradient norm becomes NaN/inf (the message names epoch and step).
        """
        if resume_from is not None:
            self._resume(resume_from)
        if self.ctx.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step}
        every = self.config.save_every_steps
        while self.epoch < self.config.epochs:
            start = time.perf_counter()
            total = len(self.train_loader) if self.train_sampler is not None else None
            bar = tqdm(
                self._batches(self.epoch),
                total=total,
                initial=self.step_in_epoch,
                desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
                file=sys.stderr,
                disable=not self.progress,
                leave=False,
                dynamic_ncols=True,
            )
            for x, y in bar:
                loss = self._train_step(x, y)
                self.step_in_epoch += 1
                self.global_step += 1
                self.loss_sum += loss
                self.loss_count += 1
                bar.set_postfix(loss=f"{loss:.3e}", refresh=False)
                self._emit(
                    "step",
                    {
                        "epoch": self.epoch,
                        "step": self.global_step,
                        "loss": loss,
                        "rank": self.ctx.rank,
                    },
                )
                if every and self.global_step % every == 0 and self.step_in_epoch != total:
                    self._save("last.pt")
            bar.close()
            record = self._end_epoch(time.perf_counter() - start)
        self._emit("end", record)
        return record

    def _end_epoch(self, seconds: float) -> dict[str, Any]:
        sums = all_reduce_sum(
            torch.tensor([self.loss_sum, float(self.loss_count)], dtype=torch.float64), self.ctx
        )
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "step": self.global_step,
            "train_loss": float(sums[0] / max(float(sums[1]), 1.0)),
            **self.evaluate(),
            **self._certified_bound(),
            "lr": lr,
            "time_s": seconds,
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
        improved = self.best is None or value < self.best
        if improved:
            self.best = value
        record["best"] = improved
        if self.ctx.is_main:
            last = self._save("last.pt")
            if improved and last is not None:
                tmp = self.out_dir / ".best.pt.tmp"
                shutil.copyfile(last, tmp)
                tmp.replace(self.out_dir / "best.pt")
            with open(self.out_dir / "log.jsonl", "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")
        record["rank"] = self.ctx.rank
        self._emit("epoch", record)
        return record
