"""Fit a model's spectral shortcut to the training windows before training.

A time-stepping PDE's linear part acts on every Fourier mode; :class:`liponet.layers.
SpectralShortcut` learns it as one multiplier ``S_k`` per mode. Gradient descent reaches the
least-squares ``S`` slowly (the high modes carry little of the loss), but ``S`` is linear: the
per-mode least-squares fit of the training windows is one solve
(:meth:`~liponet.layers.SpectralShortcut.fit_`). On the ``medium`` advection task that fit alone,
``f = 0``, reaches a test rollout nRMSE of 0.000597, below every trained model of the previous
rounds (benchmarks/results/spectral_shortcut_init.md).

Three settings of a run use it (:class:`~liponet.train.Trainer`; ``liponet train --set KEY=VALUE``):

* ``shortcut_init = "lstsq"`` / ``"lstsq-rel"`` (:class:`~liponet.train.TrainConfig`): before the
  first step, ``S`` is set to the least-squares step from the training windows to their next
  frames (``"lstsq-rel"``: each window weighted by ``1 / ||y||``, the relative error the
  trainer's ``rel_l2`` loss measures), projected to the shortcut's ball ``max_k ||S_k|| <= s``;
* ``shortcut_frozen = True``: ``S`` then takes no gradient (the fitted step is kept; ``f`` learns
  the rest);
* ``model.kwargs.shortcut_bound = "auto"`` (LipFNO): ``s`` becomes the unconstrained fit's largest
  per-mode norm (exact float64 SVD), so the ball does not cut the data's own step (a wave
  equation's step ``(u(t-1), u(t)) -> u(t+1)`` has ``||S_k||`` up to ``sqrt 5``). ``s`` is a design
  choice read from the data, not a premise: the certified bound is always the weights' own.

The fit holds every training window in memory once (float64 per-mode Gram matrices are
accumulated in chunks; the windows themselves are stacked first).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..layers.shortcut import SpectralShortcut

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = [
    "SHORTCUT_INITS",
    "fit_model_shortcut",
    "fit_shortcut",
    "resolve_shortcut_bound",
    "stacked_windows",
]

#: The fits of ``shortcut_init``: plain least squares, or weighted by ``1 / ||y_i||``.
SHORTCUT_INITS = ("lstsq", "lstsq-rel")


def fit_shortcut(
    shortcut: SpectralShortcut, x: Tensor, y: Tensor, how: str = "lstsq"
) -> SpectralShortcut:
    """Fit ``shortcut`` to windows ``x`` -> frames ``y`` by the :data:`SHORTCUT_INITS` fit ``how``.

    ``"lstsq-rel"`` scales each pair by ``1 / ||y_i||`` first: the map is linear, so that
    weights each window's squared error by its relative size.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(32, 2, 16)
    >>> y = 2.0 * torch.roll(x[:, -1:], 1, dims=-1)        # gain 2: outside the unit ball
    >>> fit_shortcut(SpectralShortcut(2, 1, 16, s=None), x, y).lipschitz_bound()
    2.0...
    """
    if how not in SHORTCUT_INITS:
        raise ValueError(f"shortcut_init={how!r}: expected one of {', '.join(SHORTCUT_INITS)}")
    if how == "lstsq-rel":
        w = y.flatten(1).norm(dim=1).clamp_min(torch.finfo(y.dtype).tiny).reciprocal()
        x, y = x * w[:, None, None], y * w[:, None, None]
    return shortcut.fit_(x, y)


def stacked_windows(dataset: Dataset[Any], batch: int = 4096) -> tuple[Tensor, Tensor]:
    """Every ``(x, y)`` pair of ``dataset`` stacked into two tensors (in dataset order)."""
    xs, ys = [], []
    for pair in DataLoader(dataset, batch_size=batch, shuffle=False):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(
                "shortcut fit: the training set must yield (input, target) pairs, got "
                f"{type(pair).__name__}"
            )
        xs.append(pair[0])
        ys.append(pair[1])
    if not xs:
        raise ValueError("shortcut fit: the training set is empty")
    return torch.cat(xs), torch.cat(ys)


def _the_shortcut(model: nn.Module) -> SpectralShortcut:
    found = [m for m in model.modules() if isinstance(m, SpectralShortcut)]
    if len(found) != 1:
        raise ValueError(
            "shortcut_init / shortcut_frozen need a model with one spectral shortcut "
            f"(LipFNO or FNO with increment='spectral'), found {len(found)}"
        )
    return found[0]


def fit_model_shortcut(
    model: nn.Module,
    x: Tensor | None,
    y: Tensor | None,
    how: str | None = "lstsq",
    frozen: bool = False,
) -> nn.Module:
    """``model``'s spectral shortcut fitted to ``x -> y`` (``how=None``: left as it is), and frozen.

    The fit is projected to the shortcut's ball (its ``s``); ``frozen=True`` turns its gradient
    off (``requires_grad``), so an optimizer leaves it. Works the same for
    :class:`~liponet.models.FNO` (no ball) and :class:`~liponet.models.LipFNO`.
    """
    shortcut = _the_shortcut(model)
    if how is not None:
        if x is None or y is None:
            raise ValueError(f"shortcut_init={how!r}: the windows to fit (x, y) are missing")
        fitted = SpectralShortcut(shortcut.in_channels, shortcut.out_channels, shortcut.size,
                                  s=shortcut.s)  # fmt: skip
        fit_shortcut(fitted, x, y, how)
        with torch.no_grad():
            shortcut.weight.copy_(fitted.weight.to(shortcut.weight))
    if frozen:
        shortcut.weight.requires_grad_(False)
    return model


def resolve_shortcut_bound(
    kwargs: Mapping[str, Any], x: Tensor, y: Tensor, how: str = "lstsq"
) -> tuple[dict[str, Any], float | None]:
    """``kwargs`` with ``shortcut_bound="auto"`` replaced by the unconstrained fit's norm.

    Returns the new keywords and the bound chosen (``None`` when ``shortcut_bound`` is not
    ``"auto"``). The bound is ``max_k ||S_k||_2`` of the least-squares fit ``how`` of ``x -> y``
    (float64 SVD), never below 1 (the increment form's identity step stays inside the ball).
    """
    out = dict(kwargs)
    if out.get("shortcut_bound") != "auto":
        return out, None
    if out.get("increment") != "spectral":
        raise ValueError(
            "model.kwargs.shortcut_bound='auto' sizes the spectral shortcut's ball: it needs "
            f"model.kwargs.increment='spectral' (got increment={out.get('increment')!r})"
        )
    size = x.shape[-1]
    free = SpectralShortcut(x.shape[1], y.shape[1], size, s=None)
    bound = max(1.0, fit_shortcut(free, x, y, how).lipschitz_bound())
    out["shortcut_bound"] = bound
    return out, bound


def prepare_shortcut(
    config: TrainConfig, dataset: Dataset[Any]
) -> tuple[TrainConfig, tuple[Tensor, Tensor] | None]:
    """Resolve ``shortcut_bound="auto"`` of ``config``; the stacked windows when a fit needs them.

    Nothing is read from ``dataset`` unless ``config.shortcut_init`` or ``shortcut_bound="auto"``
    asks for it.
    """
    kwargs = config.model.kwargs
    wants_bound = kwargs.get("shortcut_bound") == "auto"
    if config.shortcut_init is None and not wants_bound:
        return config, None
    x, y = stacked_windows(dataset)
    if wants_bound:
        new, _ = resolve_shortcut_bound(kwargs, x, y, config.shortcut_init or "lstsq")
        model = dataclasses.replace(config.model, kwargs=new)
        config = dataclasses.replace(config, model=model)
    return config, (x, y)
