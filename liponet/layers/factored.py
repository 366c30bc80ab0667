"""Factored convex-potential block: ``K = V M``, the ReLU features pointwise.

The convex-potential block ``y = x - (2 / s^2) K^T relu(K x + b)``
(:class:`~liponet.layers.ConvexPotentialBlock`) is 1-Lipschitz for *any* linear ``K`` with
``s >= ||K||``. With ``K`` a Fourier multiplier from ``width`` to ``hidden`` channels every block
transforms ``hidden`` channels (the inverse FFT of ``K x``, the FFT of ``relu(.)`` for
``K^T``). Here ``K = V M``: ``M = W + R_k`` a ``width -> width`` Fourier multiplier with its
pointwise skip (:class:`~liponet.layers.LipSpectralConv`) and ``V`` a pointwise ``width ->
hidden`` matrix (:class:`~liponet.layers.LipLinear`), so

``y = x - 2 M^T V^T relu(V M x + b)``

transforms ``width`` channels only; the ``hidden`` ReLU features cost two pointwise products.
``K^T = M^T V^T`` with ``V^T`` pointwise and ``M^T`` the adjoint multiplier
(:func:`~liponet.layers.residual.adjoint_weights`).

Normalization. ``M`` and ``V`` are normalized separately to norm
:data:`~liponet.functional.TARGET_MARGIN` (``M`` by its multiplier normalization, ``clip`` by
default; ``V`` Björck-orthonormalized, its columns an orthonormal frame when ``hidden >=
width``), so ``||V M|| <= ||V|| ||M|| < 1``. Nothing is lost by the separate normalization:
for an orthonormal frame ``V`` (``V^T V = I``) ``||V M_k|| = ||M_k||`` at every mode, and any
``K`` whose per-mode blocks share a ``width``-dimensional range is ``U (S Q^T M)`` with ``U``
such a frame. The certificate does not rely on that: it is computed from the product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..functional import spectral_norm_upper
from .base import CertifiedModule, CertifiedSequential
from .cache import WeightKeyedCache
from .fourier import (
    LipSpectralConv,
    SpectralMultiplier,
    _half_weights,
    check_field,
    clip_train_weights,
    clip_trains_together,
    from_kept_spectrum,
    kept_mode_shape,
    kept_spectrum,
    mix_modes,
)
from .linear import LipLinear
from .residual import (
    _fft_kept,
    _fused,
    _ifft_kept,
    _mix_channels,
    _spectral_outer,
    adjoint_weights,
)

__all__ = [
    "FactoredConvexPotentialBlock",
    "FactoredConvexPotentialChain",
    "factored_chain",
]


def _channels(x: Tensor, w: Tensor) -> Tensor:
    """Real channel matrix on a field: ``(b, in, *S), (out, in) -> (b, out, *S)``."""
    flat = torch.bmm(w.expand(x.shape[0], -1, -1), x.flatten(2))  # (b,out,in)@(b,in,S)->(b,out,S)
    return flat.view(x.shape[0], w.shape[0], *x.shape[2:])


def factored_chain(
    x: Tensor,
    weights: Sequence[tuple[Tensor, Tensor, Tensor, Tensor | None]],
    modes: Sequence[int],
) -> Tensor:
    """Factored blocks ``x <- x - 2 M_i^T V_i^T relu(V_i M_i x + b_i)`` in turn, sharing FFTs.

    The residual stream is carried as ``x = p + irfftn(S)`` (``p`` physical, ``S`` the kept
    spectrum of the adjoint multipliers' deferred parts) together with ``X``, the kept spectrum
    of ``x`` (the recurrence of :func:`~liponet.layers.residual.convex_potential_chain`, with
    ``M`` in the place of ``K`` and the pointwise ``z = V^T relu(V u + b)`` in the place of
    ``relu``). Per block one inverse transform (of ``M x``) and one forward transform (of
    ``z``), all on ``width`` channels, plus one forward transform of the input and one inverse
    of the output: ``2 n + 2`` for ``n`` blocks. With gradients in eager float32/float64 the
    whole recurrence is one autograd node (:class:`_FactoredChainFunction`, its backward
    written from the blocks' calculus with the same transforms); otherwise (no grad, graph
    capture, autocast, half precision) plain differentiable operations.

    Parameters
    ----------
    x
        Real ``(batch, width, *spatial)``.
    weights
        Per block ``(R_k (*kept, width, width) complex, W (width, width) real, V (hidden,
        width) real, b (hidden,) or None)``: ``M = W + R_k`` on kept modes and ``W`` elsewhere
        (Hermitian on the ``k_d = 0`` slice).
    modes
        ``(m_1, ..., m_d)``.

    Returns
    -------
    Tensor
        Real ``(batch, width, *spatial)``.
    """
    if not weights:
        return x
    if _fused(x) and torch.is_grad_enabled():  # one node with a hand-written backward
        rs, ws, vs, bs = zip(*weights, strict=True)
        b = None if any(t is None for t in bs) else torch.stack(bs)
        r = torch.stack(rs, dim=len(modes))  # (*kept, B, width, width)
        out: Tensor = _FactoredChainFunction.apply(
            x, tuple(modes), r, torch.stack(ws), torch.stack(vs), b
        )
        return out
    return _plain_chain(x, weights, modes)


def _plain_chain(
    x: Tensor,
    weights: Sequence[tuple[Tensor, Tensor, Tensor, Tensor | None]],
    modes: Sequence[int],
) -> Tensor:
    """:func:`factored_chain`'s recurrence as plain differentiable operations."""
    sizes = tuple(x.shape[2:])
    ones = [1] * len(modes)
    p = x  # physical part of the residual stream
    xk = kept_spectrum(x, modes)  # (b, width, *kept): kept spectrum of the whole stream
    s: Tensor | None = None  # kept spectrum of the deferred part: x = p + irfftn(s)
    for i, (r, w, v, b) in enumerate(weights):
        a = mix_modes(xk, r)  # R X: (b, width, *kept)
        if s is not None:
            a = a + _mix_channels(s, w)  # + W S (the skip on the deferred part)
        u = from_kept_spectrum(a, sizes, modes) + _channels(p, w)  # M x: (b, width, *spatial)
        h = _channels(u, v)  # V M x: (b, hidden, *spatial)
        if b is not None:
            h = h + b.view(-1, *ones)
        z = _channels(torch.relu(h), v.t())  # V^T relu(.): (b, width, *spatial)
        zk = kept_spectrum(z, modes)  # (b, width, *kept)
        r_adj, w_adj = adjoint_weights(-2.0 * r, -2.0 * w)  # -2 M^T (exact factor)
        assert w_adj is not None
        t = mix_modes(zk, r_adj)  # -2 R^H Z: (b, width, *kept)
        p = p + _channels(z, w_adj)  # p - 2 W^T z
        s = t if s is None else s + t
        if i + 1 < len(weights):  # kept modes of x - 2 M^T z
            xk = xk + t + _mix_channels(zk, w_adj)
    assert s is not None
    return p + from_kept_spectrum(s, sizes, modes)


class _FactoredChainFunction(torch.autograd.Function):
    """:func:`factored_chain` as one autograd node with a hand-written backward.

    The forward is :func:`factored_chain`'s recurrence with kept spectra mode-major ``(K, b,
    c)``, recorded by no autograd graph. The backward is the block's calculus: for ``y = x - 2
    M^T phi(M x)``, ``phi(u) = V^T relu(V u + b)``, ``g = dL/dy``, with ``u = M x``, ``r =
    relu(V u + b)``, ``z = V^T r``, ``d = D V (M g)`` (``D`` ReLU's slopes) and ``e = V^T d``:

    - ``dL/dx = g - 2 M^T e`` (the Jacobian ``I - 2 M^T V^T D V M`` is symmetric),
    - ``dL/db = -2 sum d``, ``dL/dV = -2 sum (r (M g)^T + d u^T)``,
    - ``dL/dR_k = -2 c_k sum_batch (E_k X_k^H + Z_k G_k^H)`` and ``dL/dW = -2 sum (e x^T + z
      g^T)``, as for :class:`~liponet.layers.ConvexPotentialBlock` with ``M`` in the place of
      ``K`` (``c_k`` the real FFT adjoint's factors),

    with ``g`` carried as ``x`` is in the forward (a physical part plus a deferred kept
    spectrum), so the backward takes the forward's ``2 n + 2`` transforms, all on ``width``
    channels. Inputs: ``x`` ``(b, width, *spatial)``, ``modes``, then the blocks' weights stacked
    on an axis ``B``: ``R_k`` ``(*kept, B, width, width)`` complex, ``W`` ``(B, width, width)``,
    ``V`` ``(B, hidden, width)``, ``b`` ``(B, hidden)`` or ``None``. First derivatives only.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        modes: tuple[int, ...],
        r: Tensor,
        w: Tensor,
        v: Tensor,
        bias: Tensor | None,
    ) -> Tensor:
        sizes = tuple(x.shape[2:])
        batch, n_blocks = x.shape[0], w.shape[0]
        ctx.r_shape, ctx.has_bias = r.shape, bias is not None
        r = r.reshape(-1, *r.shape[-3:])  # (K, B, width, width)
        wc = w.to(r.dtype)  # the skip's products on spectra
        none = x.new_empty(0)  # "no deferred spectrum yet" in the saved list
        p = x  # physical part of the residual stream
        xk = _fft_kept(x, modes)  # (K, b, width): kept spectrum of the whole stream
        s: Tensor | None = None  # deferred kept spectrum: x = p + irfftn(s)
        saved: list[Tensor] = []
        for i in range(n_blocks):
            ri, wi, vi = r[:, i], w[i], v[i]
            a = torch.bmm(xk, ri.mT)  # R X: (K,b,w)@(K,w,w)->(K,b,w)
            if s is not None:
                a = torch.matmul(s, wc[i].t()).add_(a)  # + W S
            # u = M x = irfftn(.) + W p: (b,w,S) + (b,w,w)@(b,w,S)
            u = _ifft_kept(a, sizes, modes).flatten(2)
            u = torch.baddbmm(u, wi.expand(batch, -1, -1), p.flatten(2))
            pre = torch.bmm(vi.expand(batch, -1, -1), u)  # V u: (b,h,w)@(b,w,S)->(b,h,S)
            if bias is not None:
                pre = pre.add_(bias[i].view(-1, 1))
            rl = pre.relu_()  # (b, h, S)
            z = torch.bmm(vi.t().expand(batch, -1, -1), rl).view(x.shape)  # V^T r: (b,w,*S)
            zk = _fft_kept(z, modes)  # (K, b, width)
            t = torch.bmm(zk, ri.conj()).mul_(-2.0)  # -2 R^H Z: (K,b,w)@(K,w,w)->(K,b,w)
            saved += [p, xk, u, rl, z, zk, none if s is None else s]
            # p - 2 W^T z: (b,w,S) + (b,w,w)@(b,w,S)
            p = torch.baddbmm(
                p.flatten(2), wi.t().expand(batch, -1, -1), z.flatten(2), alpha=-2.0
            ).view(x.shape)
            s = t if s is None else s + t
            if i + 1 < n_blocks:  # kept modes of x - 2 M^T z
                xk = torch.matmul(zk, wc[i]).mul_(-2.0).add_(xk).add_(t)
        assert s is not None
        ctx.modes = modes
        ctx.save_for_backward(r, w, v, *saved)
        return p + _ifft_kept(s, sizes, modes)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        modes = ctx.modes
        r, w, v, *saved = ctx.saved_tensors
        wc = w.to(r.dtype)
        grad = grad.contiguous()
        sizes = tuple(grad.shape[2:])
        batch, n_blocks = grad.shape[0], w.shape[0]
        c = _half_weights(grad.new_empty(kept_mode_shape(modes)), len(modes))
        c = c.reshape(r.shape[0], 1, 1)  # (K, 1, 1): the real FFT adjoint's factors
        g_r, g_w, g_v = torch.empty_like(r), torch.empty_like(w), torch.empty_like(v)
        g_b = v.new_empty(v.shape[:2])  # (B, hidden)
        q = grad  # physical part of dL/dx
        gk = _fft_kept(grad, modes)  # (K, b, width): kept spectrum of dL/dx
        sg: Tensor | None = None  # deferred kept spectrum: dL/dx = q + irfftn(sg)
        for i in reversed(range(n_blocks)):
            ri, wi, vi = r[:, i], w[i], v[i]
            p, xk, u, rl, z, zk, s_or_none = saved[7 * i : 7 * i + 7]
            s = s_or_none if s_or_none.numel() else None
            hk = torch.bmm(gk, ri.mT)  # R G: (K, b, width)
            if sg is not None:
                hk = torch.matmul(sg, wc[i].t()).add_(hk)  # + W Sg
            hx = _ifft_kept(hk, sizes, modes).flatten(2)
            hx = torch.baddbmm(hx, wi.expand(batch, -1, -1), q.flatten(2))  # M g: (b, w, S)
            d = torch.bmm(vi.expand(batch, -1, -1), hx)  # V M g: (b, h, S)
            d = torch.ops.aten.threshold_backward(d, rl, 0.0)  # D V M g
            e = torch.bmm(vi.t().expand(batch, -1, -1), d).view(grad.shape)  # V^T d
            ek = _fft_kept(e, modes)  # (K, b, width)
            g_b[i] = d.sum(dim=(0, 2)).mul_(-2.0)
            # dL/dV = -2 (r (M g)^T + d u^T): (b,h,S)@(b,S,w)->(b,h,w), summed over the batch
            gv = torch.bmm(rl, hx.mT).baddbmm_(d, u.mT).sum(0)
            g_v[i] = gv.mul_(-2.0)
            # dL/dR_k = -2 c_k (E_k X_k^H + Z_k G_k^H), summed over the batch
            eck, zck = ek * c, zk * c
            gr = torch.bmm(eck.mT, xk.conj())  # (K,w,b)@(K,b,w)->(K,w,w)
            g_r[:, i] = gr.baddbmm_(zck.mT, gk.conj()).mul_(-2.0)
            # dL/dW = -2 (e x^T + z g^T), x = p + irfftn(s), g = q + irfftn(sg)
            gw = torch.bmm(e.flatten(2), p.flatten(2).mT)  # (b,w,S)@(b,S,w)->(b,w,w)
            gw = gw.baddbmm_(z.flatten(2), q.flatten(2).mT).sum(0)
            if s is not None:
                gw += _spectral_outer(eck, s)
            if sg is not None:
                gw += _spectral_outer(zck, sg)
            g_w[i] = gw.mul_(-2.0)
            if i == 0 and not ctx.needs_input_grad[0]:
                break
            # dL/dx = g - 2 M^T e: physical part q - 2 W^T e, spectrum - 2 R^H E
            t = torch.bmm(ek, ri.conj()).mul_(-2.0)  # (K,b,w)@(K,w,w)->(K,b,w)
            q = torch.baddbmm(
                q.flatten(2), wi.t().expand(batch, -1, -1), e.flatten(2), alpha=-2.0
            ).view(q.shape)
            sg = t if sg is None else sg + t
            if i > 0:  # kept modes of g - 2 M^T e
                gk = torch.matmul(ek, wc[i]).mul_(-2.0).add_(gk).add_(t)
        grad_x = None
        if ctx.needs_input_grad[0]:
            assert sg is not None
            grad_x = q + _ifft_kept(sg, sizes, modes)
        g_bias = g_b if ctx.has_bias else None
        return grad_x, None, g_r.reshape(ctx.r_shape), g_w, g_v, g_bias


class FactoredConvexPotentialBlock(CertifiedModule):
    """Residual Fourier block ``y = x - 2 M^T V^T relu(V M x + b)``, 1-Lipschitz.

    The convex-potential block with ``K = V M`` (module docstring): ``M`` a ``width -> width``
    Fourier multiplier plus pointwise skip, ``V`` a pointwise ``width -> hidden`` matrix, each
    normalized to norm just below 1. Its FFTs act on ``width`` channels whatever ``hidden`` is.

    Parameters
    ----------
    width
        Channels in and out.
    modes
        Kept modes per spatial dimension (see :class:`~liponet.layers.LipSpectralConv`).
    hidden
        ReLU features (rows of ``V``; default ``2 * width``).
    normalization
        Multiplier normalization of ``M`` (:data:`~liponet.layers.fourier.NORMALIZATIONS`;
        ``"clip"`` by default); each keeps ``||M|| <= 1``.

    Lipschitz constant
    ------------------
    ``max(1, 2 s^2 - 1)`` in liponet's function norm at every resolution, with ``s`` a proven
    upper bound of ``||K|| = max(max_k ||V (W' + R'_k)||, ||V W'||)`` (kept modes and the
    skip-only rest) of the eval weights: each product formed in float64 from the float32
    weights, bounded by :func:`~liponet.functional.spectral_norm_upper` (float64 SVD) plus the
    product's proven rounding bound (``2 (gamma_width + u (1 + gamma_width)) ||V||_F
    ||M_k||_F``, ``u = 2^-53``; about ``1e-13`` at width 20). Never ``||V|| ||M||``. Why
    ``max(1, 2 s^2 - 1)``: the Jacobian ``I - 2 K^T D K`` (``D`` ReLU's slopes in ``[0, 1]``)
    is symmetric with eigenvalues in ``[1 - 2 ||K||^2, 1]``
    (:mod:`liponet.layers.residual`). ``V`` and ``M`` are normalized to ``1 - 2^-20`` each, so
    ``s < 1`` and the certificate is exactly 1.

    Examples
    --------
    >>> import torch
    >>> block = FactoredConvexPotentialBlock(4, modes=(3,), hidden=8).eval()
    >>> block(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> block.lipschitz_bound()
    1.0
    >>> s = block.product_norm_upper()  # ||V M|| <= ||V|| ||M|| < 1
    >>> 0.0 < s < 1.0
    True
    """

    def __init__(
        self,
        width: int,
        modes: Sequence[int],
        hidden: int | None = None,
        normalization: str = "clip",
    ) -> None:
        super().__init__()
        hidden = 2 * width if hidden is None else hidden
        if width < 1 or hidden < 1:
            raise ValueError(f"width and hidden must be >= 1, got {width}, {hidden}")
        self.width = width
        self.hidden = hidden
        self.conv = LipSpectralConv(
            width, width, modes, k=1.0, skip=True, bias=False, normalization=normalization
        )
        self.modes = self.conv.modes
        self.expand = LipLinear(width, hidden, k=1.0, bias=True, orthogonal=True)
        self._cache = WeightKeyedCache(self._sources())

    def _sources(self) -> list[Tensor]:
        return [*self.conv._sources(), self.expand.weight]

    def chain_weights(self) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``(R_k, W, V, b)`` as the forward applies them (:func:`factored_chain`).

        Training: normalized with power-iteration estimates and Björck (with gradient); eval:
        the exact float64 normalizations, cached (the weights certified and exported).
        """
        if self.training:
            r, w = self.conv._train_weights()
        else:
            r, w = self.conv.effective_weights()
        assert w is not None  # M always has its skip
        return r, w, self.expand.current_weight(), self.expand.bias

    def forward(self, x: Tensor) -> Tensor:
        """``x - 2 M^T V^T relu(V M x + b)`` on ``(batch, width, *spatial)``."""
        check_field(x, self.width, self.modes)
        return factored_chain(x, [self.chain_weights()], self.modes)

    def product_norm_upper(self) -> float:
        """Proven upper bound ``s`` of ``||V M||`` of the eval weights (float64 SVD; cached)."""
        return self._cache.get("product", self._sources(), self._compute_product)

    def _compute_product(self, *sources: Tensor) -> float:
        r, w = self.conv.effective_weights()
        assert w is not None
        v = self.expand.effective_weight().to(torch.float64)  # (hidden, width)
        w64 = w.to(torch.float64)
        m = r.reshape(-1, self.width, self.width).to(torch.complex128) + w64  # (K, width, width)
        mats = torch.cat([m, w64.to(torch.complex128).unsqueeze(0)])  # kept modes, skip-only
        k = torch.matmul(v.to(torch.complex128), mats)  # (K + 1, hidden, width)
        # The float64 rounding of M = R + W (entrywise <= u |M|) and of the product (each entry a
        # dot product of length width: <= gamma_width |V| |M|, real and imaginary parts apart)
        # moves ||V M_k||_2 by at most 2 (gamma + u (1 + gamma)) ||V||_F ||M_k||_F.
        u = 2.0**-53
        gamma = self.width * u / (1.0 - self.width * u)
        fro = torch.linalg.matrix_norm(v) * torch.linalg.matrix_norm(mats)  # (K + 1,)
        rounding = 2.0 * (gamma + u * (1.0 + gamma)) * fro
        return float((spectral_norm_upper(k) + rounding).max()) * (1.0 + 2.0**-50)

    def lipschitz_bound(self) -> float:
        """``max(1, 2 s^2 - 1)`` with ``s`` the float64-SVD bound of ``||V M||``."""
        s = self.product_norm_upper()
        return max(1.0, 2.0 * s * s - 1.0)

    def export(self) -> nn.Module:
        """Plain modules: ``M``, ``M^T`` as frozen :class:`SpectralMultiplier` s, ``V`` a buffer."""
        r, w = self.conv.effective_weights()
        r_adj, w_adj = adjoint_weights(r, w)
        bias = None if self.expand.bias is None else self.expand.bias.detach()
        return _PlainFactored(
            SpectralMultiplier(r, w, None, self.modes),
            SpectralMultiplier(r_adj.resolve_conj(), w_adj, None, self.modes),
            self.expand.effective_weight(),
            bias,
        )

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return f"width={self.width}, hidden={self.hidden}, modes={self.modes}"


class FactoredConvexPotentialChain(CertifiedSequential):
    """Factored convex-potential blocks applied in turn, sharing FFTs between them.

    The same function, certificate and export as ``CertifiedSequential(*blocks)`` (equal up to
    float rounding; the same parameters under the same names), computed by
    :func:`factored_chain`: ``2 n + 2`` FFTs on ``width`` channels for ``n`` blocks. A
    training step of ``"clip"`` blocks computes all blocks' multipliers in one autograd node
    (:func:`~liponet.layers.fourier.clip_train_weights`) and the chain in a second one.

    Parameters
    ----------
    blocks
        :class:`FactoredConvexPotentialBlock` s of one width and one ``modes``.

    Lipschitz constant
    ------------------
    The product of the blocks' certified constants (each ``max(1, 2 s_i^2 - 1)``, exactly 1 for
    normalized blocks), in liponet's function norm: the chain is their composition.

    Examples
    --------
    >>> import torch
    >>> blocks = (FactoredConvexPotentialBlock(4, modes=(3,)) for _ in range(2))
    >>> chain = FactoredConvexPotentialChain(*blocks).eval()
    >>> chain(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> chain.lipschitz_bound()
    1.0
    """

    def __init__(self, *blocks: FactoredConvexPotentialBlock) -> None:
        if not blocks:
            raise ValueError("FactoredConvexPotentialChain needs at least one block")
        for i, block in enumerate(blocks):
            if not isinstance(block, FactoredConvexPotentialBlock):
                name = type(block).__name__
                raise TypeError(f"block {i} is a {name}, not a FactoredConvexPotentialBlock")
            if (block.width, block.modes) != (blocks[0].width, blocks[0].modes):
                raise ValueError(
                    f"block {i} has width {block.width} and modes {block.modes}; block 0 has "
                    f"{blocks[0].width} and {blocks[0].modes}: a chain needs them equal"
                )
        super().__init__(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``B_n(... B_1(x))`` on ``(batch, width, *spatial)``."""
        blocks: list[FactoredConvexPotentialBlock] = list(self.layers)  # type: ignore[arg-type]
        modes = blocks[0].modes
        check_field(x, blocks[0].width, modes)
        convs = [block.conv for block in blocks]
        biases = [block.expand.bias for block in blocks]
        if (
            self.training
            and _fused(x)
            and torch.is_grad_enabled()
            and clip_trains_together(convs)
            and all(b is not None for b in biases)
        ):  # every M's clip weights in one node, the chain in a second one
            r, w = clip_train_weights(convs)  # (*kept, B, width, width), (B, width, width)
            v = torch.stack([block.expand.current_weight() for block in blocks])
            b = torch.stack(biases)  # type: ignore[arg-type]
            out: Tensor = _FactoredChainFunction.apply(x, tuple(modes), r, w, v, b)
            return out
        return factored_chain(x, [block.chain_weights() for block in blocks], modes)


class _PlainFactored(nn.Module):
    def __init__(self, m: nn.Module, m_adjoint: nn.Module, v: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.m = m
        self.m_adjoint = m_adjoint
        self.v: Tensor
        self.bias: Tensor | None
        self.register_buffer("v", v.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        h = _channels(self.m(x), self.v)  # (b, hidden, *S)
        if self.bias is not None:
            h = h + self.bias.view(-1, *([1] * (x.ndim - 2)))
        return x - 2.0 * self.m_adjoint(_channels(torch.relu(h), self.v.t()))
