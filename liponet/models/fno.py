"""Lipschitz Fourier neural operators (``LipFNO``) and the unconstrained twin (``FNO``).

Shapes: input functions ``(batch, in_channels, *spatial)`` -> ``(batch, out_channels, *spatial)``,
any number of spatial dimensions (``len(modes)``), one code path.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional import spectral_norm_upper
from ..layers import (
    NORMALIZATIONS,
    AuxiliaryScale,
    Budget,
    BudgetScaled,
    CertifiedModule,
    CertifiedSequential,
    ConvexPotentialBlock,
    ConvexPotentialChain,
    FactoredConvexPotentialBlock,
    FactoredConvexPotentialChain,
    FourierBlock,
    LipLinear,
    OutputScale,
    PaddedDomain,
    SpectralShortcut,
    make_activation,
)
from ..layers.cache import WeightKeyedCache
from ..layers.fourier import check_field
from .mlp import OutputScaleName, check_variant
from .registry import register_model

__all__ = [
    "BLOCKS",
    "BUDGETS",
    "FNO",
    "FieldLinear",
    "Increment",
    "LipFNO",
    "MeanPool",
    "grid_coordinates",
]

#: Hidden block kinds of the FNOs: ``"fourier"`` (``sigma(W x + K x + b)``,
#: :class:`~liponet.layers.FourierBlock`) and ``"cpl"`` (the convex-potential residual block
#: ``x - 2 K^T relu(K x + b)``, :class:`~liponet.layers.ConvexPotentialBlock`) and
#: ``"cpl-factored"`` (the same block with ``K = V M``: FFTs on ``width`` channels, the ReLU
#: features pointwise, :class:`~liponet.layers.FactoredConvexPotentialBlock`).
BLOCKS: tuple[str, ...] = ("fourier", "cpl", "cpl-factored")

#: Where the constraint's budget ``k`` goes: ``"last"`` (the last projection layer) or
#: ``"learned"`` (learned factors of the lifting, every block and the projection, product ``k``).
BUDGETS: tuple[str, ...] = ("last", "learned")

#: Rounding slack of the float64 evaluations inside the auxiliary-scale certificate.
_SLACK = 1.0 + 1e-12


def _channel_linear(x: Tensor, w: Tensor, bias: Tensor | None) -> Tensor:
    """``y[:, o] = sum_i w[o, i] x[:, i] + bias[o]`` at every grid point, in one fused call.

    ``(batch, in, *spatial), (out, in), (out,) -> (batch, out, *spatial)``, written contiguous
    (no channels-last round trip).
    """
    flat = x.flatten(2)  # (b, in, S)
    wb = w.expand(x.shape[0], -1, -1)  # (b, out, in)
    if bias is None:
        y = torch.bmm(wb, flat)  # (b,out,in),(b,in,S)->(b,out,S)
    else:
        y = torch.baddbmm(bias.view(1, -1, 1), wb, flat)  # (b,out,in),(b,in,S)->(b,out,S)
    return y.view(x.shape[0], w.shape[0], *x.shape[2:])


def grid_coordinates(x: Tensor) -> Tensor:
    """Cell-centre coordinates ``(i + 0.5) / n_j`` in ``[0, 1]`` for a field batch.

    Parameters
    ----------
    x
        ``(batch, channels, *spatial)``.

    Returns
    -------
    Tensor
        ``(batch, d, *spatial)``, same dtype and device as ``x``; channel ``j`` is the ``j``-th
        coordinate. Its function norm is below ``sqrt(d / 3)`` at every resolution.
    """
    sizes = x.shape[2:]
    axes = [(torch.arange(n, dtype=x.dtype, device=x.device) + 0.5) / n for n in sizes]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))  # (d, *spatial)
    return coords.unsqueeze(0).expand(x.shape[0], *coords.shape)


class FieldLinear(CertifiedModule):
    """A :class:`~liponet.layers.LipLinear` applied pointwise over channels (a 1x1 convolution).

    Parameters
    ----------
    linear
        The layer, ``in_features = channels (+ d with grid)``.
    grid
        Number of grid-coordinate channels appended to the input (0: none).

    Lipschitz constant
    ------------------
    In liponet's function norm: the spectral norm of the eval weight's columns acting on the
    input function (``W[:, :channels]``): the appended grid is the same constant for every
    input, so it cancels in differences. Certified by float64 SVD; ``<= linear``'s bound. Without
    a grid, ``linear``'s own certificate (a proven level for large constrained layers,
    :func:`~liponet.layers.linear.level_norm_upper`).

    Examples
    --------
    >>> import torch
    >>> lift = FieldLinear(LipLinear(3, 4), grid=1).eval()
    >>> lift(torch.randn(2, 2, 8)).shape
    torch.Size([2, 4, 8])
    """

    def __init__(self, linear: LipLinear, grid: int = 0) -> None:
        super().__init__()
        self.linear = linear
        self.grid = grid
        self._cache = WeightKeyedCache([linear.weight])

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, c, *spatial) -> (batch, out, *spatial)``."""
        return _over_channels(x, self.linear.current_weight(), self.linear.bias, self.grid)

    def lipschitz_bound(self) -> float:
        """Float64-SVD bound of the weight's input-function columns (cached)."""
        return self._cache.get("bound", [self.linear.weight], self._compute_bound)

    def _compute_bound(self, weight: Tensor) -> float:
        if not self.grid:  # every column: the layer's own certificate (a proven level if large)
            return self.linear._compute_bound(weight)
        w = self.linear.effective_weight()
        return float(spectral_norm_upper(w[:, : w.shape[1] - self.grid]))

    def export(self) -> nn.Module:
        """Plain ``nn.Linear`` applied over channels."""
        return _PlainFieldLinear(self.linear.export(), self.grid)


