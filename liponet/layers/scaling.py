"""Output-scale tricks that lift a 1-Lipschitz network's expressivity, each certified.

The research plan's remedies for underfitting 1-Lipschitz networks: multiply the output
component-wise by a trainable vector (:class:`OutputScale`) or by the output of an auxiliary
Lipschitz network (:class:`AuxiliaryScale`). The third remedy, an unconstrained last layer, is
``LipLinear(k=None)``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .base import CertifiedModule

__all__ = ["AuxiliaryScale", "Multiply", "OutputScale", "sup_norm_bound"]


class OutputScale(CertifiedModule):
    """Multiply channel ``c`` by a trainable scalar ``s_c``.

    Parameters
    ----------
    channels
        Number of output components.
    dim
        The component dimension (``-1`` for ``(batch, features)``, ``1`` for fields).
    init
        Initial value of every ``s_c``.

    Lipschitz constant
    ------------------
    ``max_c |s_c|`` (the spectral norm of ``diag(s)``), exact, in the Euclidean norm over
    components and hence in liponet's function norm.

    Examples
    --------
    >>> import torch
    >>> scale = OutputScale(2, init=3.0)
    >>> scale(torch.ones(4, 2))[0]
    tensor([3., 3.], grad_fn=<SelectBackward0>)
    >>> scale.lipschitz_bound()
    3.0
    """

    def __init__(self, channels: int, dim: int = -1, init: float = 1.0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.dim = dim
        self.scale = nn.Parameter(torch.full((channels,), float(init)))

    def _shaped(self, x: Tensor) -> Tensor:
        shape = [1] * x.ndim
        shape[self.dim % x.ndim] = -1
        return self.scale.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        """Scale each component of ``x`` along ``self.dim``."""
        return x * self._shaped(x)

    def lipschitz_bound(self) -> float:
        """``max |s_c|`` in float64."""
        return float(self.scale.detach().double().abs().max())

    def export(self) -> nn.Module:
        """A plain module multiplying by a frozen copy of the scale."""
        return _FrozenScale(self.scale.detach().clone(), self.dim)


class _FrozenScale(nn.Module):
    def __init__(self, scale: Tensor, dim: int) -> None:
        super().__init__()
        self.scale: Tensor
        self.register_buffer("scale", scale)
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        shape = [1] * x.ndim
        shape[self.dim % x.ndim] = -1
        return x * self.scale.view(shape)


def sup_norm_bound(module: CertifiedModule, centre: Tensor, radius: float) -> tuple[float, float]:
    """Certified bounds of ``sup ||f(x)||_inf`` and ``sup ||f(x)||`` over a ball.

    ``||f(x)|| <= ||f(c)|| + L_f * radius`` for every ``x`` with ``||x - c|| <= radius``; for
    vector outputs every component also obeys ``|f_i(x)| <= |f_i(c)| + L_f * radius``. ``f(c)`` is
    evaluated by the exported module in float64, so the float32 weights enter exactly.

    Parameters
    ----------
    module
        The certified function ``f``.
    centre
        One input without batch dimension.
    radius
        Radius of the ball (in the norm of ``module``'s certificate).

    Returns
    -------
    tuple of float
        ``(sup_inf, sup_norm)``: a bound of the largest component magnitude (``inf`` for field
        outputs, whose pointwise values the function norm does not control) and a bound of the
        output norm (Euclidean for vectors, liponet's function norm for fields).

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipLinear
    >>> f = LipLinear(2, 1, k=1.0).eval()
    >>> sup_inf, sup_norm = sup_norm_bound(f, torch.zeros(2), radius=2.0)
    >>> sup_norm <= 2.0 * (1 + 1e-6)  # |f(0)| = 0 (zero bias) plus L_f = 1 times the radius
    True
    """
    if not radius >= 0:
        raise ValueError(f"radius must be >= 0, got {radius}")
    plain = copy.deepcopy(module.export()).double().eval()
    with torch.no_grad():
        value = plain(centre.detach().double().unsqueeze(0))[0]
    if all(size == 1 for size in value.shape[1:]):
        value = value.reshape(-1)  # one value per channel, broadcast over space: a vector
    lip = module.lipschitz_bound()
    # Tiny relative slack for the float64 evaluation of f(c) itself.
    slack = 1.0 + 1e-12
    if value.ndim <= 1:
        sup_inf = (float(value.abs().max()) + lip * radius) * slack
        sup_norm = (float(torch.linalg.vector_norm(value)) + lip * radius) * slack
    else:  # a field (channels, *spatial): mean-square over the grid
        sup_inf = float("inf")
        sup_norm = (float(value.pow(2).sum(0).mean().sqrt()) + lip * radius) * slack
    return sup_inf, sup_norm


class AuxiliaryScale(CertifiedModule):
    """``y(x) = s(x) * g(x)``: a base network scaled component-wise by an auxiliary network.

    Parameters
    ----------
    base
        The main network ``g``.
    aux
        The auxiliary network ``s`` (same input, same output shape as ``g``, or broadcastable).
    centre, radius
        The bounded input domain the certificate covers: the ball of ``radius`` around
        ``centre`` (for a box, its centre and half-diagonal). Outside it no bound holds.

    Lipschitz constant
    ------------------
    Product rule on the domain, for ``x, x'`` in the ball:
    ``||s(x) g(x) - s(x') g(x')|| <= sup||s||_inf L_g + sup||g||_inf L_s`` with each sup certified
    by :func:`sup_norm_bound` (value at the centre plus constant times radius). Guaranteed only
    on the declared domain. For field outputs ``(batch, channels, *spatial)`` the auxiliary
    network must output one scale per channel, ``(batch, channels, 1, ..., 1)``; then
    ``||(s(x) - s(x')) g(x')|| <= ||s(x) - s(x')||_2 sup||g||`` in the function norm, and
    ``sup||g||`` replaces ``sup||g||_inf``.

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipLinear
    >>> g, s = LipLinear(2, 1, k=1.0), LipLinear(2, 1, k=0.5)
    >>> y = AuxiliaryScale(g, s, centre=torch.zeros(2), radius=1.0).eval()
    >>> y(torch.randn(4, 2)).shape
    torch.Size([4, 1])
    >>> y.lipschitz_bound() > 0
    True
    """

    def __init__(
        self, base: CertifiedModule, aux: CertifiedModule, centre: Tensor, radius: float
    ) -> None:
        super().__init__()
        if not radius >= 0:
            raise ValueError(f"radius must be >= 0, got {radius}")
        self.base = base
        self.aux = aux
        self.centre: Tensor
        self.register_buffer("centre", centre.detach().clone())
        self.radius = float(radius)

    def forward(self, x: Tensor) -> Tensor:
        """``aux(x) * base(x)``."""
        return self.aux(x) * self.base(x)

    def lipschitz_bound(self) -> float:
        """Product-rule bound on the declared domain."""
        sup_s, _ = sup_norm_bound(self.aux, self.centre, self.radius)
        sup_g_inf, sup_g_norm = sup_norm_bound(self.base, self.centre, self.radius)
        sup_g = sup_g_inf if self.centre.ndim <= 1 else sup_g_norm
        return sup_s * self.base.lipschitz_bound() + sup_g * self.aux.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain modules computing ``aux(x) * base(x)``."""
        return Multiply(self.base.export(), self.aux.export())


class Multiply(nn.Module):
    """Pointwise product of two modules' outputs (the exported form of :class:`AuxiliaryScale`)."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def forward(self, x: Tensor) -> Tensor:
        """``second(x) * first(x)``."""
        return self.second(x) * self.first(x)
