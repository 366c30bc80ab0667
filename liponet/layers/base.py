"""The contract every Lipschitz building block of liponet fulfils."""

from __future__ import annotations

import abc
from collections.abc import Iterable

from torch import Tensor, nn

__all__ = ["CertifiedModule", "CertifiedSequential", "compose_bounds"]


class CertifiedModule(nn.Module, abc.ABC):
    """A module with a certified Lipschitz constant and a plain-torch export.

    Subclasses document, in a "Lipschitz constant" docstring section, the norm in which the
    constant holds and how it is guaranteed.

    Notes
    -----
    ``lipschitz_bound()`` certifies the function the module computes **in eval mode** (which is
    also the function ``export()`` returns). Training-mode forwards use cheaper normalizers
    (power iteration, Björck) whose weights differ slightly; switch to ``eval()`` before relying
    on a certificate.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> class Double(CertifiedModule):
    ...     def forward(self, x):
    ...         return 2 * x
    ...     def lipschitz_bound(self):
    ...         return 2.0
    ...     def export(self):
    ...         return Double()
    >>> CertifiedSequential(Double(), Double()).lipschitz_bound()
    4.0
    """

    @abc.abstractmethod
    def lipschitz_bound(self) -> float:
        """Guaranteed upper bound of the Lipschitz constant, from the current weights."""

    @abc.abstractmethod
    def export(self) -> nn.Module:
        """Plain torch modules computing the same eval-mode function, without constraints."""


def compose_bounds(modules: Iterable[nn.Module]) -> float:
    """Certified constant of a composition: the product of the parts' certified constants.

    Raises
    ------
    TypeError
        If a part is not a :class:`CertifiedModule` (its constant would be unknown).

    Examples
    --------
    >>> from liponet.layers import LipLinear, ReLU
    >>> parts = [LipLinear(3, 3, k=2.0).eval(), ReLU(), LipLinear(3, 1, k=0.5).eval()]
    >>> round(compose_bounds(parts), 5)  # each part aims just below its k
    1.0
    """
    bound = 1.0
    for module in modules:
        if not isinstance(module, CertifiedModule):
            raise TypeError(
                f"cannot certify a composition containing {type(module).__name__}: "
                "every part must be a CertifiedModule"
            )
        bound *= module.lipschitz_bound()
    return bound


class CertifiedSequential(CertifiedModule):
    """Composition of certified modules; its constant is the product of theirs.

    Lipschitz constant
    ------------------
    ``prod_i L_i`` in whatever norms the parts chain through (each part's output norm must be the
    next part's input norm). Guaranteed because each ``L_i`` is.

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipLinear, GroupSort
    >>> net = CertifiedSequential(LipLinear(3, 4), GroupSort(2), LipLinear(4, 1))
    >>> net(torch.randn(5, 3)).shape
    torch.Size([5, 1])
    >>> net.lipschitz_bound() <= 1.0 + 1e-6
    True
    """

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the parts in order."""
        for layer in self.layers:
            x = layer(x)
        return x

    def lipschitz_bound(self) -> float:
        """Product of the parts' certified constants."""
        return compose_bounds(self.layers)

    def export(self) -> nn.Module:
        """An ``nn.Sequential`` of the parts' exports."""
        return nn.Sequential(*(layer.export() for layer in self.layers))  # type: ignore[operator]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> nn.Module:
        return self.layers[index]
