"""Weight averaging for training: an exponential moving average (EMA) of a model's parameters.

Polyak averaging keeps a running average of the parameters along the optimizer's path and
deploys the average instead of the last iterate; on noisy steps the average often generalizes
better. The :class:`~liponet.train.Trainer` uses it with ``TrainConfig.ema`` (the decay): it
updates the average after every optimizer step, evaluates, certifies and checkpoints the
*averaged* model, and leaves the averaged weights in the model when training ends.

**Certificates.** The average is of the raw parameters (a Lipschitz layer's unconstrained
weights, before its normalization). The averaged model is an ordinary model of the same class
with other parameter values: its layers normalize the averaged raw weights as they normalize
any weights, so its ``lipschitz_bound()`` is certified from its own weights as they are, like
any model's (not inherited from the trained iterates; an average of 1-Lipschitz maps is not what
is certified). Buffers (e.g. power-iteration vectors, training devices only) are not averaged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

__all__ = ["WeightAverage", "ema_weight"]


def ema_weight(decay: float, updates: int) -> float:
    """The weight of the new parameters in update number ``updates + 1``: ``(1 - d) / (1 - d^t)``.

    With ``t = updates + 1``, the update ``average <- average + w (parameter - average)`` keeps
    the average equal to the normalized exponentially weighted mean of the iterates so far,
    ``sum_k d^(t-k) p_k / sum_k d^(t-k)`` (the bias correction of an average started at 0, as
    Adam's moments): the first update takes the parameters whole, the initial weights never
    dominate a short run, and the horizon is ``1 / (1 - d)`` updates from the start.

    Examples
    --------
    >>> ema_weight(0.9, 0), round(ema_weight(0.9, 1), 4), round(ema_weight(0.9, 10**4), 4)
    (1.0, 0.5263, 0.1)
    """
    return (1.0 - decay) / (1.0 - decay ** (updates + 1))


class WeightAverage:
    """Exponential moving average of a model's floating-point parameters.

    After ``t`` calls of :meth:`update` the average is ``sum_k d^(t-k) p_k / sum_k d^(t-k)``
    over the parameters ``p_1 .. p_t`` seen at those calls (:func:`ema_weight`; the starting
    weights are replaced by the first update). Frozen parameters are averaged too (they do not
    move, so their average is their value).

    Parameters
    ----------
    model
        The model whose parameters are averaged (a reference is kept; the average starts at the
        current values).
    decay
        ``0 < decay < 1``; the average's horizon is about ``1 / (1 - decay)`` updates.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> avg = WeightAverage(model, decay=0.5)
    >>> for value in (1.0, 4.0):  # two optimizer steps
    ...     with torch.no_grad():
    ...         _ = model.weight.fill_(value)
    ...     avg.update()
    >>> with avg.applied():  # (0.5 * 1 + 4) / (0.5 + 1)
    ...     model.weight.item()
    3.0
    >>> model.weight.item()  # the training weights are back
    4.0
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema: the decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.params = {name: p for name, p in model.named_parameters() if p.dtype.is_floating_point}
        self.average = {name: p.detach().clone() for name, p in self.params.items()}
        self.updates = 0
        self._training: dict[str, Tensor] | None = None

    @torch.no_grad()
    def update(self) -> None:
        """Fold the model's current parameters into the average (after an optimizer step)."""
        if self._training is not None:
            raise RuntimeError("WeightAverage.update: the model holds the averaged weights")
        weight = ema_weight(self.decay, self.updates)
        for name, p in self.params.items():
            self.average[name].lerp_(p.detach(), weight)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self) -> Iterator[dict[str, Tensor]]:
        """The model holds the averaged weights inside; yields copies of the training weights.

        Reentrant: inside an outer ``applied()`` it yields the same training weights. On exit the
        training weights are written back (bit for bit).
        """
        if self._training is not None:
            yield self._training
            return
        with torch.no_grad():
            self._training = {name: p.detach().clone() for name, p in self.params.items()}
            try:
                self._copy(self.average)
                yield self._training
            finally:
                self._copy(self._training)
                self._training = None

    @torch.no_grad()
    def apply(self) -> None:
        """Write the averaged weights into the model for good (training ends)."""
        self._copy(self.average)

    @torch.no_grad()
    def load(self, averaged: dict[str, Tensor], training: dict[str, Tensor], updates: int) -> None:
        """Restore a saved state: the average, the model's training weights, the update count.

        Raises ``ValueError`` if either mapping misses a parameter or has another shape.
        """
        for what, values in (("averaged", averaged), ("training", training)):
            for name, p in self.params.items():
                if name not in values or tuple(values[name].shape) != tuple(p.shape):
                    raise ValueError(
                        f"ema: the saved {what} weights lack parameter {name!r} of shape "
                        f"{tuple(p.shape)}"
                    )
        for name, avg in self.average.items():
            avg.copy_(averaged[name])
        self._copy(training)
        self.updates = int(updates)

    def _copy(self, values: dict[str, Tensor]) -> None:
        for name, p in self.params.items():
            p.copy_(values[name])