class _PlainFieldLinear(nn.Module):
    def __init__(self, linear: nn.Linear, grid: int) -> None:
        super().__init__()
        self.linear = linear
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        return _over_channels(x, self.linear.weight, self.linear.bias, self.grid)


def _over_channels(x: Tensor, w: Tensor, bias: Tensor | None, grid: int) -> Tensor:
    """Apply ``w`` (and ``bias``) over the channels of ``x`` (``grid`` coordinates appended)."""
    if grid:
        x = torch.cat([x, grid_coordinates(x)], 1)
    return _channel_linear(x, w, bias)


class MeanPool(CertifiedModule):
    """Mean over the grid: ``(batch, c, *spatial) -> (batch, c, 1, ..., 1)``.

    Lipschitz constant
    ------------------
    1 from liponet's function norm to the Euclidean norm of the channel means (which is the
    function norm of the pooled one-point field): by Jensen, ``(mean u_c)^2 <= mean u_c^2`` for
    every channel. Exact bound.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Average over every spatial dimension, keeping them as size 1."""
        return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)

    def lipschitz_bound(self) -> float:
        """Exactly 1."""
        return 1.0

    def export(self) -> nn.Module:
        """Itself: plain torch."""
        return MeanPool()


class _FieldAuxiliaryScale(AuxiliaryScale):
    """:class:`AuxiliaryScale` for FNOs with sup-norm bounds that hold at every resolution.

    ``base = Sequential(lift, H)``. For ``||a|| <= r``:
    ``||base(a)|| <= ||H(0)|| + L_H ||lift(a)||`` with
    ``||lift(a)|| <= ||W_a|| r + ||W_grid|| sqrt(d/3) + ||b||`` (the grid's norm is < sqrt(d/3)).
    ``H(0)`` is a constant field (zero padding of 0 is 0; every block maps constants to constants),
    so its norm is the same on every grid. The auxiliary network has no grid input or padding:
    ``aux(0)`` is resolution-independent too.
    """

    def __init__(self, base: CertifiedSequential, aux: CertifiedSequential, radius: float, d: int):
        super().__init__(base, aux, torch.zeros(1), radius)
        self.d = d

    def _zero_field(self, channels: int, modes: Sequence[int]) -> Tensor:
        return torch.zeros(1, channels, *(2 * m - 1 for m in modes), dtype=torch.float64)

    def sup_bounds(self) -> tuple[float, float]:
        """Certified ``(sup |s(a)|_inf, sup ||g(a)||)`` over ``||a|| <= radius``, any resolution."""
        assert isinstance(self.base, CertifiedSequential)
        lift, rest = self.base[0], self.base[1]
        assert isinstance(lift, FieldLinear) and isinstance(rest, CertifiedModule)
        modes = _modes_of(rest)
        w = lift.linear.effective_weight().double()
        n_in = w.shape[1] - lift.grid
        lift_sup = float(spectral_norm_upper(w[:, :n_in])) * self.radius
        if lift.grid:
            lift_sup += float(spectral_norm_upper(w[:, n_in:])) * math.sqrt(self.d / 3)
        if lift.linear.bias is not None:
            lift_sup += float(torch.linalg.vector_norm(lift.linear.bias.detach().double()))
        with torch.no_grad():
            h0 = copy.deepcopy(rest.export()).double()(self._zero_field(w.shape[0], modes))
            h0_norm = float(h0.pow(2).sum(1).mean().sqrt())
            s0 = copy.deepcopy(self.aux.export()).double()(self._zero_field(n_in, modes))
        sup_g = (h0_norm + rest.lipschitz_bound() * lift_sup) * _SLACK
        sup_s = (float(s0.abs().max()) + self.aux.lipschitz_bound() * self.radius) * _SLACK
        return sup_s, sup_g

    def lipschitz_bound(self) -> float:
        """Product rule with resolution-independent sup bounds on the ball of ``radius``."""
        sup_s, sup_g = self.sup_bounds()
        return sup_s * self.base.lipschitz_bound() + sup_g * self.aux.lipschitz_bound()


