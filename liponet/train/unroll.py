"""Unrolled training: the loss of a K-step autoregressive rollout instead of one step.

An autoregressive stepper is scored on its rollout (its own predictions fed back), but trained
on one-step windows (teacher forcing) it never sees its own errors. With ``TrainConfig.unroll
= K`` every training sample carries the ``K`` frames that follow its input window, stacked
frame-major as channels (``(K * C, *spatial)``; :class:`liponet.data.PDEBenchDataset` with
``target_frames=K``), and the step's loss is that of the model's own ``K``-step rollout from
the window:

- ``unroll_gradient="all"``: the mean over the ``K`` predicted frames of the per-sample loss,
  with the gradient through the whole rollout (``K`` forward and backward passes per step);
- ``unroll_gradient="last"``: the pushforward trick (Brandstetter, Worrall and Welling,
  *Message passing neural PDE solvers*, ICLR 2022): the first ``K - 1`` frames are predicted
  without gradient, and the loss is the last frame's, from the model's own window (``K - 1``
  forward passes without a graph, then one step as in one-step training).

``unroll_curriculum = N`` grows the unrolled frames from 1 to ``K`` over the first ``N``
optimizer steps (a closed form in the global step, so a resumed run takes the same steps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

__all__ = [
    "UNROLL_GRADIENTS",
    "OneStepView",
    "curriculum_frames",
    "one_step_view",
    "unrolled_sample_loss",
]

#: How the gradient flows through an unrolled step: ``all`` (every frame's loss, through the
#: whole rollout) or ``last`` (pushforward: the last frame's loss, no gradient before it).
UNROLL_GRADIENTS: tuple[str, ...] = ("all", "last")


def curriculum_frames(unroll: int, curriculum_steps: int, global_step: int) -> int:
    """Frames unrolled at optimizer step ``global_step`` (0-based) under a linear curriculum.

    ``1 + floor(global_step * unroll / curriculum_steps)``, capped at ``unroll``: each number of
    frames ``1, ..., unroll`` gets an equal share of the first ``curriculum_steps`` steps (0: no
    curriculum, always ``unroll``).

    Examples
    --------
    >>> [curriculum_frames(4, 8, s) for s in range(10)]
    [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]
    >>> curriculum_frames(4, 0, 0)
    4
    """
    if curriculum_steps <= 0:
        return unroll
    return min(unroll, 1 + (global_step * unroll) // curriculum_steps)


def unrolled_sample_loss(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    frames: int,
    sample_loss: Callable[[Tensor, Tensor], Tensor],
    *,
    target_frames: int | None = None,
    gradient: str = "all",
) -> Tensor:
    """Per-sample loss ``(batch,)`` of the model's ``frames``-step rollout from ``x``.

    Parameters
    ----------
    model
        One step: a window ``(batch, T * C, *spatial)`` -> the next frame ``(batch, C, *spatial)``.
    x
        The input windows ``(batch, T * C, *spatial)``, frame-major channels.
    y
        The true next frames ``(batch, target_frames * C, *spatial)``, frame-major; the first
        ``frames`` of them are scored.
    frames
        Frames to predict, ``1 <= frames <= target_frames``.
    sample_loss
        ``(pred, target) -> (batch,)`` (:data:`liponet.train.config.SAMPLE_LOSSES`), applied
        to each frame in float32.
    target_frames
        Frames stacked in ``y`` (default ``frames``): fixes ``C = y.shape[1] / target_frames``.
    gradient
        ``"all"``: the mean of the ``frames`` per-frame losses, differentiated through the whole
        rollout. ``"last"`` (pushforward): the first ``frames - 1`` predictions are made without
        gradient and only the last frame's loss counts.

    Raises
    ------
    ValueError
        If ``y`` does not hold ``target_frames`` frames of the model's output channels, or
        ``x`` is not a whole number of such frames, or ``frames`` is out of range.

    Examples
    --------
    >>> import torch
    >>> from liponet.train.config import SAMPLE_LOSSES
    >>> traj = torch.arange(1.0, 7.0).view(1, 6, 1).expand(2, 6, 4)  # frames 1..6, 2 samples
    >>> step = lambda w: w[:, -1:] + 1.0                             # exact: next = last + 1
    >>> x, y = traj[:, :2], traj[:, 2:]                              # 2 frames -> 4 frames
    >>> unrolled_sample_loss(step, x, y, 4, SAMPLE_LOSSES["mse"])
    tensor([0., 0.])
    >>> wrong = lambda w: w[:, -1:] + 1.5                            # off by 0.5 per step
    >>> unrolled_sample_loss(wrong, x, y, 2, SAMPLE_LOSSES["mse"], target_frames=4)
    tensor([0.6250, 0.6250])
    """
    target_frames = frames if target_frames is None else target_frames
    if not 1 <= frames <= target_frames:
        raise ValueError(f"frames must be in [1, {target_frames}], got {frames}")
    if y.shape[1] % target_frames:
        raise ValueError(
            f"unroll: the targets' {y.shape[1]} channels are not {target_frames} frames"
        )
    channels = y.shape[1] // target_frames
    if x.shape[1] % channels:
        raise ValueError(
            f"unroll: the input window's {x.shape[1]} channels are not a whole number of "
            f"frames of {channels} channels (the targets' {target_frames} frames)"
        )
    if gradient not in UNROLL_GRADIENTS:
        raise ValueError(f"gradient must be one of {UNROLL_GRADIENTS}, got {gradient!r}")
    window = x
    losses = []
    for k in range(frames):
        scored = gradient == "all" or k == frames - 1
        with torch.set_grad_enabled(scored and torch.is_grad_enabled()):
            frame = model(window)
        if frame.shape[1] != channels:
            raise ValueError(
                f"unroll: the model outputs {frame.shape[1]} channels per frame, the targets "
                f"hold {target_frames} frames of {channels}"
            )
        if scored:
            target = y[:, k * channels : (k + 1) * channels]
            losses.append(sample_loss(frame.float(), target.float()))
        if k < frames - 1:
            window = torch.cat([window[:, channels:], frame.to(window.dtype)], 1)
    return torch.stack(losses).mean(0)


class OneStepView(Dataset[tuple[Tensor, Tensor]]):
    """A map-style dataset of ``(window, K frames)`` seen as one-step pairs ``(window, frame)``.

    What the one-step parts of training read (``k="auto"``'s data constant, the binding
    warning, the spectral shortcut's fit): the first of the ``frames`` stacked target frames.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> view = OneStepView(TensorDataset(torch.zeros(3, 2, 8), torch.ones(3, 4, 8)), frames=4)
    >>> len(view), view[0][1].shape
    (3, torch.Size([1, 8]))
    """

    def __init__(self, dataset: Dataset[Any], frames: int) -> None:
        self.dataset, self.frames = dataset, frames

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor]:
        x, y = self.dataset[item]
        return x, y[: y.shape[0] // self.frames]


class _OneStepStream(IterableDataset[tuple[Tensor, Tensor]]):
    """:class:`OneStepView` of an iterable dataset yielding single items ``(channels, ...)``."""

    def __init__(self, dataset: IterableDataset[Any], frames: int) -> None:
        self.dataset, self.frames = dataset, frames

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.dataset:
            yield x, y[: y.shape[0] // self.frames]


def one_step_view(dataset: Dataset[Any], frames: int) -> Dataset[Any]:
    """``dataset`` itself when ``frames == 1``, else its :class:`OneStepView`.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.zeros(3, 2, 8), torch.ones(3, 2, 8))
    >>> one_step_view(data, 1) is data
    True
    """
    if frames == 1:
        return dataset
    if isinstance(dataset, IterableDataset):
        return _OneStepStream(dataset, frames)
    return OneStepView(dataset, frames)
