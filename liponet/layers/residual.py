"""1-Lipschitz residual blocks for Fourier operators: the convex-potential block.

The convex-potential layer (CPL; Meunier et al., ICML 2022, "A dynamical system perspective for
Lipschitz neural networks"; the residual family Prach et al., CVPR 2024, rank among the strongest
1-Lipschitz layers) is

``y = x - (2 / ||K||^2) K^T relu(K x + b)``

for any linear ``K``. Here ``K`` is a Fourier multiplier fused with a pointwise skip, exactly the
linear part of an FNO block (:class:`~liponet.layers.LipSpectralConv` with ``skip=True``), and
``K^T`` its adjoint, which is again a Fourier multiplier: ``M_k^H`` on kept modes and ``W^T``
elsewhere (with the orthonormal FFT the multiplier is unitarily diagonalized; ``A_{-k} =
conj(A_k)`` holds for ``A_k^H`` whenever it holds for ``A_k``). Both go through
:func:`~liponet.layers.fourier.spectral_apply`, the one code path of every Fourier layer.

Why it is 1-Lipschitz. Where it is differentiable, the Jacobian is ``I - c K^T D K`` with ``D``
diagonal with entries in ``[0, 1]`` (ReLU's slopes) and ``c = 2 / s^2``: a symmetric matrix whose
eigenvalues lie in ``[1 - c ||K||^2, 1]``. With ``s >= ||K||`` they lie in ``[-1, 1]``, so its
norm is at most 1; the map is piecewise linear and continuous, hence globally 1-Lipschitz. In
general the block's constant is ``max(1, c ||K||^2 - 1)``, which is what
:meth:`ConvexPotentialBlock.lipschitz_bound` certifies with a float64-SVD upper bound of
``||K||``. Unlike the plain FNO block ``sigma(W x + K x + b)``, whose linear part must itself be
1-Lipschitz, the residual form stays 1-Lipschitz with *every* singular value of ``K`` free: the
block can be the identity, a contraction in some directions, and nonlinear in others.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..functional import TARGET_MARGIN
from .base import CertifiedModule, CertifiedSequential
from .fourier import (
    LipSpectralConv,
    SpectralMultiplier,
    _gather_modes,
    _half_weights,
    _scatter_modes,
    _tracing,
    check_field,
    clip_train_weights,
    clip_trains_together,
    from_kept_spectrum,
    kept_mode_shape,
    kept_spectrum,
    mix_modes,
    spectral_apply,
)

__all__ = [
    "CPL_ACTIVATIONS",
    "CPL_NORM",
    "ConvexPotentialBlock",
    "ConvexPotentialChain",
    "adjoint_weights",
    "convex_potential_chain",
    "shares_transforms",
]

#: Activations of the convex-potential block: monotone with slopes in ``[0, 1]`` (what the
#: proof needs). ``"relu"`` (piecewise linear) and ``"softplus"`` (``log(1 + e^x)``, slopes
#: ``sigmoid(x)`` in ``(0, 1)``: a smooth, strictly convex potential, curvature everywhere).
CPL_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "softplus": nn.functional.softplus,
}

#: Norm ``K`` is normalized to (just below 1): :class:`~liponet.layers.LipSpectralConv` with
#: ``k=1`` aims at ``TARGET_MARGIN = 1 - 2^-20``, so the float32 eval weights have ``||K|| < 1``
#: despite rounding (~1e-7), ``2 s^2 - 1 < 1`` and each block is certified exactly 1 (with a
#: norm of 1 the rounding would be amplified four-fold per block). The factor stays 2.
CPL_NORM = TARGET_MARGIN


def adjoint_weights(kept: Tensor, skip: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """Weights of the adjoint Fourier multiplier ``K^T`` of ``K = (kept, skip)``.

    Parameters
    ----------
    kept
        Complex ``(*kept, out, in)`` spectral weights ``R_k`` (Hermitian on the ``k_d = 0``
        slice, as :func:`~liponet.layers.fourier.spectral_apply` expects).
    skip
        Real ``(out, in)`` pointwise weight ``W`` or ``None``.

    Returns
    -------
    tuple
        ``(R_k^H (*kept, in, out), W^T (in, out) or None)``: the multiplier ``W^T + R_k^H`` on
        kept modes and ``W^T`` elsewhere, the exact adjoint in liponet's function norm.
    """
    adj = kept.transpose(-2, -1).conj()  # a lazy view (conj bit): the einsum reads it directly
    return adj, None if skip is None else skip.transpose(0, 1)


def _mix_channels(xk: Tensor, w: Tensor) -> Tensor:
    """Real channel matrix on a spectrum: ``(b, in, *kept), (out, in) -> (b, out, *kept)``.

    In the spectrum's precision even under autocast, whose matmul would return bfloat16/half:
    a complex view of those is refused (torch <= 2.11 on CUDA) and spectra stay float32.
    """
    flat = torch.view_as_real(xk).reshape(xk.shape[0], xk.shape[1], -1)  # (b, in, 2 K)
    with torch.autocast(flat.device.type, enabled=False):
        out = torch.matmul(w.to(flat.dtype), flat)  # (out,in),(b,in,2K)->(b,out,2K)
    return torch.view_as_complex(out.reshape(out.shape[0], out.shape[1], *xk.shape[2:], 2))


def _one_block(
    x: Tensor,
    r: Tensor,
    w: Tensor,
    b: Tensor | None,
    modes: Sequence[int],
    activation: str = "relu",
) -> Tensor:
    """``x - 2 K^T sigma(K x + b)`` (two ``spectral_apply`` calls)."""
    z = CPL_ACTIVATIONS[activation](spectral_apply(x, r, w, b, modes))  # (b, hidden, *S)
    r_adj, w_adj = adjoint_weights(-2.0 * r, -2.0 * w)  # -2 K^T (the factor is exact in floats)
    return x + spectral_apply(z, r_adj, w_adj, None, modes)  # (b, width, *S)


def shares_transforms(modes: Sequence[int], sizes: Sequence[int]) -> bool:
    """Whether :func:`convex_potential_chain` shares FFTs between blocks on this grid.

    Sharing trades two transforms per block for two channel products and three sums over the
    kept spectrum; it pays when the kept modes are at most a quarter of the grid points.
    Measured (``benchmarks/results/performance.md``, each LipFNO's train step against itself
    forced onto the other path): 2-D with 12 x 12 modes on 36 x 36 or 64 x 64 points and 3-D
    are faster shared, 1-D with 64 of 128 modes faster one block at a time, 1-D with 12 of 128
    or 256 modes the same either way.
    """
    return 4 * math.prod(kept_mode_shape(modes)) <= math.prod(sizes)


def _fused(x: Tensor) -> bool:
    """Whether the chain runs as one node (:class:`_ChainFunction`, :class:`_BlocksFunction`).

    In eager float32/float64 without autocast (under autocast, or in half precision, the
    plain operations take their dtype rules, e.g. FFTs of half-precision fields in float32).
    """
    return (
        not _tracing()
        and x.dtype in (torch.float32, torch.float64)
        and not torch.is_autocast_enabled(x.device.type)
    )


def convex_potential_chain(
    x: Tensor,
    weights: Sequence[tuple[Tensor, Tensor, Tensor | None]],
    modes: Sequence[int],
    activation: str = "relu",
) -> Tensor:
    """Convex-potential blocks ``x <- x - 2 K_i^T relu(K_i x + b_i)`` in turn, sharing the FFTs.

    The same function as applying each block's two
    :func:`~liponet.layers.fourier.spectral_apply` calls (equal up to float rounding), with half
    the transforms. Each block needs ``relu``'s input ``u = K x + b``
    in physical space and the kept spectrum ``Z`` of ``z = relu(u)``; everything else is linear
    and is carried where it is cheapest. The residual stream is kept as ``x = p + irfftn(S)``
    (``p`` physical: the input minus the skip parts ``2 W_i^T z_i``; ``S`` the kept spectrum of
    the adjoint parts ``-2 R_i^H Z_i``) together with ``X``, the kept spectrum of ``x`` itself
    (``X <- X - 2 (W_i^T + R_i^H) Z_i``: the kept modes of the update follow linearly from
    ``Z_i``). Then ``K x = W p + irfftn(W S + R X)``: one inverse transform, and ``Z`` one
    forward transform per block, plus one forward transform of the input and one inverse for the
    output: ``2 n + 2`` transforms for ``n`` blocks where the blocks one by one take ``4 n``.
    In eager float32/float64 the whole recurrence is one autograd node (:class:`_ChainFunction`,
    its backward written from the blocks' calculus with the same ``2 n + 2`` transforms); while a
    graph is captured, and in other dtypes, it runs as plain differentiable operations. Where
    the kept spectrum is large against the grid (:func:`shares_transforms` false) the blocks are
    applied one by one instead.

    Parameters
    ----------
    x
        Real ``(batch, width, *spatial)``.
    weights
        Per block ``(R_k (*kept, hidden, width) complex, W (hidden, width) real, b (hidden,) or
        None)``: ``K = W + R_k`` on kept modes and ``W`` elsewhere (Hermitian on the ``k_d = 0``
        slice, as :func:`~liponet.layers.fourier.spectral_apply` expects).
    modes
        ``(m_1, ..., m_d)``.
    activation
        A key of :data:`CPL_ACTIVATIONS` (``relu`` in the formulas above), the same for every
        block.

    Returns
    -------
    Tensor
        Real ``(batch, width, *spatial)``.
    """
    sigma = CPL_ACTIVATIONS[activation]
    if not weights:
        return x
    sizes = tuple(x.shape[2:])
    shared = shares_transforms(modes, sizes)
    if _fused(x):  # one autograd node with a hand-written backward, stacked weights
        rs, ws, bs = zip(*weights, strict=True)
        r = torch.stack(rs, dim=len(modes))  # (*kept, B, hidden, width)
        b = None if any(v is None for v in bs) else torch.stack(bs)  # (B, hidden)
        node = _ChainFunction if shared else _BlocksFunction
        return node.apply(x, tuple(modes), activation, r, torch.stack(ws), b)
    if not shared:
        for r, w, b in weights:
            x = _one_block(x, r, w, b, modes, activation)
        return x
    ones = [1] * len(modes)
    p = x  # physical part of the residual stream
    xk = kept_spectrum(x, modes)  # (b, width, *kept): kept spectrum of the whole stream
    s: Tensor | None = None  # kept spectrum of the deferred part: x = p + irfftn(s)
    for i, (r, w, b) in enumerate(weights):
        a = mix_modes(xk, r)  # R X: (b, hidden, *kept)
        if s is not None:
            a = a + _mix_channels(s, w)  # + W S (the skip on the deferred part)
        u = from_kept_spectrum(a, sizes, modes)  # (b, hidden, *spatial)
        # u + W p in one fused call: (b,h,S) + (b,h,w)@(b,w,S)
        u = torch.baddbmm(u.flatten(2), w.expand(x.shape[0], -1, -1), p.flatten(2)).view(u.shape)
        if b is not None:
            u = u + b.view(-1, *ones)
        z = sigma(u)  # (b, hidden, *spatial)
        zk = kept_spectrum(z, modes)  # (b, hidden, *kept)
        r_adj, w_adj = adjoint_weights(-2.0 * r, -2.0 * w)  # -2 K^T (exact factor)
        assert w_adj is not None
        t = mix_modes(zk, r_adj)  # -2 R^H Z: (b, width, *kept)
        # p - 2 W^T z: (b,w,S) + (b,w,h)@(b,h,S)
        p = torch.baddbmm(p.flatten(2), w_adj.expand(x.shape[0], -1, -1), z.flatten(2))
        p = p.view(x.shape)
        s = t if s is None else s + t
        if i + 1 < len(weights):  # kept modes of x - 2 K^T z
            xk = xk + t + _mix_channels(zk, w_adj)
    assert s is not None
    return p + from_kept_spectrum(s, sizes, modes)


def _to_modes_major(spec: Tensor, modes: Sequence[int]) -> Tensor:
    """Kept modes of an ``rfftn`` spectrum, mode-major: ``(b, c, *freq) -> (K, b, c)``."""
    kept = _gather_modes(spec, modes)  # (b, c, *kept)
    return kept.reshape(kept.shape[0], kept.shape[1], -1).permute(2, 0, 1).contiguous()


def _fft_kept(v: Tensor, modes: Sequence[int]) -> Tensor:
    """Kept spectrum of a real field, mode-major: ``(b, c, *spatial) -> (K, b, c)`` complex."""
    dims = tuple(range(2, v.ndim))
    return _to_modes_major(torch.fft.rfftn(v, dim=dims, norm="ortho"), modes)


def _ifft_kept(a: Tensor, sizes: Sequence[int], modes: Sequence[int]) -> Tensor:
    """``irfftn`` of a mode-major kept spectrum: ``(K, b, c) -> (b, c, *sizes)`` real."""
    kept = a.permute(1, 2, 0).reshape(a.shape[1], a.shape[2], *kept_mode_shape(modes))
    full = _scatter_modes(kept, sizes, modes)  # irfftn zero-pads the last dimension itself
    return torch.fft.irfftn(full, s=tuple(sizes), dim=tuple(range(2, 2 + len(sizes))), norm="ortho")


class _ChainFunction(torch.autograd.Function):
    """:func:`convex_potential_chain` on the shared-FFT path as one autograd node.

    The forward is the shared-transform recurrence of :func:`convex_potential_chain` with every
    kept spectrum held mode-major ``(K, b, c)`` (the layout of its batched products), recorded
    by no autograd graph. The backward is written from the blocks' calculus, not from the
    recurrence: for ``y = x - 2 K^T sigma(K x + b)`` and ``g = dL/dy``, with ``u = K x + b``,
    ``z = sigma(u)`` and ``e = sigma'(u) * (K g)``,

    - ``dL/dx = g - 2 K^T e`` (the Jacobian ``I - 2 K^T D K`` is symmetric),
    - ``dL/db = -2 sum e``, and, for ``K = W + R_k`` (``X``, ``Z``, ``E``, ``G`` the kept
      spectra of ``x``, ``z``, ``e``, ``g``; ``c_k`` = 1 on the ``k_d = 0`` slice, 2 elsewhere:
      the factors of the real FFT's adjoint),
    - ``dL/dR_k = -2 c_k sum_batch (E_k X_k^H + Z_k G_k^H)``,
    - ``dL/dW = -2 sum (e x^T + z g^T)`` over batch and grid,

    with ``g`` carried as ``x`` is in the forward (a physical part plus a deferred kept
    spectrum: one inverse and one forward transform per block), so the ``x^T`` and ``g^T``
    products split into a physical product and a sum over the kept spectrum (Parseval:
    ``sum_grid a b = Re sum_k c_k conj(A_k) B_k``). The backward's transforms match the
    forward's: ``2 n + 2`` for ``n`` blocks. On the ``k_d = 0`` slice the weights are
    Hermitian (as the layers make them); ``tests/test_residual.py`` compares every gradient
    with the textbook formula's and checks this backward by ``gradcheck`` through the layers'
    symmetrization.

    Inputs: ``x`` ``(b, width, *spatial)``, ``modes``, ``activation``, then the blocks' weights
    stacked on an axis ``B``: ``R_k`` ``(*kept, B, h, width)`` complex, ``W`` ``(B, h,
    width)``, ``b`` ``(B, h)`` or ``None``. First derivatives only (``once_differentiable``: a
    double backward raises, as through ``_ClipTrainWeights``).
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        modes: tuple[int, ...],
        activation: str,
        r: Tensor,
        w: Tensor,
        bias: Tensor | None,
    ) -> Tensor:
        sizes = tuple(x.shape[2:])
        batch, n_blocks = x.shape[0], w.shape[0]
        ctx.r_shape, ctx.has_bias = r.shape, bias is not None
        r = r.reshape(-1, *r.shape[-3:])  # (K, B, h, width)
        r_adj = r.conj().mul(-2.0)  # -2 R^H, (K, B, h, width) read as (h, width) per mode
        wc = w.to(r.dtype)  # (B, h, width) as complex: the skip's products on spectra
        wc_adj = wc.mul(-2.0)  # -2 W as complex (the factor 2 is exact in floats)
        ones = [1] * len(modes)  # the bias's broadcast over the grid
        p = x  # physical part of the residual stream
        xk = _fft_kept(x, modes)  # (K, b, width): kept spectrum of the whole stream
        s: Tensor | None = None  # kept spectrum of the deferred part: x = p + irfftn(s)
        saved: list[Tensor] = []
        for i in range(n_blocks):
            ri, wi = r[:, i], w[i]  # (K, h, width), (h, width)
            a = torch.bmm(xk, ri.mT)  # R X: (K,b,w)@(K,w,h)->(K,b,h)
            if s is not None:
                a = torch.matmul(s, wc[i].t()).add_(a)  # + W S: (K,b,w)@(w,h)
            u = _ifft_kept(a, sizes, modes)  # (b, h, *spatial)
            # u + W p in place: (b,h,S) + (b,h,w)@(b,w,S)
            u.flatten(2).baddbmm_(wi.expand(batch, -1, -1), p.flatten(2))
            if bias is not None:
                u.add_(bias[i].view(-1, *ones))
            z = u.relu_() if activation == "relu" else nn.functional.softplus(u)
            zk = _fft_kept(z, modes)  # (K, b, h)
            t = torch.bmm(zk, r_adj[:, i])  # -2 R^H Z: (K,b,h)@(K,h,w)->(K,b,w)
            saved += [p, xk, z if activation == "relu" else u, zk]
            if s is not None:
                saved.append(s)
            # p - 2 W^T z: (b,w,S) + (b,w,h)@(b,h,S)
            p = torch.baddbmm(
                p.flatten(2), wi.t().expand(batch, -1, -1), z.flatten(2), alpha=-2.0
            ).view(p.shape)
            s = t if s is None else s + t
            if i + 1 < n_blocks:  # kept modes of x - 2 K^T z
                xk = torch.matmul(zk, wc_adj[i]).add_(xk).add_(t)
        assert s is not None
        ctx.modes, ctx.activation = modes, activation
        ctx.save_for_backward(r, w, *saved)
        return _ifft_kept(s, sizes, modes).add_(p)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        modes, activation = ctx.modes, ctx.activation
        r, w, *saved = ctx.saved_tensors
        r_adj = r.conj().mul(-2.0)  # -2 R^H
        wc = w.to(r.dtype)
        wc_adj = wc.mul(-2.0)
        grad = grad.contiguous()
        sizes = tuple(grad.shape[2:])
        batch, n_blocks = grad.shape[0], w.shape[0]
        n_kept = r.shape[0]
        c = _half_weights(grad.new_empty(kept_mode_shape(modes)), len(modes))
        c = c.reshape(n_kept, 1, 1)  # (K, 1, 1): the real FFT adjoint's factors
        c_adj = c * -2.0
        g_r = torch.empty_like(r)  # (K, B, h, width)
        g_w = torch.empty_like(w)  # (B, h, width)
        g_b = w.new_empty(w.shape[:2])  # (B, h)
        q = grad  # physical part of dL/dx (the incoming gradient: never written in place)
        gk = _fft_kept(grad, modes)  # (K, b, width): kept spectrum of dL/dx
        sg: Tensor | None = None  # kept spectrum of the deferred part: dL/dx = q + irfftn(sg)
        for i in reversed(range(n_blocks)):
            ri, wi = r[:, i], w[i]
            p, xk, zu, zk = saved[5 * i - 1 : 5 * i + 3] if i else saved[:4]
            s = saved[5 * i + 3] if i else None
            h = torch.bmm(gk, ri.mT)  # R G: (K, b, h)
            if sg is not None:
                h = torch.matmul(sg, wc[i].t()).add_(h)  # + W Sg
            hx = _ifft_kept(h, sizes, modes)  # (b, h, *spatial)
            hx.flatten(2).baddbmm_(wi.expand(batch, -1, -1), q.flatten(2))  # K g, in place
            if activation == "relu":
                e = torch.ops.aten.threshold_backward.grad_input(hx, zu, 0.0, grad_input=hx)
                z = zu  # e = D K g, in place
            else:
                e = torch.ops.aten.softplus_backward(hx, zu, 1.0, 20.0)
                z = nn.functional.softplus(zu)
            ek = _fft_kept(e, modes)  # (K, b, h)
            g_b[i] = e.flatten(2).sum(dim=(0, 2)).mul_(-2.0)  # dL/db = -2 sum e
            # dL/dR_k = -2 c_k (E_k X_k^H + Z_k G_k^H), summed over the batch
            g = torch.bmm(ek.mT, xk.conj())  # (K,h,b)@(K,b,w)->(K,h,w)
            g_r[:, i] = g.baddbmm_(zk.mT, gk.conj()).mul_(c_adj)
            # dL/dW = -2 (e x^T + z g^T), x = p + irfftn(s), g = q + irfftn(sg)
            gw = torch.bmm(e.flatten(2), p.flatten(2).mT)  # (b,h,S)@(b,S,w)->(b,h,w)
            gw = gw.baddbmm_(z.flatten(2), q.flatten(2).mT).sum(0)
            if s is not None:
                gw += _spectral_outer(ek, s * c)
            if sg is not None:
                gw += _spectral_outer(zk, sg * c)
            g_w[i] = gw.mul_(-2.0)
            if i == 0 and not ctx.needs_input_grad[0]:
                break
            # dL/dx = g - 2 K^T e: physical part q - 2 W^T e, spectrum - 2 R^H E
            t = torch.bmm(ek, r_adj[:, i])  # (K,b,h)@(K,h,w)->(K,b,w)
            # q - 2 W^T e: (b,w,S) + (b,w,h)@(b,h,S) (in place once q is this node's own)
            wt = wi.t().expand(batch, -1, -1)
            if q is grad:
                q = torch.baddbmm(q.flatten(2), wt, e.flatten(2), alpha=-2.0).view(q.shape)
            else:
                q.flatten(2).baddbmm_(wt, e.flatten(2), alpha=-2.0)
            sg = t if sg is None else sg.add_(t)
            if i > 0:  # kept modes of g - 2 K^T e
                gk = torch.matmul(ek, wc_adj[i]).add_(gk).add_(t)
        grad_x = None
        if ctx.needs_input_grad[0]:
            assert sg is not None
            grad_x = _ifft_kept(sg, sizes, modes).add_(q)
        return grad_x, None, None, g_r.reshape(ctx.r_shape), g_w, g_b if ctx.has_bias else None


class _BlocksFunction(torch.autograd.Function):
    """The blocks one by one (no FFT shared between blocks) as one autograd node.

    For grids where the kept spectrum is large against the grid (:func:`shares_transforms`
    false): each block ``y = x - 2 K^T sigma(K x + b)`` with four transforms forward and four
    backward, the residual stream physical throughout, the backward from the same calculus as
    :class:`_ChainFunction` (``dL/dx = g - 2 K^T e``, ``dL/db = -2 sum e``, ``dL/dR_k = -2 c_k
    sum_batch (E_k X_k^H + Z_k G_k^H)``, ``dL/dW = -2 sum (e x^T + z g^T)``). Inputs as
    :class:`_ChainFunction`'s.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        modes: tuple[int, ...],
        activation: str,
        r: Tensor,
        w: Tensor,
        bias: Tensor | None,
    ) -> Tensor:
        sizes = tuple(x.shape[2:])
        batch, n_blocks = x.shape[0], w.shape[0]
        ctx.r_shape, ctx.has_bias = r.shape, bias is not None
        r = r.reshape(-1, *r.shape[-3:])  # (K, B, h, width)
        r_adj = r.conj().mul(-2.0)  # -2 R^H (the factor 2 is exact in floats)
        ones = [1] * len(modes)  # the bias's broadcast over the grid
        saved: list[Tensor] = []
        for i in range(n_blocks):
            ri, wi = r[:, i], w[i]  # (K, h, width), (h, width)
            xk = _fft_kept(x, modes)  # (K, b, width)
            a = torch.bmm(xk, ri.mT)  # R X: (K,b,w)@(K,w,h)->(K,b,h)
            u = _ifft_kept(a, sizes, modes)  # (b, h, *spatial)
            u.flatten(2).baddbmm_(wi.expand(batch, -1, -1), x.flatten(2))  # + W x, in place
            if bias is not None:
                u.add_(bias[i].view(-1, *ones))
            z = u.relu_() if activation == "relu" else nn.functional.softplus(u)
            zk = _fft_kept(z, modes)  # (K, b, h)
            t = torch.bmm(zk, r_adj[:, i])  # -2 R^H Z: (K,b,h)@(K,h,w)->(K,b,w)
            saved += [x, xk, z if activation == "relu" else u, zk]
            # x - 2 W^T z - 2 irfftn(R^H Z): (b,w,S) + (b,w,h)@(b,h,S)
            y = torch.baddbmm(
                x.flatten(2), wi.t().expand(batch, -1, -1), z.flatten(2), alpha=-2.0
            ).view(x.shape)
            x = y.add_(_ifft_kept(t, sizes, modes))
        ctx.modes, ctx.activation = modes, activation
        ctx.save_for_backward(r, w, *saved)
        return x

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        modes, activation = ctx.modes, ctx.activation
        r, w, *saved = ctx.saved_tensors
        r_adj = r.conj().mul(-2.0)  # -2 R^H
        g = grad.contiguous()
        sizes = tuple(g.shape[2:])
        batch, n_blocks = g.shape[0], w.shape[0]
        c = _half_weights(g.new_empty(kept_mode_shape(modes)), len(modes))
        c_adj = c.reshape(r.shape[0], 1, 1) * -2.0  # (K, 1, 1): -2 x the real FFT adjoint's factors
        g_r, g_w, g_b = torch.empty_like(r), torch.empty_like(w), w.new_empty(w.shape[:2])
        for i in reversed(range(n_blocks)):
            ri, wi = r[:, i], w[i]
            x, xk, zu, zk = saved[4 * i : 4 * i + 4]
            gk = _fft_kept(g, modes)  # (K, b, width)
            h = _ifft_kept(torch.bmm(gk, ri.mT), sizes, modes)  # irfftn(R G): (b, h, *spatial)
            h.flatten(2).baddbmm_(wi.expand(batch, -1, -1), g.flatten(2))  # K g, in place
            if activation == "relu":
                e = torch.ops.aten.threshold_backward.grad_input(h, zu, 0.0, grad_input=h)
                z = zu  # e = D K g, in place
            else:
                e = torch.ops.aten.softplus_backward(h, zu, 1.0, 20.0)
                z = nn.functional.softplus(zu)
            ek = _fft_kept(e, modes)  # (K, b, h)
            g_b[i] = e.flatten(2).sum(dim=(0, 2)).mul_(-2.0)  # dL/db = -2 sum e
            # dL/dR_k = -2 c_k (E_k X_k^H + Z_k G_k^H), summed over the batch
            gr = torch.bmm(ek.mT, xk.conj())  # (K,h,b)@(K,b,w)->(K,h,w)
            g_r[:, i] = gr.baddbmm_(zk.mT, gk.conj()).mul_(c_adj)
            # dL/dW = -2 (e x^T + z g^T)
            gw = torch.bmm(e.flatten(2), x.flatten(2).mT)  # (b,h,S)@(b,S,w)->(b,h,w)
            g_w[i] = gw.baddbmm_(z.flatten(2), g.flatten(2).mT).sum(0).mul_(-2.0)
            if i == 0 and not ctx.needs_input_grad[0]:
                break
            # dL/dx = g - 2 W^T e - 2 irfftn(R^H E)
            t = torch.bmm(ek, r_adj[:, i])  # (K,b,h)@(K,h,w)->(K,b,w)
            gx = torch.baddbmm(g.flatten(2), wi.t().expand(batch, -1, -1), e.flatten(2), alpha=-2.0)
            g = gx.view(g.shape).add_(_ifft_kept(t, sizes, modes))
        grad_x = g if ctx.needs_input_grad[0] else None
        return grad_x, None, None, g_r.reshape(ctx.r_shape), g_w, g_b if ctx.has_bias else None


def _spectral_outer(a: Tensor, b: Tensor) -> Tensor:
    """``Re sum_(k, batch) a b^H``: ``(K, b, h), (K, b, w) -> (h, w)`` real."""
    return torch.mm(a.reshape(-1, a.shape[-1]).mT, b.reshape(-1, b.shape[-1]).conj()).real


class ConvexPotentialBlock(CertifiedModule):
    """Residual Fourier block ``y = x - (2 / ||K||^2) K^T relu(K x + b)``, 1-Lipschitz.

    ``K`` is a Fourier multiplier plus pointwise skip from ``width`` to ``hidden`` channels,
    normalized to norm :data:`CPL_NORM` (just below 1) by :class:`~liponet.layers.LipSpectralConv`
    (so the factor 2 is safe); ``K^T`` is its exact adjoint.

    Parameters
    ----------
    width
        Channels in and out.
    modes
        Kept modes per spatial dimension (see :class:`~liponet.layers.LipSpectralConv`).
    hidden
        Channels of ``K x`` (default ``width``).
    normalization
        Multiplier normalization of ``K`` (``"global"``, ``"clip"``, ``"orthogonal"``,
        ``"cayley"``, ...: :data:`~liponet.layers.fourier.NORMALIZATIONS`); any of
        them keeps ``||K|| <= 1``, which is all the certificate needs.
    n_power
        Warm-started power iterations per training step.
    activation
        ``"relu"`` (default) or ``"softplus"`` (:data:`CPL_ACTIVATIONS`): any elementwise
        activation with slopes in ``[0, 1]`` keeps the certificate.

    Lipschitz constant
    ------------------
    ``max(1, 2 s^2 - 1)`` in liponet's function norm at every resolution, with ``s`` the
    float64-SVD upper bound of ``||K||`` (``max(max_k ||W' + R'_k||, ||W'||)`` of the eval
    weights, :meth:`LipSpectralConv.lipschitz_bound`). ``K`` is normalized to
    :data:`CPL_NORM` ``= 1 - 2^-20``, so ``s < 1`` despite float32 rounding and the certificate
    is exactly 1. Proof in the module docstring (Jacobian ``I - 2 K^T D
    K`` symmetric with eigenvalues in ``[1 - 2 ||K||^2, 1]``, ``D`` the ReLU slopes in
    ``[0, 1]``). Only an elementwise activation with slopes in ``[0, 1]`` keeps ``K^T D K``
    symmetric positive semi-definite, hence ReLU or softplus (GroupSort would not).

    Examples
    --------
    >>> import torch
    >>> block = ConvexPotentialBlock(4, modes=(3,)).eval()
    >>> block(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> block.lipschitz_bound()
    1.0
    """

    def __init__(
        self,
        width: int,
        modes: Sequence[int],
        hidden: int | None = None,
        normalization: str = "global",
        n_power: int = 1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        hidden = width if hidden is None else hidden
        if width < 1 or hidden < 1:
            raise ValueError(f"width and hidden must be >= 1, got {width}, {hidden}")
        if activation not in CPL_ACTIVATIONS:
            raise ValueError(
                f"unknown convex-potential activation {activation!r}; available: "
                f"{', '.join(CPL_ACTIVATIONS)} (monotone, slopes in [0, 1])"
            )
        self.activation = activation
        self.width = width
        self.hidden = hidden
        self.conv = LipSpectralConv(
            width, hidden, modes, k=1.0, skip=True, bias=True, normalization=normalization,
            n_power=n_power,
        )  # fmt: skip
        self.modes = self.conv.modes

    def _weights(self) -> tuple[Tensor, Tensor | None]:
        # training: power-iteration normalization (a training device, with gradient);
        # eval: the exact float64 normalization, cached (the weights certified and exported)
        if self.training:
            return self.conv._train_weights()
        return self.conv.effective_weights()

    def chain_weights(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(R_k, W, b)`` of ``K`` as the forward applies them (:func:`convex_potential_chain`).

        Training: normalized with power-iteration estimates (with gradient); eval: the exact
        float64 normalization, cached (the weights certified and exported).
        """
        r, w = self._weights()
        assert w is not None  # K always has its skip
        return r, w, self.conv.bias

    def forward(self, x: Tensor) -> Tensor:
        """``x - 2 K^T relu(K x + b)`` on ``(batch, width, *spatial)``."""
        check_field(x, self.width, self.modes)
        return _one_block(x, *self.chain_weights(), self.modes, self.activation)

    def lipschitz_bound(self) -> float:
        """``max(1, 2 s^2 - 1)`` with ``s`` the float64-SVD bound of ``||K||``."""
        s = self.conv.lipschitz_bound()  # max(max_k ||W' + R'_k||, ||W'||), float64 SVD
        return max(1.0, 2.0 * s * s - 1.0)

    def export(self) -> nn.Module:
        """Plain modules: ``K`` and ``K^T`` as frozen :class:`SpectralMultiplier` s."""
        r, w = self.conv.effective_weights()
        bias = None if self.conv.bias is None else self.conv.bias.detach()
        r_adj, w_adj = adjoint_weights(r, w)
        return _PlainConvexPotential(
            SpectralMultiplier(r, w, bias, self.modes),
            SpectralMultiplier(r_adj.resolve_conj(), w_adj, None, self.modes),
            self.activation,
        )

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"width={self.width}, hidden={self.hidden}, modes={self.modes}, "
            f"activation={self.activation!r}"
        )


class ConvexPotentialChain(CertifiedSequential):
    """Convex-potential blocks applied in turn, sharing FFTs between them.

    The same function, certificate and export as ``CertifiedSequential(*blocks)`` (equal up to
    float rounding; the same parameters under the same names), computed by
    :func:`convex_potential_chain`: ``2 n + 2`` FFTs for ``n`` blocks instead of ``4 n``. A
    training step of ``"clip"`` blocks computes all blocks' weights in one autograd node
    (:func:`~liponet.layers.fourier.clip_train_weights`) and the chain in a second one.

    Parameters
    ----------
    blocks
        :class:`ConvexPotentialBlock` s of one width and one ``modes``.

    Lipschitz constant
    ------------------
    The product of the blocks' certified constants (each ``max(1, 2 s_i^2 - 1)``, exactly 1 for
    normalized blocks), in liponet's function norm: the chain is their composition.

    Examples
    --------
    >>> import torch
    >>> chain = ConvexPotentialChain(*(ConvexPotentialBlock(4, modes=(3,)) for _ in range(2)))
    >>> chain.eval()(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> chain.lipschitz_bound()
    1.0
    """

    def __init__(self, *blocks: ConvexPotentialBlock) -> None:
        if not blocks:
            raise ValueError("ConvexPotentialChain needs at least one block")
        for i, block in enumerate(blocks):
            if not isinstance(block, ConvexPotentialBlock):
                name = type(block).__name__
                raise TypeError(f"block {i} is a {name}, not a ConvexPotentialBlock")
            if (block.width, block.modes, block.activation) != (
                blocks[0].width,
                blocks[0].modes,
                blocks[0].activation,
            ):
                raise ValueError(
                    f"block {i} has width {block.width}, modes {block.modes} and activation "
                    f"{block.activation!r}; block 0 has {blocks[0].width}, {blocks[0].modes} and "
                    f"{blocks[0].activation!r}: a chain needs them equal"
                )
        super().__init__(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        """``B_n(... B_1(x))`` on ``(batch, width, *spatial)``."""
        first = self.layers[0]
        assert isinstance(first, ConvexPotentialBlock)
        check_field(x, first.width, first.modes)
        blocks: list[ConvexPotentialBlock] = list(self.layers)  # type: ignore[arg-type]
        convs = [block.conv for block in blocks]
        sizes = tuple(x.shape[2:])
        if self.training and _fused(x) and clip_trains_together(convs):
            # the blocks' clip weights in one node for all of them, the chain in another
            r, w = clip_train_weights(convs)  # (*kept, B, hidden, width), (B, hidden, width)
            biases: list[Tensor] = [conv.bias for conv in convs if conv.bias is not None]
            b = torch.stack(biases) if len(biases) == len(convs) else None
            node = _ChainFunction if shares_transforms(first.modes, sizes) else _BlocksFunction
            return node.apply(x, tuple(first.modes), first.activation, r, w, b)
        weights = [block.chain_weights() for block in blocks]
        return convex_potential_chain(x, weights, first.modes, first.activation)


class _PlainConvexPotential(nn.Module):
    def __init__(self, k: nn.Module, k_adjoint: nn.Module, activation: str = "relu") -> None:
        super().__init__()
        self.k = k
        self.k_adjoint = k_adjoint
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return x - 2.0 * self.k_adjoint(CPL_ACTIVATIONS[self.activation](self.k(x)))
