"""Reference copies of the fused training nodes as they were before the burgers13d speedup.

``tests/test_fused_reference.py`` checks that the library's nodes give the same outputs and
gradients as these (to rounding), forward and backward, float32 and float64, 1-D and 2-D.
Kept verbatim (only the imports changed); never used by the library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from deel.torchlip import normalizers as _deel
from torch import Tensor, nn

from liponet.layers.fourier import (
    _gather_modes,
    _half_weights,
    _scatter_modes,
    hermitian_symmetrize,
    kept_mode_shape,
)


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
        wc = w.to(r.dtype)  # (B, h, width) as complex: the skip's products on spectra
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
            # u + W p: (b,h,S) + (b,h,w)@(b,w,S)
            u = torch.baddbmm(u.flatten(2), wi.expand(batch, -1, -1), p.flatten(2)).view(u.shape)
            if bias is not None:
                u = u.add_(bias[i].view(-1, *([1] * len(modes))))
            z = torch.relu(u) if activation == "relu" else nn.functional.softplus(u)
            zk = _fft_kept(z, modes)  # (K, b, h)
            t = torch.bmm(zk, ri.conj()).mul_(-2.0)  # -2 R^H Z: (K,b,h)@(K,h,w)->(K,b,w)
            saved += [p, xk, z if activation == "relu" else u, zk]
            if s is not None:
                saved.append(s)
            # p - 2 W^T z: (b,w,S) + (b,w,h)@(b,h,S)
            p = torch.baddbmm(
                p.flatten(2), wi.t().expand(batch, -1, -1), z.flatten(2), alpha=-2.0
            ).view(p.shape)
            s = t if s is None else s + t
            if i + 1 < n_blocks:  # kept modes of x - 2 K^T z
                xk = torch.matmul(zk, wc[i]).mul_(-2.0).add_(xk).add_(t)
        assert s is not None
        ctx.modes, ctx.activation = modes, activation
        ctx.save_for_backward(r, w, *saved)
        return p + _ifft_kept(s, sizes, modes)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        modes, activation = ctx.modes, ctx.activation
        r, w, *saved = ctx.saved_tensors
        wc = w.to(r.dtype)
        grad = grad.contiguous()
        sizes = tuple(grad.shape[2:])
        batch, n_blocks = grad.shape[0], w.shape[0]
        n_kept = r.shape[0]
        c = _half_weights(grad.new_empty(kept_mode_shape(modes)), len(modes))
        c = c.reshape(n_kept, 1, 1)  # (K, 1, 1): the real FFT adjoint's factors
        g_r = torch.empty_like(r)  # (K, B, h, width)
        g_w = torch.empty_like(w)  # (B, h, width)
        g_b = w.new_empty(w.shape[:2])  # (B, h)
        q = grad  # physical part of dL/dx
        gk = _fft_kept(grad, modes)  # (K, b, width): kept spectrum of dL/dx
        sg: Tensor | None = None  # kept spectrum of the deferred part: dL/dx = q + irfftn(sg)
        for i in reversed(range(n_blocks)):
            ri, wi = r[:, i], w[i]
            p, xk, zu, zk = saved[5 * i - 1 : 5 * i + 3] if i else saved[:4]
            s = saved[5 * i + 3] if i else None
            h = torch.bmm(gk, ri.mT)  # R G: (K, b, h)
            if sg is not None:
                h = torch.matmul(sg, wc[i].t()).add_(h)  # + W Sg
            hx = _ifft_kept(h, sizes, modes).flatten(2)
            hx = torch.baddbmm(hx, wi.expand(batch, -1, -1), q.flatten(2))  # K g: (b, h, S)
            if activation == "relu":
                e = torch.ops.aten.threshold_backward(hx, zu.flatten(2), 0.0)  # D K g
                z = zu
            else:
                e = torch.ops.aten.softplus_backward(hx, zu.flatten(2), 1.0, 20.0)
                z = nn.functional.softplus(zu)
            e = e.view(zu.shape)
            ek = _fft_kept(e, modes)  # (K, b, h)
            g_b[i] = e.flatten(2).sum(dim=(0, 2)).mul_(-2.0)
            # dL/dR_k = -2 c_k (E_k X_k^H + Z_k G_k^H), summed over the batch
            eck, zck = ek * c, zk * c
            g = torch.bmm(eck.mT, xk.conj())  # (K,h,b)@(K,b,w)->(K,h,w)
            g_r[:, i] = g.baddbmm_(zck.mT, gk.conj()).mul_(-2.0)
            # dL/dW = -2 (e x^T + z g^T), x = p + irfftn(s), g = q + irfftn(sg)
            gw = torch.bmm(e.flatten(2), p.flatten(2).mT)  # (b,h,S)@(b,S,w)->(b,h,w)
            gw = gw.baddbmm_(z.flatten(2), q.flatten(2).mT).sum(0)
            if s is not None:
                gw += _spectral_outer(eck, s)
            if sg is not None:
                gw += _spectral_outer(zck, sg)
            g_w[i] = gw.mul_(-2.0)
            if i == 0 and not ctx.needs_input_grad[0]:
                break
            # dL/dx = g - 2 K^T e: physical part q - 2 W^T e, spectrum - 2 R^H E
            t = torch.bmm(ek, ri.conj()).mul_(-2.0)  # (K,b,h)@(K,h,w)->(K,b,w)
            q = torch.baddbmm(
                q.flatten(2), wi.t().expand(batch, -1, -1), e.flatten(2), alpha=-2.0
            ).view(q.shape)
            sg = t if sg is None else sg + t
            if i > 0:  # kept modes of g - 2 K^T e
                gk = torch.matmul(ek, wc[i]).mul_(-2.0).add_(gk).add_(t)
        grad_x = None
        if ctx.needs_input_grad[0]:
            assert sg is not None
            grad_x = q + _ifft_kept(sg, sizes, modes)
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
        saved: list[Tensor] = []
        for i in range(n_blocks):
            ri, wi = r[:, i], w[i]  # (K, h, width), (h, width)
            xk = _fft_kept(x, modes)  # (K, b, width)
            u = _ifft_kept(torch.bmm(xk, ri.mT), sizes, modes)  # irfftn(R X): (b, h, *spatial)
            # + W x: (b,h,S) + (b,h,w)@(b,w,S)
            u = torch.baddbmm(u.flatten(2), wi.expand(batch, -1, -1), x.flatten(2)).view(u.shape)
            if bias is not None:
                u = u.add_(bias[i].view(-1, *([1] * len(modes))))
            z = torch.relu(u) if activation == "relu" else nn.functional.softplus(u)
            zk = _fft_kept(z, modes)  # (K, b, h)
            t = torch.bmm(zk, ri.conj()).mul_(-2.0)  # -2 R^H Z: (K,b,h)@(K,h,w)->(K,b,w)
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
        g = grad.contiguous()
        sizes = tuple(g.shape[2:])
        batch, n_blocks = g.shape[0], w.shape[0]
        c = _half_weights(g.new_empty(kept_mode_shape(modes)), len(modes))
        c = c.reshape(r.shape[0], 1, 1)  # (K, 1, 1): the real FFT adjoint's factors
        g_r, g_w, g_b = torch.empty_like(r), torch.empty_like(w), w.new_empty(w.shape[:2])
        for i in reversed(range(n_blocks)):
            ri, wi = r[:, i], w[i]
            x, xk, zu, zk = saved[4 * i : 4 * i + 4]
            gk = _fft_kept(g, modes)  # (K, b, width)
            h = _ifft_kept(torch.bmm(gk, ri.mT), sizes, modes).flatten(2)  # irfftn(R G)
            h = torch.baddbmm(h, wi.expand(batch, -1, -1), g.flatten(2))  # K g: (b, h, S)
            if activation == "relu":
                e = torch.ops.aten.threshold_backward(h, zu.flatten(2), 0.0)  # D K g
                z = zu
            else:
                e = torch.ops.aten.softplus_backward(h, zu.flatten(2), 1.0, 20.0)
                z = nn.functional.softplus(zu)
            e = e.view(zu.shape)
            ek = _fft_kept(e, modes)  # (K, b, h)
            g_b[i] = e.flatten(2).sum(dim=(0, 2)).mul_(-2.0)
            # dL/dR_k = -2 c_k (E_k X_k^H + Z_k G_k^H), summed over the batch
            gr = torch.bmm(ek.mT, xk.conj())  # (K,h,b)@(K,b,w)->(K,h,w)
            g_r[:, i] = gr.baddbmm_(zk.mT, gk.conj()).mul_(c).mul_(-2.0)
            # dL/dW = -2 (e x^T + z g^T)
            gw = torch.bmm(e.flatten(2), x.flatten(2).mT)  # (b,h,S)@(b,S,w)->(b,h,w)
            g_w[i] = gw.baddbmm_(z.flatten(2), g.flatten(2).mT).sum(0).mul_(-2.0)
            if i == 0 and not ctx.needs_input_grad[0]:
                break
            # dL/dx = g - 2 W^T e - 2 irfftn(R^H E)
            t = torch.bmm(ek, ri.conj()).mul_(-2.0)  # (K,b,h)@(K,h,w)->(K,b,w)
            gx = torch.baddbmm(g.flatten(2), wi.t().expand(batch, -1, -1), e.flatten(2), alpha=-2.0)
            g = gx.view(g.shape).add_(_ifft_kept(t, sizes, modes))
        grad_x = g if ctx.needs_input_grad[0] else None
        return grad_x, None, None, g_r.reshape(ctx.r_shape), g_w, g_b if ctx.has_bias else None


def _spectral_outer(a: Tensor, b: Tensor) -> Tensor:
    """``Re sum_(k, batch) a b^H``: ``(K, b, h), (K, b, w) -> (h, w)`` real."""
    return torch.mm(a.reshape(-1, a.shape[-1]).mT, b.reshape(-1, b.shape[-1]).conj()).real


class _TrainWeight(torch.autograd.Function):
    """:class:`LipLinear`'s training weight ``c * bjorck(W / ||W u||)`` as one autograd node.

    The forward is the generic path's computation (equal up to float rounding):
    ``sigma = ||W u||`` with the warm-started power vector ``u`` held constant, ``W_0 = W /
    sigma``, then deel-torchlip's ``bjorck_normalization`` loop (``W_{n+1} = (1 + beta) W_n -
    beta W_n W_n^T W_n``, stopped once ``||W_{n+1} - W_n||_F < eps``, the cubic term detached
    after its first few iterations, as deel-torchlip detaches it), then the factor ``c = k *
    TARGET_MARGIN``. The backward is written out instead of recorded (fewer, larger operations
    than the recorded graph of the power step, division and Björck products; a training step
    of a 1-D ``medium`` LipFNO gains up to a few percent, within the run-to-run spread of
    ``benchmarks/medium_step_time.py``): for ``G = dL/dW_{n+1}``,

    - through a Björck step with gradient: ``dL/dW_n = (1 + beta) G - beta (G W_n^T W_n +
      W_n G^T W_n + W_n W_n^T G)`` (the adjoint of ``W -> W W^T W``, three products with the
      forward's Gram matrix saved), detached steps pass ``(1 + beta) G``;
    - through ``W_0 = W / sigma`` with ``sigma = ||W u||``: ``dL/dW = G / sigma - (<G, W> /
      sigma^3) (W u) u^T``.

    Inputs: ``weight`` ``(out, in)``, ``u`` ``(in,)`` (no gradient), ``scale`` ``c``,
    ``orthogonal`` (``False``: no Björck steps). First derivatives only
    (``once_differentiable``). A training device: the certificate is computed from the eval
    weight (float64 SVD), never from this one.
    """

    @staticmethod
    def forward(ctx: Any, weight: Tensor, u: Tensor, scale: float, orthogonal: bool) -> Tensor:
        wu = torch.mv(weight, u)  # (out,)
        sigma = torch.linalg.vector_norm(wu)
        w = weight / sigma
        saved: list[Tensor] = []  # per Björck step with gradient: its iterate and Gram product
        if orthogonal:
            beta, maxiter = _deel.DEFAULT_BETA, _deel.DEFAULT_MAXITER_BJORCK
            rows = w.shape[0] <= w.shape[1]
            for n in range(maxiter):
                old = w
                gram = torch.mm(w, w.t()) if rows else torch.mm(w.t(), w)
                cubic = torch.mm(gram, w) if rows else torch.mm(w, gram)
                w = (1.0 + beta) * w - beta * cubic
                if n < _deel.DEFAULT_BJORK_DETACH:
                    saved += [old, gram]
                else:  # deel-torchlip detaches the cubic term from here on
                    saved += [old.new_empty(0), old.new_empty(0)]
                if not torch.linalg.norm(w - old) >= _deel.DEFAULT_EPS_BJORCK:
                    break
        ctx.scale, ctx.rows = scale, orthogonal and w.shape[0] <= w.shape[1]
        ctx.save_for_backward(weight, u, wu, sigma, *saved)
        return scale * w

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        weight, u, wu, sigma, *saved = ctx.saved_tensors
        beta = _deel.DEFAULT_BETA
        g = grad * ctx.scale
        for i in reversed(range(0, len(saved), 2)):
            w, gram = saved[i], saved[i + 1]
            if not w.numel():
                g = (1.0 + beta) * g
                continue
            # adjoint of W W^T W: rows (A = W W^T): (G W^T + W G^T) W + A G;
            # columns (B = W^T W): G B + W (G^T W + W^T G)
            if ctx.rows:
                p = torch.mm(g, w.t())
                cubic = torch.mm(p + p.t(), w).addmm_(gram, g)
            else:
                q = torch.mm(g.t(), w)
                cubic = torch.mm(w, q + q.t()).addmm_(g, gram)
            g = (1.0 + beta) * g - beta * cubic
        inner = (g * weight).sum() / sigma**3
        return g / sigma - inner * torch.outer(wu, u), None, None, None


class _ClipTrainWeights(torch.autograd.Function):
    """Training weights of ``normalization="clip"`` with a skip, in one node with its backward.

    The same function as the generic path (build ``M_k = W + R_k``, estimate ``sigma_k =
    ||M_k u_k||``, scale each multiplier by ``c_k = 1 / max(1, sigma_k / k)``, restore the
    Hermitian symmetry, split off ``W' = c_W W``), equal up to float rounding: with ``M``
    Hermitian-symmetric, symmetrizing ``c_k M_k`` is ``c'_k M_k`` with the scales ``c`` averaged
    over each conjugate pair (``c'`` = :func:`hermitian_symmetrize` of ``c``), so only a vector of
    scales is symmetrized. About 25 small tensor operations forward and backward each, without
    the autograd graph of 60 that the generic path records (the dominant cost of a 1-D step).

    Inputs: ``weight`` ``(*kept, out, in, 2)`` real (the parameter), ``skip`` ``(out, in)``,
    ``u`` ``(K + 1, in)`` complex power-iteration vectors and ``m`` the stacked multipliers
    ``(K + 1, out, in)`` built from ``weight`` and ``skip`` (both without gradient), ``k``, ``d``.
    Outputs: ``R'`` ``(*kept, out, in)`` complex, ``W'`` ``(out, in)``. With a stack of ``B``
    layers (:func:`clip_train_weights`) every tensor carries a layer axis ``B`` just before
    ``out`` (``weight`` ``(*kept, B, out, in, 2)``, ``skip`` ``(B, out, in)``, ``u``
    ``(K + 1, B, in)``, ``m`` ``(K + 1, B, out, in)``): the same operations for all layers
    at once.
    """

    @staticmethod
    def forward(
        ctx: Any, weight: Tensor, skip: Tensor, u: Tensor, m: Tensor, k: float, d: int
    ) -> tuple[Tensor, Tensor]:
        kept_shape = weight.shape[:d]
        mk = m[:-1]  # M_k = R_k + W (R Hermitian-symmetrized): (K, [B,] out, in)
        v = (m * u.unsqueeze(-2)).sum(-1, keepdim=True)  # M u: (K + 1, [B,] out, 1)
        sigma = torch.linalg.vector_norm(v, dim=(-2, -1))  # (K + 1, [B]) estimates
        c = 1.0 / (sigma / k).clamp_min(1.0)  # (K + 1, [B]) clip scales
        c_sym = _symmetric_scales(c[:-1], kept_shape, d)  # (K, [B]) averaged over conj. pairs
        w_out = c[-1][..., None, None] * skip  # W' = c_W W
        # R' = c'_k M_k - W', on real views (a real factor on a complex tensor is a slow path)
        r_out = torch.view_as_real(mk) * c_sym[..., None, None, None]
        r_out[..., 0] -= w_out
        ctx.save_for_backward(mk, skip, u, v, sigma, c, c_sym)
        ctx.k, ctx.d, ctx.kept_shape = k, d, kept_shape
        return torch.view_as_complex(r_out).reshape(*kept_shape, *mk.shape[1:]), w_out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, g_r: Tensor, g_w: Tensor
    ) -> tuple[Tensor, Tensor, None, None, None, None]:
        mk, skip, u, v, sigma, c, c_sym = ctx.saved_tensors
        g_r = torch.view_as_real(g_r.resolve_conj().reshape(mk.shape))  # (K, [B,] out, in, 2)
        # R' = c'_k M_k - c_W W; W' = c_W W (real views of the complex tensors)
        g_m = g_r * c_sym[..., None, None, None]  # through M_k at fixed scales
        g_c_sym = (g_r * torch.view_as_real(mk)).sum((-3, -2, -1))  # Re <g, M_k>: (K, [B])
        g_r_real_sum = g_r[..., 0].sum(0)  # ([B,] out, in)
        g_c = torch.empty_like(c)
        g_c[:-1] = _symmetric_scales(g_c_sym, ctx.kept_shape, ctx.d)  # averaging: self-adjoint
        g_c[-1] = (g_w * skip).sum((-2, -1)) - (g_r_real_sum * skip).sum((-2, -1))
        g_skip = c[-1][..., None, None] * (g_w - g_r_real_sum)
        # c = 1 / max(1, sigma / k): dc/dsigma = -c / sigma where clipped (sigma > k), else 0.
        # A zero multiplier (sigma = 0, e.g. a zeroed skip) is never clipped and has v = 0: its
        # term is 0, so divide by sigma floored at the smallest normal (0 / 0 would be NaN).
        sigma = sigma.clamp_min(torch.finfo(sigma.dtype).tiny)
        g_sigma = torch.where(sigma / ctx.k >= 1.0, -g_c * c / sigma, torch.zeros_like(c))
        # sigma = ||M u||: d sigma = Re(v^H dM u) / sigma, so dM gets (g_sigma / sigma) v u^H
        outer = (v * (g_sigma / sigma)[..., None, None]) * u.unsqueeze(-2).conj()  # v u^H
        g_m = torch.view_as_complex(g_m) + outer[:-1]
        g_skip = g_skip + outer[-1].real + g_m.real.sum(0)  # M_k = R_k + W
        g_weight = hermitian_symmetrize(g_m.reshape(*ctx.kept_shape, *mk.shape[1:]), ctx.d)
        return torch.view_as_real(g_weight), g_skip, None, None, None, None


def _symmetric_scales(c: Tensor, kept_shape: Sequence[int], d: int) -> Tensor:
    """Real per-mode scales ``(K, [B])`` averaged with their conjugate partner on ``k_d = 0``."""
    shaped = c.reshape(*kept_shape, -1, 1)  # hermitian_symmetrize's (*kept, out, in) layout
    return hermitian_symmetrize(shaped, d).reshape(c.shape)
