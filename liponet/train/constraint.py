"""The Lipschitz budget against the data: ``k="auto"`` and the binding-constraint warning.

A Lipschitz model cannot fit data whose own constant exceeds the model's certified one: with
``k = 1`` on an operator that stretches its inputs, training converges to a contraction and the
error stays large whatever the epochs. The data's constant is measured here as the largest pair
ratio ``||y_i - y_j|| / ||x_i - x_j||`` over (a subset of) the training pairs: an empirical
*lower* bound of the true operator's constant, always labelled estimated
(:func:`liponet.certify.estimate_true_lipschitz`).

* ``model.kwargs.k = "auto"`` (:func:`resolve_auto_k`): ``k`` becomes that estimate times a margin,
  resolved once from the training data before the model is built (the number, not ``"auto"``, is
  what the run's configuration and checkpoints then hold). With ``increment=True`` (the model
  predicts ``u_last + f(x)``), ``k`` bounds ``f`` and is estimated from the increments
  ``y - u_last``.
* :func:`binding_constraint_message`: the one-line warning the :class:`~liponet.train.Trainer`
  issues (once, as a :class:`ConstraintWarning`) when the data's estimate exceeds the built model's
  certified constant, with both figures and the remedy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from ..certify import LipschitzConstant, estimate_true_lipschitz

if TYPE_CHECKING:
    from .config import TrainConfig

__all__ = [
    "AUTO_MARGIN",
    "BINDING_TOLERANCE",
    "DATA_CONSTANT_SAMPLES",
    "ConstraintWarning",
    "binding_constraint_message",
    "data_constant",
    "is_capped",
    "resolve_auto_k",
    "resolve_config",
    "warn_if_binding",
]

#: ``k="auto"`` = this margin times the data's largest pair ratio (benchmarks/lipfno_blocks.py).
AUTO_MARGIN = 2.0

#: Training pairs (evenly spaced through the split) used to estimate the data's constant.
DATA_CONSTANT_SAMPLES = 512

#: Largest number of float64 values held to estimate the data's constant (fewer samples if big).
MAX_ELEMENTS = 2**24

#: The warning fires when the data's estimate exceeds the certified constant by more than this
#: relative amount (below it the constraint costs nothing measurable).
BINDING_TOLERANCE = 1e-3


class ConstraintWarning(UserWarning):
    """The data's measured Lipschitz constant exceeds the model's certified one."""


def _sample_pairs(dataset: Dataset[Any], max_samples: int) -> tuple[Tensor, Tensor] | None:
    """Up to ``max_samples`` ``(x, y)`` tensor pairs, evenly spaced; ``None`` if not tensors."""
    if isinstance(dataset, IterableDataset):
        return None
    n = len(dataset)  # type: ignore[arg-type]
    if n < 2:
        return None
    first = dataset[0]
    size = sum(t.numel() for t in first) if isinstance(first, (tuple, list)) else 1
    # pairwise distances hold the samples in float64: keep them under ~128 MB
    count = max(2, min(n, max_samples, MAX_ELEMENTS // max(size, 1)))
    indices = sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})
    xs, ys = [], []
    for i in indices:
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            return None
        x, y = item
        if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
            return None
        xs.append(torch.as_tensor(x))
        ys.append(torch.as_tensor(y))
    return torch.stack(xs).double(), torch.stack(ys).double()


def data_constant(
    dataset: Dataset[Any],
    *,
    increment_channels: int | None = None,
    max_samples: int = DATA_CONSTANT_SAMPLES,
) -> LipschitzConstant | None:
    """Largest pair ratio of a dataset of ``(x, y)`` tensors (labelled estimated).

    Parameters
    ----------
    dataset
        Map-style dataset of ``(input, target)`` tensors: fields ``(channels, *spatial)`` (the
        function norm) or vectors ``(features,)`` (the Euclidean norm).
    increment_channels
        Measure the increment ``y - x[-c:]`` (the last ``c`` input channels: the window's last
        frame) instead of ``y``: the constant an ``increment=True`` model's inner map needs.
    max_samples
        Pairs taken, evenly spaced through the dataset (all pairs among them are compared).

    Returns
    -------
    LipschitzConstant or None
        ``None`` when the dataset is iterable (streamed), has fewer than 2 items, or its items
        are not tensor pairs of the same number of dimensions.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(16, 1, 8)
    >>> c = data_constant(TensorDataset(x, 3 * x))
    >>> round(c.value, 6), c.label
    (3.0, 'estimated')
    """
    pairs = _sample_pairs(dataset, max_samples)
    if pairs is None:
        return None
    x, y = pairs
    if x.ndim != y.ndim:
        return None
    if increment_channels is not None:
        if x.ndim < 3 or x.shape[1] < increment_channels or x.shape[2:] != y.shape[2:]:
            raise ValueError(
                f"increment: inputs {tuple(x.shape[1:])} must end with the "
                f"{increment_channels} channels of the last frame on the target's grid "
                f"{tuple(y.shape[2:])}"
            )
        y = y - x[:, -increment_channels:]
    norm = "function" if x.ndim >= 3 else "euclidean"
    return estimate_true_lipschitz(x, y, norm=norm)


def resolve_auto_k(
    model_kwargs: dict[str, Any], dataset: Dataset[Any], margin: float = AUTO_MARGIN
) -> tuple[dict[str, Any], LipschitzConstant | None]:
    """Replace ``k="auto"`` by ``margin`` times the data's constant; other kwargs unchanged.

    Returns
    -------
    tuple
        The (copied) keyword arguments with a numeric ``k`` and the data constant used (``None``
        when ``k`` was not ``"auto"``).

    Raises
    ------
    ValueError
        If ``k="auto"`` and the constant cannot be measured (streamed or non-tensor data), or
        the data's constant is 0 (constant targets).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> x = torch.randn(16, 1, 8)
    >>> kwargs, c = resolve_auto_k({"k": "auto", "width": 8}, TensorDataset(x, 1.5 * x))
    >>> round(kwargs["k"], 6), kwargs["width"]
    (3.0, 8)
    """
    if model_kwargs.get("k") != "auto":
        return dict(model_kwargs), None
    if not (math.isfinite(margin) and margin >= 1.0):
        raise ValueError(f"margin must be a finite factor >= 1, got {margin}")
    channels = model_kwargs.get("out_channels") if model_kwargs.get("increment") else None
    constant = data_constant(dataset, increment_channels=channels)
    if constant is None:
        raise ValueError(
            "model.kwargs.k: 'auto' needs a map-style training set of (input, target) tensors "
            "to measure the data's constant; give k a number for this dataset"
        )
    if constant.value <= 0:
        raise ValueError("model.kwargs.k: 'auto' found a data constant of 0; give k a number")
    return {**model_kwargs, "k": margin * constant.value}, constant


def resolve_config(
    config: TrainConfig, dataset: Dataset[Any]
) -> tuple[TrainConfig, LipschitzConstant | None]:
    """Resolve ``model.kwargs.k = "auto"`` of a run's configuration (:func:`resolve_auto_k`).

    Returns
    -------
    tuple
        The configuration (a copy with the numeric ``k``, or ``config`` itself when ``k`` is not
        ``"auto"``) and the data constant used (``None`` when nothing was resolved).
    """
    kwargs, constant = resolve_auto_k(config.model.kwargs, dataset)
    if constant is None:
        return config, None
    model = dataclasses.replace(config.model, kwargs=kwargs)
    return dataclasses.replace(config, model=model), constant


def binding_constraint_message(certified: float, constant: LipschitzConstant) -> str | None:
    """The warning text when the data's constant exceeds the certified one, else ``None``.

    Examples
    --------
    >>> from liponet.certify import LipschitzConstant
    >>> binding_constraint_message(1.0, LipschitzConstant(1.3, "estimated")) is not None
    True
    >>> binding_constraint_message(2.0, LipschitzConstant(1.3, "estimated")) is None
    True
    """
    if constant.value <= certified * (1 + BINDING_TOLERANCE):
        return None
    return (
        f"binding Lipschitz constraint: the training data's constant is at least "
        f"{constant.value:.4g} (estimated: {constant.source}) but the model is certified "
        f"{certified:.4g}-Lipschitz, so it cannot fit the data; remedy: set model.kwargs.k="
        f"auto (the data's constant x {AUTO_MARGIN:g}) or a k >= {constant.value:.3g}"
    )


def is_capped(model: Any, model_kwargs: dict[str, Any] | None = None) -> bool:
    """Whether training cannot raise the model's certified constant above its initial one.

    True for the constrained families (``constrained = True``: LipMLP, LipFNO, LipDeepONet...)
    unless a variant frees the output scale (``free_last_layer=True``, an ``output_scale``, or
    the increment's trainable ``gate=True``, which starts at 0); unconstrained twins start small
    and grow, so a comparison at initialization means nothing.
    """
    if not (hasattr(model, "lipschitz_bound") and getattr(model, "constrained", False)):
        return False
    kwargs = model_kwargs or {}
    free = kwargs.get("free_last_layer") or kwargs.get("gate")
    return not free and kwargs.get("output_scale", "none") == "none"


def warn_if_binding(
    model: Any,
    dataset: Dataset[Any],
    constant: LipschitzConstant | None,
    model_kwargs: dict[str, Any] | None = None,
) -> None:
    """Issue one :class:`ConstraintWarning` if the data's constant exceeds the model's certificate.

    ``constant`` is the data constant already measured (by :func:`resolve_auto_k`) or ``None``
    (measured here). Models whose constant training can raise (:func:`is_capped` false) and
    unmeasurable data are skipped. An ``increment=True`` model is compared on the full map (its
    certificate is ``1 + L_f``).
    """
    if not is_capped(model, model_kwargs):
        return
    if constant is None or _is_increment(model):
        constant = data_constant(dataset)
    if constant is None:
        return
    was_training = model.training
    model.eval()
    certified = float(model.lipschitz_bound())
    model.train(was_training)
    message = binding_constraint_message(certified, constant)
    if message is not None:
        warnings.warn(message, ConstraintWarning, stacklevel=3)


def _is_increment(model: Any) -> bool:
    from ..models import Increment

    return isinstance(getattr(model, "net", None), Increment)
