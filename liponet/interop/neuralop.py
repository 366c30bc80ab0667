"""Conversion between neuraloperator's ``FNO`` (2.x) and liponet's :class:`~liponet.models.FNO`.

neuraloperator is imported lazily (only to recognise its modules); ``import liponet`` never
needs it. The twin is liponet's ``FNO`` class whose network is rebuilt, layer by layer, from the
neuraloperator model: same lifting and projection MLPs, same skips, same channel MLPs, and each
Fourier layer with its pointwise skip fused into one :class:`~liponet.layers.FourierBlock`, so
that its certificate uses the exact multiplier norm ``max(max_k ||W + R_k||, ||W||)``.

Which function is converted
---------------------------
The eval-mode function (dropout off) at every resolution where liponet's kept modes exist
(``n_i >= 2 m_i - 1``, see below). Mapping of the kept modes: neuraloperator's ``n_modes[-1] = n``
keeps the rfft frequencies ``0 .. n // 2`` (liponet's ``m_d = n // 2 + 1``); a leading
``n_modes[i] = n`` keeps ``-(n // 2) .. (n - 1) // 2``. An odd ``n`` is liponet's symmetric set
with ``m_i = (n + 1) / 2``. An even ``n`` keeps ``-n/2`` without ``+n/2``: the twin keeps
``|k_i| <= n/2`` (``m_i = n/2 + 1``) with zero spectral weights at ``+n/2`` (off the ``k_d = 0``
slice), which is exactly the multiplier real inputs see in neuraloperator (its inverse real FFT
keeps the Hermitian part on the ``k_d = 0`` slice; liponet enforces that symmetry explicitly).
The twin therefore needs ``n_i >= 2 m_i - 1`` points (``n + 1`` for even leading ``n``).

Refused by name (:class:`UnsupportedNeuralopError`): complex data, normalization layers,
preactivation, stabilizers, resolution scaling, non-``"full"`` precision, separable
convolutions, ``max_n_modes`` different from ``n_modes``, convolution modules other than
``SpectralConv``, positional embeddings other than the default grid on ``[0, 1]``, and
activations other than GELU and ReLU.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from ..functional import spectral_norm_upper
from ..layers import CertifiedModule, CertifiedSequential, FourierBlock, LipLinear, make_activation
from ..models import FNO
from ..models.fno import FieldLinear, _channel_linear

__all__ = ["UnsupportedNeuralopError", "from_neuralop", "to_neuralop"]


class UnsupportedNeuralopError(ValueError):
    """A neuraloperator model uses an option the conversion cannot reproduce exactly."""


def _neuralop() -> Any:
    try:
        import neuralop.models
    except ImportError as err:  # pragma: no cover - exercised without the extra only
        raise ImportError(
            "liponet.interop needs neuraloperator: pip install 'liponet[baseline]'"
        ) from err
    return neuralop


# -- building blocks of the twin -----------------------------------------------------------------


def node_coordinates(x: Tensor) -> Tensor:
    """Grid channels as neuraloperator embeds them: ``i / n_j``, shape ``(b, d, *spatial)``."""
    sizes = x.shape[2:]
    axes = [torch.arange(n, dtype=x.dtype, device=x.device) / n for n in sizes]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return coords.unsqueeze(0).expand(x.shape[0], *coords.shape)


class NodeGridLinear(FieldLinear):
    """:class:`~liponet.models.fno.FieldLinear` whose grid channels are neuraloperator's ``i / n``.

    Lipschitz constant
    ------------------
    As :class:`~liponet.models.fno.FieldLinear`: the float64-SVD norm of the input-function
    columns (the grid is the same for every input and cancels in differences).

    Examples
    --------
    >>> import torch
    >>> lift = NodeGridLinear(LipLinear(3, 4, k=None), grid=2).eval()
    >>> lift(torch.randn(1, 1, 6, 5)).shape
    torch.Size([1, 4, 6, 5])
    """

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, c, *spatial) -> (batch, out, *spatial)`` with ``i / n`` grid channels."""
        if self.grid:
            x = torch.cat([x, node_coordinates(x)], 1)
        return _channel_linear(x, self.linear.current_weight(), self.linear.bias)

    def export(self) -> nn.Module:
        """A plain module with the same weights."""
        return _PlainNodeGrid(self.linear.export(), self.grid)


