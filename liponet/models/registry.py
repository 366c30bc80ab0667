"""One registry for every model family: names -> classes, with errors that list valid names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

__all__ = ["available_models", "build_model", "get_model_class", "register_model"]

_REGISTRY: dict[str, type[nn.Module]] = {}

M = TypeVar("M", bound=type[nn.Module])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator adding a model class to the registry under ``name``.

    Examples
    --------
    >>> from torch import nn
    >>> @register_model("DocExampleNet")
    ... class DocExampleNet(nn.Linear):
    ...     pass
    >>> get_model_class("DocExampleNet") is DocExampleNet
    True
    >>> del _REGISTRY["DocExampleNet"]  # (keep the registry as it was)
    """

    def decorator(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered")
        _REGISTRY[name] = cls
        return cls

    return decorator


def available_models() -> list[str]:
    """Registered model names, sorted.

    Examples
    --------
    >>> from liponet.models import available_models
    >>> {"LipFNO", "FNO", "LipMLP"} <= set(available_models())
    True
    """
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the available ones.

    Examples
    --------
    >>> from liponet.models import get_model_class
    >>> get_model_class("LipFNO").__name__
    'LipFNO'
    >>> get_model_class("fn0")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'fn0'; available: ...
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(available_models())}"
        ) from None


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate the model registered under ``name`` with keyword arguments.

    Examples
    --------
    >>> from liponet.models import build_model
    >>> build_model("LipMLP", in_features=2, out_features=1).lipschitz_bound() <= 1 + 1e-6
    True
    >>> build_model("fn0")
    Traceback (most recent call last):
    ...
    ValueError: unknown model 'fn0'; available: ...
    """
    cls = get_model_class(name)
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for model {name!r}: {err}") from None
