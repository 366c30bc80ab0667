"""1-Lipschitz activations (GroupSort family, ReLU, abs) with export.

Only 1-Lipschitz activations belong inside constrained models: GELU's slope peaks near 1.13 and
SiLU's near 1.10, so they would silently break a certificate.
"""

from __future__ import annotations

import torch
from deel.torchlip.functional import group_sort
from torch import Tensor, nn

from .base import CertifiedModule

__all__ = [
    "ACTIVATIONS",
    "GELU",
    "GELU_LIPSCHITZ",
    "LIPSCHITZ_ACTIVATIONS",
    "Abs",
    "FullSort",
    "GroupSort",
    "MaxMin",
    "ReLU",
    "make_activation",
]

#: Upper bound of GELU's slope: max_x d/dx [x Phi(x)] = Phi(sqrt 2) + sqrt 2 phi(sqrt 2)
#: = 1.12890414... (attained at x = sqrt 2), rounded up.
GELU_LIPSCHITZ = 1.1289042


class GroupSort(CertifiedModule):
    """Sort the features within consecutive groups along one dimension.

    Parameters
    ----------
    group_size
        Size of each group (2: GroupSort2 / MaxMin); ``None``: sort the whole dimension
        (FullSort).
    dim
        Feature dimension: ``-1`` for ``(batch, features)`` inputs, ``1`` for channels of
        ``(batch, channels, *spatial)`` fields.

    Lipschitz constant
    ------------------
    1 in the Euclidean norm over the sorted dimension (sorting is a piecewise permutation), hence
    also 1 in the function L2 norm of fields. Exact, not an estimate; gradient norm preserving.

    Examples
    --------
    >>> import torch
    >>> GroupSort(2)(torch.tensor([[3.0, 1.0, -1.0, 2.0]]))
    tensor([[ 1.,  3., -1.,  2.]])
    """

    def __init__(self, group_size: int | None = 2, dim: int = -1) -> None:
        super().__init__()
        if group_size is not None and group_size < 1:
            raise ValueError(f"group_size must be >= 1 or None, got {group_size}")
        self.group_size = group_size
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Sort within groups along ``self.dim``."""
        dim = self.dim % x.ndim
        return group_sort(x, self.group_size, dim=dim)

    def lipschitz_bound(self) -> float:
        """Exactly 1."""
        return 1.0

    def export(self) -> nn.Module:
        """Itself: a plain torch computation."""
        return GroupSort(self.group_size, self.dim)

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return f"group_size={self.group_size}, dim={self.dim}"


class FullSort(GroupSort):
    """Sort the whole feature dimension (GroupSort with one group); 1-Lipschitz.

    Examples
    --------
    >>> import torch
    >>> FullSort()(torch.tensor([[3.0, 1.0, 2.0]]))
    tensor([[1., 2., 3.]])
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__(None, dim)


class MaxMin(CertifiedModule):
    """GroupSort2 pairing channel ``i`` with channel ``i + c/2``: ``[min(a, b), max(a, b)]``.

    The same function class as :class:`GroupSort` with ``group_size=2`` up to a fixed channel
    permutation, but it works on two contiguous halves, which is several times faster for fields
    ``(batch, channels, *spatial)`` than pairing adjacent channels (strided access).

    Parameters
    ----------
    dim
        Feature dimension (its size must be even).

    Lipschitz constant
    ------------------
    1 in the Euclidean norm over ``dim`` (a piecewise permutation), hence 1 in the function norm.
    Exact; gradient norm preserving.

    Examples
    --------
    >>> import torch
    >>> MaxMin()(torch.tensor([[3.0, -1.0, 1.0, 2.0]]))
    tensor([[ 1., -1.,  3.,  2.]])
    """

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        """Sort each pair ``(x_i, x_{i + c/2})`` along ``self.dim``."""
        if x.shape[self.dim] % 2:
            raise ValueError(f"MaxMin needs an even size along dim {self.dim}, got {x.shape}")
        a, b = x.chunk(2, self.dim)
        # min = a - relu(a - b), max = b + relu(a - b): equal in exact arithmetic, and several
        # times faster (forward + backward) than torch.minimum / torch.maximum on CPU.
        excess = torch.relu(a - b)
        return torch.cat([a - excess, b + excess], self.dim)

    def lipschitz_bound(self) -> float:
        """Exactly 1."""
        return 1.0

    def export(self) -> nn.Module:
        """Itself: a plain torch computation."""
        return MaxMin(self.dim)

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return f"dim={self.dim}"


