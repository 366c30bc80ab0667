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
    >>> round(s.eval().lipschitz_bound(), 6)
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


def to_neuralop(twin: FNO, template: Any) -> Any:
    """Write a (fine-tuned) twin's weights back into a copy of the neuraloperator ``template``.

    Possible when ``template`` has dense spectral weights and odd (or 1-D) leading ``n_modes``
    (then every twin weight has a place); ``twin`` must come from :func:`from_neuralop` of a
    model with ``template``'s architecture.

    Raises
    ------
    UnsupportedNeuralopError
        For factorized weights or even leading ``n_modes`` (the twin's extra frequency ``+n/2``
        has no place in neuraloperator's layout).

    Examples
    --------
    >>> import torch
    >>> from neuralop.models import FNO as NeuralopFNO
    >>> from liponet.interop import from_neuralop, to_neuralop
    >>> theirs = NeuralopFNO(n_modes=(6,), in_channels=1, out_channels=1, hidden_channels=4,
    ...                      n_layers=2).eval()
    >>> twin = from_neuralop(theirs)
    >>> back = to_neuralop(twin, theirs).eval()
    >>> x = torch.randn(1, 1, 16)
    >>> torch.allclose(back(x), twin(x), atol=1e-5)
    True
    """
    out = copy.deepcopy(template)
    _check(out)
    blocks = out.fno_blocks
    n_modes = list(out.n_modes)
    if any(n % 2 == 0 for n in n_modes[:-1]):
        raise _refuse("n_modes", tuple(n_modes), "even leading modes cannot be written back")
    for conv in blocks.convs:
        if type(conv.weight).__name__ != "DenseTensor":
            raise _refuse("factorization", out.factorization, "write back needs dense weights")
    net = twin.net
    assert isinstance(net, CertifiedSequential)
    lift, body, proj = net[0], net[1], net[2]
    if isinstance(body, SymmetricPadding):
        body = body.inner
    assert isinstance(body, CertifiedSequential)

    def put_mlp(mlp: Any, seq: Any) -> None:
        assert isinstance(seq, CertifiedSequential)
        linears = [m for m in seq.layers if isinstance(m, FieldLinear)]
        for fc, lin in zip(mlp.fcs, linears, strict=True):
            fc.weight.copy_(lin.linear.weight.detach().reshape(fc.weight.shape))
            assert lin.linear.bias is not None
            fc.bias.copy_(lin.linear.bias.detach())

    d = len(n_modes)
    with torch.no_grad():
        put_mlp(out.lifting, lift)
        put_mlp(out.projection, proj)
        for i in range(out.n_layers):
            part = body[i]
            if isinstance(part, CertifiedSequential) and i < out.n_layers - 1:
                part = part[0]
            mlp_skip = None
            if isinstance(part, ParallelSum):
                part, mlp_skip = part.a, part.b
            block = part[0] if isinstance(part, CertifiedSequential) else part
            assert isinstance(block, FourierBlock)
            conv = blocks.convs[i]
            r = torch.view_as_complex(block.conv.weight.detach())  # (*kept, out, in)
            conv.weight.tensor.copy_(r.permute(d + 1, d, *range(d)))
            w = block.conv.skip
            assert w is not None and block.conv.bias is not None
            conv.bias.copy_(block.conv.bias.detach().reshape(conv.bias.shape))
            skip = blocks.fno_skips[i] if blocks.fno_skips else None
            _put_skip(skip, w.detach(), "fno_skip")
            if isinstance(part, CertifiedSequential) and len(part) > 1:
                put_mlp(blocks.channel_mlp[i], part[1])
            if mlp_skip is not None:
                assert isinstance(mlp_skip, FieldLinear)
                _put_skip(blocks.channel_mlp_skips[i], mlp_skip.linear.weight.detach(), "mlp")
    return out


def _put_skip(skip: Any, w: Tensor, what: str) -> None:
    name = type(skip).__name__
    if skip is None or isinstance(skip, nn.Identity):
        want = torch.zeros_like(w) if skip is None else torch.eye(w.shape[0])
        if not torch.equal(w, want.to(w.dtype)):
            raise _refuse(what, name, "the twin's skip changed and has no place here")
    elif name == "SoftGating":
        if not torch.equal(w, torch.diag(torch.diagonal(w))):
            raise _refuse(what, name, "the twin's skip is no longer diagonal")
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
