"""A converted FNO under a certified Lipschitz budget (:func:`constrain`, :class:`ConstrainedFNO`).

What is constrained
-------------------
Every linear part of the twin that :func:`~liponet.interop.from_neuralop` builds: the layers of
the lifting and projection MLPs, each fused Fourier multiplier ``W + R_k`` (with its skip ``W``),
the channel-MLP layers and their skips. Nothing else needs to change: GELU is Lipschitz (slope
``<= 1.1289``, counted in the certificate as it is in the unconstrained twin), biases and the
lifting's grid-coordinate columns never enter the constant (they shift every output alike), and
padding adds no factor. So no neuraloperator part has to be replaced by another kind of layer;
what changes the function is only the shrinking of the parts whose norm exceeds its budget.

The projection
--------------
Part ``i`` of norm ``s_i`` (its exact float64 norm in the twin) gets the budget ``k_i = c s_i``,
with one factor ``c`` for the whole network: the largest ``c`` for which the certificate composed
from the budgets (products along chains, sums over the channel-MLP skip branches, the
activations' slopes) is at most ``k``. Pointwise layers become
:class:`~liponet.layers.ClippedLinear` (``W * min(1, k_i / ||W||)``), Fourier blocks
:class:`~liponet.layers.LipSpectralConv` with ``normalization="clip"`` (every multiplier
``W + R_k``, and ``W``, above ``k_i`` shrunk to ``k_i``, the others kept). With ``k`` at or
above the twin's own certificate ``c >= 1`` and nothing changes; below it every part shrinks by
the factor ``c`` at most, and multipliers already below ``c s_i`` are kept. During training
the weights move freely inside their balls, so the certificate never exceeds ``k``, whatever
the optimizer does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..layers import (
    CertifiedModule,
    CertifiedSequential,
    ClippedLinear,
    FourierBlock,
    PaddedDomain,
)
from ..layers.fourier import check_field
from ..models import FNO
from ..models.fno import FieldLinear, Increment
from .neuralop import NodeGridLinear, ParallelSum, SymmetricPadding

__all__ = ["BUDGET_MARGIN", "ConstrainedFNO", "constrain"]

#: The budgets compose to ``k * (1 - BUDGET_MARGIN)``: room for the float32 rounding of the
#: clipped weights, so that the certificate (float64 SVDs of the weights as stored) is ``<= k``.
BUDGET_MARGIN = 1e-5

#: Bisection steps on ``log c`` (relative precision of ``c`` far below ``BUDGET_MARGIN``).
_BISECTION_STEPS = 200


class ConstrainedFNO(CertifiedModule):
    """A converted neuraloperator FNO whose certified constant stays ``<= k`` while it trains.

    Built by :func:`constrain`; the network is the twin's with every linear part in a norm
    ball (see :mod:`liponet.interop.constrain`). Train it like any module (plain torch or
    :class:`liponet.train.Trainer` with ``model=``); write it back with
    :func:`~liponet.interop.to_neuralop`.

    Parameters
    ----------
    net
        The constrained network.
    in_channels, out_channels, modes
        As the twin's (inputs need ``n_i >= 2 m_i - 1`` points).
    k
        The budget the network's certificate is held under.
    scale
        The factor ``c`` every part's budget is of its norm in the twin.

    Lipschitz constant
    ------------------
    Composed through the network exactly as the twin's (the same parts, each with its float64-SVD
    norm, GELU's slope 1.1289), in liponet's function norm at every resolution; ``<= k`` by
    construction: every part's norm is at most its budget and the budgets compose to ``k (1 -
    1e-5)``.

    Examples
    --------
    >>> import torch
    >>> from neuralop.models import FNO as NeuralopFNO
    >>> from liponet.interop import constrain, from_neuralop
    >>> theirs = NeuralopFNO(n_modes=(8,), in_channels=1, out_channels=1, hidden_channels=8,
    ...                      n_layers=2).eval()
    >>> model = constrain(from_neuralop(theirs), k=2.0)
    >>> model.lipschitz_bound() <= 2.0
    True
    >>> model(torch.randn(3, 1, 32)).shape
    torch.Size([3, 1, 32])
    """

    constrained = True

    def __init__(
        self,
        net: nn.Module,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int],
        k: float,
        scale: float,
    ) -> None:
        super().__init__()
        self.net = net
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = tuple(int(m) for m in modes)
        self.k = float(k)
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, in_channels, *spatial) -> (batch, out_channels, *spatial)``."""
        check_field(x, self.in_channels, self.modes)
        return self.net(x)

    def lipschitz_bound(self) -> float:
        """Certified constant of the eval-mode network (``<= k``)."""
        assert isinstance(self.net, CertifiedModule)
        return self.net.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain torch modules with the eval weights."""
        assert isinstance(self.net, CertifiedModule)
        return self.net.export()

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return f"modes={self.modes}, k={self.k:.6g}, scale={self.scale:.6g}"


# -- the budget as a function of the common factor c ------------------------------------------


def _part_norm(m: nn.Module) -> float:
    """Exact certified norm of a linear part of the twin (a FieldLinear or a Fourier block)."""
    if isinstance(m, FourierBlock):
        return m.conv.lipschitz_bound()
    assert isinstance(m, FieldLinear)
    return m.lipschitz_bound()


def _composed(m: nn.Module, part: Callable[[nn.Module], float]) -> float:
    """The twin's certificate with every linear part's norm replaced by ``part(module)``."""
    if isinstance(m, FourierBlock):
        act = 1.0 if m.act is None else m.act.lipschitz_bound()
        return part(m) * act
    if isinstance(m, FieldLinear):
        return part(m)
    if isinstance(m, CertifiedSequential):
        return math.prod(_composed(c, part) for c in m.layers)
    if isinstance(m, ParallelSum):
        return _composed(m.a, part) + _composed(m.b, part)
    if isinstance(m, (SymmetricPadding, PaddedDomain)):
        return _composed(m.inner, part)
    if isinstance(m, Increment):
        return 1.0 + _composed(m.inner, part)
    if isinstance(m, CertifiedModule) and not any(True for _ in m.parameters()):
        return m.lipschitz_bound()  # activations
    raise TypeError(f"constrain: no budget rule for {type(m).__name__} in the twin")


def _solve_scale(net: nn.Module, norms: dict[int, float], target: float) -> float:
    """Largest ``c`` with composed budget ``f(c) <= target`` (``f`` increases with ``c``)."""

    def f(c: float) -> float:
        return _composed(net, lambda m: c * norms[id(m)])

    lo, hi = 1.0, 1.0
    while f(lo) > target:
        lo /= 2.0
        if lo < 1e-300:
            raise ValueError(f"k={target}: no positive scale of the parts fits this budget")
    while f(hi) <= target and hi < 1e300:
        hi *= 2.0
    if f(hi) <= target:
        return hi
    for _ in range(_BISECTION_STEPS):
        mid = math.sqrt(lo * hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if f(mid) <= target else (lo, mid)
    return lo


# -- rebuilding the parts ---------------------------------------------------------------------


def _clipped_field(layer: FieldLinear, k: float) -> FieldLinear:
    old = layer.linear
    new = ClippedLinear(
        old.in_features, old.out_features, k=k, bias=old.bias is not None, free_columns=layer.grid
    )
    with torch.no_grad():
        new.weight.copy_(old.effective_weight())
        if old.bias is not None:
            assert new.bias is not None
            new.bias.copy_(old.bias.detach())
    new.warm_start()
    cls = NodeGridLinear if isinstance(layer, NodeGridLinear) else FieldLinear
    return cls(new, layer.grid)


def _clipped_block(block: FourierBlock, k: float) -> FourierBlock:
    conv = block.conv
    r, w = conv.effective_weights()
    new = FourierBlock(conv.in_channels, conv.modes, activation=None, k=k, normalization="clip")
    new.act = copy.deepcopy(block.act)
    with torch.no_grad():
        new.conv.weight.copy_(torch.view_as_real(r))
        assert new.conv.skip is not None and new.conv.bias is not None and conv.bias is not None
        new.conv.skip.copy_(torch.zeros_like(new.conv.skip) if w is None else w)
        new.conv.bias.copy_(conv.bias.detach())
        # power iteration starts at the exact top right singular vectors of every multiplier
        m = new.conv._stacked(new.conv._symmetric_spectral()).to(torch.complex128)
        top = torch.linalg.svd(m, full_matrices=False)[2][:, 0, :].conj()  # (K + 1, in)
        new.conv.u.copy_(torch.view_as_real(top.to(torch.complex64)))
    return new


def _rebuild(m: nn.Module, budget: Callable[[nn.Module], float]) -> nn.Module:
    if isinstance(m, FourierBlock):
        return _clipped_block(m, budget(m))
    if isinstance(m, FieldLinear):
        return _clipped_field(m, budget(m))
    if isinstance(m, CertifiedSequential):
        return CertifiedSequential(*(_rebuild(c, budget) for c in m.layers))
    if isinstance(m, ParallelSum):
        return ParallelSum(_rebuild(m.a, budget), _rebuild(m.b, budget))
    if isinstance(m, SymmetricPadding):
        return SymmetricPadding(_rebuild(m.inner, budget), m.padding)
    if isinstance(m, PaddedDomain):
        return PaddedDomain(_rebuild(m.inner, budget), m.padding)
    if isinstance(m, Increment):
        return Increment(_rebuild(m.inner, budget), m.out_channels)
    return copy.deepcopy(m)


def _norms(m: nn.Module) -> dict[int, float]:
    found: dict[int, float] = {}
    for sub in m.modules():
        if isinstance(sub, (FourierBlock, FieldLinear)):
            # a part of norm 0 (a zero skip) gets a tiny budget instead of none: it may train
            found[id(sub)] = max(_part_norm(sub), 1e-12)
    return found


def constrain(
    twin: FNO,
    k: float | str | None = None,
    *,
    data: Dataset[Any] | None = None,
    margin: float | None = None,
) -> ConstrainedFNO:
    """The twin under a certified Lipschitz budget ``k``, ready to fine-tune.

    Parameters
    ----------
    twin
        A twin from :func:`~liponet.interop.from_neuralop` (not modified).
    k
        The budget: a number (> 0); ``None`` (default), the twin's own certificate (nothing
        changes, and training cannot raise it); ``"auto"``, ``margin`` times the largest pair
        ratio of ``data`` (:func:`liponet.train.data_constant`, labelled estimated).
    data
        Map-style dataset of ``(input, target)`` fields, for ``k="auto"``.
    margin
        Factor over the data's constant for ``k="auto"`` (default
        :data:`liponet.train.constraint.AUTO_MARGIN`, 2).

    Returns
    -------
    ConstrainedFNO
        In eval mode, ``lipschitz_bound() <= k``. How the function changed: every linear part
        with norm ``s_i`` is held in the ball of radius ``c s_i`` (``c`` = ``.scale``, the same
        for all parts, the largest whose composed budget fits ``k``); with ``c >= 1`` the
        outputs are the twin's, below it the parts above their budget are shrunk.

    Raises
    ------
    TypeError
        If ``twin`` is not an :class:`~liponet.models.FNO` built by ``from_neuralop``.
    ValueError
        If ``k`` is not a positive number, ``None`` or ``"auto"``, or ``"auto"`` lacks data.

    Lipschitz constant
    ------------------
    See :class:`ConstrainedFNO`: certified, ``<= k``.

    Examples
    --------
    >>> import torch
    >>> from neuralop.models import FNO as NeuralopFNO
    >>> from liponet.interop import constrain, from_neuralop
    >>> theirs = NeuralopFNO(n_modes=(8,), in_channels=1, out_channels=1, hidden_channels=8,
    ...                      n_layers=2).eval()
    >>> twin = from_neuralop(theirs)
    >>> same = constrain(twin)  # its own certificate: the same function
    >>> x = torch.randn(2, 1, 32)
    >>> torch.allclose(same(x), twin(x), atol=1e-4)
    True
    >>> tight = constrain(twin, k=1.0)
    >>> tight.scale < 1.0, tight.lipschitz_bound() <= 1.0
    (True, True)
    """
    if not isinstance(twin, FNO) or not isinstance(twin.net, CertifiedSequential):
        raise TypeError(f"constrain expects a twin from from_neuralop, got {type(twin).__name__}")
    if k is None:
        twin_eval = copy.deepcopy(twin).eval()
        k = twin_eval.lipschitz_bound()
    elif k == "auto":
        k = _auto_k(data, margin)
    if isinstance(k, str) or not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
        raise ValueError(f"k must be a positive number, None or 'auto', got {k!r}")
    net = copy.deepcopy(twin.net).eval()
    norms = _norms(net)
    scale = _solve_scale(net, norms, float(k) * (1.0 - BUDGET_MARGIN))
    rebuilt = _rebuild(net, lambda m: scale * norms[id(m)])
    model = ConstrainedFNO(
        rebuilt, twin.in_channels, twin.out_channels, twin.modes, k=float(k), scale=scale
    )
    return model.eval()


def _auto_k(data: Dataset[Any] | None, margin: float | None) -> float:
    from ..train.constraint import AUTO_MARGIN, data_constant

    if data is None:
        raise ValueError("k='auto' needs data: a map-style dataset of (input, target) fields")
    factor = AUTO_MARGIN if margin is None else margin
    if not (math.isfinite(factor) and factor >= 1.0):
        raise ValueError(f"margin must be a finite factor >= 1, got {factor}")
    constant = data_constant(data)
    if constant is None or constant.value <= 0:
        raise ValueError(
            "k='auto': the data's constant could not be measured (needs a map-style dataset of "
            "at least two (input, target) tensor pairs with different targets)"
        )
    return factor * constant.value