class Increment(CertifiedModule):
    """Increment form of a time step: ``u_next = u_last + f(x)`` (``u_last``: the last frame).

    Parameters
    ----------
    inner
        A certified map ``f`` of fields ``(batch, in, *spatial) -> (batch, out, *spatial)``.
    out_channels
        Channels of one frame. The input is a window of frames stacked time-major as channels
        (PDEBench's autoregressive layout), so ``in`` must be a multiple of ``out_channels`` and
        the last frame is the last ``out_channels`` channels.
    shortcut
        ``None`` (default): ``u_last`` as above. A :class:`~liponet.layers.SpectralShortcut`:
        ``u_next = S(x) + f(x)``, a learned full-band linear step of the whole window in place
        of ``u_last`` (it starts as ``u_last``).

    Lipschitz constant
    ------------------
    ``1 + L_f`` in liponet's function norm, with ``L_f`` the certified constant of ``inner``.
    The last frame's distance is at most the window's (frames are channels of the norm:
    ``||u_last - u'_last||^2 <= sum over frames``), so ``x -> u_last`` is 1-Lipschitz; the sum
    adds the constants. With a shortcut, ``L_S + L_f`` (``L_S`` its certified constant).

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipSpectralConv
    >>> step = Increment(LipSpectralConv(2, 1, (3,), k=0.5), out_channels=1).eval()
    >>> step(torch.randn(4, 2, 16)).shape
    torch.Size([4, 1, 16])
    >>> step.lipschitz_bound() <= 1.5 + 1e-6
    True
    """

    def __init__(
        self, inner: nn.Module, out_channels: int, shortcut: SpectralShortcut | None = None
    ) -> None:
        super().__init__()
        self.inner = inner
        self.out_channels = out_channels
        if shortcut is not None and shortcut.out_channels != out_channels:
            raise ValueError(
                f"Increment: the shortcut's out_channels ({shortcut.out_channels}) must be the "
                f"frame's ({out_channels})"
            )
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        """``x[:, -out_channels:] + inner(x)`` (``shortcut(x) + inner(x)`` with a shortcut)."""
        y = self.inner(x)
        if y.shape[1] != self.out_channels or x.shape[1] < self.out_channels:
            raise ValueError(
                f"Increment: input {tuple(x.shape)} and inner output {tuple(y.shape)} must both "
                f"carry a frame of {self.out_channels} channels"
            )
        if self.shortcut is not None:
            return self.shortcut(x) + y
        return x[:, -self.out_channels :] + y

    def lipschitz_bound(self) -> float:
        """``1 + L_inner`` (``L_shortcut + L_inner`` with a shortcut)."""
        if not isinstance(self.inner, CertifiedModule):
            raise TypeError(f"cannot certify {type(self.inner).__name__}")
        base = 1.0 if self.shortcut is None else self.shortcut.lipschitz_bound()
        return base + self.inner.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain module doing the same with ``inner.export()`` (and ``shortcut.export()``)."""
        assert isinstance(self.inner, CertifiedModule)
        shortcut = None if self.shortcut is None else self.shortcut.export()
        return _PlainIncrement(self.inner.export(), self.out_channels, shortcut)


class _PlainIncrement(nn.Module):
    def __init__(
        self, inner: nn.Module, out_channels: int, shortcut: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.inner = inner
        self.out_channels = out_channels
        self.shortcut = shortcut

    def forward(self, x: Tensor) -> Tensor:
        base = x[:, -self.out_channels :] if self.shortcut is None else self.shortcut(x)
        return base + self.inner(x)


def _is_grid(size: object, d: int) -> bool:
    """Whether ``size`` is a grid of ``d`` axes: an int >= 1 (``d = 1``) or ``d`` of them."""
    if isinstance(size, bool):
        return False
    if isinstance(size, int):
        return d == 1 and size >= 1
    if not isinstance(size, Sequence) or isinstance(size, str) or len(size) != d:
        return False
    return all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in size)


def _modes_of(module: nn.Module) -> tuple[int, ...]:
    for sub in module.modules():
        if isinstance(sub, (FourierBlock, ConvexPotentialBlock, FactoredConvexPotentialBlock)):
            return sub.conv.modes
    raise ValueError("no Fourier block found")


class _FNOBase(CertifiedModule):
    """Shared code path of :class:`LipFNO` and :class:`FNO`."""

    constrained: bool = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int],
        width: int = 32,
        depth: int = 4,
        k: float = 1.0,
        activation: str = "maxmin",
        free_last_layer: bool = False,
        output_scale: OutputScaleName = "none",
        radius: float | None = None,
        grid: bool = True,
        padding: float = 0.0,
        normalization: str = "clip",
        block: str = "cpl",
        increment: bool | str = False,
        budget: str = "last",
        hidden: int | None = None,
        cpl_activation: str = "relu",
        shortcut_size: int | Sequence[int] | None = None,
        gate: bool = False,
        shortcut_bound: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(k, str):
            raise ValueError(
                f"k={k!r}: a model needs a number; k='auto' is resolved from the training data "
                "by liponet.train (Trainer, `liponet train`) with liponet.train.resolve_auto_k"
            )
        modes = tuple(int(m) for m in modes)
        if len(modes) < 1 or any(m < 1 for m in modes):
            raise ValueError(f"modes must be a non-empty sequence of integers >= 1, got {modes}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        check_variant(width, depth, k, activation, output_scale, self.constrained)
        if activation in ("groupsort2", "maxmin") and width % 2:
            raise ValueError(f"activation {activation!r} needs an even width, got {width}")
        if output_scale == "auxiliary" and (radius is None or not radius >= 0):
            raise ValueError(
                "output_scale='auxiliary' needs radius >= 0: its certificate holds on the ball "
                "||a|| <= radius of input functions only"
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; available: {', '.join(NORMALIZATIONS)}"
            )
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; available: {', '.join(BLOCKS)}")
        if budget not in BUDGETS:
            raise ValueError(f"unknown budget {budget!r}; available: {', '.join(BUDGETS)}")
        if hidden is not None and (block == "fourier" or hidden < 1):
            raise ValueError(
                f"hidden={hidden!r}: the channels of K x exist in block='cpl-factored' or "
                f"block='cpl' only and must be >= 1 (got block={block!r})"
            )
        if cpl_activation != "relu" and block != "cpl":
            raise ValueError(
                f"cpl_activation={cpl_activation!r} applies to block='cpl' only "
                f"(got block={block!r})"
            )
        learned = budget == "learned" and self.constrained
        if learned and (output_scale == "auxiliary" or free_last_layer):
            raise ValueError(
                "budget='learned' allocates k over 1-Lipschitz parts: it excludes "
                "output_scale='auxiliary' and free_last_layer=True"
            )
        if increment not in (False, True, "spectral"):
            raise ValueError(
                f"increment={increment!r}: expected False, True (u_last + f) or 'spectral' "
                "(S(x) + f, a learned full-band linear step)"
            )
        if increment and in_channels % out_channels:
            raise ValueError(
                f"increment={increment!r} adds the input's last frame: in_channels "
                f"({in_channels}) must be a multiple of out_channels ({out_channels}) (frames "
                "stacked as channels)"
            )
        spectral = increment == "spectral"
        if spectral and not _is_grid(shortcut_size, len(modes)):
            raise ValueError(
                f"increment='spectral' needs shortcut_size = the training grid's points, one "
                f"count >= 1 per spatial dimension ({len(modes)}, from modes={list(modes)}; an "
                f"int in 1-D), got {shortcut_size!r}"
            )
        if isinstance(shortcut_bound, str) or not (
            math.isfinite(shortcut_bound) and shortcut_bound > 0
        ):
            raise ValueError(
                f"shortcut_bound must be a finite number > 0 (got {shortcut_bound!r}; 'auto' is "
                "resolved from the training windows by the Trainer / liponet train)"
            )
        if shortcut_bound != 1.0 and not spectral:
            raise ValueError(
                f"shortcut_bound={shortcut_bound!r} applies to increment='spectral' only "
                f"(got increment={increment!r})"
            )
        if gate and not increment:
            raise ValueError(
                "gate=True scales the increment f of u_last + f / S(x) + f: it needs increment "
                "True or 'spectral' (got increment=False)"
            )
        if shortcut_size is not None and not spectral:
            raise ValueError(
                f"shortcut_size={shortcut_size!r} applies to increment='spectral' only "
                f"(got increment={increment!r})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        d = len(modes)
        hidden_k = 1.0 if self.constrained else None
        last_k = None if (free_last_layer or not self.constrained) else (1.0 if learned else k)
        lift = FieldLinear(LipLinear(in_channels + d * grid, width, k=hidden_k), grid=d * grid)
        blocks: CertifiedSequential
        if block == "cpl":
            # every convex-potential block is nonlinear and 1-Lipschitz (K normalized to norm 1)
            # (one chain: the blocks share FFTs, convex_potential_chain)
            blocks = ConvexPotentialChain(
                *(
                    ConvexPotentialBlock(
                        width,
                        modes,
                        hidden=hidden,
                        normalization=normalization,
                        activation=cpl_activation,
                    )
                    for _ in range(depth)
                )
            )
        elif block == "cpl-factored":  # K = V M: FFTs on width channels only
            blocks = FactoredConvexPotentialChain(
                *(
                    FactoredConvexPotentialBlock(
                        width, modes, hidden=hidden, normalization=normalization
                    )
                    for _ in range(depth)
                )
            )
        else:
            blocks = CertifiedSequential(
                *(
                    FourierBlock(
                        width,
                        modes,
                        activation=activation if i < depth - 1 else None,
                        k=hidden_k,
                        normalization=normalization,
                    )
                    for i in range(depth)
                )
            )
        projection = CertifiedSequential(
            FieldLinear(LipLinear(width, 2 * width, k=hidden_k)),
            make_activation(activation, dim=1),
            FieldLinear(LipLinear(2 * width, out_channels, k=last_k)),
        )
        if learned:  # factors f_0 (lift), f_1..f_depth (blocks), f_depth+1 (projection)
            self.budget = Budget(k, depth + 2)
            lift = BudgetScaled(lift, self.budget, 0)  # type: ignore[assignment]
            blocks = CertifiedSequential(
                *(BudgetScaled(b, self.budget, i + 1) for i, b in enumerate(blocks.layers))
            )
            projection = CertifiedSequential(BudgetScaled(projection, self.budget, depth + 1))
        rest = CertifiedSequential(PaddedDomain(blocks, padding), projection)
        body: CertifiedModule = CertifiedSequential(lift, rest)
        if output_scale == "vector":
            body = CertifiedSequential(body, OutputScale(out_channels, dim=1))
        elif output_scale == "auxiliary":
            assert radius is not None
            hidden = 2 * max(width // 4, 1)  # even, for the pairing activations
            aux = CertifiedSequential(
                FieldLinear(LipLinear(in_channels, hidden, k=hidden_k)),
                make_activation(activation, dim=1),
                MeanPool(),
                FieldLinear(LipLinear(hidden, hidden, k=hidden_k)),
                make_activation(activation, dim=1),
                FieldLinear(LipLinear(hidden, out_channels, k=hidden_k)),
            )
            last = aux[len(aux) - 1]
            assert isinstance(last, FieldLinear) and last.linear.bias is not None
            with torch.no_grad():  # start as the identity scale s(a) ~ 1
                last.linear.bias.fill_(1.0)
            assert isinstance(body, CertifiedSequential)
            body = _FieldAuxiliaryScale(body, aux, float(radius), d)
        if gate:  # f starts at zero: the step starts as u_last / the shortcut
            body = CertifiedSequential(body, OutputScale(out_channels, dim=1, init=0.0))
        if spectral:
            assert shortcut_size is not None
            shortcut = SpectralShortcut(
                in_channels,
                out_channels,
                shortcut_size,
                s=float(shortcut_bound) if self.constrained else None,
            )
            body = Increment(body, out_channels, shortcut)
        elif increment:
            body = Increment(body, out_channels)
        self.net = body

    def forward(self, x: Tensor) -> Tensor:
        """Map input functions ``(batch, in_channels, *spatial)`` to ``(batch, out, *spatial)``."""
        check_field(x, self.in_channels, self.modes)
        return self.net(x)

    def lipschitz_bound(self) -> float:
        """Certified constant of ``a -> G(a)`` in liponet's function norm (every resolution)."""
        return self.net.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain torch modules (rfftn / einsum / irfftn with the eval weights)."""
        return self.net.export()


@register_model("LipFNO")
class LipFNO(_FNOBase):
    """Lipschitz Fourier neural operator with a certified constant in the function norm.

    ``G(a) = Q(crop(B_L(... B_1(pad(P(a, grid))))))``: pointwise lifting ``P``, ``depth``
    Fourier blocks ``B_i`` (default: convex-potential residual blocks ``x - 2 K_i^T relu(K_i x +
    b_i)``; ``block="fourier"``: fused blocks ``sigma(W_i + K_i + b_i)``, the last one linear),
    pointwise two-layer projection ``Q`` (hidden ``2 * width``).

    The defaults (``block="cpl"``, ``normalization="clip"``) are what
    ``benchmarks/lipfno_blocks.py`` recommends; give ``k`` room above the data's own constant
    (``k="auto"`` in :class:`liponet.train.Trainer` / ``liponet train``: twice the training
    pairs' largest ratio), and for time stepping try ``increment=True``.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the input and output functions.
    modes
        Kept modes per spatial dimension (``|k_i| < m_i``; see :mod:`liponet.layers.fourier`);
        inputs need ``n_i >= 2 m_i - 1`` points (times ``1 + padding`` is then automatic).
    width, depth
        Channels of the hidden functions and number of Fourier blocks.
    k
        Target constant of the last layer (everything else is 1-Lipschitz; see ``budget``).
        A number here; ``"auto"`` is resolved from the data by :mod:`liponet.train.constraint`.
    activation
        1-Lipschitz channel activation: ``maxmin`` (default; GroupSort2 pairing channel ``i``
        with ``i + width/2``, several times faster on fields than ``groupsort2``'s adjacent
        pairs; both need an even width), ``groupsort2``, ``fullsort``, ``relu``, ``abs``.
    free_last_layer
        Variant (b): leave the last projection layer unconstrained (its exact norm enters).
    output_scale
        ``"none"``; ``"vector"``, variant (c): trainable per-channel scale; ``"auxiliary"``,
        variant (d): per-channel scale from an auxiliary 1-Lipschitz network of the input function
        (lifting, activation, mean over the grid, two layers), certified on ``||a|| <= radius``.
    radius
        Radius (function norm, around the zero function) of the inputs covered by variant (d).
    grid
        Append the cell-centre coordinates ``(i + 0.5)/n`` as input channels.
    padding
        Domain padding (fraction of each size, zeros at the end) for non-periodic problems.
    normalization
        Multiplier normalization of the Fourier blocks (``"clip"``, default, ``"global"``,
        ``"orthogonal"``, ``"polar"``, ``"qr"``, ``"cayley"``; see
        :class:`liponet.layers.LipSpectralConv`).
    block
        Hidden block kind (:data:`BLOCKS`): ``"cpl"`` (default), the convex-potential residual
        block ``x - 2 K^T relu(K x + b)`` (:class:`liponet.layers.ConvexPotentialBlock`, all
        ``depth`` blocks nonlinear, 1-Lipschitz with every singular value of ``K`` free);
        ``"fourier"``, the fused FNO block ``sigma(W x + K x + b)`` (the last one linear);
        ``"cpl-factored"``, the convex-potential block with ``K = V M``
        (:class:`liponet.layers.FactoredConvexPotentialBlock`: a ``width``-channel multiplier
        ``M`` and a pointwise ``V`` to ``hidden`` ReLU features, FFTs on ``width`` channels).
    increment
        Time-step increment form ``u_last + G(a)`` (:class:`Increment`): the input is a window of
        frames stacked as channels and ``u_last`` its last frame; certified ``1 + L_G``.
        ``"spectral"``: ``S(a) + G(a)`` with a learned full-band linear step ``S``
        (:class:`liponet.layers.SpectralShortcut`: a multiplier ``S_k`` from the window to the
        frame at every ``rfftn`` mode of the training grid, ``max_k ||S_k|| <= 1``, initialized
        to ``u_last``); certified ``L_S + L_G <= 1 + L_G``. Any number of spatial dimensions.
    budget
        Where ``k`` goes (:data:`BUDGETS`): ``"last"``, the last projection layer; ``"learned"``,
        learned factors of the lifting, every block and the projection with product ``k``
        (:class:`liponet.layers.Budget`).
    hidden
        ``block="cpl"`` or ``"cpl-factored"`` only: channels of ``K x`` inside each
        convex-potential block (ReLU features per block; default ``width`` for ``"cpl"``,
        ``2 * width`` for ``"cpl-factored"``). Any value keeps every block 1-Lipschitz.
    cpl_activation
        Activation inside the convex-potential blocks: ``"relu"`` (default) or ``"softplus"``
        (smooth; both have slopes in ``[0, 1]``, all the certificate needs).
    shortcut_size
        ``increment="spectral"`` only: points of the training grid, one count per spatial axis
        (an ``int`` in 1-D; a multiplier is stored per ``rfftn`` mode of that grid, and another
        grid applies the stored ones, the highest beyond them:
        :func:`liponet.layers.shortcut.shortcut_multipliers`).
    shortcut_bound
        ``increment="spectral"`` only: the ball of the shortcut, ``max_k ||S_k||_2 <= s``
        (default 1). A wave equation's step needs about ``sqrt 5``; ``"auto"`` in a training
        run's ``model.kwargs`` reads it from the data (:mod:`liponet.train.shortcut_fit`).
    gate
        With an increment form only: ``G`` multiplied by a trainable per-channel gate ``g_c``
        that starts at 0 (:class:`liponet.layers.OutputScale`), so the step starts exactly as
        ``u_last`` or ``S(a)``: ``G``'s initial output (a constant offset of a few 1e-3 of the
        frame on advection) is not noise the training must remove first. Certified with
        ``max |g_c|`` as a factor of ``L_G``.

    Lipschitz constant
    ------------------
    In liponet's function norm (mean over the grid), of the input function ``a -> G(a)``, the
    same at every resolution: ``L_P * prod_i L_{B_i} * L_Q``, each factor a float64-SVD bound of
    the eval weights (``<= k`` for variant (a)). The grid channels are constant, so only the
    lifting's input-function columns enter ``L_P``. Padding then cropping adds no factor (proof
    in :class:`liponet.layers.PaddedDomain`). Variant (c) multiplies by ``max |s_c|``; variant
    (d) uses the product rule on the ball ``||a|| <= radius`` only (see
    :class:`liponet.layers.AuxiliaryScale`), with sup bounds that hold at every resolution.
    ``increment=True`` adds 1, ``increment="spectral"`` the shortcut's ``max_k ||S_k||``. With
    ``block="cpl"`` each block's factor is ``max(1, 2 s^2 - 1)``, ``s`` the float64-SVD bound
    of its ``||K||`` (``s < 1``: exactly 1); with ``"cpl-factored"`` the same with ``s`` the
    float64-SVD bound of ``||V M||`` (per mode, of the product).

    Examples
    --------
    >>> import torch
    >>> model = LipFNO(1, 1, modes=(8,), width=8, depth=2, k=2.0).eval()
    >>> model(torch.randn(3, 1, 64)).shape
    torch.Size([3, 1, 64])
    >>> model.lipschitz_bound() <= 2.0 * (1 + 1e-6)
    True
    """


@register_model("FNO")
class FNO(_FNOBase):
    """The unconstrained twin of :class:`LipFNO`: same code path, no weight normalization.

    Parameters
    ----------
    in_channels, out_channels, modes, width, depth, grid, padding, increment, shortcut_size, gate
        As in :class:`LipFNO` (``increment="spectral"``: the shortcut unconstrained, its exact
        norm ``max_k ||S_k||`` counted).
    activation
        Any of :data:`liponet.layers.ACTIVATIONS`; default GELU (slope up to 1.1289, counted).

    Lipschitz constant
    ------------------
    Still certified, in the function norm at every resolution: the product of the exact
    (float64 SVD) norms of every layer (each Fourier block's fused multiplier norm
    ``max(max_k ||W + R_k||, ||W||)``) and the activations' slopes; usually far above the true
    constant.

    Examples
    --------
    >>> import torch
    >>> FNO(1, 1, modes=(8,), width=8, depth=2)(torch.randn(3, 1, 32)).shape
    torch.Size([3, 1, 32])
    """

    constrained = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int],
        width: int = 32,
        depth: int = 4,
        activation: str = "gelu",
        grid: bool = True,
        padding: float = 0.0,
        increment: bool | str = False,
        shortcut_size: int | Sequence[int] | None = None,
        gate: bool = False,
    ) -> None:
        super().__init__(
            in_channels,
            out_channels,
            modes,
            width=width,
            depth=depth,
            activation=activation,
            grid=grid,
            padding=padding,
            increment=increment,
            block="fourier",
            shortcut_size=shortcut_size,
            gate=gate,
        )