class ReLU(CertifiedModule):
    """ReLU; 1-Lipschitz elementwise, hence 1-Lipschitz in any of liponet's norms.

    Examples
    --------
    >>> import torch
    >>> act = ReLU()
    >>> act(torch.tensor([-1.0, 2.0])), act.lipschitz_bound()
    (tensor([0., 2.]), 1.0)
    """

    def forward(self, x: Tensor) -> Tensor:
        """Apply max(x, 0)."""
        return torch.relu(x)

    def lipschitz_bound(self) -> float:
        """Exactly 1."""
        return 1.0

    def export(self) -> nn.Module:
        """``torch.nn.ReLU``."""
        return nn.ReLU()


class Abs(CertifiedModule):
    """Absolute value; 1-Lipschitz elementwise and gradient norm preserving.

    Examples
    --------
    >>> import torch
    >>> Abs()(torch.tensor([-1.0, 2.0]))
    tensor([1., 2.])
    """

    def forward(self, x: Tensor) -> Tensor:
        """Apply |x|."""
        return torch.abs(x)

    def lipschitz_bound(self) -> float:
        """Exactly 1."""
        return 1.0

    def export(self) -> nn.Module:
        """Itself: a plain torch computation."""
        return Abs()


class GELU(CertifiedModule):
    """GELU, for the *unconstrained* twins only: its slope reaches 1.1289 > 1.

    Lipschitz constant
    ------------------
    :data:`GELU_LIPSCHITZ` (elementwise, hence in every norm liponet uses); analytic maximum of the
    derivative, rounded up.

    Examples
    --------
    >>> import torch
    >>> act = GELU()
    >>> act(torch.tensor([0.0])), act.lipschitz_bound() > 1
    (tensor([0.]), True)
    """

    def forward(self, x: Tensor) -> Tensor:
        """Apply x * Phi(x)."""
        return torch.nn.functional.gelu(x)

    def lipschitz_bound(self) -> float:
        """Analytic maximum slope, rounded up."""
        return GELU_LIPSCHITZ

    def export(self) -> nn.Module:
        """``torch.nn.GELU``."""
        return nn.GELU()


_FACTORIES = {
    "groupsort2": lambda dim: GroupSort(2, dim),
    "fullsort": lambda dim: FullSort(dim),
    "maxmin": lambda dim: MaxMin(dim),
    "relu": lambda dim: ReLU(),
    "abs": lambda dim: Abs(),
    "gelu": lambda dim: GELU(),
}

#: Names accepted by :func:`make_activation`; all but ``"gelu"`` are 1-Lipschitz.
ACTIVATIONS = tuple(_FACTORIES)

#: The activations allowed inside constrained (Lipschitz) models.
LIPSCHITZ_ACTIVATIONS = ("groupsort2", "maxmin", "fullsort", "relu", "abs")


def make_activation(name: str, dim: int = -1) -> CertifiedModule:
    """Build an activation by name (one of :data:`ACTIVATIONS`).

    Parameters
    ----------
    name
        Activation name.
    dim
        Feature dimension for the sorting activations.

    Raises
    ------
    ValueError
        For an unknown name, listing the valid ones.

    Examples
    --------
    >>> make_activation("maxmin", dim=1)
    MaxMin(dim=1)
    >>> make_activation("tanh")
    Traceback (most recent call last):
    ...
    ValueError: unknown activation 'tanh'; available: ...
    """
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; available: {', '.join(ACTIVATIONS)}"
        ) from None
    return factory(dim)
