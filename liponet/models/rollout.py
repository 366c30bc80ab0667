"""Autoregressive rollout (PDEBench's setup).

PDEBench's autoregressive task feeds the last ``initial_step`` frames, stacked as channels
(frame-major: channel ``t * C + c`` is channel ``c`` of frame ``t``), and predicts the next frame
``(batch, C, *spatial)``. :func:`rollout` repeats that step;
:func:`liponet.certify.rollout_error_bound` turns a certified per-step constant into a guaranteed
bound on the rollout error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["rollout"]


def rollout(model: Callable[[Tensor], Tensor], x0: Tensor, steps: int) -> Tensor:
    """Roll a one-frame-ahead model out for ``steps`` frames.

    Parameters
    ----------
    model
        Maps a window ``(batch, T * C, *spatial)`` to the next frame ``(batch, C, *spatial)``
        (``T = 1`` is the one-step task ``u(t) -> u(t + dt)``).
    x0
        The initial window ``(batch, T * C, *spatial)``, frame-major channels.
    steps
        Number of predicted frames (>= 1).

    Returns
    -------
    Tensor
        ``(batch, steps, C, *spatial)``: the predicted frames.

    Examples
    --------
    >>> import torch
    >>> frames = rollout(lambda w: w[:, -1:] * 0.5, torch.ones(2, 3, 8), steps=4)
    >>> frames.shape, float(frames[0, -1, 0, 0])
    (torch.Size([2, 4, 1, 8]), 0.0625)
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    window = x0
    frames = []
    for _ in range(steps):
        frame = model(window)
        channels = frame.shape[1]
        if window.shape[1] % channels:
            raise ValueError(
                f"the window's {window.shape[1]} channels are not a whole number of frames of "
                f"{channels} channels (the model's output)"
            )
        frames.append(frame)
        window = torch.cat([window[:, channels:], frame], 1)
    return torch.stack(frames, 1)
