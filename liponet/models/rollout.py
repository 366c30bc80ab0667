"""Autoregressive rollout (PDEBench's setup) and the error growth a certified step constant implies.

PDEBench's autoregressive task feeds the last ``initial_step`` frames, stacked as channels
(frame-major: channel ``t * C + c`` is channel ``c`` of frame ``t``), and predicts the next frame
``(batch, C, *spatial)``. :func:`rollout` repeats that step; :func:`rollout_error_bound` turns a
certified per-step constant into a guaranteed bound on the rollout error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["rollout", "rollout_error_bound"]


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


def rollout_error_bound(
    lipschitz: float,
    defects: Sequence[float] | float,
    steps: int,
    initial_errors: Sequence[float] | None = None,
    window: int = 1,
) -> list[float]:
    """Guaranteed bounds of the rollout errors ``e_1, ..., e_steps`` (function norm per frame).

    Let ``G`` have certified constant ``L`` in the function norm of its input window, and let the
    one-step defect ``delta_t = ||G(true window_t) - true frame_{t+1}||`` be bounded (``defects``:
    measured on data, or a certified bound where one exists). Then the predicted frame obeys
    ``e_{t+1} <= L ||window error_t|| + delta_t`` with ``||window error_t||^2`` the sum of the
    last ``window`` frame errors squared (the window's channels are the frames). For
    ``window = 1`` this is ``e_{t+1} <= L e_t + delta_t``, i.e. ``e_t <= L^t e_0 +
    sum_s L^(t-1-s) delta_s``: errors stay bounded by ``delta / (1 - L)`` if ``L < 1``, grow at most
    linearly (``t delta``) if ``L = 1``, and may grow like ``L^t`` otherwise.

    Parameters
    ----------
    lipschitz
        The certified per-step constant ``L`` (``model.lipschitz_bound()``).
    defects
        One-step defects ``delta_0, ..., delta_{steps-1}`` or one value for every step.
    steps
        Number of predicted frames.
    initial_errors
        Errors of the ``window`` initial frames (default: zeros, exact initial data).
    window
        Frames per input window (PDEBench's ``initial_step``).

    Returns
    -------
    list of float
        ``[e_1, ..., e_steps]``, upper bounds of the predicted frames' errors.

    Examples
    --------
    >>> rollout_error_bound(1.0, 0.1, steps=3)
    [0.1, 0.2, 0.30000000000000004]
    >>> rollout_error_bound(0.5, 0.1, steps=3)
    [0.1, 0.15000000000000002, 0.17500000000000002]
    """
    if not (math.isfinite(lipschitz) and lipschitz >= 0):
        raise ValueError(f"lipschitz must be a finite number >= 0, got {lipschitz}")
    if steps < 1 or window < 1:
        raise ValueError(f"steps and window must be >= 1, got {steps}, {window}")
    deltas = [float(defects)] * steps if isinstance(defects, (int, float)) else list(defects)
    if len(deltas) < steps:
        raise ValueError(f"need {steps} defects (one per step), got {len(deltas)}")
    errors = [0.0] * window if initial_errors is None else [float(e) for e in initial_errors]
    if len(errors) != window:
        raise ValueError(f"initial_errors must hold {window} values, got {len(errors)}")
    out = []
    for t in range(steps):
        window_error = math.sqrt(sum(e * e for e in errors[-window:]))
        e = lipschitz * window_error + deltas[t]
        errors.append(e)
        out.append(e)
    return out
