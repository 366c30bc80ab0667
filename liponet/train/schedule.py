"""Learning-rate schedules stepped once per optimizer step, in closed form."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

__all__ = ["WarmupCosineLR", "warmup_cosine_lr"]


def warmup_cosine_lr(
    base_lr: float, step: int, total_steps: int, warmup_steps: int = 0, lr_min: float = 0.0
) -> float:
    """The learning rate of step ``step`` (0-based) of a warmup-then-cosine schedule.

    Steps ``0 .. warmup_steps - 1`` rise linearly, ``base_lr * (step + 1) / warmup_steps``
    (the last of them at ``base_lr``); from ``warmup_steps`` the rate follows a half cosine from
    ``base_lr`` down to ``lr_min``, reached after the last step ``total_steps - 1`` (at
    ``step = total_steps``), and stays at ``lr_min`` beyond.

    Examples
    --------
    >>> [round(warmup_cosine_lr(1.0, t, total_steps=4), 4) for t in range(5)]
    [1.0, 0.8536, 0.5, 0.1464, 0.0]
    >>> [warmup_cosine_lr(1.0, t, total_steps=4, warmup_steps=2) for t in range(3)]
    [0.5, 1.0, 1.0]
    """
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return lr_min
    phase = (1 + math.cos(math.pi * (step - warmup_steps) / (total_steps - warmup_steps))) / 2
    return lr_min + (base_lr - lr_min) * phase


class WarmupCosineLR(LRScheduler):
    """Linear warmup, then a cosine from each group's initial rate to ``lr_min``; per step.

    Every rate is :func:`warmup_cosine_lr` of the number of :meth:`step` calls so far (closed
    form: no accumulated rounding, so a resumed run and the state it restores give the same
    rates bit for bit). :class:`~liponet.train.Trainer` uses it for ``scheduler="cosine"`` with
    ``schedule_unit="step"`` and steps it after every optimizer step.

    Parameters
    ----------
    optimizer
        The optimizer whose groups' rates are set (each group's initial ``lr`` is its peak).
    total_steps
        Steps until the rate reaches ``lr_min`` (a run's optimizer steps).
    warmup_steps
        Steps of linear warmup, ``0 <= warmup_steps < total_steps``.
    lr_min
        The floor the cosine ends at (``>= 0``).

    Examples
    --------
    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    >>> sched = WarmupCosineLR(opt, total_steps=4, warmup_steps=1, lr_min=0.01)
    >>> rates = []
    >>> for _ in range(4):
    ...     rates.append(round(opt.param_groups[0]["lr"], 4))
    ...     opt.step()
    ...     sched.step()
    >>> rates, round(opt.param_groups[0]["lr"], 4)
    ([0.1, 0.1, 0.0775, 0.0325], 0.01)
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        warmup_steps: int = 0,
        lr_min: float = 0.0,
    ) -> None:
        if total_steps < 1:
            raise ValueError(f"total_steps: must be >= 1, got {total_steps}")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(
                f"warmup_steps: must be in [0, total_steps={total_steps}), got {warmup_steps}"
            )
        if not (math.isfinite(lr_min) and lr_min >= 0):
            raise ValueError(f"lr_min: must be a finite number >= 0, got {lr_min}")
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.lr_min = float(lr_min)
        super().__init__(optimizer)

    def get_lr(self) -> list[float | torch.Tensor]:
        """The closed-form rates at step ``last_epoch`` (the number of steps taken)."""
        step, total, warmup = self.last_epoch, self.total_steps, self.warmup_steps
        return [warmup_cosine_lr(float(b), step, total, warmup, self.lr_min) for b in self.base_lrs]

    def set_total_steps(self, total_steps: int) -> None:
        """Change the schedule's length and set every group's rate to its value at this step."""
        if not self.warmup_steps < total_steps:
            raise ValueError(
                f"total_steps: must exceed warmup_steps={self.warmup_steps}, got {total_steps}"
            )
        self.total_steps = int(total_steps)
        for group, lr in zip(self.optimizer.param_groups, self.get_lr(), strict=True):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
