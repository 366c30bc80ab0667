"""A Lipschitz budget shared by the parts of a network: learned per-part factors, fixed product.

``Budget(total, parts)`` holds logits ``theta`` and gives part ``i`` the factor
``f_i = exp(log(total) * softmax(theta)_i)``: every ``f_i > 0`` and ``prod_i f_i = total``
whatever ``theta``. :class:`BudgetScaled` multiplies a 1-Lipschitz part's output by its factor, so
the network's certified constant is still at most ``total`` while training decides where the
stretch happens (all in the first block, spread evenly, ...).

For positively homogeneous parts with free biases (ReLU / GroupSort blocks, the convex-potential
block) moving a factor from one part to another does not change the set of functions the network
can represent, only the parameterization the optimizer sees; ``benchmarks/lipfno_blocks.py``
measures whether that helps.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .base import CertifiedModule

__all__ = ["Budget", "BudgetScaled"]


class Budget(nn.Module):
    """Learned allocation of a total Lipschitz constant over ``parts`` factors.

    Parameters
    ----------
    total
        The product of the factors (> 0).
    parts
        Number of factors (>= 1).

    Examples
    --------
    >>> budget = Budget(4.0, 3)
    >>> round(float(budget.factors().detach().prod()), 5)
    4.0
    """

    def __init__(self, total: float, parts: int) -> None:
        super().__init__()
        if not (math.isfinite(total) and total > 0):
            raise ValueError(f"total must be a finite positive number, got {total}")
        if parts < 1:
            raise ValueError(f"parts must be >= 1, got {parts}")
        self.total = float(total)
        self.logits = nn.Parameter(torch.zeros(parts))

    def factors(self) -> Tensor:
        """``exp(log(total) * softmax(logits))``, shape ``(parts,)``, product ``total``."""
        return torch.exp(math.log(self.total) * torch.softmax(self.logits, 0))


class BudgetScaled(CertifiedModule):
    """``y = f_i * part(x)`` with ``f_i`` the ``index``-th factor of a shared :class:`Budget`.

    The budget is not a submodule of this wrapper (its owner registers it once), so its logits
    appear once in ``parameters()`` and ``state_dict()``.

    Parameters
    ----------
    part
        A certified module.
    budget
        The shared allocation.
    index
        Which factor.

    Lipschitz constant
    ------------------
    ``f_i * L_part`` in the part's norms, with ``f_i`` the factor exactly as the forward computes
    it (in the logits' dtype, then converted to float64) and ``L_part`` its certified constant.

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipLinear
    >>> budget = Budget(2.0, 2)
    >>> scaled = BudgetScaled(LipLinear(3, 3), budget, 0).eval()
    >>> scaled.lipschitz_bound() <= 2.0**0.5 * (1 + 1e-5)
    True
    """

    def __init__(self, part: nn.Module, budget: Budget, index: int) -> None:
        super().__init__()
        if not 0 <= index < budget.logits.numel():
            raise ValueError(f"index must be in [0, {budget.logits.numel()}), got {index}")
        self.part = part
        self._budget = [budget]  # a plain list: not registered here
        self.index = index

    @property
    def budget(self) -> Budget:
        """The shared allocation."""
        return self._budget[0]

    def factor(self) -> Tensor:
        """The factor of this part (with gradient to the logits)."""
        return self.budget.factors()[self.index]

    def forward(self, x: Tensor) -> Tensor:
        """``f_i * part(x)``."""
        return self.factor().to(x.dtype) * self.part(x)

    def lipschitz_bound(self) -> float:
        """``f_i`` times the part's certified constant."""
        if not isinstance(self.part, CertifiedModule):
            raise TypeError(f"cannot certify {type(self.part).__name__}")
        with torch.no_grad():
            factor = float(self.factor())
        return factor * self.part.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain module: the part's export times the frozen factor."""
        assert isinstance(self.part, CertifiedModule)
        with torch.no_grad():
            factor = float(self.factor())
        return _PlainScaled(self.part.export(), factor)


class _PlainScaled(nn.Module):
    def __init__(self, part: nn.Module, factor: float) -> None:
        super().__init__()
        self.part = part
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return self.factor * self.part(x)