class _PlainNodeGrid(nn.Module):
    def __init__(self, linear: nn.Linear, grid: int) -> None:
        super().__init__()
        self.linear, self.grid = linear, grid

    def forward(self, x: Tensor) -> Tensor:
        if self.grid:
            x = torch.cat([x, node_coordinates(x)], 1)
        return _channel_linear(x, self.linear.weight, self.linear.bias)


class ParallelSum(CertifiedModule):
    """``a(x) + b(x)``: neuraloperator's channel-MLP skip around a block.

    Lipschitz constant
    ------------------
    ``L_a + L_b`` by the triangle inequality (any norm), each part certified.

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipLinear
    >>> s = ParallelSum(FieldLinear(LipLinear(2, 2, k=1.0)), FieldLinear(LipLinear(2, 2, k=0.5)))
    >>> round(s.eval().lipschitz_bound(), 5)  # each part aims just below its k
    1.5
    """

    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Tensor) -> Tensor:
        """``a(x) + b(x)``."""
        return self.a(x) + self.b(x)

    def lipschitz_bound(self) -> float:
        """Sum of the parts' certified constants."""
        assert isinstance(self.a, CertifiedModule) and isinstance(self.b, CertifiedModule)
        return self.a.lipschitz_bound() + self.b.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain ``a + b``."""
        assert isinstance(self.a, CertifiedModule) and isinstance(self.b, CertifiedModule)
        return _PlainSum(self.a.export(), self.b.export())


class _PlainSum(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module) -> None:
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x: Tensor) -> Tensor:
        return self.a(x) + self.b(x)


class SymmetricPadding(CertifiedModule):
    """Zero-pad ``round(padding_i * n_i)`` points at BOTH ends of each axis, apply, crop.

    neuraloperator's ``domain_padding`` (liponet's :class:`~liponet.layers.PaddedDomain` pads
    at the end only).

    Lipschitz constant
    ------------------
    At most ``inner``'s, in liponet's function norm: the proof of
    :class:`~liponet.layers.PaddedDomain` does not depend on where the zeros go.

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import FourierBlock
    >>> SymmetricPadding(FourierBlock(2, (3,)), [0.25]).eval()(torch.randn(1, 2, 16)).shape
    torch.Size([1, 2, 16])
    """

    def __init__(self, inner: nn.Module, padding: list[float]) -> None:
        super().__init__()
        self.inner = inner
        self.padding = [float(p) for p in padding]

    def forward(self, x: Tensor) -> Tensor:
        """Pad, apply ``inner``, crop."""
        return _sym_padded(self.inner, self.padding, x)

    def lipschitz_bound(self) -> float:
        """``inner``'s certified constant."""
        assert isinstance(self.inner, CertifiedModule)
        return self.inner.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain module doing the same with ``inner.export()``."""
        assert isinstance(self.inner, CertifiedModule)
        return _PlainSymPad(self.inner.export(), self.padding)


def _sym_padded(inner: nn.Module, padding: list[float], x: Tensor) -> Tensor:
    sizes = x.shape[2:]
    pads = [round(p * n) for p, n in zip(padding, sizes, strict=True)]
    flat: list[int] = []
    for p in reversed(pads):  # F.pad lists the last dimension first
        flat += [p, p]
    y = inner(nn.functional.pad(x, flat))
    for i, (n, p) in enumerate(zip(sizes, pads, strict=True)):
        y = y.narrow(2 + i, p, n)
    return y


class _PlainSymPad(nn.Module):
    def __init__(self, inner: nn.Module, padding: list[float]) -> None:
        super().__init__()
        self.inner, self.padding = inner, padding

    def forward(self, x: Tensor) -> Tensor:
        return _sym_padded(self.inner, self.padding, x)


# -- conversion -------------------------------------------------------------------------------


def _refuse(option: str, value: object, why: str = "") -> UnsupportedNeuralopError:
    extra = f" ({why})" if why else ""
    return UnsupportedNeuralopError(
        f"neuraloperator FNO option {option}={value!r} is not supported by from_neuralop{extra}"
    )


def _activation_name(fn: object) -> str:
    f = torch.nn.functional
    if fn is f.gelu or (isinstance(fn, nn.GELU) and fn.approximate == "none"):
        return "gelu"
    if fn is f.relu or isinstance(fn, nn.ReLU):
        return "relu"
    raise _refuse("non_linearity", fn, "GELU and ReLU are")


def _linear(weight: Tensor, bias: Tensor | None, grid: int = 0, node_grid: bool = False) -> Any:
    """A pointwise layer with these weights: ``(out, in[, 1])`` conv weights or ``(out, in)``."""
    w = weight.detach().reshape(weight.shape[0], weight.shape[1])
    layer = LipLinear(w.shape[1], w.shape[0], k=None, bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(w)
        if bias is not None:
            assert layer.bias is not None
            layer.bias.copy_(bias.detach().reshape(-1))
    return NodeGridLinear(layer, grid) if node_grid else FieldLinear(layer, grid)


def _channel_mlp(mlp: Any, grid: int = 0) -> CertifiedSequential:
    """A ``ChannelMLP`` with its own activation (blocks' MLPs keep GELU whatever the model's)."""
    act = _activation_name(mlp.non_linearity)
    parts: list[nn.Module] = []
    n = len(mlp.fcs)
    for i, fc in enumerate(mlp.fcs):
        parts.append(_linear(fc.weight, fc.bias, grid if i == 0 else 0, node_grid=i == 0))
        if i < n - 1:
            parts.append(make_activation(act, dim=1))
    return CertifiedSequential(*parts)


def _skip_matrix(skip: Any, width: int) -> tuple[Tensor, Tensor | None]:
    """``(W (width, width), bias or None)`` of a neuraloperator skip connection."""
    if skip is None:
        return torch.zeros(width, width), None
    name = type(skip).__name__
    if isinstance(skip, nn.Identity):
        return torch.eye(width), None
    if name == "SoftGating":
        bias = None if skip.bias is None else skip.bias.detach().reshape(-1)
        return torch.diag(skip.weight.detach().reshape(-1)), bias
    if name == "Flattened1dConv":
        conv = skip.conv
        bias = None if conv.bias is None else conv.bias.detach()
        return conv.weight.detach().reshape(width, width), bias
    raise _refuse("skip", name)


def _twin_modes(n_modes: list[int]) -> tuple[int, ...]:
    """The twin's ``m_i`` for neuraloperator's ``n_modes`` (see the module docstring)."""
    return tuple(n // 2 + 1 for n in n_modes)


def _dense_weight(conv: Any) -> Tensor:
    w = conv.weight
    dense = w.to_tensor() if hasattr(w, "to_tensor") else w
    return torch.as_tensor(dense).detach().to(torch.complex64)


def _kept_weights(conv: Any, modes: tuple[int, ...]) -> Tensor:
    """Weights ``(in, out, *n_modes')`` -> liponet's ``(*kept, out, in)`` (zero-filled)."""
    w = _dense_weight(conv)
    d = len(modes)
    w = w.permute(*range(2, 2 + d), 1, 0)  # (*n_modes', out, in)
    kept = (*(2 * m - 1 for m in modes[:-1]), modes[-1])
    out = torch.zeros(*kept, *w.shape[d:], dtype=w.dtype)
    out[tuple(slice(0, s) for s in w.shape[:d])] = w  # index j <-> frequency j - n // 2
    return out


def _check(model: Any) -> None:
    blocks = model.fno_blocks
    spec: list[tuple[str, object, object]] = [
        ("complex_data", model.complex_data, False),
        ("norm", None if blocks.norm is None else type(blocks.norm[0]).__name__, None),
        ("preactivation", blocks.preactivation, False),
        ("stabilizer", blocks.stabilizer, None),
        ("resolution_scaling_factor", model.resolution_scaling_factor, None),
        ("fno_block_precision", model.fno_block_precision, "full"),
        ("separable", model.separable, False),
    ]
    for option, value, supported in spec:
        if value != supported:
            raise _refuse(option, value)
    for conv in blocks.convs:
        if type(conv).__name__ != "SpectralConv":
            raise _refuse("conv_module", type(conv).__name__, "only SpectralConv is")
        if list(conv.max_n_modes) != list(conv.n_modes):
            raise _refuse("max_n_modes", conv.max_n_modes, "must equal n_modes")
        if getattr(conv, "fft_norm", "forward") not in ("forward", "backward", "ortho"):
            raise _refuse("fft_norm", conv.fft_norm)
    emb = model.positional_embedding
    if emb is not None:
        d = model.n_dim
        if (
            type(emb).__name__ != "GridEmbeddingND"
            or [list(b) for b in emb.grid_boundaries] != [[0.0, 1.0]] * d
        ):
            raise _refuse("positional_embedding", emb, "only the default 'grid' on [0, 1] is")


def from_neuralop(model: Any) -> FNO:
    """The :class:`~liponet.models.FNO` twin of a neuraloperator ``FNO`` (or ``TFNO``).

    Parameters
    ----------
    model
        A ``neuralop.models.FNO`` (dense or factorized spectral weights, e.g. ``TFNO``), with any
        ``fno_skip`` / ``channel_mlp_skip`` (``"linear"``, ``"identity"``, ``"soft-gating"``,
        ``None``), with or without channel MLPs, lifting/projection MLPs, ``domain_padding``.

    Returns
    -------
    FNO
        In eval mode; the same function as ``model.eval()`` on grids with ``n_i >= 2 m_i - 1``
        (``twin.modes``), to float32 rounding. Its ``lipschitz_bound()`` is certified and uses the
        exact norm of each fused Fourier multiplier.

    Raises
    ------
    UnsupportedNeuralopError
        Naming the option that cannot be reproduced (see the module docstring).

    Lipschitz constant
    ------------------
    Composed through the network exactly as it computes: products along chains, sums over the
    channel-MLP skip branches, GELU's slope 1.1289 per activation, the exact float64-SVD norm of
    every pointwise layer (input-function columns only for the lifting) and of every fused
    Fourier multiplier ``max(max_k ||W + R_k||, ||W||)``.

    Examples
    --------
    >>> import torch
    >>> from neuralop.models import FNO as NeuralopFNO
    >>> from liponet.interop import from_neuralop
    >>> theirs = NeuralopFNO(n_modes=(8,), in_channels=1, out_channels=1, hidden_channels=8,
    ...                      n_layers=2).eval()
    >>> twin = from_neuralop(theirs)
    >>> twin.modes
    (5,)
    >>> x = torch.randn(2, 1, 32)
    >>> torch.allclose(twin(x), theirs(x), atol=1e-5)
    True
    >>> twin.lipschitz_bound() > 0
    True
    """
    neuralop = _neuralop()
    if not isinstance(model, neuralop.models.FNO):
        raise TypeError(f"from_neuralop expects a neuralop.models.FNO, got {type(model).__name__}")
    _check(model)
    blocks = model.fno_blocks
    act = _activation_name(model.non_linearity)
    width, depth = model.hidden_channels, model.n_layers
    n_modes = list(model.n_modes) if hasattr(model, "n_modes") else list(blocks.n_modes)
    modes = _twin_modes(n_modes)
    d = len(modes)
    grid = d if model.positional_embedding is not None else 0
    twin = FNO(
        model.in_channels, model.out_channels, modes, width=max(width, 1), depth=depth,
        activation=act, grid=bool(grid),
    )  # fmt: skip
    lift = _channel_mlp(model.lifting, grid=grid)
    layers: list[nn.Module] = []
    for i in range(depth):
        last = i == depth - 1
        conv = blocks.convs[i]
        block = FourierBlock(width, modes, activation=None if last else act, k=None)
        w_skip, b_skip = _skip_matrix(blocks.fno_skips[i] if blocks.fno_skips else None, width)
        with torch.no_grad():
            block.conv.weight.copy_(torch.view_as_real(_kept_weights(conv, modes)))
            assert block.conv.skip is not None and block.conv.bias is not None
            block.conv.skip.copy_(w_skip)
            bias = torch.zeros(width) if conv.bias is None else conv.bias.detach().reshape(-1)
            block.conv.bias.copy_(bias + (0 if b_skip is None else b_skip))
        part: nn.Module = block
        if blocks.use_channel_mlp:
            part = CertifiedSequential(block, _channel_mlp(blocks.channel_mlp[i]))
            if blocks.channel_mlp_skips is not None:
                w_mlp, b_mlp = _skip_matrix(blocks.channel_mlp_skips[i], width)
                part = ParallelSum(part, _linear(w_mlp, b_mlp))
        layers.append(part if last else CertifiedSequential(part, make_activation(act, dim=1)))
    body: nn.Module = CertifiedSequential(*layers)
    if model.domain_padding is not None:
        pad = model.domain_padding.domain_padding
        body = SymmetricPadding(body, list(pad) if isinstance(pad, list) else [float(pad)] * d)
    twin.net = CertifiedSequential(lift, body, _channel_mlp(model.projection))
    return twin.eval()


#: Spectral weights at frequencies neuraloperator's layout lacks count as zero below this
#: fraction of the layer's largest weight (clip normalization leaves float32 rounding there).
ZERO_TOLERANCE = 1e-6


class _Layer:
    """The eval weights of one Fourier layer of a twin, in neuraloperator's terms."""

    def __init__(self, part: nn.Module) -> None:
        mlp_skip = None
        if isinstance(part, ParallelSum):
            part, mlp_skip = part.a, part.b
        block = part[0] if isinstance(part, CertifiedSequential) else part
        assert isinstance(block, FourierBlock)
        r, w = block.conv.effective_weights()  # (*kept, out, in) complex, (out, in)
        assert w is not None and block.conv.bias is not None
        self.spectral, self.skip, self.bias = r.detach(), w.detach(), block.conv.bias.detach()
        self.mlp = part[1] if isinstance(part, CertifiedSequential) and len(part) > 1 else None
        self.mlp_skip: Tensor | None = None
        if mlp_skip is not None:
            assert isinstance(mlp_skip, FieldLinear)
            if mlp_skip.linear.bias is not None and bool(mlp_skip.linear.bias.any()):
                raise _refuse("channel_mlp_skip", "bias", "neuraloperator's skips have none")
            self.mlp_skip = mlp_skip.linear.effective_weight().detach()


def _twin_layers(twin: CertifiedModule, depth: int) -> tuple[Any, list[_Layer], Any]:
    net = getattr(twin, "net", None)
    if not (isinstance(net, CertifiedSequential) and len(net) == 3):
        raise TypeError(
            "to_neuralop expects a model from from_neuralop or constrain, "
            f"got {type(twin).__name__}"
        )
    lift, body, proj = net[0], net[1], net[2]
    if isinstance(body, SymmetricPadding):
        body = body.inner
    assert isinstance(body, CertifiedSequential) and len(body) == depth
    layers = []
    for i in range(depth):
        part = body[i]
        if isinstance(part, CertifiedSequential) and i < depth - 1:
            part = part[0]  # (layer, activation)
        layers.append(_Layer(part))
    return lift, layers, proj


def _skip_kind(w: Tensor, current: str | None) -> str | None:
    """The neuraloperator skip kind (``current`` if it fits) that holds the weight ``w``."""
    eye = torch.eye(w.shape[0], dtype=w.dtype)
    fits = {
        None: not bool(w.any()),
        "identity": torch.equal(w, eye),
        "soft-gating": torch.equal(w, torch.diag(torch.diagonal(w))),
        "linear": True,
    }
    if fits[current]:
        return current
    return "soft-gating" if fits["soft-gating"] else "linear"


def _common_kind(weights: list[Tensor], current: str | None) -> str | None:
    """One skip kind (neuraloperator uses one for every layer) holding all ``weights``."""
    kinds = {_skip_kind(w, current) for w in weights}
    for kind in ("linear", "soft-gating"):
        if kind in kinds:
            return kind
    return current


def _kind_of(skip: Any) -> str | None:
    if skip is None:
        return None
    if isinstance(skip, nn.Identity):
        return "identity"
    return "soft-gating" if type(skip).__name__ == "SoftGating" else "linear"


def _neuralop_spectral(a: Tensor, n_modes: list[int], d: int) -> Tensor | None:
    """Weights ``R`` in neuraloperator's layout whose multiplier is the twin's ``a``, or ``None``.

    ``a``: the twin's eval spectral weights ``(*kept, out, in)``, Hermitian on the ``k_d = 0``
    slice. neuraloperator keeps, along an even leading ``n``, the frequencies ``-n/2 .. n/2 - 1``
    (the twin's index ``n``, frequency ``+n/2``, has no place); on the ``k_d = 0`` slice its
    inverse real FFT applies the Hermitian part ``(R_k + conj(R_-k)) / 2`` with absent entries
    zero, so an entry whose mirror is absent is written doubled. ``None`` when a weight without
    a place is not zero (above :data:`ZERO_TOLERANCE` of the largest).
    """
    kept = a.shape[:d]
    present = torch.ones(kept, dtype=torch.bool)
    for i, n in enumerate(n_modes[:-1]):
        if kept[i] == n + 1:  # even n: the last index is the absent +n/2
            index: list[Any] = [slice(None)] * d
            index[i] = n
            present[tuple(index)] = False
    mirrored = present.select(d - 1, 0).flip(dims=tuple(range(d - 1))) if d > 1 else None
    factor = torch.ones(kept, dtype=a.real.dtype)
    needed = ~present  # off the zero slice every absent weight must be zero
    if mirrored is not None:
        zero_present = present.select(d - 1, 0)
        factor.select(d - 1, 0)[zero_present & ~mirrored] = 2.0
        needed.select(d - 1, 0).copy_(~zero_present & ~mirrored)
    scale = float(a.abs().max())
    if bool(needed.any()) and float(a[needed].abs().max()) > ZERO_TOLERANCE * scale:
        return None
    r = a * factor[(...,) + (None,) * 2].to(a.dtype)
    r = r[tuple(slice(0, n) for n in n_modes[:-1])]  # drop the absent +n/2 entries
    return r.permute(d + 1, d, *range(d))  # (in, out, *n_modes')


def _rebuilt(template: Any, **changes: Any) -> Any:
    """A new neuraloperator FNO with the template's settings and ``changes``."""
    import inspect

    neuralop = _neuralop()
    kwargs = dict(template._init_kwargs)
    args = kwargs.pop("args", ())
    for key in ("_name", "_version"):
        kwargs.pop(key, None)
    bound = inspect.signature(neuralop.models.FNO).bind_partial(*args, **kwargs)
    settings = {**bound.arguments, **changes}
    settings.pop("kwargs", None)
    return neuralop.models.FNO(**settings)


def to_neuralop(twin: CertifiedModule, template: Any) -> Any:
    """A neuraloperator ``FNO`` computing a (fine-tuned or constrained) twin's function.

    Parameters
    ----------
    twin
        From :func:`from_neuralop` (possibly trained) or :func:`~liponet.interop.constrain`;
        its eval-mode weights are written.
    template
        The neuraloperator model the twin was converted from (not modified).

    Returns
    -------
    neuralop.models.FNO
        A copy of ``template`` holding the twin's weights when every weight has a place there.
        Otherwise a model built with the template's settings and the smallest changes that
        hold them exactly: ``factorization=None`` for factorized weights (a factorized tensor
        of a fixed rank cannot hold arbitrary weights), an even leading ``n_modes`` ``n``
        raised to ``n + 1`` when the twin's weights at frequency ``+n/2`` are not zero (they
        are after conversion; training moves them), and a skip (``fno_skip``,
        ``channel_mlp_skip``) whose trained weight left its kind becomes ``"soft-gating"``
        (still diagonal) or ``"linear"``. Same outputs as ``twin`` in eval mode, to float32
        rounding, on even leading grid sizes (see the module docstring).

    Raises
    ------
    UnsupportedNeuralopError
        If a channel-MLP skip of the twin has a non-zero bias (neuraloperator's skips have none).
    TypeError
        If ``twin`` is not a model built by :func:`from_neuralop` or ``constrain``.

    Examples
    --------
    >>> import torch
    >>> from neuralop.models import FNO as NeuralopFNO
    >>> from liponet.interop import constrain, from_neuralop, to_neuralop
    >>> theirs = NeuralopFNO(n_modes=(6,), in_channels=1, out_channels=1, hidden_channels=4,
    ...                      n_layers=2).eval()
    >>> model = constrain(from_neuralop(theirs), k=1.0)
    >>> back = to_neuralop(model, theirs).eval()
    >>> x = torch.randn(1, 1, 16)
    >>> torch.allclose(back(x), model(x), atol=1e-5)
    True
    """
    _check(template)
    blocks = template.fno_blocks
    depth = template.n_layers
    d = template.n_dim
    lift, layers, proj = _twin_layers(twin, depth)
    n_modes = list(template.n_modes)
    if not template.complex_data:  # neuraloperator stores the last one halved
        n_modes[-1] = list(template.fno_blocks.convs[0].n_modes)[-1]
    n_modes = [int(n) for n in template._init_kwargs.get("n_modes") or n_modes]
    changes: dict[str, Any] = {}
    if any(type(conv.weight).__name__ != "DenseTensor" for conv in blocks.convs):
        changes["factorization"] = None
    spectral = [_neuralop_spectral(layer.spectral, n_modes, d) for layer in layers]
    if any(r is None for r in spectral):
        n_modes = [n + 1 if n % 2 == 0 and i < d - 1 else n for i, n in enumerate(n_modes)]
        changes["n_modes"] = tuple(n_modes)
        spectral = [_neuralop_spectral(layer.spectral, n_modes, d) for layer in layers]
    fno_kind = _kind_of(blocks.fno_skips[0]) if blocks.fno_skips else None
    kind = _common_kind([layer.skip for layer in layers], fno_kind)
    if kind != fno_kind:
        changes["fno_skip"] = kind
    if blocks.use_channel_mlp and blocks.channel_mlp_skips is not None:
        mlp_kind = _kind_of(blocks.channel_mlp_skips[0])
        weights = [layer.mlp_skip for layer in layers if layer.mlp_skip is not None]
        kind = _common_kind(weights, mlp_kind)
        if kind != mlp_kind:
            changes["channel_mlp_skip"] = kind
    out = _rebuilt(template, **changes) if changes else copy.deepcopy(template)
    out.eval()
    blocks = out.fno_blocks

    def put_mlp(mlp: Any, seq: Any) -> None:
        assert isinstance(seq, CertifiedSequential)
        linears = [m for m in seq.layers if isinstance(m, FieldLinear)]
        for fc, lin in zip(mlp.fcs, linears, strict=True):
            fc.weight.copy_(lin.linear.effective_weight().detach().reshape(fc.weight.shape))
            assert lin.linear.bias is not None
            fc.bias.copy_(lin.linear.bias.detach())

    with torch.no_grad():
        put_mlp(out.lifting, lift)
        put_mlp(out.projection, proj)
        for i, layer in enumerate(layers):
            conv = blocks.convs[i]
            r = spectral[i]
            assert r is not None
            conv.weight.tensor.copy_(r)
            conv.bias.copy_(layer.bias.reshape(conv.bias.shape))
            _put_skip(blocks.fno_skips[i] if blocks.fno_skips else None, layer.skip)
            if layer.mlp is not None:
                put_mlp(blocks.channel_mlp[i], layer.mlp)
            if layer.mlp_skip is not None:
                _put_skip(blocks.channel_mlp_skips[i], layer.mlp_skip)
    return out


def _put_skip(skip: Any, w: Tensor) -> None:
    """Write ``w`` into a skip of the kind :func:`_skip_kind` chose for it."""
    name = type(skip).__name__
    if skip is None or isinstance(skip, nn.Identity):
        return
    if name == "SoftGating":
        skip.weight.copy_(torch.diagonal(w).reshape(skip.weight.shape))
    else:
        skip.conv.weight.copy_(w.reshape(skip.conv.weight.shape))


def naive_bound(twin: FNO) -> float:
    """The layer-product bound of a twin: each Fourier layer as ``max_k ||R_k|| + ||W||``.

    What composing per-layer norms gives when the spectral convolution and its skip are
    bounded separately (the fused multiplier norm is replaced by the sum of the two norms);
    a certified but loose bound, for comparison with ``twin.lipschitz_bound()``.

    Examples
    --------
    >>> from liponet.models import FNO
    >>> model = FNO(1, 1, modes=(4,), width=4, depth=2).eval()
    >>> naive_bound(model) >= model.lipschitz_bound()
    True
    """

    def walk(m: Any) -> float:
        if isinstance(m, FourierBlock):
            r, w = m.conv.effective_weights()
            spec = float(spectral_norm_upper(r.to(torch.complex128)).max())
            skip = 0.0 if w is None else float(spectral_norm_upper(w.double()))
            act = 1.0 if m.act is None else m.act.lipschitz_bound()
            return (spec + skip) * act
        if isinstance(m, CertifiedSequential):
            return math.prod(walk(c) for c in m.layers)
        if isinstance(m, ParallelSum):
            return walk(m.a) + walk(m.b)
        if isinstance(m, SymmetricPadding):
            return walk(m.inner)
        if type(m).__name__ == "PaddedDomain":
            return walk(m.inner)
        assert isinstance(m, CertifiedModule)
        return m.lipschitz_bound()

    return walk(twin.net)
