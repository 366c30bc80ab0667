"""Fourier layers with a certified operator norm: ``LipSpectralConv`` (N-d) and the fused FNO block.

The math, once for every number of spatial dimensions
---------------------------------------------------
For a real field ``x`` of shape ``(batch, channels, n_1, ..., n_d)`` let ``X = rfftn(x)`` with the
orthonormal normalization (``norm="ortho"``) over the spatial dimensions. A *Fourier multiplier*
maps ``X_k -> A_k X_k`` at every frequency ``k`` (``A_k`` a complex ``out x in`` matrix) and
returns ``irfftn``. With the orthonormal FFT (a unitary map) and liponet's function norm
(``sqrt(mean over grid of sum over channels of u**2)``, which is the Euclidean norm divided by
``sqrt(N)`` on both sides), its operator norm is exactly ``max over all frequencies k of
||A_k||_2``, whatever the resolution.

Kept modes. Mode ``k`` is kept when its signed frequency satisfies ``|k_i| < m_i`` in every
dimension (``modes = (m_1, ..., m_d)``): ``2 m_i - 1`` frequencies in each leading dimension and
the ``m_d`` non-negative ones of the last (rfft) dimension. This differs from the original FNO,
which also keeps ``k_i = -m_i`` in the leading dimensions: that extra frequency has no kept
partner ``+m_i``, so on the ``k_d = 0`` slice (where real inputs are Hermitian) the inverse real
FFT would silently average its multiplier with the one at ``+m_i``, and at ``n_i = 2 m_i`` it
would become a Nyquist frequency. Dropping it makes the kept set symmetric, free of Nyquist
frequencies, and the same at every resolution with ``n_i >= 2 m_i - 1``; in 1-D nothing changes.

Real-FFT symmetry. For real inputs ``X_{-k} = conj(X_k)``, and the real output is what the
full-spectrum multiplier with ``A_{-k} = conj(A_k)`` computes. On the ``k_d = 0`` slice both
``k`` and ``-k`` are stored, so the layer *enforces* ``A_{-k} = conj(A_k)`` there
(:func:`hermitian_symmetrize`; at ``k = 0`` this makes ``A_0`` real). The multiplier the forward
applies is then exactly the one certified, independently of how the FFT backend treats
non-Hermitian input.

The fused block. The spectral path ``K`` plus the pointwise (1x1) skip ``W`` is one Fourier
multiplier: ``M_k = W + R_k`` on kept modes and ``W`` elsewhere. Its exact norm is
``max(max_k ||M_k||_2, ||W||_2)`` (the second term: some frequency is unkept at any resolution);
that, not ``||W|| + max ||R_k||``, is what is constrained and certified.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..functional import (
    GRID_CHUNK_FACTOR,
    GRID_RESIDUAL,
    SVD_RELATIVE_MARGIN,
    TARGET_MARGIN,
    _all_finite,
    _frobenius64,
    _GramTest,
    _PartRows,
    _polar_backward,
    _polar_parts,
    _top_eigenvalue_estimate,
    _vector_norm,
    add_up,
    cayley_unitary,
    cholesky_norm_upper,
    chunks,
    conj_t,
    distance_upper,
    distance_upper_fast,
    grid_norm_upper,
    grid_norm_upper_parts,
    isometry_norm_upper,
    perturbed_norm_upper,
    polar_eigh,
    polar_factor,
    polish_isometry,
    polished_isometry_bound,
    qr_unitary,
    scale_multipliers,
    scale_multipliers_error,
    spectral_norm_exact,
    spectral_norm_upper,
)
from .activation import make_activation
from .base import CertifiedModule
from .cache import WeightKeyedCache

__all__ = [
    "NORMALIZATIONS",
    "FourierBlock",
    "LipSpectralConv",
    "PaddedDomain",
    "SpectralMultiplier",
    "check_field",
    "exact_train_norms",
    "hermitian_symmetrize",
    "kept_mode_shape",
    "spectral_apply",
    "warm_polar_train",
]


def kept_mode_shape(modes: Sequence[int]) -> tuple[int, ...]:
    """Shape of the kept-mode block: ``(2 m_1 - 1, ..., 2 m_{d-1} - 1, m_d)``."""
    return (*(2 * m - 1 for m in modes[:-1]), modes[-1])


def check_field(x: Tensor, channels: int, modes: Sequence[int], name: str = "input") -> None:
    """Raise a clear ``ValueError`` unless ``x`` is a ``(batch, channels, *spatial)`` field fitting.

    Every spatial size ``n_i`` must satisfy ``n_i >= 2 m_i - 1`` (the kept frequencies
    ``|k_i| < m_i`` must exist on the grid).
    """
    d = len(modes)
    if x.ndim != d + 2:
        raise ValueError(
            f"{name} must have shape (batch, {channels}, *spatial) with {d} spatial "
            f"dimension(s) (rank {d + 2}), got rank {x.ndim}: {tuple(x.shape)}"
        )
    if x.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channels (dim 1), got {x.shape[1]}")
    for i, (n, m) in enumerate(zip(x.shape[2:], modes, strict=True)):
        if n < 2 * m - 1:
            raise ValueError(
                f"{name}: spatial size {n} of dimension {i} is too small for modes[{i}]={m} "
                f"(needs >= 2*{m}-1 = {2 * m - 1} grid points)"
            )


def hermitian_symmetrize(w: Tensor, d: int) -> Tensor:
    """Enforce ``A_{-k} = conj(A_k)`` on the ``k_d = 0`` slice of kept-mode matrices.

    Parameters
    ----------
    w
        Complex ``(*kept, out, in)`` with ``kept = kept_mode_shape(modes)`` (centred layout in the
        leading dimensions: index ``c`` is frequency ``c - (m_i - 1)``).
    d
        Number of spatial dimensions.

    Returns
    -------
    Tensor
        Same shape: on the zero slice ``(A_k + conj(A_{-k})) / 2`` (real at ``k = 0``), unchanged
        elsewhere. It has norm ``<= max(||A_k||, ||A_{-k}||)``, so it never raises a bound.
    """
    zero = w.select(d - 1, 0)  # (*kept_leading, out, in)
    mirrored = zero.flip(dims=tuple(range(d - 1))) if d > 1 else zero
    zero_sym = (zero + mirrored.conj()) / 2
    return torch.cat([zero_sym.unsqueeze(d - 1), w.narrow(d - 1, 1, w.shape[d - 1] - 1)], d - 1)


def _gather_modes(spec: Tensor, modes: Sequence[int]) -> Tensor:
    """Kept modes of an rfftn spectrum ``(b, c, *freq) -> (b, c, *kept)`` (centred layout)."""
    d = len(modes)
    out = spec.narrow(-1, 0, modes[-1])
    for i, m in enumerate(modes[:-1]):
        dim = 2 + i
        n = spec.shape[dim]
        out = torch.cat([out.narrow(dim, n - m + 1, m - 1), out.narrow(dim, 0, m)], dim)
    assert out.ndim == d + 2
    return out


def _scatter_modes(kept: Tensor, sizes: Sequence[int], modes: Sequence[int]) -> Tensor:
    """Inverse of :func:`_gather_modes` for the leading dims; the last dim stays ``m_d`` long."""
    out = kept
    for i, (n, m) in enumerate(zip(sizes[:-1], modes[:-1], strict=True)):
        dim = 2 + i
        shape = list(out.shape)
        shape[dim] = n - 2 * m + 1
        gap = out.new_zeros(shape)
        out = torch.cat([out.narrow(dim, m - 1, m), gap, out.narrow(dim, 0, m - 1)], dim)
    return out


def _half_weights(kept: Tensor, d: int) -> Tensor:
    """``(*kept_shape)`` real factors: 1 on the ``k_d = 0`` slice, 2 on every other kept mode.

    With the orthonormal real FFT (no Nyquist frequency is ever kept), ``irfftn`` counts each
    kept frequency with ``k_d >= 1`` twice (it and its conjugate partner) and the ``k_d = 0``
    slice once: these are the factors relating the adjoints of the two kept-mode transforms.
    """
    c = torch.full(kept.shape[-d:], 2.0, dtype=kept.real.dtype, device=kept.device)
    c.select(d - 1, 0).fill_(1.0)
    return c


def _kept_rfftn(x: Tensor, modes: tuple[int, ...]) -> Tensor:
    d = len(modes)
    return _gather_modes(torch.fft.rfftn(x, dim=tuple(range(2, 2 + d)), norm="ortho"), modes)


def _kept_irfftn(yk: Tensor, sizes: tuple[int, ...], modes: tuple[int, ...]) -> Tensor:
    d = len(modes)
    full = _scatter_modes(yk, sizes, modes)  # irfftn zero-pads the last dimension itself
    return torch.fft.irfftn(full, s=sizes, dim=tuple(range(2, 2 + d)), norm="ortho")


class _KeptRFFT(torch.autograd.Function):
    """``x -> kept modes of rfftn(x, norm="ortho")`` with a cheap exact backward.

    Autograd's own backward of ``rfftn`` zero-pads the gradient to the full two-sided spectrum
    and runs a complex FFT of the whole grid. The gradient only lives on the kept modes, and for
    real ``x`` it is ``Re(sum_k G_k e^{+i k.x}) / sqrt(N)`` over the stored (one-sided) modes,
    i.e. ``irfftn`` of ``G`` with the modes it doubles (``k_d >= 1``) halved.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, modes: tuple[int, ...]) -> Tensor:
        ctx.sizes, ctx.modes, ctx.dtype = tuple(x.shape[2:]), modes, x.dtype
        if x.dtype in (torch.float16, torch.bfloat16):
            # Half-precision activations (autocast) enter the FFT in float32: CPU FFTs reject
            # bfloat16 and cuFFT supports half types only for some sizes.
            x = x.float()
        return _kept_rfftn(x, modes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        halved = grad / _half_weights(grad, len(ctx.modes))
        return _kept_irfftn(halved, ctx.sizes, ctx.modes).to(ctx.dtype), None


class _KeptIRFFT(torch.autograd.Function):
    """``kept modes -> irfftn(zero-filled spectrum, norm="ortho")`` with its adjoint as backward.

    The backward is ``rfftn`` of the gradient on the kept modes, doubled where ``irfftn`` doubles
    (``k_d >= 1``); it skips autograd's zero-padded copies of the spectrum.
    """

    @staticmethod
    def forward(ctx: Any, yk: Tensor, sizes: tuple[int, ...], modes: tuple[int, ...]) -> Tensor:
        ctx.modes = modes
        return _kept_irfftn(yk, sizes, modes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        gk = _kept_rfftn(grad, ctx.modes)
        return gk * _half_weights(gk, len(ctx.modes)), None, None


# The same two transforms as registered operators (``torch.library.custom_op`` with fake
# implementations and autograd formulas), so that ``torch.export``, ``torch.compile`` and
# ``torch.jit.trace`` see opaque, shape-propagating ops instead of Python autograd Functions.
# Eager calls keep the autograd Functions above (no dispatcher round trip: measured cheaper on
# small grids); both run the same ``_kept_rfftn`` / ``_kept_irfftn``.


@torch.library.custom_op("liponet::kept_rfftn", mutates_args=())
def kept_rfftn(x: Tensor, modes: list[int]) -> Tensor:
    """Kept modes of ``rfftn(x, norm="ortho")``: ``(b, c, *spatial) -> (b, c, *kept)`` complex."""
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    return _kept_rfftn(x, tuple(modes)).clone()


@kept_rfftn.register_fake
def _kept_rfftn_fake(x: Tensor, modes: list[int]) -> Tensor:
    dtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    return x.new_empty((x.shape[0], x.shape[1], *kept_mode_shape(modes)), dtype=dtype)


@torch.library.custom_op("liponet::kept_irfftn", mutates_args=())
def kept_irfftn(yk: Tensor, sizes: list[int], modes: list[int]) -> Tensor:
    """``irfftn`` of the zero-filled spectrum holding the kept modes ``yk``: ``(b, c, *sizes)``."""
    return _kept_irfftn(yk, tuple(sizes), tuple(modes))


@kept_irfftn.register_fake
def _kept_irfftn_fake(yk: Tensor, sizes: list[int], modes: list[int]) -> Tensor:
    dtype = torch.float64 if yk.dtype == torch.complex128 else torch.float32
    return yk.new_empty((yk.shape[0], yk.shape[1], *sizes), dtype=dtype)


def _rfftn_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    x, modes = inputs
    ctx.sizes, ctx.modes, ctx.dtype = list(x.shape[2:]), list(modes), x.dtype


def _rfftn_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
    halved = grad / _half_weights(grad, len(ctx.modes))
    return kept_irfftn(halved, ctx.sizes, ctx.modes).to(ctx.dtype), None


def _irfftn_setup(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    ctx.modes = list(inputs[2])


def _irfftn_backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
    gk = kept_rfftn(grad, ctx.modes)
    return gk * _half_weights(gk, len(ctx.modes)), None, None


kept_rfftn.register_autograd(_rfftn_backward, setup_context=_rfftn_setup)
kept_irfftn.register_autograd(_irfftn_backward, setup_context=_irfftn_setup)


def _tracing() -> bool:
    """Whether a graph is being captured (``torch.compile``/``torch.export``/``jit.trace``)."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def kept_spectrum(x: Tensor, modes: Sequence[int]) -> Tensor:
    """Kept modes of ``rfftn(x, norm="ortho")``: ``(b, c, *spatial) -> (b, c, *kept)`` complex.

    Differentiable with the cheap exact backward of :class:`_KeptRFFT` (the registered op
    ``liponet::kept_rfftn`` while a graph is captured).
    """
    if _tracing():
        return kept_rfftn(x, list(modes))
    return _KeptRFFT.apply(x, tuple(modes))


def from_kept_spectrum(yk: Tensor, sizes: Sequence[int], modes: Sequence[int]) -> Tensor:
    """``irfftn`` of the zero-filled spectrum holding the kept modes: ``(b, c, *sizes)`` real.

    The inverse of :func:`kept_spectrum` on fields whose spectrum lives on the kept modes;
    differentiable (:class:`_KeptIRFFT`, or ``liponet::kept_irfftn`` while a graph is captured).
    """
    if _tracing():
        return kept_irfftn(yk, [int(n) for n in sizes], list(modes))
    return _KeptIRFFT.apply(yk, tuple(sizes), tuple(modes))


class _MixModes(torch.autograd.Function):
    """``Y_k = R_k X_k`` as one batched matmul over modes, operands laid out mode-major.

    ``einsum("bik,koi->bok")`` hands ``bmm`` mode slices ``(b, in)`` whose inner stride is the
    mode count; for complex tensors that takes ATen's per-mode loop, cloning both operands of
    every mode (forward and both backward products). Here each side is copied once into a
    ``(K, b, c)`` layout, so every product is a single batched GEMM.
    """

    @staticmethod
    def forward(ctx: Any, xk: Tensor, w: Tensor) -> Tensor:
        xt = xk.permute(2, 0, 1).contiguous()  # (K, b, in)
        ctx.save_for_backward(xt, w)
        return torch.bmm(xt, w.transpose(1, 2)).permute(1, 2, 0)  # (K,b,in)@(K,in,out)->(b,out,K)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        xt, w = ctx.saved_tensors
        gt = grad.permute(2, 0, 1).contiguous()  # (K, b, out)
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.bmm(gt, w.conj()).permute(1, 2, 0)  # (K,b,out)@(K,out,in)->(b,in,K)
        if ctx.needs_input_grad[1]:
            gw = torch.bmm(gt.transpose(1, 2), xt.conj())  # (K,out,b)@(K,b,in)->(K,out,in)
        return gx, gw


def mix_modes(xk: Tensor, kept: Tensor) -> Tensor:
    """``Y_k = R_k X_k`` at every kept mode.

    ``(b, in, *kept), (*kept, out, in) -> (b, out, *kept)``, complex; ``kept`` may be a lazy
    conjugate-transposed view (as :func:`~liponet.layers.residual.adjoint_weights` returns).
    """
    kept_shape = xk.shape[2:]
    flat = xk.reshape(xk.shape[0], xk.shape[1], -1)  # (b, in, K)
    w = kept.reshape(-1, kept.shape[-2], kept.shape[-1])  # (K, out, in)
    if _tracing():  # plain ops for graph capture
        yk = torch.einsum("bik,koi->bok", flat, w)  # (b,in,K),(K,out,in)->(b,out,K)
    else:
        yk = _MixModes.apply(flat, w)  # (b, out, K)
    return yk.reshape(yk.shape[0], yk.shape[1], *kept_shape)  # (b, out, *kept)


def spectral_apply(
    x: Tensor, kept: Tensor, skip: Tensor | None, bias: Tensor | None, modes: Sequence[int]
) -> Tensor:
    """``y = W x + irfftn(R_k X_k on kept modes) + b``: the one code path of every Fourier layer.

    Parameters
    ----------
    x
        Real ``(batch, in, *spatial)``.
    kept
        Complex ``(*kept, out, in)`` spectral weights ``R_k`` (Hermitian on the ``k_d = 0`` slice).
    skip
        Real ``(out, in)`` pointwise weight ``W`` or ``None``.
    bias
        ``(out,)`` or ``None``.
    modes
        ``(m_1, ..., m_d)``.

    Returns
    -------
    Tensor
        Real ``(batch, out, *spatial)``.
    """
    sizes = tuple(x.shape[2:])
    xk = kept_spectrum(x, modes)  # (b, in, *kept)
    y = from_kept_spectrum(mix_modes(xk, kept), sizes, modes)  # (b, out, *spatial)
    d = len(modes)
    if skip is not None:  # y + W x in one fused call: (b,out,S) + (b,out,in)@(b,in,S)
        flat = torch.baddbmm(y.flatten(2), skip.expand(x.shape[0], -1, -1), x.flatten(2))
        y = flat.view(y.shape)
    if bias is not None:
        y = y + bias.view(-1, *([1] * d))
    return y


def _power_vectors(m: Tensor, u: Tensor, n_iter: int) -> Tensor:
    """Warm-started power iteration on ``(K, out, in)`` (no grad): new right vectors ``(K, in)``.

    The same iteration as :func:`liponet.functional.power_iteration`, batched over any leading
    axes. The matrix-vector products are products and sums over the last axes: for many small
    complex matrices several times cheaper on a CPU than a batched matmul (measured: 1108
    ``20 x 20`` multipliers of a 2-D LipFNO).
    """
    for _ in range(n_iter):
        v = nn.functional.normalize((m * u.unsqueeze(-2)).sum(-1), dim=-1)  # M u: (K, out)
        u = nn.functional.normalize((m.conj() * v.unsqueeze(-1)).sum(-2), dim=-1)  # M^H v: (K, in)
    return u


def exact_vectors(m: Tensor) -> Tensor:
    """Exact top right singular vectors of ``(..., out, in)`` complex matrices: ``(..., in)``.

    The eigenvector of the largest eigenvalue of the Gram ``M^H M``, formed and decomposed in
    complex128 (one batched ``eigh``), returned in ``m``'s dtype: ``||M u||`` is then ``||M||``
    up to ``m``'s rounding, the norm that :func:`_power_vectors` approaches from below.

    Examples
    --------
    >>> import torch
    >>> m = torch.randn(3, 5, 4, dtype=torch.complex64)
    >>> u = exact_vectors(m)
    >>> sigma = torch.linalg.vector_norm(m @ u.unsqueeze(-1), dim=(-2, -1))
    >>> torch.allclose(sigma, torch.linalg.matrix_norm(m, ord=2), rtol=1e-5)
    True
    """
    m64 = m.to(torch.complex128)
    return torch.linalg.eigh(m64.mH @ m64)[1][..., -1].to(m.dtype)  # eigh sorts ascending


def _train_vectors(m: Tensor, u: Tensor, n_iter: int, exact: bool) -> Tensor:
    """Right vectors of a training forward: exact (:func:`exact_vectors`) or power-iterated."""
    return exact_vectors(m) if exact else _power_vectors(m, u, n_iter)


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
        c_sym = _train_scales(c[:-1], kept_shape, d)  # (K, [B]) averaged over conj. pairs
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
        g_c[:-1] = _train_scales(g_c_sym, ctx.kept_shape, ctx.d)  # averaging: self-adjoint
        g_c[-1] = (g_w * skip).sum((-2, -1)) - (g_r_real_sum * skip).sum((-2, -1))
        g_skip = c[-1][..., None, None] * (g_w - g_r_real_sum)
        # c = 1 / max(1, sigma / k): dc/dsigma = -c / sigma where clipped (sigma > k), else 0.
        # A zero multiplier (sigma = 0, e.g. a zeroed skip) is never clipped and has v = 0: its
        # term is 0, so divide by sigma floored at the smallest normal (0 / 0 would be NaN).
        sigma = sigma.clamp_min(torch.finfo(sigma.dtype).tiny)
        g_sigma = torch.where(sigma / ctx.k >= 1.0, -g_c * c / sigma, 0.0)
        # sigma = ||M u||: d sigma = Re(v^H dM u) / sigma, so dM gets (g_sigma / sigma) v u^H
        outer = (v * (g_sigma / sigma)[..., None, None]) * u.unsqueeze(-2).conj()  # v u^H
        g_m = torch.view_as_complex(g_m) + outer[:-1]
        g_skip = g_skip + outer[-1].real + g_m.real.sum(0)  # M_k = R_k + W
        g_weight = hermitian_symmetrize(g_m.reshape(*ctx.kept_shape, *mk.shape[1:]), ctx.d)
        return torch.view_as_real(g_weight), g_skip, None, None, None, None


#: Default of :func:`warm_polar_train`: the largest relative off-diagonal entry
#: ``|S_ij| / (S_ii + S_jj)`` of the Gram matrix in the warm basis that a warm step accepts.
#: The first-order polar factor is then within about ``10 tol^2`` of the exact one entrywise
#: (``1e-4`` here, ``tests/test_warm_polar.py``); at ``1e-3`` (``1e-5``, the float32 ``eigh``
#: path's own error) Adam steps of ``1e-4`` are accepted only every other call.
WARM_POLAR_TOL = 3e-3

#: Exact calls before the next warm attempt when the first one after a refresh is rejected
#: (steps too large for the warm basis: its two products would be wasted every call).
WARM_POLAR_COOLDOWN = 4


#: Layout version of :class:`_WarmPolar`'s extra state (``state_dict`` key
#: ``<layer>.warm_polar._extra_state``).
WARM_POLAR_STATE_VERSION = 1

#: Largest entry of ``|V0^H V0 - I|`` a loaded warm basis may have (an ``eigh`` basis in float32
#: is unitary to a few ``1e-7``): a basis further from unitary is refused, not used.
WARM_POLAR_UNITARY_TOL = 1e-3


class _WarmPolar(nn.Module):
    """The warm basis of one layer's ``"orthogonal"`` training forward, as module state.

    ``v0`` ``(B, q, q)``: the right singular vectors of the layer's ``B`` independent
    multipliers (``q`` the smaller channel count) at the last exact call (``None`` before the
    first). :meth:`attempt` computes the polar factors of tall ``A`` ``(B, p, q)`` to first
    order around that basis, or returns ``None`` (the caller computes them exactly and calls
    :meth:`refresh`). ``tol`` (0: off, every call exact), ``v0``, ``cooldown`` and ``fresh``
    decide every later call, so they are the module's extra state (``state_dict()`` key
    ``warm_polar._extra_state``, plain data and one complex tensor): a run resumed from a
    checkpoint takes bitwise the calls of the uninterrupted one. A state dict without the key
    (a checkpoint written before the warm default) loads, strict or not, and the layer starts
    exact (``v0 = None``, the constructor's ``tol``); a malformed one (other keys, types,
    shape, a non-finite or non-unitary basis) is refused with a ``ValueError`` naming the key.
    ``calls`` and ``warm_calls`` count attempts-or-exact calls and accepted warm ones (for
    benchmarks; not state). The basis is not moved by ``.to()``: on another device or dtype
    than the weights the next call is exact and refreshes it.

    Examples
    --------
    >>> warm = _WarmPolar(WARM_POLAR_TOL, n_matrices=5, size=3)
    >>> sorted(warm.state_dict())
    ['_extra_state']
    >>> warm.get_extra_state()["v0"] is None
    True
    """

    #: A state dict may lack this module's key (checkpoints from before the warm default):
    #: :func:`liponet.train.check_state_shapes` does not require it.
    state_optional = True

    def __init__(self, tol: float, n_matrices: int, size: int) -> None:
        super().__init__()
        self.tol = tol
        self.shape = (n_matrices, size, size)
        self.v0: Tensor | None = None
        self.cooldown = 0
        self.fresh = True
        self.calls = 0
        self.warm_calls = 0

    def reset(self) -> None:
        """Forget the basis: the next call is exact (and sets a new one)."""
        self.v0 = None
        self.cooldown = 0
        self.fresh = True

    def refresh(self, vh: Tensor) -> None:
        # contiguous, as a loaded copy is: the products see the same layout either way
        self.v0 = conj_t(vh).resolve_conj().contiguous()
        self.fresh = True

    def attempt(self, a: Tensor) -> tuple[Tensor, tuple[Tensor, ...]] | None:
        self.calls += 1
        v0 = self.v0
        if v0 is None or v0.shape != (a.shape[0], a.shape[-1], a.shape[-1]):
            return None
        if v0.dtype != a.dtype or v0.device != a.device:
            return None
        if self.cooldown > 0:
            self.cooldown -= 1
            return None
        result = _warm_polar(a, v0, self.tol)
        if result is None:
            self.cooldown = WARM_POLAR_COOLDOWN if self.fresh else 0
            return None
        self.fresh = False
        self.warm_calls += 1
        return result

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "version": WARM_POLAR_STATE_VERSION,
            "tol": float(self.tol),
            "v0": self.v0,
            "cooldown": int(self.cooldown),
            "fresh": bool(self.fresh),
        }

    def set_extra_state(self, state: Any) -> None:
        keys = {"version", "tol", "v0", "cooldown", "fresh"}
        if not isinstance(state, dict) or set(state) != keys:
            got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"expected a dict with keys {sorted(keys)}, got {got}")
        if type(state["version"]) is not int or state["version"] != WARM_POLAR_STATE_VERSION:
            raise ValueError(
                f"version {state['version']!r} is not supported (this liponet reads "
                f"{WARM_POLAR_STATE_VERSION})"
            )
        tol, cooldown, fresh, v0 = state["tol"], state["cooldown"], state["fresh"], state["v0"]
        if type(tol) is not float or not (math.isfinite(tol) and tol >= 0.0):
            raise ValueError(f"tol must be a finite float >= 0, got {tol!r}")
        if type(cooldown) is not int or not 0 <= cooldown <= WARM_POLAR_COOLDOWN:
            raise ValueError(
                f"cooldown must be an int in [0, {WARM_POLAR_COOLDOWN}], got {cooldown!r}"
            )
        if type(fresh) is not bool:
            raise ValueError(f"fresh must be a bool, got {fresh!r}")
        if v0 is not None:
            if not isinstance(v0, Tensor) or v0.dtype not in (torch.complex64, torch.complex128):
                what = v0.dtype if isinstance(v0, Tensor) else type(v0).__name__
                raise ValueError(f"v0 must be None or a complex tensor, got {what}")
            if tuple(v0.shape) != self.shape:
                raise ValueError(
                    f"v0 has shape {tuple(v0.shape)}, the layer's basis is {self.shape}"
                )
            if not bool(torch.isfinite(torch.view_as_real(v0)).all()):
                raise ValueError("v0 has NaN or infinite entries")
            eye = torch.eye(self.shape[-1], dtype=v0.dtype, device=v0.device)
            gap = float((conj_t(v0) @ v0 - eye).abs().max()) if v0.numel() else 0.0
            if not gap <= WARM_POLAR_UNITARY_TOL:
                raise ValueError(
                    f"v0 is not unitary (max |V0^H V0 - I| = {gap:.3g} > "
                    f"{WARM_POLAR_UNITARY_TOL:g})"
                )
            v0 = v0.clone(memory_format=torch.contiguous_format)
        self.tol, self.v0, self.cooldown, self.fresh = tol, v0, cooldown, fresh

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "_extra_state"
        present = key in state_dict
        try:
            super()._load_from_state_dict(
                state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                error_msgs,
            )  # fmt: skip
        except ValueError as err:
            raise ValueError(f"state_dict key {key!r}: malformed warm polar state: {err}") from None
        if not present:  # a checkpoint from before the warm default: start exact
            self.reset()
            if key in missing_keys:
                missing_keys.remove(key)

    def extra_repr(self) -> str:
        return f"tol={self.tol:g}"


def _warm_polar(a: Tensor, v0: Tensor, tol: float) -> tuple[Tensor, tuple[Tensor, ...]] | None:
    """Polar factors of tall ``a`` ``(B, p, q)`` to first order around the basis ``v0``.

    ``Z = A V0``, ``S = Z^H Z = V0^H (A^H A) V0`` (nearly diagonal when ``V0`` is the right
    singular basis of nearby matrices), and ``S^(-1/2) ~ T = D^(-1/2) - (S - D) o Phi`` with
    ``D = diag(S)`` and the divided differences of ``x^(-1/2)``, ``Phi_ij = 1 / (s_i s_j (s_i +
    s_j))``, ``s = sqrt(diag S)`` (Daleckii-Krein; no division by eigenvalue gaps). ``Q = Z T
    V0^H``: the polar factor ``A (A^H A)^(-1/2)`` up to second order in ``(S - D) / D``.
    ``None`` when some ``|S_ij| / (S_ii + S_jj)`` (``i != j``) exceeds ``tol``, or ``S`` has a
    non-positive or non-finite diagonal. Also returns the factors ``(U ~ Z T, s, V0^H)`` at
    which the backward takes the polar factor's closed form
    (:func:`~liponet.functional._polar_backward`): the polar factor's gradient up to first
    order in ``(S - D) / D`` (not the exact gradient of this first-order map, whose extra
    terms cost more than the ``eigh`` saved).
    """
    z = a @ v0
    s = conj_t(z) @ z
    d = s.diagonal(dim1=-2, dim2=-1).real
    off = s.abs() / (d.unsqueeze(-1) + d.unsqueeze(-2))
    off.diagonal(dim1=-2, dim2=-1).zero_()
    if not bool((d.amin() > 0) & (off.amax() <= tol)):  # NaN compares False: rejected
        return None
    sd = d.sqrt()
    ssum = sd.unsqueeze(-1) + sd.unsqueeze(-2)
    phi = 1.0 / (sd.unsqueeze(-1) * sd.unsqueeze(-2) * ssum)
    t = torch.view_as_complex(torch.view_as_real(s) * (-phi).unsqueeze(-1))
    t.diagonal(dim1=-2, dim2=-1).copy_(1.0 / sd)
    x = z @ t  # the left factor U, to the same order
    vh = conj_t(v0)
    return x @ vh, (x, sd, vh)


#: Whether ``"orthogonal"`` trains through :class:`_OrthogonalTrainWeights` (one node).
FUSED_ORTHOGONAL_TRAIN = True


class _OrthogonalTrainWeights(torch.autograd.Function):
    """``"orthogonal"``'s training weights of one layer as one autograd node (no glue graph).

    The same function as :meth:`LipSpectralConv._train_norm_free` with
    :func:`~liponet.functional.polar_eigh` (the same floats forward): the independent
    multipliers ``M = [(Z_l + conj Z_{L-1-l}) / 2 + W (l >= half); R_k + W (k_d > 0); W]``
    written once into one buffer, their unitary polar factors ``Q`` (one batched ``eigh`` of
    the Gram matrices), and ``R' = k Q - W'``, ``W' = Re(k Q_W)``, the mirrored half of the
    ``k_d = 0`` slice filled with conjugates. The backward is the adjoint of each step written
    out (the polar factor's closed form, as :func:`~liponet.functional.polar_eigh`'s, and the
    mirror / symmetrization / skip sums), so the slices, concatenations and broadcasts of the
    generic path record no autograd nodes of their own (about 6% of a 2-D train step).

    With ``warm`` (the layer's default, :func:`warm_polar_train`) the polar factors may
    instead be first order around the last exact call's basis (:func:`_warm_polar`), the
    backward the same closed form at those factors; a rejected warm attempt falls back to the
    exact factors.

    Inputs: ``weight`` ``(*kept, out, in, 2)`` real (the parameter), ``skip`` ``(out, in)`` or
    an empty tensor (no skip), ``k``, ``n_lead`` (the product of the leading kept sizes, odd),
    ``m_d`` (the last kept size), ``warm`` (``None``: exact). Outputs: ``R'`` ``(n_lead, m_d,
    out, in)`` complex and ``W'`` ``(out, in)`` real (empty without a skip).
    """

    @staticmethod
    def forward(
        ctx: Any,
        weight: Tensor,
        skip: Tensor,
        k: float,
        n_lead: int,
        m_d: int,
        warm: _WarmPolar | None = None,
    ) -> tuple[Tensor, Tensor]:
        o, i = weight.shape[-3:-1]
        half = (n_lead - 1) // 2
        n_top, n_rest = n_lead - half, n_lead * (m_d - 1)
        has_skip = skip.numel() > 0  # an empty ``skip``: none
        raw = torch.view_as_complex(weight).reshape(n_lead, m_d, o, i)
        m = raw.new_empty(n_top + n_rest + int(has_skip), o, i)
        zero = raw[:, 0]
        top = m[:n_top]
        torch.add(zero[half:], zero[: half + 1].flip(0).conj(), out=top)
        top.div_(2)
        rest = m[n_top : n_top + n_rest].view(n_lead, m_d - 1, o, i)
        if has_skip:
            w = skip.to(raw.dtype)
            top.add_(w)
            torch.add(raw[:, 1:], w, out=rest)
            m[-1] = w
        else:
            rest.copy_(raw[:, 1:])
        wide = o < i
        a = conj_t(m) if wide else m  # tall or square
        warm_result = None if warm is None else warm.attempt(a)
        if warm_result is None:  # the exact polar factors (one eigh); the next warm basis
            u, s, vh = _polar_parts(a)
            q = u @ vh
            saved: tuple[Tensor, ...] = (u, s, vh)
            if warm is not None:
                warm.refresh(vh)
        else:
            q, saved = warm_result
        if wide:
            q = conj_t(q)
        q = k * q
        r_out = raw.new_empty(n_lead, m_d, o, i)
        w_out = q[-1].real if has_skip else q.real.new_empty(0)
        sub = w_out if has_skip else 0.0
        torch.sub(q[n_top : n_top + n_rest].view(n_lead, m_d - 1, o, i), sub, out=r_out[:, 1:])
        torch.sub(q[:n_top], sub, out=r_out[half:, 0])
        r_out[:half, 0] = r_out[half + 1 :, 0].flip(0).conj()
        ctx.save_for_backward(*saved)
        ctx.k, ctx.dims, ctx.has_skip = k, (n_lead, m_d, o, i), has_skip
        ctx.weight_shape = weight.shape
        return r_out, w_out.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(
        ctx: Any, g_r: Tensor, g_w: Tensor
    ) -> tuple[Tensor, Tensor | None, None, None, None, None]:
        n_lead, m_d, o, i = ctx.dims
        half = (n_lead - 1) // 2
        n_top, n_rest = n_lead - half, n_lead * (m_d - 1)
        g_r = g_r.resolve_conj()
        g_q = g_r.new_empty(n_top + n_rest + int(ctx.has_skip), o, i)
        g_q[n_top : n_top + n_rest].view(n_lead, m_d - 1, o, i).copy_(g_r[:, 1:])
        g_top = g_q[:n_top]
        g_top.copy_(g_r[half:, 0])
        g_top[1:] += g_r[:half, 0].flip(0).conj()
        if ctx.has_skip:  # W' = Re(k Q_W) enters every R' = k Q - W' with a minus sign
            g_q[-1] = g_w - torch.view_as_real(g_r)[..., 0].sum((0, 1))
        g_q.mul_(ctx.k)
        wide = o < i
        u, s, vh = ctx.saved_tensors
        g_m = _polar_backward(u, s, vh, conj_t(g_q) if wide else g_q)
        if wide:
            g_m = conj_t(g_m)
        g_weight = g_m.new_empty(n_lead, m_d, o, i)
        g_weight[:, 1:] = g_m[n_top : n_top + n_rest].view(n_lead, m_d - 1, o, i)
        g_up = g_m[:n_top] / 2  # the symmetrized zero slice: (Z_l + conj Z_{L-1-l}) / 2
        g_zero = g_weight[:, 0]
        g_zero[half:] = g_up
        g_zero[:half] = 0.0
        g_zero[: half + 1] += g_up.flip(0).conj()
        g_skip = g_m.real.sum(0) if ctx.has_skip else None
        g_weight = torch.view_as_real(g_weight).reshape(ctx.weight_shape)
        return g_weight, g_skip, None, None, None, None


def _symmetric_scales(c: Tensor, kept_shape: Sequence[int], d: int) -> Tensor:
    """Real per-mode scales ``(K, [B])`` averaged with their conjugate partner on ``k_d = 0``."""
    shaped = c.reshape(*kept_shape, -1, 1)  # hermitian_symmetrize's (*kept, out, in) layout
    return hermitian_symmetrize(shaped, d).reshape(c.shape)


def _train_scales(c: Tensor, kept_shape: Sequence[int], d: int) -> Tensor:
    """:func:`_symmetric_scales` of the training node: in 1-D ``c`` itself, the same bits.

    In 1-D the ``k_d = 0`` slice is the zero frequency alone, its own partner: ``(c_0 + c_0) /
    2 = c_0`` exactly in floats for real scales, so the averaging's copies are skipped.
    """
    return c if d == 1 else _symmetric_scales(c, kept_shape, d)


def _global(m: Tensor, sigma: Tensor, k: float) -> Tensor:
    """Divide every multiplier by the largest norm of all: operator norm exactly ``k``."""
    return m * (k / sigma.max())


def _clip(m: Tensor, sigma: Tensor, k: float) -> Tensor:
    """Shrink each multiplier whose norm exceeds ``k`` to norm ``k``; leave the others."""
    return m / (sigma / k).clamp_min(1.0)[:, None, None]


def _orthogonal(m: Tensor, sigma: Tensor, k: float) -> Tensor:
    """``k`` times the unitary polar factor of every multiplier, by ``eigh`` of its Gram.

    What Björck iterations converge to (:func:`~liponet.functional.polar_eigh`, one pass, with
    the polar decomposition's closed-form backward). Eval weights (no gradient) get one float64
    Newton-Schulz step (:func:`~liponet.functional.polish_isometry`) and are rounded once, so
    their singular values are ``k`` up to that rounding; the layer's eval path computes them
    through :data:`POLISHED_EVAL` (the same floats, with bounds of their norms).
    """
    if m.requires_grad and torch.is_grad_enabled():
        return k * polar_eigh(m)
    return _polished(polar_eigh(m), k)


def _polished(q: Tensor, k: float) -> Tensor:
    """``k`` times ``q`` after one float64 Newton-Schulz step, rounded once to ``q``'s dtype."""
    wide = torch.complex128 if q.is_complex() else torch.float64
    return (k * polish_isometry(q.to(wide))).to(q.dtype)


def _polar(m: Tensor, sigma: Tensor, k: float) -> Tensor:
    """``k`` times the nearest unitary matrix of every multiplier (its polar factor, one SVD).

    Eval weights (no gradient) are polished in float64 and rounded once, as ``"orthogonal"``'s.
    """
    if m.requires_grad and torch.is_grad_enabled():
        return k * polar_factor(m)
    return _polished(polar_factor(m), k)


def _qr(m: Tensor, sigma: Tensor, k: float) -> Tensor:
    """``k`` times the unitary QR factor of every multiplier (``diag(R) > 0``; no norm needed).

    Eval weights (no gradient) are computed in float64 and rounded once.
    """
    if m.requires_grad and torch.is_grad_enabled():
        return k * qr_unitary(m)
    return (k * qr_unitary(m.to(torch.complex128))).to(m.dtype)


def _cayley(m: Tensor, sigma: Tensor, k: float) -> Tensor:
    """``k`` times the Cayley transform of every multiplier's skew part (no norm needed).

    :func:`~liponet.functional.cayley_unitary`: ``(I + A)^{-1} (I - A)`` with ``A = M - M^H``,
    one batched LU inverse (a rectangular ``M``: the Cayley parametrization of isometries).
    Eval weights (no gradient) are computed in float64 and rounded once.
    """
    if m.requires_grad and torch.is_grad_enabled():
        return k * cayley_unitary(m)
    wide = torch.complex128 if m.is_complex() else torch.float64
    return (k * cayley_unitary(m.to(wide))).to(m.dtype)


#: Normalizations of the per-frequency multipliers: name -> f(multipliers, norms, k).
NORMALIZATIONS: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "global": _global,
    "clip": _clip,
    "orthogonal": _orthogonal,
    "polar": _polar,
    "qr": _qr,
    "cayley": _cayley,
}

#: Norm-free normalizations whose eval weights are a float64 Newton-Schulz step rounded once
#: (:func:`_polished`): name -> f(multipliers, k) -> (the eval multipliers, the same floats as
#: :data:`NORMALIZATIONS`' under no grad, and float64 upper bounds of their norms). Their
#: certificate needs no product of its own (:meth:`LipSpectralConv._polished_bound`).
POLISHED_EVAL: dict[str, Callable[[Tensor, float], tuple[Tensor, Tensor]]] = {
    "orthogonal": lambda m, k: polished_isometry_bound(polar_eigh(m), k),
    "polar": lambda m, k: polished_isometry_bound(polar_factor(m), k),
}

#: Normalizations that use no norm estimate (training skips the power iteration): each makes
#: every multiplier ``k`` times an isometry, so its certificate is the isometry bound of
#: :func:`~liponet.functional.isometry_norm_upper` (an SVD only where that is loose), or for
#: :data:`POLISHED_EVAL` the bounds that come with the eval weights.
NORM_FREE = frozenset({"orthogonal", "polar", "qr", "cayley"})


#: Normalizations that scale each multiplier by a number: name -> f(norms, k) -> scales.
#: Their eval weights are certified from the one SVD that computed the norms (the scaled
#: multipliers' norms are known; :func:`liponet.functional.perturbed_norm_upper` adds the
#: float32 rounding of the stored weights), without a second SVD.
SCALAR_NORMALIZATIONS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "global": lambda sigma, k: (k / sigma.max()).expand_as(sigma),
    "clip": lambda sigma, k: 1.0 / (sigma / k).clamp_min(1.0),
}

#: For ``"global"`` (``"clip"`` has its own bounds, ``LipSpectralConv._clip_scales``): which
#: multipliers' norms are needed exactly, from bounds ``(lower, upper, k)`` of all of them:
#: those that may attain the largest norm (the scale, and a tight certificate). The rest keep
#: their upper bound (no SVD; ``LipSpectralConv._norms``).
EXACT_NORMS_NEEDED: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "global": lambda lower, upper, k: upper >= lower.max(),
}


#: What a scalar normalization's certificate needs: ``(R (K, out, in), W or None, upper bounds of
#: ||R_k + W|| (and ||W||) (K [+1],), float64 scales (K [+1],))``; ``R`` is ``None`` where the
#: eval state was built without it (:meth:`LipSpectralConv._clip_state_from_parts`): rebuilt
#: from the weights if the certificate needs it.
_Scaled = tuple[Tensor | None, Tensor | None, Tensor, Tensor]


#: The threshold below which a multiplier cannot change ``"global"``'s scale or its
#: certificate's maximum, from lower bounds of all norms: below the largest.
#: :data:`EXACT_NORMS_NEEDED` says the same.
EXCLUSION_THRESHOLD: dict[str, Callable[[Tensor, float], float]] = {
    "global": lambda lower, k: float(lower.max()),
}

#: How far below the exclusion threshold (relative) a Cholesky test aims: a multiplier proven
#: there is out of contention with room for the eval weights' rounding (a few ``1e-6`` in
#: float32), so it cannot set the certificate's maximum either.
CHOLESKY_GAP = 1e-4

#: How many multipliers whose last proven level no longer holds get a new close bound per call
#: (an ``eigvalsh`` estimate each, a few times a Cholesky test's cost): at least this many, or
#: this fraction of all; the others are proven below the threshold only (a looser bound).
ESTIMATE_MIN_ROWS = 8
ESTIMATE_FRACTION = 0.05

#: Where the Rayleigh quotient of ``"global"``'s start vector is not reliable (a vector far
#: from an eigenvector), the estimated level its first Cholesky test aims at is no lower than
#: this far (relative) below the threshold: a bound that far below it stays below it for the
#: next call after a small optimizer step (drifting ~0.5% in ``performance.md``'s case).
STEP_BELOW_CAP = 0.02

#: Where more than :data:`RETHRESHOLD_ROWS` multipliers fail every Cholesky test of
#: ``"global"`` (the threshold from the likeliest largest was too low: it was not the
#: largest), the likeliest among them gets an SVD and the failures are tested again under the
#: new threshold, up to this many times; what still fails gets an SVD.
RETHRESHOLDS = 2
RETHRESHOLD_ROWS = 4

#: Below this much SVD work (multipliers times ``out * in * min(out, in)``) every norm is
#: computed by SVD: for small layers the passes that avoid SVDs cost more than they save.
SVD_ALL_WORK = 1 << 22


def _svd_all(r: Tensor) -> bool:
    """Whether an SVD of every multiplier of ``r`` ``(K, out, in)`` is cheapest.

    Few or small multipliers (:data:`SVD_ALL_WORK`): the passes that avoid SVDs cost more.
    """
    return r.shape[0] * r[0].numel() * min(r.shape[1:]) <= SVD_ALL_WORK


#: From this much SVD work on (and below :data:`SVD_ALL_WORK`), ``"global"`` SVDs only the
#: likeliest largest multiplier and tests every other once below it by a Cholesky
#: factorization (:meth:`LipSpectralConv._norms_one_svd`: the same scale and certificate);
#: below it, every multiplier's SVD is cheaper.
ONE_SVD_WORK = 1 << 20


def _one_svd(r: Tensor) -> bool:
    """Whether ``"global"`` SVDs one multiplier of ``r`` first (:data:`ONE_SVD_WORK`)."""
    return r.shape[0] * r[0].numel() * min(r.shape[1:]) >= ONE_SVD_WORK


#: ``"global"`` layers below :data:`ONE_SVD_WORK` compute their eval weights and certificate in
#: one pass (:meth:`LipSpectralConv._small_global_state`: the same floats as the general path
#: with far fewer operations and SVDs, side by side in ``benchmarks/results/
#: small_certificates.md``). ``False``: the general path (for tests and benchmarks).
LEAN_SMALL_GLOBAL = True

#: :meth:`LipSpectralConv._small_global_state` after a first call: an SVD of the likeliest
#: largest multiplier and of those the last call's bounds, moved by the distance the weights
#: moved, do not prove below it (:meth:`LipSpectralConv._small_norms`). ``False``: an SVD of
#: every multiplier on every call (the same floats; for tests and benchmarks).
LEAN_DRIFT = True

#: An absolute term added to each complex128 distance of :meth:`LipSpectralConv._small_norms`:
#: squares of differences below ``2^-511`` may lose up to ``2^-1074`` each to underflow in the
#: float64 sum, at most ``sqrt(N) 2^-537`` in the distance for ``N <= 2^60`` terms.
DRIFT_FLOOR = 2.0**-500


#: How far above the norm a ``"clip"`` multiplier's eval bound ``u_k`` may lie, about
#: (:meth:`LipSpectralConv._clip_scales`): ``u_k`` is the first level of a grid with
#: ``2^NORM_GRID_BITS`` levels per octave (spacing ``2.4e-4`` to ``9.8e-4``) that a float32
#: Cholesky test proves, whose rounding margin is ``~3.5e-4`` relative for ``64 x 64``
#: multipliers (``6.5e-4`` above the norm on average, ``1e-3`` at most, measured in
#: ``benchmarks/results/clip_eval_scales.md``). A clipped multiplier's eval norm is then ``k``
#: divided by at most about ``1 + 2 CLIP_HEADROOM``.
CLIP_HEADROOM = 1e-3

#: Room below the target that ``"clip"`` leaves for the float32 rounding of its eval weights:
#: scales ``min(1, k (1 - CLIP_ROUNDING_ROOM) / u_k)``, so that the a-priori rounding bound
#: (:func:`~liponet.functional.scale_multipliers_error`, a few ``1e-6`` relative at width 64)
#: certifies ``k`` without comparing hundreds of multipliers with their exact values.
CLIP_ROUNDING_ROOM = 2.0**-14

#: Headroom above a multiplier's estimated norm (``eigvalsh`` of its Gram matrix) for the
#: Cholesky test in the weights' own precision, whose rounding margin is ``~1e-3`` relative for
#: float32 ``64 x 64`` multipliers: a success leaves a bound within ``0.2%`` of the norm, so
#: the next calls' drifted bounds start close and exclude it by Weyl's inequality alone.
ESTIMATE_HEADROOM = 2e-3


class _Memory:
    """A holder for state that is not model state.

    ``torch.export`` rejects tensors assigned to module attributes (or to lists and tuples in
    them) while it traces; it leaves other objects be.
    """

    def __init__(self) -> None:
        #: ``(M, upper)`` of :meth:`LipSpectralConv._small_norms`' last call: the complex128
        #: multipliers and proven upper bounds of their norms.
        self.small: tuple[Tensor, Tensor] | None = None
        #: ``(R, W, lower, upper, proven)`` of :meth:`LipSpectralConv._norms`' last call.
        self.value: tuple[Tensor, Tensor | None, Tensor, Tensor, Tensor] | None = None
        #: The vector pairs of ``"clip"``'s last bounds (:meth:`LipSpectralConv._clip_scales`):
        #: where the next call's search starts (never what it finds).
        self.vectors: Tensor | None = None


class _Contenders:
    """One chunk of ``"global"``'s contenders: their Gram matrices and estimates of their norms.

    ``rows`` the multipliers' indices, ``test`` their :class:`~liponet.functional._GramTest`,
    ``v`` start vectors, ``rho`` float64 Rayleigh quotients (zero until :meth:`estimate`),
    ``reliable`` where the quotient is close to the top eigenvalue.
    """

    def __init__(self, rows: Tensor, test: _GramTest, v: Tensor) -> None:
        self.rows, self.test, self.v = rows, test, v
        self.rho = torch.zeros(len(rows), dtype=torch.float64, device=rows.device)
        self.reliable = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)
        self.known = torch.zeros(len(rows), dtype=torch.bool, device=rows.device)

    def estimate(self, index: Tensor | None = None) -> None:
        """Rayleigh quotients after one power step from ``v`` (``index`` only; all if None).

        A proven lower bound of each computed Gram matrix's top eigenvalue, used as an estimate
        of the squared norm; reliable where one more power step moves the vector by less than
        :data:`~liponet.functional.GRID_RESIDUAL` (close to an eigenvector).
        """
        if index is None:
            index = torch.arange(len(self.rows), device=self.rows.device)
        index = index[~self.known[index]]
        if not len(index):
            return
        every = len(index) == len(self.rows)
        rows = None if every else index
        v = self.test.rayleigh(rows, self.v[index])[1]  # one power step
        rho, step = self.test.rayleigh(rows, v)
        self.rho[index] = rho
        self.reliable[index] = _vector_norm(step - v) < GRID_RESIDUAL
        self.v[index] = v
        self.known[index] = True

    def level(self, cap: float) -> Tensor:
        """The estimated levels ``min(cap, (1 + ESTIMATE_HEADROOM) rho^(1/2))``.

        No lower than :data:`STEP_BELOW_CAP` below ``cap`` where the estimate is not reliable
        (it may lie far below the norm).
        """
        level = self.rho.sqrt() * (1.0 + ESTIMATE_HEADROOM)
        level = torch.where(self.reliable, level, level.clamp_min(cap * (1 - STEP_BELOW_CAP)))
        return level.clamp_max(cap)


def _complex_param(shape: Sequence[int]) -> nn.Parameter:
    # Complex tensors are stored as real (..., 2) so that .double()/.to(dtype) convert them.
    return nn.Parameter(torch.zeros(*shape, 2))


def _isometry_bound_of(
    fetch: Callable[[Tensor], Tensor], n: int, rows: int, cols: int, device: torch.device
) -> float:
    """``max_j ||A_j||_2`` of ``n`` complex128 ``(rows, cols)`` matrices near isometries' multiples.

    ``fetch(index)`` returns the matrices ``index`` (an increasing range of ``0..n-1``), one
    chunk at a time. :func:`~liponet.functional.isometry_norm_upper` bounds each (one Gram
    product, guaranteed); where that is not within ``1e-6`` of the lower bound ``||A||_F /
    sqrt(min(rows, cols))`` of the norm (a matrix far from a multiple of an isometry), the SVD
    bound of :func:`~liponet.functional.spectral_norm_upper` instead.
    """
    bound = torch.empty(n, dtype=torch.float64, device=device)
    lower = torch.empty(n, dtype=torch.float64, device=device)
    for i, j in chunks(n, rows * cols):
        a = fetch(torch.arange(i, j, device=device))
        bound[i:j] = isometry_norm_upper(a)
        # Frobenius norms over the real view (the complex reduction is ~15x slower); a NaN or
        # inf entry makes its matrix's norm non-finite (the sum of squares is inf or NaN), as
        # does an overflowing sum: no bound is claimed then
        lower[i:j] = _frobenius64(a)
    lower = lower / math.sqrt(min(rows, cols))
    if not bool(torch.isfinite(lower).all()):
        raise ValueError("the weights hold NaN or inf values: no spectral-norm bound exists")
    loose = bound > lower * (1.0 + 1e-6)
    if bool(loose.any()):
        index = loose.nonzero().squeeze(1)
        bound[index] = torch.minimum(bound[index], spectral_norm_upper(fetch(index)))
    return float(bound.max())


class LipSpectralConv(CertifiedModule):
    """N-d spectral convolution with a certified operator norm, optionally fused with a 1x1 skip.

    ``y = irfftn(R_k X_k on kept modes) [+ W x] [+ b]`` for inputs ``(batch, in, *spatial)``.

    Parameters
    ----------
    in_channels, out_channels
        Channel counts.
    modes
        ``(m_1, ..., m_d)``: frequencies with ``|k_i| < m_i`` are kept (see the module docstring);
        the input grid needs ``n_i >= 2 m_i - 1``.
    k
        Target operator norm (> 0); ``None`` switches the constraint off (unconstrained twin).
    skip
        Fuse a pointwise weight ``W``: the layer becomes the multiplier ``W + R_k`` on kept modes
        and ``W`` elsewhere (the FNO block's linear part).
    bias
        Learn an additive bias.
    normalization
        How multipliers are normalized (:data:`NORMALIZATIONS`): ``"global"`` divides all by the
        largest norm (operator norm exactly ``k``, spectrum shape free); ``"clip"`` shrinks each
        multiplier above ``k`` to ``k`` (in eval, of large layers, to within ~0.1% below ``k``:
        see "Lipschitz constant"); ``"orthogonal"`` makes every multiplier ``k`` times its
        unitary polar factor (the nearest unitary matrix, what Björck iterations converge to),
        so the linear part is ``k`` times an isometry: one batched Gram eigendecomposition
        and the closed-form backward (:func:`~liponet.functional.polar_eigh`); ``"polar"`` is
        the same map by one batched SVD (:func:`~liponet.functional.polar_factor`; slower, see
        ``benchmarks/results/performance.md``); ``"qr"`` makes every multiplier ``k`` times the
        unitary factor of its QR decomposition (``R`` with a positive diagonal, Householder QR
        with its exact closed-form backward): another isometric linear part; ``"cayley"``
        makes every multiplier ``k`` times the Cayley transform ``(I + A)^{-1} (I - A)`` of
        its skew part ``A = M - M^H`` (:func:`~liponet.functional.cayley_unitary`: one batched
        LU inverse, autograd's two-product backward; on the CPU as cheap as ``"qr"`` and well
        below ``"orthogonal"`` in 2-D and 3-D, on a GPU the cheapest isometric one, see
        ``benchmarks/results/performance.md`` and ``device_check_cuda.md``). It is a different
        map from ``"orthogonal"`` (the parameters are not those of the polar factor: a
        checkpoint of one does not load as the other's function). With ``in_channels !=
        out_channels`` the multiplier ``[T; C]`` (tall; wide ones through ``M^H``) gives the
        isometry of the Cayley transform of ``[[T - T^H, -C^H], [C, 0]]``. Its parameters start
        at zero: every multiplier (and the skip) starts as ``k`` times the identity (the first
        columns or rows of it when rectangular).
    n_power
        Warm-started power iterations per training step, batched over all modes.

    Lipschitz constant
    ------------------
    In liponet's function norm (mean over the grid), independent of the resolution:
    ``max(max over kept k of ||W' + R'_k||_2, ||W'||_2)`` for the eval-mode weights (the ``||W'||``
    term only with ``skip``). This is the *exact* norm of the linear part whenever some frequency
    is unkept, and an upper bound otherwise. Certified by float64 SVDs
    (:func:`liponet.functional.spectral_norm_upper`) of the multipliers exactly as the forward
    applies them (``W' + R'_k`` summed in float64). Constrained multipliers are normalized to
    ``k`` times :data:`~liponet.functional.TARGET_MARGIN` (``1 - 2^-20``), so the float32
    rounding of the eval weights keeps the certificate ``<= k``.
    With ``"global"``, only the likeliest largest multiplier (and near-ties) gets an SVD; every
    other one is proven below it without: by Weyl's inequality from the last computed state
    (Frobenius distances), else by a Cholesky factorization of ``c I - M^H M`` that proves it
    below a level (the test of :func:`~liponet.functional.cholesky_norm_upper`, on one Gram
    matrix per multiplier in the weights' precision, then in float64; the levels chosen from
    the last proven ones and Rayleigh quotients of the training power-iteration vectors,
    which never enter a bound: :meth:`_norms`); the eval weights' float32 rounding is bounded
    a priori (:func:`~liponet.functional.scale_multipliers_error`) and measured only for the
    multipliers near the largest. The eval weights and the certificate are those of an SVD
    of every multiplier, at a fraction of the cost, on a first call as after optimizer steps. A
    layer below :data:`SVD_ALL_WORK` SVDs every multiplier, or, from :data:`ONE_SVD_WORK` on,
    the likeliest largest one and those a batched Cholesky test does not prove below it
    (:meth:`_norms_one_svd`, one test pass: the same eval weights and certificate).
    With ``"clip"`` on a layer above :data:`SVD_ALL_WORK`, eval scales are ``min(1, k' / u_k)``
    with ``u_k`` a proven upper bound of ``||M_k||`` within about :data:`CLIP_HEADROOM` of it
    (a grid level proven by a float32 Cholesky test: one Gram product and one or two
    factorizations per multiplier, no SVD or eigendecomposition; :meth:`_clip_scales`) and
    ``k' = k (1 - CLIP_ROUNDING_ROOM)``: every eval multiplier is ``<= k'`` by construction, a
    clipped one shrunk about ``0.06%`` (at most ``0.2%``) more than by its
    exact norm, and the certificate is the a-priori bound ``max_k (s_k u_k + rounding) <= k``.
    The eval weights depend on the current weights only (no call history), as with an SVD.
    With ``"orthogonal"``, ``"polar"``, ``"qr"`` or ``"cayley"`` every multiplier is ``k``
    times an isometry up to rounding, and its norm is bounded from one Gram product,
    ``||A||_2^2 <= c + ||A^H A - c I||_F`` (:func:`~liponet.functional.isometry_norm_upper`,
    with its rounding proven): within a few ``1e-7`` of the SVD norm, an SVD only where it is not.

    Notes
    -----
    Training forwards normalize with warm-started power-iteration estimates (a training device
    that may under-estimate); eval forwards use exact float64 norms, computed once and cached
    with the certificate until a parameter changes (compared bitwise with a stored copy,
    :class:`~liponet.layers.cache.WeightKeyedCache`: writes through ``param.data`` are seen).
    Those eval weights are the ones certified and exported.
    :func:`exact_train_norms` makes training forwards normalize by the exact norms instead (the
    top singular vectors from a float64 eigendecomposition every step): the function trained
    is then the one evaluated, at some cost per step. ``"orthogonal"`` trains on the exact
    polar factors (float32 ``eigh``) or, by default, first-order ones around the last exact
    basis while the weights stay close (a cheaper training device whose basis is module state,
    ``warm_polar``; :func:`warm_polar_train` switches it off).

    Examples
    --------
    >>> import torch
    >>> conv = LipSpectralConv(2, 3, modes=(4, 3), skip=True).eval()
    >>> conv(torch.randn(5, 2, 16, 12)).shape
    torch.Size([5, 3, 16, 12])
    >>> conv.lipschitz_bound() <= 1.0 + 1e-6
    True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: Sequence[int],
        k: float | None = 1.0,
        skip: bool = False,
        bias: bool = True,
        normalization: str = "global",
        n_power: int = 1,
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        modes = tuple(int(m) for m in modes)
        if len(modes) < 1 or any(m < 1 for m in modes):
            raise ValueError(f"modes must be a non-empty sequence of integers >= 1, got {modes}")
        if k is not None and not (math.isfinite(k) and k > 0):
            raise ValueError(f"k must be a finite positive number or None, got {k}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; available: {', '.join(NORMALIZATIONS)}"
            )
        if n_power < 1:
            raise ValueError(f"n_power must be >= 1, got {n_power}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.modes = modes
        self.k = k
        self.normalization = normalization
        self.n_power = n_power
        #: Training forwards normalize by exact norms instead of power-iteration estimates
        #: (:func:`exact_train_norms`); eval and the certificate do not depend on it.
        self.exact_train_norms = False
        self.kept_shape = kept_mode_shape(modes)
        #: ``"orthogonal"`` (``k`` set): training forwards take first-order polar factors
        #: around the last exact basis while its Gram stays within ``warm_polar.tol`` of
        #: diagonal (default :data:`WARM_POLAR_TOL`; :func:`warm_polar_train`); the basis is
        #: module state. ``None`` for the other layers. Eval and the certificate never use it.
        self.warm_polar: _WarmPolar | None = None
        if k is not None and normalization == "orthogonal":
            n_lead = math.prod(self.kept_shape[:-1])
            n_multipliers = n_lead - (n_lead - 1) // 2 + n_lead * (self.kept_shape[-1] - 1)
            self.warm_polar = _WarmPolar(
                WARM_POLAR_TOL, n_multipliers + int(skip), min(in_channels, out_channels)
            )
        n_kept = math.prod(self.kept_shape)
        self.weight = _complex_param((*self.kept_shape, out_channels, in_channels))
        self.skip = nn.Parameter(torch.empty(out_channels, in_channels)) if skip else None
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._init_weights()
        self.u: Tensor
        u = torch.randn(n_kept + int(skip), in_channels, dtype=torch.complex64)
        self.register_buffer("u", torch.view_as_real(nn.functional.normalize(u, dim=-1)))
        self._cache = WeightKeyedCache(self._sources())
        #: ``(m, lower, upper)`` of the last eval state of a scalar normalization: the stacked
        #: multipliers and bounds of their norms, so the next one needs SVDs only where the
        #: weights moved enough to matter (:meth:`_norms`).
        self._norm_memory = _Memory()

    @property
    def warm_polar_tol(self) -> float:
        """The warm polar factors' tolerance (``0.0``: every training call exact, or no basis)."""
        return 0.0 if self.warm_polar is None else self.warm_polar.tol

    @warm_polar_tol.setter
    def warm_polar_tol(self, tol: float) -> None:
        if self.warm_polar is None:
            if tol != 0.0:
                raise ValueError("only constrained 'orthogonal' layers take warm polar factors")
            return
        self.warm_polar.tol = float(tol)

    def _init_weights(self) -> None:
        with torch.no_grad():
            if self.k is None:  # the original FNO's scale for R_k; nn.Linear's for W
                scale = 1.0 / (self.in_channels * self.out_channels)
                self.weight.uniform_(0.0, scale)
                if self.skip is not None:
                    nn.init.kaiming_uniform_(self.skip, a=math.sqrt(5))
            elif self.normalization == "cayley":  # A_k = 0: every multiplier starts at k I
                # (trains better than a random skew part on advection: fno_accuracy_*cayley*)
                self.weight.zero_()
                if self.skip is not None:
                    self.skip.zero_()
            else:  # W orthogonal, R_k a perturbation of comparable size
                self.weight.normal_(0.0, 0.5 / math.sqrt(2 * self.in_channels))
                if self.skip is not None:
                    nn.init.orthogonal_(self.skip)

    # ------------------------------------------------------------------ multipliers
    def _target(self) -> float:
        """The norm the multipliers are normalized to: ``k`` times ``TARGET_MARGIN``."""
        assert self.k is not None
        return self.k * TARGET_MARGIN

    def _symmetric_spectral(self, weight: Tensor | None = None) -> Tensor:
        """The spectral weights ``R_k`` ``(*kept, out, in)``, Hermitian on the ``k_d = 0`` slice."""
        weight = self.weight if weight is None else weight
        return hermitian_symmetrize(torch.view_as_complex(weight), len(self.modes))

    def _stacked(self, r: Tensor, skip: Tensor | None = None) -> Tensor:
        """All multipliers ``(K [+1], out, in)``: ``W + R_k`` and, with a skip, ``W`` last."""
        r = r.reshape(-1, self.out_channels, self.in_channels)  # (K, out, in)
        skip = self.skip if skip is None else skip
        if skip is None:
            return r
        w = skip.to(r.dtype)
        return torch.cat([r + w, w.unsqueeze(0)], 0)  # (K + 1, out, in)

    def _split(self, m: Tensor, symmetrize: bool) -> tuple[Tensor, Tensor | None]:
        """Normalized multipliers -> (spectral weights R'_k (*kept, out, in), skip W')."""
        mk = m if self.skip is None else m[:-1]
        mk = mk.reshape(*self.kept_shape, *m.shape[1:])
        if symmetrize:  # per-mode scales may break the exact symmetry: restore it
            mk = hermitian_symmetrize(mk, len(self.modes))
        if self.skip is None:
            return mk, None
        w = m[-1].real
        return mk - w.to(mk.dtype), w

    def _train_weights(self) -> tuple[Tensor, Tensor | None]:
        if self.k is not None and self.normalization in NORM_FREE:  # no norm estimate needed
            return self._train_norm_free(self._target())
        if self.k is not None and self.normalization == "clip" and self.skip is not None:
            # the same function as below, as one autograd node with a hand-written backward
            return clip_train_weights([self], stack=False)
        r = self._symmetric_spectral()
        if self.k is None:
            return r, self.skip
        m = self._stacked(r)  # (K [+1], out, in), built once: the power step uses it detached
        with torch.no_grad():
            u0 = torch.view_as_complex(self.u)
            u = _train_vectors(m.detach(), u0, self.n_power, self.exact_train_norms)
            self.u.copy_(torch.view_as_real(u))
        sigma = torch.linalg.vector_norm(m @ u.unsqueeze(-1), dim=(-2, -1))  # (K [+1],) estimates
        if self.normalization != "global":
            m = NORMALIZATIONS[self.normalization](m, sigma, self._target())
            return self._split(m, symmetrize=True)  # per-mode scales: restore exact symmetry
        # Global: (W + R_k)/s - W/s = R_k/s, so the weights are scaled directly; the gradient of
        # the largest estimate s reaches only its own multiplier (as through max), no host sync,
        # and a real scale keeps A_{-k} = conj(A_k) exactly.
        scale = self._target() / sigma.max()
        return r * scale, None if self.skip is None else self.skip * scale

    def _train_norm_free(self, k: float) -> tuple[Tensor, Tensor | None]:
        """Training weights of a normalization that needs no norm estimate (:data:`NORM_FREE`).

        Only the independent multipliers are normalized: on the ``k_d = 0`` slice ``M_{-k} =
        conj(M_k)`` (the flattened centred leading index ``l`` mirrored by ``L - 1 - l``), and
        both maps commute with conjugation, so the mirrored half is filled with the conjugates
        of the other (exactly Hermitian, no symmetrization pass over the other modes).
        """
        o, i = self.out_channels, self.in_channels
        n_lead, m_d = math.prod(self.kept_shape[:-1]), self.kept_shape[-1]
        if self.normalization == "orthogonal" and FUSED_ORTHOGONAL_TRAIN:
            skip = self.weight.new_empty(0) if self.skip is None else self.skip
            warm = self.warm_polar
            if warm is not None and (warm.tol <= 0.0 or self.exact_train_norms):
                warm = None
            r_out, w_out = _OrthogonalTrainWeights.apply(self.weight, skip, k, n_lead, m_d, warm)
            return r_out.reshape(*self.kept_shape, o, i), None if self.skip is None else w_out
        half = (n_lead - 1) // 2  # mirrored zero-slice entries: l < half
        raw = torch.view_as_complex(self.weight).reshape(n_lead, m_d, o, i)
        zero = raw[:, 0]  # (L, out, in)
        upper = (zero[half:] + zero[: half + 1].flip(0).conj()) / 2  # the symmetrized l >= half
        rest = raw[:, 1:]  # (L, m_d - 1, out, in)
        w = None if self.skip is None else self.skip.to(raw.dtype)
        if w is not None:
            upper, rest = upper + w, rest + w
        parts = [upper, rest.reshape(-1, o, i)] + ([] if w is None else [w.unsqueeze(0)])
        m = NORMALIZATIONS[self.normalization](torch.cat(parts), raw.real.new_ones(1), k)
        w_norm = None if w is None else m[-1].real
        if w_norm is not None:
            m = m - w_norm.to(m.dtype)  # R'_k = M'_k - W' (the last row, W' - W', is unused)
        top, rest_n = m[: n_lead - half], m[n_lead - half : n_lead - half + n_lead * (m_d - 1)]
        zero_n = torch.cat([top[1:].flip(0).conj(), top])  # (L, out, in)
        full = torch.cat([zero_n.unsqueeze(1), rest_n.reshape(n_lead, m_d - 1, o, i)], 1)
        return full.reshape(*self.kept_shape, o, i), w_norm

    def _sources(self) -> list[Tensor]:
        """The parameters the eval weights are computed from (the cache key)."""
        return [p for p in (self.weight, self.skip) if p is not None]

    def effective_weights(self) -> tuple[Tensor, Tensor | None]:
        """Eval-mode ``(R'_k (*kept, out, in) complex, W' (out, in) or None)``; cached, no grad."""
        return self._eval_state()[0]

    def _eval_state(self) -> tuple[tuple[Tensor, Tensor | None], _Scaled | float | None]:
        """Eval weights and, for scalar normalizations, ``(m, norms of m, float64 scales)``.

        For the normalizations of :data:`POLISHED_EVAL` instead the certificate itself (a
        float, :meth:`_polished_bound`), computed with the weights at little cost.
        """
        return self._cache.get("eval_state", self._sources(), self._compute_eval_state)

    def _compute_eval_state(
        self, weight: Tensor, skip: Tensor | None = None
    ) -> tuple[tuple[Tensor, Tensor | None], _Scaled | float | None]:
        with torch.no_grad():
            if self.k is not None and self.normalization == "clip":
                skip = None if skip is None else skip.detach()
                if skip is not None and self._clips_from_parts(weight, skip):
                    return self._clip_state_from_parts(weight.detach(), skip, self._target())
            r = self._symmetric_spectral(weight.detach())
            skip = None if skip is None else skip.detach()
            if self.k is None:
                return (r, skip), None
            if self.normalization == "global" and LEAN_SMALL_GLOBAL:
                lean = self._small_global_state(r, skip)
                if lean is not None:
                    return lean
            if self.normalization in SCALAR_NORMALIZATIONS:
                target = self._target()
                rk = r.reshape(-1, self.out_channels, self.in_channels)  # (K, out, in)
                if self.normalization == "clip":  # proven bounds: no SVD of every multiplier
                    scale, upper = self._clip_scales(rk, skip, target)
                else:
                    sigma, upper = self._norms(rk, skip, target)  # float64 (K [+1],) each
                    scale = SCALAR_NORMALIZATIONS[self.normalization](sigma, target)  # float64
                n = rk.shape[0]
                # One factor per conjugate pair (their norms agree up to the SVD's rounding):
                # R' stays exactly Hermitian with no second symmetrization pass.
                pairs = _symmetric_scales(scale[:n], self.kept_shape, len(self.modes))
                scale = torch.cat([pairs, scale[n:]])
                r_eval, w_eval = scale_multipliers(rk, skip, scale)
                weights = (r_eval.reshape(r.shape), w_eval)
                # What the certificate needs: R, W, upper bounds of ||R_k + W|| (and ||W||), s.
                return weights, (rk, skip, upper, scale)
            m = self._stacked(r, skip)  # (K [+1], out, in)
            target = self._target()
            if self.normalization in NORM_FREE:  # no norm needed; one map per multiplier
                # chunk by chunk (the same floats: every step is per matrix), so the float64
                # polishing's temporaries stay in cache (several times faster at width 64)
                fn, normalized = NORMALIZATIONS[self.normalization], torch.empty_like(m)
                ones = m.real.new_ones(m.shape[0])
                polished = POLISHED_EVAL.get(self.normalization)
                norms = torch.empty(len(m), dtype=torch.float64, device=m.device)
                for i, j in chunks(len(m), m[0].numel()):
                    if polished is None:
                        normalized[i:j] = fn(m[i:j], ones[i:j], target)
                    else:  # the same floats, and bounds of their norms
                        normalized[i:j], norms[i:j] = polished(m[i:j], target)
                weights = self._split(normalized, symmetrize=True)
                if polished is None:
                    return weights, None
                return weights, self._polished_bound(normalized, norms, *weights)
            sigma = spectral_norm_exact(m).to(m.real.dtype)  # (K [+1],)
            normalized = NORMALIZATIONS[self.normalization](m, sigma, target)
            return self._split(normalized, symmetrize=True), None

    def _small_global_state(
        self, r: Tensor, w: Tensor | None
    ) -> tuple[tuple[Tensor, Tensor | None], float] | None:
        """``"global"``'s eval weights and certificate of a small layer in one pass, or ``None``.

        A layer below :data:`ONE_SVD_WORK` (:func:`_svd_all`, not :func:`_one_svd`): the same
        floats as the general path (:meth:`_norms`, :func:`scale_multipliers`,
        :meth:`_scaled_bound`) with far fewer operations. ``r`` the symmetrized spectral
        weights, ``w`` the skip (detached). The norms of the multipliers ``M_k = R_k + W``
        (and ``W``), formed in complex128 as :meth:`_exact_norms` forms them, come from one
        SVD of all (without :data:`LEAN_DRIFT`) or from :meth:`_small_norms`; the scale is
        ``s = k' / max sigma`` for every multiplier. The general path averages each
        conjugate pair's scales, ``(s + s) / 2 = s`` exactly (no overflow below ``2^1023``:
        else ``None`` and the general path), and :func:`scale_multipliers` adds no skip term
        (``s_k - s_W = 0``), so ``R' = fl(R fl(s))``, ``W' = fl(W fl(s))``. The certificate is
        :meth:`_scaled_bound`'s: the largest
        :func:`~liponet.functional.perturbed_norm_upper` bound (proven for each row) over the
        row of the largest ``||B_k||`` bound and every row whose a-priori bound exceeds it,
        computed for all rows in one batch (``A_k = R'_k + W'`` in complex128, ``B_k = s M_k``
        from the SVD's own multipliers: the floats :meth:`_scaled_bound` forms; each row's
        norm reduced alone, so the same value, tested bit for bit against the general path).
        NaN or inf weights raise ``ValueError`` (one sum each of ``R`` and ``W``:
        :func:`~liponet.functional._all_finite`; ``M`` is finite exactly when they are).
        """
        o, i = self.out_channels, self.in_channels
        rk = r.reshape(-1, o, i)  # (K, out, in)
        if not _svd_all(rk) or _one_svd(rk):
            return None
        n = rk.shape[0]
        if not (_all_finite(rk) and (w is None or _all_finite(w))):
            raise ValueError("the weights hold NaN or inf values: no bound exists")
        m = self._multipliers64(rk, w)  # (K [+1], out, in) complex128, as _exact_norms
        if LEAN_DRIFT:
            sigma, upper = self._small_norms(m)
        else:
            sigma = spectral_norm_exact(m)
            upper = sigma * (1.0 + SVD_RELATIVE_MARGIN)
        s = self._target() / sigma.max()  # SCALAR_NORMALIZATIONS["global"]'s expression
        if not bool(s <= 2.0**1023):
            return None
        scale = s.expand(len(m))
        dtype = rk.real.dtype
        s_eval = s.to(dtype)  # the factor rounded once, as in scale_multipliers
        r_eval = torch.view_as_complex(torch.view_as_real(rk) * s_eval)
        w_eval = None if w is None else w * s_eval
        weights = (r_eval.reshape(r.shape), w_eval)
        # _scaled_bound's certificate
        b_norm = upper * scale
        w_fro = None
        if w is not None:
            w_fro = torch.linalg.vector_norm(w, dtype=torch.float64) * (1.0 + 1e-6)
        r_fro = math.sqrt(min(o, i)) * upper[:n] + (0.0 if w_fro is None else w_fro)
        err = scale_multipliers_error(r_fro, w_fro, scale, dtype, o * i)
        prior = b_norm * (1.0 + 1e-12) + err
        if not bool(torch.isfinite(prior).all()):
            raise ValueError("the weights hold NaN or inf values: no spectral-norm bound exists")
        # A_k = R'_k + W' as the forward applies them, B_k = s_k M_k (the skip's row: s_W W),
        # every row's perturbed_norm_upper at once (each row's floats as one at a time)
        a_all = r_eval.to(torch.complex128)
        if w_eval is not None:
            w128_eval = w_eval.to(torch.float64).to(torch.complex128)
            a_all = torch.cat([a_all + w128_eval, w128_eval.unsqueeze(0)])
        exact = perturbed_norm_upper(a_all, m * scale[:, None, None], b_norm)
        # _scaled_bound's value: the largest ||B_k|| bound's row, and every row whose a-priori
        # bound exceeds that row's computed bound
        first = b_norm.argmax()
        keep = prior > exact[first]
        keep[first] = True
        bound = float(exact[keep].max())
        return weights, bound

    def _small_norms(self, m: Tensor) -> tuple[Tensor, Tensor]:
        """``(sigma, upper)`` of the complex128 multipliers ``m``, SVDs only where they matter.

        A first call (or one whose remembered multipliers differ in shape, dtype or device):
        one SVD of every multiplier. Otherwise the last call's proven bounds ``b_j`` of
        ``||P_j||_2`` (:attr:`_Memory.small`) move by the distance the multipliers moved
        (Weyl's inequality: ``||M_j||_2 <= ||P_j||_2 + ||M_j - P_j||_F``; the distance by
        :func:`~liponet.functional.distance_upper` plus :data:`DRIFT_FLOOR`, the sums rounded
        up by :func:`~liponet.functional.add_up`); the multiplier with the largest bound gets
        an SVD, norm ``sigma_t``, and so does every one whose moved bound is not below the cap
        ``(1 - CHOLESKY_GAP) sigma_t``. A multiplier left out is below the largest norm, so
        ``sigma.max()`` is the SVD of every multiplier's, bit for bit (each SVD the same LAPACK
        call on the same floats, alone or in a batch), and the certificate of
        :meth:`_small_global_state` too: a left-out row's bound lies ``CHOLESKY_GAP`` below the
        largest, far more than the eval weights' rounding, so it never sets the maximum, which
        the SVD'd rows set as before. A bound that drifts up to the cap gets an SVD and is
        tight again. ``sigma``: the SVD norms of the SVD'd rows, the moved bounds elsewhere;
        ``upper``: ``sigma (1 + SVD_RELATIVE_MARGIN)`` and the moved bounds. The choice of
        rows never enters a bound.
        """
        memory = self._norm_memory
        last = memory.small
        if last is None or last[0].shape != m.shape or last[0].dtype != m.dtype:
            sigma = spectral_norm_exact(m)
            upper = sigma * (1.0 + SVD_RELATIVE_MARGIN)
            memory.small = (m, upper)
            return sigma, upper
        m_prev, upper_prev = last
        if m_prev.device != m.device:
            memory.small = None
            return self._small_norms(m)
        drift = distance_upper(m, m_prev)
        bound = add_up(upper_prev, add_up(drift, torch.full_like(drift, DRIFT_FLOOR)))
        top = int(bound.argmax())
        s_top = spectral_norm_exact(m[top : top + 1])
        svd = ~(bound < s_top * (1.0 - CHOLESKY_GAP))  # NaN: an SVD (it raises or is caught)
        svd[top] = False
        sigma = bound.clone()
        sigma[top] = s_top[0]
        if bool(svd.any()):
            rows = svd.nonzero().squeeze(1)
            sigma[rows] = spectral_norm_exact(m[rows])
        svd[top] = True
        upper = torch.where(svd, sigma * (1.0 + SVD_RELATIVE_MARGIN), bound)
        memory.small = (m, upper)
        return sigma, upper

    def _start_pairs(self, n_rows: int, device: torch.device, rows: Tensor | None = None) -> Tensor:
        """Start pairs ``(K [+1], 2, p)`` of ``"clip"``'s search (:meth:`_clip_scales`).

        The pairs remembered from the last call, else the training power-iteration vectors
        (of the multipliers ``rows`` if given) and each of them shifted by one entry
        (:func:`~liponet.functional.grid_norm_upper`: they choose where the search begins,
        never its result).
        """
        start = self._norm_memory.vectors
        if start is None or start.shape[0] != n_rows or start.ndim != 3 or start.device != device:
            u = torch.view_as_complex(self.u.detach())  # (K [+1], in)
            u = u if rows is None else u[rows.to(u.device)]
            start = torch.stack([u, u.roll(1, -1)], 1)
        return start

    def _clips_from_parts(self, weight: Tensor, skip: Tensor | None) -> bool:
        """Whether ``"clip"``'s eval state is built from the raw weights' real parts.

        A large layer (:data:`SVD_ALL_WORK`) with a skip, ``out >= in`` (the Gram matrix
        ``M^H M``) and real float32/float64 weights: :meth:`_clip_state_from_parts`, the same
        floats as the general path with fewer passes over the weights.
        """
        return (
            skip is not None
            and self.out_channels >= self.in_channels
            and weight.dtype in (torch.float32, torch.float64)
            and skip.dtype == weight.dtype
            and weight.is_contiguous()
            and self._large()
        )

    def _large(self) -> bool:
        """Not :func:`_svd_all` for this layer's multipliers ``(K, out, in)``."""
        o, i = self.out_channels, self.in_channels
        return math.prod(self.kept_shape) * o * i * min(o, i) > SVD_ALL_WORK

    def _zero_slice(self, weight: Tensor) -> Tensor:
        """The symmetrized ``k_d = 0`` slice of ``R`` ``(*kept_lead, out, in)`` complex.

        The same floats as that slice of :func:`hermitian_symmetrize` (the same operations).
        """
        d = len(self.modes)
        zero = torch.view_as_complex(weight).select(d - 1, 0)  # (*kept_lead, out, in)
        mirrored = zero.flip(dims=tuple(range(d - 1))) if d > 1 else zero
        return (zero + mirrored.conj()) / 2

    def _pair_rows(self) -> tuple[Tensor, Tensor]:
        """Which multipliers :meth:`_parts` writes, and where each multiplier's bound is.

        On the ``k_d = 0`` slice ``M_{-k} = conj(M_k)`` exactly (the slice is symmetrized, the
        skip is real): the same norm, and the same grid bound bit for bit (the Gram products
        and the factorization see the same floats up to signs, :func:`~liponet.functional.
        grid_norm_upper`'s definition), so only one of each pair is bounded. Returns ``(rows,
        where)``: ``rows`` ``(R,)`` the multipliers of :meth:`_parts`' rows (indices into the
        ``K + 1`` of :meth:`_stacked`: the zero slice's flattened leading indices ``l >= (L -
        1) // 2``, then every ``k_d > 0`` multiplier in order, then the skip ``K``), ``where``
        ``(K + 1,)`` the row holding each multiplier's bound.
        """
        lead, m_d = math.prod(self.kept_shape[:-1]), self.kept_shape[-1]
        half = (lead - 1) // 2
        n = lead * m_d
        grid = torch.arange(n).view(lead, m_d)
        rows = torch.cat([grid[half:, 0], grid[:, 1:].reshape(-1), torch.tensor([n])])
        where = torch.empty(n + 1, dtype=torch.int64)
        where[rows] = torch.arange(len(rows))
        mirror = grid[:half, 0]  # l < half: the partner L - 1 - l is a row
        where[mirror] = where[grid[half:, 0].flip(0)[:half]]
        return rows, where

    def _parts(
        self, weight: Tensor, w: Tensor, zero_slice: Tensor | None = None
    ) -> tuple[Tensor, float]:
        """``[Re M_k; Im M_k]`` ``(R, 2 out, in)`` real for the rows of :meth:`_pair_rows`.

        ``M_k = R_k + W``, the skip ``W`` last. Written from the raw weights ``(*kept, out, in,
        2)`` in one pass (the ``k_d = 0`` slice symmetrized first, as
        :func:`hermitian_symmetrize` does): the same floats as the real and imaginary parts of
        :meth:`_multipliers_in` (``fl(Re R_k + W)``, ``Im R_k + 0``), without the complex sum
        and its restacked copy. Returns the parts and the sum's relative rounding ``e`` (as
        :meth:`_multipliers_in`). ``zero_slice``: :meth:`_zero_slice` of ``weight`` if at hand.
        """
        o, i = self.out_channels, self.in_channels
        lead, m_d = math.prod(self.kept_shape[:-1]), self.kept_shape[-1]
        half = (lead - 1) // 2
        n_zero, n_rest = lead - half, lead * (m_d - 1)
        parts = weight.new_empty((n_zero + n_rest + 1, 2, o, i))
        rest_in = weight.view(lead, m_d, o, i, 2)[:, 1:]  # (L, m_d - 1, o, i, 2)
        rest_out = parts[n_zero : n_zero + n_rest].view(lead, m_d - 1, 2, o, i)
        torch.add(rest_in[..., 0], w, out=rest_out.select(-3, 0))  # Re R_k + W
        torch.add(rest_in[..., 1], 0.0, out=rest_out.select(-3, 1))  # Im R_k + 0 (+0 for -0)
        zero_slice = self._zero_slice(weight) if zero_slice is None else zero_slice
        zero = zero_slice.reshape(lead, o, i)[half:]  # (lead - half, o, i)
        zero_out = parts[:n_zero]
        torch.add(zero.real, w, out=zero_out.select(-3, 0))
        torch.add(zero.imag, 0.0, out=zero_out.select(-3, 1))
        parts[-1, 0] = w
        parts[-1, 1] = 0.0
        u = torch.finfo(weight.dtype).eps / 2
        return parts.view(-1, 2 * o, i), u / (1 - u)

    def _clip_parts_path(self) -> bool:
        """Whether this layer's eval state is ``"clip"``'s from the raw weights' parts."""
        return (
            self.k is not None
            and self.normalization == "clip"
            and self.skip is not None
            and self._clips_from_parts(self.weight.detach(), self.skip.detach())
        )

    def _clip_scaled(self) -> _Scaled:
        """``(None, W, u, s)`` of :meth:`_clip_state_from_parts`: what the certificate needs.

        Cached on its own, so that :meth:`lipschitz_bound` needs neither the eval weights nor
        ``R`` (the a-priori rounding bound of :meth:`_scaled_bound` settles ``"clip"``); the
        eval weights are written from the same scales when first needed (forward, export).
        """
        return self._cache.get("clip_scaled", self._sources(), self._compute_clip_scaled)

    def _compute_clip_scaled(self, weight: Tensor, skip: Tensor) -> _Scaled:
        with torch.no_grad():
            weight, w, k = weight.detach(), skip.detach(), self._target()
            d, o, i = len(self.modes), self.out_channels, self.in_channels
            n = math.prod(self.kept_shape)
            rows, where = self._pair_rows()
            start = self._start_pairs(len(rows), weight.device, rows)
            try:
                parts, x_err = self._parts(weight, w)
                bounds, vectors = grid_norm_upper_parts(parts, start, x_err)
                upper = bounds[where.to(bounds.device)]
            except ValueError:  # NaN/inf (the SVD raises) or a Gram matrix overflowing float32
                r = self._symmetric_spectral(weight).reshape(n, o, i)
                upper = self._exact_norms(r, w) * (1.0 + SVD_RELATIVE_MARGIN)
                vectors = None
            self._norm_memory.vectors = vectors
            scale = (k * (1.0 - CLIP_ROUNDING_ROOM) / upper).clamp_max(1.0)
            pairs = _symmetric_scales(scale[:n], self.kept_shape, d)
            return None, w, upper, torch.cat([pairs, scale[n:]])

    def _clip_state_from_parts(
        self, weight: Tensor, w: Tensor, k: float
    ) -> tuple[tuple[Tensor, Tensor | None], _Scaled]:
        """:meth:`_compute_eval_state` of ``"clip"`` on a large layer, from the raw weights.

        The same floats as the general path (:meth:`_clip_scales` on :meth:`_multipliers_in`,
        then :func:`~liponet.functional.scale_multipliers`): the Gram products run on
        :meth:`_parts` (:func:`~liponet.functional.grid_norm_upper_parts`; one multiplier of
        each conjugate pair, :meth:`_pair_rows`, whose bound is its partner's bit for bit), the
        eval weights ``R'_k = fl(s_k) R_k + fl(s_k - s_W) W`` are written from the raw weights,
        and ``R`` itself is never assembled (the certificate rebuilds it only if the a-priori
        bound does not settle it, :meth:`_scaled_bound`). The bounds and scales are
        :meth:`_clip_scaled`'s (``k`` is the layer's target).
        """
        d, o, i = len(self.modes), self.out_channels, self.in_channels
        n = math.prod(self.kept_shape)
        scaled = self._clip_scaled()
        scale = scaled[3]
        zero_slice = self._zero_slice(weight)
        # scale_multipliers(R, W, scale) written from the raw weights: the same products
        s = scale.to(weight.dtype)
        s_kept = s[:n].view(*self.kept_shape, 1, 1, 1)
        real = weight.new_empty((*self.kept_shape, o, i, 2))
        m_rest = self.kept_shape[-1] - 1
        torch.mul(
            weight.narrow(d - 1, 1, m_rest), s_kept.narrow(d - 1, 1, m_rest),
            out=real.narrow(d - 1, 1, m_rest),
        )  # fmt: skip
        zero = torch.view_as_real(zero_slice)
        torch.mul(zero, s_kept.select(d - 1, 0), out=real.select(d - 1, 0))
        diff = (scale[:n] - scale[n]).to(weight.dtype)  # (K,) s_k - s_W
        if bool(diff.any()):  # the real parts round once (the imaginary ones gain an exact 0)
            real.view(n, o, i, 2)[..., 0].add_(diff[:, None, None] * w)
        weights = (torch.view_as_complex(real), w * s[n])
        return weights, scaled

    @staticmethod
    def _multipliers64(r: Tensor, w: Tensor | None, index: Tensor | None = None) -> Tensor:
        """``M_k = R_k + W`` (``k`` in ``index``; ``k = K``: ``W``) summed in complex128.

        The sum's rounding (``<= 2**-53`` relative per entry, so ``<= 2**-53 sqrt(min(out,
        in)) ||M_k||_2``) is far inside ``SVD_RELATIVE_MARGIN``.
        """
        n = r.shape[0]
        if index is None:
            rows, with_skip = r, w is not None
        else:
            rows, with_skip = r[index[index < n]], bool((index == n).any())
        m = rows.to(torch.complex128)
        if w is not None:
            w128 = w.to(torch.float64).to(torch.complex128)
            m = m + w128
            if with_skip:
                m = torch.cat([m, w128.unsqueeze(0)])
        return m

    @classmethod
    def _exact_norms(cls, r: Tensor, w: Tensor | None, index: Tensor | None = None) -> Tensor:
        """float64 SVD norms of the multipliers ``index`` (all by default), one call."""
        m = cls._multipliers64(r, w, index)
        if not bool(torch.isfinite(m).all()):
            raise ValueError("the weights hold NaN or inf values: no bound exists")
        return spectral_norm_exact(m)

    @staticmethod
    def _multipliers_in(
        r: Tensor, w: Tensor | None, index: Tensor, dtype: torch.dtype | None = None
    ) -> tuple[Tensor, float]:
        """``M_k = R_k + W`` (``k = K``: ``W``) for ``k`` in ``index``, summed in ``dtype``.

        Returns ``(M, e)``: each real component of ``M`` is the exact sum rounded once, so
        within ``e |M|`` of it (``e = u / (1 - u)``, the sum's unit roundoff ``u``; a result in
        the subnormal range is exact), or exact (``e = 0``) without a skip.
        """
        n = r.shape[0]
        dtype = r.dtype if dtype is None else dtype
        rows = index[index < n]
        if w is None:
            return r[rows].to(dtype), 0.0
        wd = w.to(r.real.dtype).to(dtype)
        if len(index) == n + 1 and bool((index == torch.arange(n + 1, device=index.device)).all()):
            m = r.new_empty((n + 1, *r.shape[1:]), dtype=dtype)  # every row: one pass
            torch.add(r.to(dtype), wd, out=m[:n])
            m[n] = wd
        else:
            m = r[rows].to(dtype) + wd
            if len(rows) < len(index):
                m = torch.cat([m, wd.unsqueeze(0)])
        u = torch.finfo(m.real.dtype).eps / 2
        return m, u / (1 - u)

    def _norms(self, r: Tensor, w: Tensor | None, k: float) -> tuple[Tensor, Tensor]:
        """Norms of the multipliers ``M_k = R_k + W`` (and ``W``) for ``"global"``.

        Returns ``(sigma, upper)``, float64 ``(K [+1],)``. ``upper`` bounds every ``||M_k||_2``
        (certified). ``sigma`` is the exact float64 SVD norm where the normalization's scales
        need it (:data:`EXACT_NORMS_NEEDED`) and ``upper`` elsewhere, which gives the same
        scale: a multiplier left out is provably below the largest norm. A small layer
        (:data:`SVD_ALL_WORK`) has every norm computed by SVD, from :data:`ONE_SVD_WORK` on
        those of the likeliest largest and of the multipliers one Cholesky pass does not prove
        below it (:meth:`_norms_one_svd`). Otherwise: (1) with a remembered
        state (the last call's, same shape, dtype and device) its bounds move by the distance
        the weights moved (Weyl's inequality, as in
        :func:`~liponet.functional.drifted_norm_bounds`: ``||M_k - P_k||_2 <= ||R_k -
        R^P_k||_F + ||W - W^P||_F``, one pass, sums rounded up), and the multipliers still in
        contention are those whose bound reaches the largest lower bound; without one (a first
        call) all are. (2) Their Gram matrices are computed once, in the weights' precision
        (:meth:`_gram_tests`). (3) The likeliest largest (the largest lower bound; on a first
        call the largest Rayleigh quotient of the training power-iteration vector after one
        power step) gets an SVD, which sets the threshold (:data:`EXCLUSION_THRESHOLD`). (4)
        Every other contender is proven below a level by Cholesky tests on its Gram matrix
        (:meth:`_prove_below`): the level it was last proven at, else one
        :data:`ESTIMATE_HEADROOM` above its Rayleigh quotient (a close bound, so that the next
        call's drifted bounds exclude it by Weyl's inequality alone), else the threshold, each
        capped :data:`CHOLESKY_GAP` below the threshold. (5) The test in float64 at the cap,
        for near-ties; (6) an SVD of the rest (ties at the top).
        """
        memory = self._norm_memory.value
        w_copy = None if w is None else w.clone()  # the skip's storage is the parameter's
        if _svd_all(r) and _one_svd(r):
            return self._norms_one_svd(r, w, memory, w_copy)
        if _svd_all(r):
            sigma = self._exact_norms(r, w)
            lower, upper = sigma, sigma * (1.0 + SVD_RELATIVE_MARGIN)
            self._norm_memory.value = (r, w_copy, lower, upper, sigma * (1.0 + ESTIMATE_HEADROOM))
            return sigma, upper
        n_rows = r.shape[0] + int(w is not None)
        if not (
            memory is None
            or memory[0].shape != r.shape
            or memory[0].dtype != r.dtype
            or memory[0].device != r.device
            or (memory[1] is None) != (w is None)
        ):
            r_prev, w_prev, lower0, upper0, proven = memory
            proven = proven.clone()
            dist = distance_upper_fast(r, r_prev)  # (K,) bounds of ||R_k - R^P_k||_F
            if not bool(torch.isfinite(dist).all()):  # a square overflowed, or NaN/inf
                dist = distance_upper(r, r_prev)
            if w is not None and w_prev is not None:
                dw = distance_upper(w.unsqueeze(0), w_prev.unsqueeze(0))  # (1,)
                dist = torch.cat([add_up(dist, dw), dw])
            if not bool(torch.isfinite(dist).all()):
                raise ValueError("the weights hold NaN or inf values: no bound exists")
            lower, upper = lower0 - dist, add_up(upper0, dist)  # Weyl: ||M - P||_2 <= ||.||_F
            likely: Tensor | None = lower
        else:  # a first call: every multiplier in contention
            if not (_all_finite(r) and (w is None or _all_finite(w))):
                raise ValueError("the weights hold NaN or inf values: no bound exists")
            zeros = torch.zeros(n_rows, dtype=torch.float64, device=r.device)
            lower, upper, proven = zeros, zeros + math.inf, zeros + math.inf
            likely = None
        sigma = upper.clone()
        rule = EXACT_NORMS_NEEDED[self.normalization]
        threshold = EXCLUSION_THRESHOLD[self.normalization]
        need = rule(lower, upper, k)
        if bool(need.any()):
            tests = []
            if likely is None:  # a first call: every Gram matrix, Rayleigh quotients to choose
                tests = self._gram_tests(r, w, need.nonzero().squeeze(1))
                likely = torch.zeros_like(lower)
                for c in tests:
                    c.estimate()
                    likely[c.rows] = c.rho
            # The likeliest largest first: its exact norm sets the threshold.
            first = torch.where(need, likely, -math.inf).argmax().reshape(1)
            self._exact_into(r, w, first, sigma, lower, upper, proven)
            cap = threshold(lower, k) * (1.0 - CHOLESKY_GAP)
            if not tests:  # the contenders left: their Gram matrices
                need = rule(lower, upper, k) & (lower < cap)
                need[first] = False
                if bool(need.any()):
                    tests = self._gram_tests(r, w, need.nonzero().squeeze(1))
            for attempt in range(1 + RETHRESHOLDS):
                for c in tests:
                    self._prove_below(c, first, cap, lower, upper, proven)
                need = rule(lower, upper, k)
                need[first] = False
                failed = need & (lower < cap)
                if attempt == RETHRESHOLDS or int(failed.sum()) <= RETHRESHOLD_ROWS:
                    break
                # Many failed: the largest is likely among them. The likeliest (Rayleigh
                # quotients after one power step) gets an SVD; if it is larger, a higher
                # threshold for the others.
                likely = torch.full_like(lower, -math.inf)
                for c in tests:
                    pos = failed[c.rows].nonzero().squeeze(1)
                    c.estimate(pos)
                    likely[c.rows[pos]] = c.rho[pos]
                nxt = likely.argmax().reshape(1)
                if not bool(torch.isfinite(likely[nxt]).all()):
                    break
                self._exact_into(r, w, nxt, sigma, lower, upper, proven)
                first = torch.cat([first, nxt])
                raised = threshold(lower, k) * (1.0 - CHOLESKY_GAP)
                if raised <= cap:
                    break
                cap = raised
            need = rule(lower, upper, k)
            need[first] = False
            rows = (need & (lower < cap)).nonzero().squeeze(1)
            if len(rows):  # near-ties: the test in float64, at the cap
                x, x_err = self._multipliers_in(r, w, rows, torch.complex128)
                levels = torch.full((len(rows),), cap, dtype=torch.float64, device=r.device)
                proved = cholesky_norm_upper(x, levels, None, x_err)
                upper[rows] = torch.minimum(upper[rows], proved)
            sigma = upper.clone()
            sigma[first] = lower[first]  # its exact norm
            need = rule(lower, upper, k)
            need[first] = False
            rest = need.nonzero().squeeze(1)
            if len(rest):
                self._exact_into(r, w, rest, sigma, lower, upper, proven)
        # A copy of the skip: the parameter's own storage would move with it.
        self._norm_memory.value = (r, w_copy, lower, upper, proven)
        return sigma, upper

    def _norms_one_svd(
        self, r: Tensor, w: Tensor | None, memory: Any, w_copy: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`_norms` of a small layer from :data:`ONE_SVD_WORK` on: one SVD, one test pass.

        The likeliest largest multiplier (the largest SVD norm of the last call, remembered with
        the same shapes; on a first call the largest Rayleigh quotient of the training
        power-iteration vectors after one power step, :class:`_Contenders`) gets a float64 SVD;
        every multiplier is then tested once at the cap ``(1 - CHOLESKY_GAP)`` times that norm
        (one Gram matrix and one Cholesky factorization each, in the weights' precision,
        batched: :meth:`_gram_tests`, the proof of :func:`~liponet.functional.
        cholesky_norm_upper`), and every one the test does not prove below the cap (the SVD'd
        one, near-ties, a larger norm) gets an SVD too. A multiplier proven below the cap is
        below the largest norm, so the scale ``k / max`` is that of the SVD of every
        multiplier, bit for bit (each SVD is the same LAPACK call on the same floats, alone or
        in a batch), and so is the certificate: :meth:`_scaled_bound` compares only the
        multipliers whose bounds reach the largest's, which are the SVD'd ones in both cases
        (a bound at the cap lies ``CHOLESKY_GAP`` below it). The estimates choose which
        multiplier is SVD'd first, never a bound. Returns ``(sigma, upper)`` as :meth:`_norms`.
        """
        n_rows = r.shape[0] + int(w is not None)
        finite = bool(torch.isfinite(torch.view_as_real(r) if r.is_complex() else r).all())
        if not finite or (w is not None and not bool(torch.isfinite(w).all())):
            raise ValueError("the weights hold NaN or inf values: no bound exists")
        device = r.device
        tests = self._gram_tests(r, w, torch.arange(n_rows, device=device))
        if (
            memory is not None
            and memory[0].shape == r.shape
            and memory[0].dtype == r.dtype
            and memory[0].device == device
            and (memory[1] is None) == (w is None)
        ):
            likely = memory[2]  # the last call's lower bounds: its SVD norms, zeros elsewhere
        else:
            likely = torch.zeros(n_rows, dtype=torch.float64, device=device)
            for c in tests:
                c.estimate()
                likely[c.rows] = c.rho
        sigma = torch.zeros(n_rows, dtype=torch.float64, device=device)
        lower, upper, proven = sigma.clone(), sigma + math.inf, sigma + math.inf
        first = likely.argmax().reshape(1)
        self._exact_into(r, w, first, sigma, lower, upper, proven)
        cap = float(lower[first]) * (1.0 - CHOLESKY_GAP)
        for c in tests:
            level2 = torch.full((len(c.rows),), cap * cap, dtype=torch.float64, device=device)
            bound = c.test.run(None, level2)[0]
            hit = c.rows[torch.isfinite(bound)]
            upper[hit] = torch.minimum(upper[hit], bound[torch.isfinite(bound)])
            proven[hit] = cap
        exact = ~torch.isfinite(upper)
        exact[first] = False
        rest = exact.nonzero().squeeze(1)
        if len(rest):
            self._exact_into(r, w, rest, sigma, lower, upper, proven)
        exact[first] = True
        sigma = torch.where(exact, sigma, upper)
        self._norm_memory.value = (r, w_copy, lower, upper, proven)
        return sigma, upper

    def _gram_tests(self, r: Tensor, w: Tensor | None, rows: Tensor) -> list[_Contenders]:
        """Gram matrices of the multipliers ``rows``, in chunks (:class:`_Contenders`).

        :class:`~liponet.functional._GramTest` (the Cholesky test of
        :func:`~liponet.functional.cholesky_norm_upper`, its rounding proven there) on ``M_k =
        fl(R_k + W)`` in the weights' precision, the sum's rounding allowed for. With ``out >=
        in`` the products run on the real parts ``[Re M_k; Im M_k]``, written chunk by chunk as
        the products read them (the same floats as :meth:`_multipliers_in`'s). The start vectors
        of the Rayleigh quotients are the training power-iteration vectors ``u_k`` (``M_k u_k``
        where the Gram matrix is ``M M^H``).
        """
        o, i = self.out_channels, self.in_channels
        parts = o >= i and r.is_complex()
        u = torch.view_as_complex(self.u.detach())
        out = []
        for a, b in chunks(len(rows), max(1, o * i // GRID_CHUNK_FACTOR)):
            sel = rows[a:b]
            if parts:  # written chunk by chunk as the products read them (_PartRows)
                x_err = 0.0
                if w is not None:
                    eps = torch.finfo(r.real.dtype).eps / 2
                    x_err = eps / (1 - eps)
                write = self._gram_parts_writer(r, w, sel)
                x_rows = _PartRows(write, (len(sel), 2 * o, i), r.real.dtype, r.device)
                test = _GramTest(x_rows, x_err, parts=True)
            else:
                x, x_err = self._multipliers_in(r, w, sel)
                test = _GramTest(x, x_err)
            v = u[sel].to(test.conj_neg.dtype)  # right vectors (K [+1], in)
            if not test.right:  # the Gram matrix M M^H: left vectors M u
                v = torch.bmm(x, v.unsqueeze(-1)).squeeze(-1)
            out.append(_Contenders(sel, test, v))
        return out

    @staticmethod
    def _gram_parts_writer(
        r: Tensor, w: Tensor | None, sel: Tensor
    ) -> Callable[[int, int, Tensor], None]:
        """Writes ``[Re M_k; Im M_k]`` of the multipliers ``sel[a:b]`` (:class:`_PartRows`).

        ``M_k = fl(R_k + W)`` (``k = K``: ``W``), as :meth:`_multipliers_in` sums it: the real
        parts ``fl(Re R_k + W)``, the imaginary ones ``Im R_k + 0`` (the sum's, ``-0``
        becoming ``+0``); without a skip the parts of ``R_k`` themselves.
        """
        n, o, i = r.shape
        rr = torch.view_as_real(r)  # (K, out, in, 2)

        def write(a: int, b: int, out: Tensor) -> None:
            x = out.view(b - a, 2, o, i)
            index = sel[a:b]
            spectral = index[index < n]
            m = len(spectral)
            g = rr.index_select(0, spectral)  # (m, out, in, 2), a small copy in cache
            if w is None:
                x[:, 0].copy_(g[..., 0])
                x[:, 1].copy_(g[..., 1])
                return
            torch.add(g[..., 0], w, out=x[:m, 0])  # fl(Re R_k + W)
            torch.add(g[..., 1], 0.0, out=x[:m, 1])  # Im R_k + 0
            if m < b - a:  # W itself
                x[m:, 0] = w
                x[m:, 1] = 0.0

        return write

    def _prove_below(
        self,
        c: _Contenders,
        first: Tensor,
        cap: float,
        lower: Tensor,
        upper: Tensor,
        proven: Tensor,
    ) -> None:
        """Cholesky tests proving the multipliers ``c.rows`` below levels ``<= cap``, in place.

        Each contender (``upper >= max(lower)``, ``lower < cap``, not in ``first``) is tested
        at up to three levels, each above the last tried: ``min(cap, proven)`` (the level last
        proven) and ``min(cap, e)`` with ``e = (1 + ESTIMATE_HEADROOM) rho^(1/2)`` (``rho`` the
        Rayleigh quotient of :meth:`_Contenders.estimate`; where it is not reliable, ``e`` no
        lower than :data:`STEP_BELOW_CAP` below ``cap``), the estimate first where none was
        proven or the last level is ``cap``, then ``cap``. A success gives ``upper`` the bound
        it proves and ``proven`` the level. Of the levels proven only at ``cap`` (which may lie
        far above the norm), a few (:data:`ESTIMATE_MIN_ROWS`, :data:`ESTIMATE_FRACTION`) are
        tightened by one more test, one :data:`ESTIMATE_HEADROOM` above ``eigvalsh``'s top
        eigenvalue of the Gram matrix, so that later calls' drifted bounds exclude them by
        Weyl's inequality alone. Where every test fails nothing changes. The estimates only
        choose levels; a level that ``rho`` (a proven lower bound of the computed Gram matrix's
        top eigenvalue, where computed) rules out is not tried
        (:meth:`~liponet.functional._GramTest.fails_surely`).
        """
        sel, test = c.rows, c.test
        rule = EXACT_NORMS_NEEDED[self.normalization]
        contend = rule(lower, upper, 0.0) & (lower < cap)
        contend[first] = False
        live = contend[sel]
        if not bool(live.any()):
            return
        device = lower.device
        caps = torch.full((len(sel),), cap, dtype=torch.float64, device=device)
        last = torch.minimum(caps, proven[sel])  # inf where none was proven: cap
        ahead = live & (last >= caps)  # no level proven below the cap: estimates first
        c.estimate(ahead.nonzero().squeeze(1))
        done = ~live
        tried = torch.zeros(len(sel), dtype=torch.float64, device=device)
        at_cap = torch.zeros_like(done)
        for stage in ("first", "second", "cap", "tighten"):
            if stage == "first":
                levels = torch.where(ahead, c.level(cap), last)
            elif stage == "second":
                c.estimate((~done & ~ahead).nonzero().squeeze(1))
                levels = torch.where(ahead, last, c.level(cap))
            elif stage == "cap":
                levels = caps
            else:  # a few levels proven at the cap, tightened (eigvalsh: an estimate)
                index = at_cap.nonzero().squeeze(1)
                budget = max(ESTIMATE_MIN_ROWS, int(ESTIMATE_FRACTION * len(lower)))
                index = index[c.rho[index].argsort()[:budget]]  # the farthest below the cap
                if not len(index):
                    break
                top = _top_eigenvalue_estimate(-test.conj_neg[index].mT, test.trace_h[index])
                levels = caps.clone()
                levels[index] = top.sqrt() * (1.0 + ESTIMATE_HEADROOM)
                index = index[levels[index] * (1.0 + 2 * ESTIMATE_HEADROOM) < cap]
                done[index] = False
                tried[index] = math.inf
            todo = ~done & (levels < tried) if stage == "tighten" else ~done & (levels > tried)
            todo &= ~test.fails_surely(None, levels.square(), c.rho)
            index = todo.nonzero().squeeze(1)
            if not len(index):
                continue
            every = len(index) == len(sel)
            rows = None if every else index
            proved = test.run(rows, levels[index].square(), need_factor=False)[0]
            ok = proved <= levels[index]
            if stage != "tighten":
                tried[index] = levels[index]
            good = index[ok]
            hit = sel[good]
            upper[hit] = torch.minimum(upper[hit], proved[ok])
            proven[hit] = levels[good]
            done[good] = True
            at_cap[good] = levels[good] >= caps[good]

    def _clip_scales(self, r: Tensor, w: Tensor | None, k: float) -> tuple[Tensor, Tensor]:
        """Eval scales ``min(1, k' / u_k)`` of ``normalization="clip"`` and the bounds ``u_k``.

        float64 ``(K [+1],)`` each. ``u_k`` is a proven upper bound of ``||M_k||_2`` (and of
        ``||W||_2``), a function of the weights alone: the bound of the first level of a fixed
        grid that a Cholesky test in the weights' precision proves
        (:func:`~liponet.functional.grid_norm_upper`; the Gram product and the factorization in
        float32 for float32 weights, the rounding margin :func:`~liponet.functional.
        cholesky_rounding_constant` proven), within about :data:`CLIP_HEADROOM` of the norm.
        The search starts from the pairs of vectors remembered from the last call (the top
        two eigenvectors of each Gram matrix, about; on a first call the training
        power-iteration vectors, :meth:`_start_pairs`): one Gram product, two matrix-vector
        products (of two columns and one) and one or two factorizations per multiplier, no
        eigendecomposition; a pair, not one vector, because near-tied top singular values
        cross as training moves them. The vectors choose
        where the search begins, never its result (``tests/test_clip_certificate.py``); the
        float64 SVD decides only where the Gram matrix overflows float32. The scale is ``min(1,
        k' / u_k)`` with ``k' = k (1 - CLIP_ROUNDING_ROOM)``: every scaled multiplier has norm
        ``<= k'`` by construction, a clipped one at most about ``2 CLIP_HEADROOM`` below it. A
        small layer (:data:`SVD_ALL_WORK`) keeps the exact-norm scales ``min(1, k / s_k)`` of
        its float64 SVD norms ``s_k`` (cheaper there, and the eval weights of earlier
        releases). Of each conjugate pair on the ``k_d = 0`` slice only one multiplier is
        bounded (:meth:`_pair_rows`: the other's bound is the same, bit for bit).
        """
        if _svd_all(r):  # a small layer: the SVD norms themselves (the exact-norm clip's scales)
            sigma = self._exact_norms(r, w)
            return SCALAR_NORMALIZATIONS["clip"](sigma, k), sigma * (1.0 + SVD_RELATIVE_MARGIN)
        rows, where = self._pair_rows()  # one of each conjugate pair (the same bound)
        if w is None:
            rows, where = rows[:-1], where[:-1]
        rows, where = rows.to(r.device), where.to(r.device)
        x, x_err = self._multipliers_in(r, w, rows)
        start = self._start_pairs(len(rows), x.device, rows)
        try:
            bounds, vectors = grid_norm_upper(x, start, x_err)
            upper = bounds[where]
        except ValueError:  # NaN/inf (the SVD raises) or a Gram matrix overflowing float32
            upper = self._exact_norms(r, w) * (1.0 + SVD_RELATIVE_MARGIN)
            vectors = None
        self._norm_memory.vectors = vectors
        return (k * (1.0 - CLIP_ROUNDING_ROOM) / upper).clamp_max(1.0), upper

    def _exact_into(
        self,
        r: Tensor,
        w: Tensor | None,
        index: Tensor,
        sigma: Tensor,
        lower: Tensor,
        upper: Tensor,
        proven: Tensor,
    ) -> None:
        """SVD norms of the multipliers ``index`` written into the arrays of :meth:`_norms`."""
        exact = self._exact_norms(r, w, index)
        sigma[index] = exact
        lower[index] = exact
        upper[index] = exact * (1.0 + SVD_RELATIVE_MARGIN)
        proven[index] = exact * (1.0 + ESTIMATE_HEADROOM)

    def multipliers(self) -> tuple[Tensor, Tensor | None]:
        """The eval-mode multipliers in float64: ``(W' + R'_k (K, out, in), W' or None)``."""
        return self._cache.get("multipliers", self._sources(), self._compute_multipliers)

    def _compute_multipliers(self, *sources: Tensor) -> tuple[Tensor, Tensor | None]:
        r, w = self.effective_weights()
        mk = r.to(torch.complex128).reshape(-1, self.out_channels, self.in_channels)
        if w is None:
            return mk, None
        w64 = w.to(torch.float64)
        return mk + w64.to(torch.complex128), w64

    # ------------------------------------------------------------------ module API
    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer to ``(batch, in_channels, *spatial)``."""
        check_field(x, self.in_channels, self.modes)
        r, w = self._train_weights() if self.training else self.effective_weights()
        return spectral_apply(x, r, w, self.bias, self.modes)

    def lipschitz_bound(self) -> float:
        """``max(max_k ||W' + R'_k||, ||W'||)`` by float64 SVD (upper bound; cached)."""
        return self._cache.get("bound", self._sources(), self._compute_bound)

    def _compute_bound(self, *sources: Tensor) -> float:
        if self._clip_parts_path():  # the bounds and scales only: no eval weights needed
            return self._scaled_bound(None, None, *self._clip_scaled())
        (r_eval, w_eval), scaled = self._eval_state()
        if isinstance(scaled, float):  # certified with the eval weights (_polished_bound)
            return scaled
        if scaled is not None:  # no SVD here: the norms of M_k are bounded, the scales known
            return self._scaled_bound(r_eval, w_eval, *scaled)
        if self.k is not None and self.normalization in NORM_FREE:
            return self._eval_isometry_bound(r_eval, w_eval)
        mk, w = self.multipliers()
        bound = float(spectral_norm_upper(mk).max())
        if w is not None:
            bound = max(bound, float(spectral_norm_upper(w)))
        return bound

    def _eval_isometry_bound(self, r: Tensor, w: Tensor | None) -> float:
        """:meth:`_isometry_bound` of the eval weights ``W' + R'_k`` (and ``W'``), chunk by chunk.

        Each multiplier is formed in complex128 as :meth:`multipliers` forms it (the same
        floats, ``fl(R'_k + W')``) one chunk at a time, without the full float64 copy, and
        only one of each conjugate pair is bounded (:meth:`_pair_rows`: the eval weights satisfy
        ``R'_{-k} = conj(R'_k)`` exactly on the ``k_d = 0`` slice, :func:`hermitian_symmetrize`'s
        average being its partner's conjugate bit for bit, and ``W'`` is real, so ``W' +
        R'_{-k} = conj(W' + R'_k)``: the same singular values).
        """
        o, i = self.out_channels, self.in_channels
        rk = r.reshape(-1, o, i)
        rows = self._pair_rows()[0][:-1].to(rk.device)  # the skip W' is fetched on its own
        w128 = None if w is None else w.to(torch.float64).to(torch.complex128)

        def fetch(index: Tensor) -> Tensor:
            if w128 is not None and bool((index == len(rows)).any()):
                # the skip W' alone: the last row
                head = rk[rows[index[:-1]]].to(torch.complex128) + w128
                return torch.cat([head, w128.unsqueeze(0)])
            a = rk[rows[index]].to(torch.complex128)
            return a if w128 is None else a + w128

        return _isometry_bound_of(fetch, len(rows) + int(w is not None), o, i, rk.device)

    def _polished_bound(self, q: Tensor, norms: Tensor, r: Tensor, w: Tensor | None) -> float:
        """The certificate of :data:`POLISHED_EVAL`'s eval weights from their construction.

        ``q`` ``(K [+1], out, in)`` the rounded multipliers ``Q'_j`` before :meth:`_split`,
        ``norms`` upper bounds ``b_j`` of their norms
        (:func:`~liponet.functional.polished_isometry_bound`), ``r``, ``w`` the eval weights
        ``R'_k``, ``W'``. One of each conjugate pair is bounded (:meth:`_pair_rows`, as in
        :meth:`_eval_isometry_bound`). Proof: ``W' = Re Q'_W`` exactly, and ``||Re Z||_2 <=
        (||Z||_2 + ||conj Z||_2) / 2``: ``||W'|| <= b_W``. A multiplier ``A_k = R'_k + W'``,
        ``R'_k = fl(B_k - W')``, is close to ``C_k``: ``B_k = C_k = Q'_k`` for ``k_d > 0``, and
        on the ``k_d = 0`` slice ``B_k = fl(C_k)``, ``C_k = (Q'_k + conj Q'_{-k}) / 2``
        (:func:`hermitian_symmetrize`), of norm ``<= max(b_k, b_{-k})`` =: ``c_k``. So
        ``||A_k||_2 <= c_k + ||A_k - C_k||_F``; the distance is computed in float64 (``A_k``
        and ``C_k`` formed with one rounding per entry each, ``u ||.||_F`` apiece with ``||C_k||_F
        <= sqrt(p) c_k`` and ``||A_k||_F <= ||C_k||_F + ||A_k - C_k||_F``; the difference
        rounded once per entry; the sum of squares as in
        :func:`~liponet.functional.isometry_norm_upper`), a few float64 operations covered by
        ``1 + 1e-12``. The certificate is the largest of these bounds where it is within
        ``1e-6`` of the lower bound ``||A||_F / sqrt(min(out, in))`` of the multiplier with the
        largest bound (so of the largest norm; every bound of near-isometries is); the
        multipliers above that (``b`` infinite: its premise unproven, or far from multiples of
        isometries) get :func:`_isometry_bound_of` (a Gram product, else an SVD). NaN or inf
        weights raise ``ValueError``.
        """
        o, i = self.out_channels, self.in_channels
        p = min(o, i)
        lead, m_d = math.prod(self.kept_shape[:-1]), self.kept_shape[-1]
        half = (lead - 1) // 2
        n = lead * m_d
        u = 2.0**-53
        rel = (1.0 + 2 * (2 * o * i + 2) * u) / (1.0 - u)
        slack = 4 * o * i * torch.finfo(torch.float64).tiny
        w64 = None if w is None else w.to(torch.float64)
        grid_r, grid_q = r.reshape(lead, m_d, o, i), q[:n].view(lead, m_d, o, i)
        grid_b = norms[:n].view(lead, m_d)
        bounds = []

        def measure(a32: Tensor, near: Tensor, c: Tensor) -> None:
            # A = R' + W' in float64 (real view), then A - C; c the bounds of ||C||_2
            a = torch.view_as_real(a32).to(torch.float64, copy=True)  # never a view of R'
            if w64 is not None:
                a[..., 0] += w64
            dist = torch.linalg.vector_norm(a.sub_(near), dim=(-3, -2, -1)) * rel
            dist = dist * (1.0 + 2 * u) + 2.02 * u * (2 * math.sqrt(p) * c + dist)
            bounds.append((c + dist + slack) * (1.0 + 1e-12))

        zero_q, zero_b = grid_q[:, 0], grid_b[:, 0]
        for s, e in chunks(lead - half, o * i):  # the k_d = 0 slice, l >= half
            # C = (Q'_l + conj Q'_{L-1-l}) / 2, formed as conj(conj Q'_l + Q'_{L-1-l}) / 2
            own, mirror = slice(half + s, half + e), slice(half - e + 1, half - s + 1)
            near = torch.view_as_real(zero_q[own]).to(torch.float64, copy=True)
            near[..., 1].neg_()
            near.add_(torch.view_as_real(zero_q[mirror].flip(0))).div_(2)
            near[..., 1].neg_()
            measure(grid_r[own, 0], near, torch.maximum(zero_b[own], zero_b[mirror].flip(0)))
        for s, e in chunks(lead, (m_d - 1) * o * i) if m_d > 1 else []:  # k_d > 0: C = Q'_k
            near = torch.view_as_real(grid_q[s:e, 1:]).reshape(-1, o, i, 2)
            measure(grid_r[s:e, 1:].reshape(-1, o, i), near, grid_b[s:e, 1:].reshape(-1))
        bound = torch.cat(bounds if w64 is None else [*bounds, norms[-1:]])  # ||W'|| <= b_W
        rows = self._pair_rows()[0].to(q.device)  # the order above: zero slice, k_d > 0, skip
        w128 = None if w64 is None else w64.to(torch.complex128)

        def fetch(index: Tensor) -> Tensor:  # the multipliers A of rows[index]
            pick = rows[index]
            a = r.reshape(n, o, i)[pick.clamp_max(n - 1)].to(torch.complex128)
            if w128 is not None:
                a = a + w128
                a[pick == n] = w128
            return a

        # a lower bound of the largest norm: ||A||_F / sqrt(p) of the row with the largest bound
        top = bound.nan_to_num(math.inf).argmax().reshape(1)
        lower = float(_frobenius64(fetch(top))) / math.sqrt(p)
        if not math.isfinite(lower):
            raise ValueError("the weights hold NaN or inf values: no spectral-norm bound exists")
        tight = bound <= lower * (1.0 + 1e-6)  # NaN or inf: False
        result = float(bound[tight].max()) if bool(tight.any()) else 0.0
        loose = (~tight).nonzero().squeeze(1)
        if len(loose):
            fallback = _isometry_bound_of(lambda sel: fetch(loose[sel]), len(loose), o, i, q.device)
            result = max(result, fallback)
        return result

    @staticmethod
    def _isometry_bound(mk: Tensor, w: Tensor | None) -> float:
        """``max(max_k ||A_k||_2, ||W'||_2)`` for multipliers that are ``k`` times isometries.

        :func:`~liponet.functional.isometry_norm_upper` (one Gram product each, guaranteed);
        where it is not within ``1e-6`` of the lower bound ``||A||_F / sqrt(min(out, in))`` of
        the norm (a multiplier far from a multiple of an isometry), the SVD bound instead.
        """
        mats = mk if w is None else torch.cat([mk, w.to(mk.dtype).unsqueeze(0)])
        rows, cols = mats.shape[1:]
        return _isometry_bound_of(lambda index: mats[index], len(mats), rows, cols, mats.device)

    def _scaled_bound(
        self,
        r_eval: Tensor | None,
        w_eval: Tensor | None,
        r: Tensor | None,
        w: Tensor | None,
        upper: Tensor,
        scale: Tensor,
    ) -> float:
        """``max_k ||A_k||_2`` bounded for ``A_k = R'_k + W'`` (and ``W'``), ``B_k = s_k M_k``.

        ``||A_k|| <= s_k ||M_k|| + ||A_k - B_k||_F``. The rounding term is first bounded a
        priori (:func:`~liponet.functional.scale_multipliers_error`, with ``||R_k||_F <=
        sqrt(min(out, in)) ||M_k||_2 + ||W||_F``); it is computed from the weights
        (:func:`~liponet.functional.perturbed_norm_upper`, float64) only for the multipliers
        whose a-priori bound exceeds the computed bound of the largest: the others provably
        cannot set the maximum, so the result equals computing every one. ``r`` ``None``: the
        symmetrized spectral weights of the current parameters, assembled only if needed;
        ``r_eval`` ``None``: the eval weights, of the weights' dtype, built only if needed.
        """
        o, i = self.out_channels, self.in_channels
        n = math.prod(self.kept_shape)
        eval_dtype = self.weight.dtype if r_eval is None else r_eval.real.dtype
        b_norm = upper * scale  # (K [+1],) bounds of ||B_k||
        w_fro = None
        if w is not None:
            w_fro = torch.linalg.vector_norm(w, dtype=torch.float64) * (1.0 + 1e-6)
        r_fro = math.sqrt(min(o, i)) * upper[:n] + (0.0 if w_fro is None else w_fro)
        err = scale_multipliers_error(r_fro, w_fro, scale, eval_dtype, o * i)
        prior = b_norm * (1.0 + 1e-12) + err  # rigorous per-multiplier bounds of ||A_k||
        if not bool(torch.isfinite(prior).all()):
            raise ValueError("the weights hold NaN or inf values: no spectral-norm bound exists")
        large = self._large()
        if self.normalization == "clip" and large and float(prior.max()) <= (self.k or 0.0):
            # Clipped norms lie between about k' / (1 + CLIP_HEADROOM) and k' (_clip_scales):
            # the a-priori bounds already certify k, and comparing hundreds of multipliers
            # near the top with their exact values would cost more than the rest.
            return float(prior.max())
        if r_eval is None:
            r_eval, w_eval = self.effective_weights()
        r_eval = r_eval.reshape(n, o, i)
        w128 = None if w is None else w.to(torch.float64).to(torch.complex128)
        w128_eval = None if w_eval is None else w_eval.to(torch.float64).to(torch.complex128)

        def exact(index: Tensor) -> float:
            # The multipliers as the forward applies them (W' + R'_k summed in float64)
            # against B_k = s_k (R_k + W); their float64 rounding is within ROUNDING_SLACK.
            bound = 0.0
            rows = index[index < n]
            spectral = r
            if spectral is None and len(rows):  # built from the parameters' parts: R now
                spectral = self._symmetric_spectral(self.weight.detach()).reshape(n, o, i)
            for a0, a1 in chunks(len(rows), o * i):
                assert spectral is not None
                sel = rows[a0:a1]
                a = r_eval[sel].to(torch.complex128)
                b = spectral[sel].to(torch.complex128)
                if w128 is not None and w128_eval is not None:
                    a, b = a + w128_eval, b + w128
                b = b * scale[sel, None, None]
                bound = max(bound, float(perturbed_norm_upper(a, b, b_norm[sel]).max()))
            if w128 is not None and w128_eval is not None and bool((index == n).any()):
                b = w128.unsqueeze(0) * scale[n:]
                skip_bound = perturbed_norm_upper(w128_eval.unsqueeze(0), b, b_norm[n:])
                bound = max(bound, float(skip_bound.max()))
            return bound

        first = b_norm.argmax().reshape(1)
        bound = exact(first)
        near = prior > bound
        near[first] = False
        if bool(near.any()):
            bound = max(bound, exact(near.nonzero().squeeze(1)))
        return bound

    def export(self) -> SpectralMultiplier:
        """A plain :class:`SpectralMultiplier` with the eval weights."""
        r, w = self.effective_weights()
        return SpectralMultiplier(
            r, w, None if self.bias is None else self.bias.detach(), self.modes
        )

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"modes={self.modes}, k={self.k}, skip={self.skip is not None}, "
            f"normalization={self.normalization!r}"
        )


def clip_trains_together(convs: Sequence[LipSpectralConv]) -> bool:
    """Whether :func:`clip_train_weights` takes these layers: ``"clip"`` with a skip, one shape.

    Every layer constrained (``k`` set), normalized by ``"clip"``, with a skip, and all of one
    ``(in, out, modes, k, n_power, exact_train_norms)``, dtype and device.
    """
    first = convs[0]
    key = (
        first.in_channels,
        first.out_channels,
        first.modes,
        first.k,
        first.n_power,
        first.exact_train_norms,
    )
    return all(
        c.k is not None
        and c.normalization == "clip"
        and c.skip is not None
        and (c.in_channels, c.out_channels, c.modes, c.k, c.n_power, c.exact_train_norms) == key
        and c.weight.dtype == first.weight.dtype
        and c.weight.device == first.weight.device
        for c in convs
    )


def clip_train_weights(
    convs: Sequence[LipSpectralConv], stack: bool = True
) -> tuple[Tensor, Tensor]:
    """Training weights of ``"clip"`` layers with a skip, computed for all of them at once.

    The same weights (to float rounding) as each layer's own training forward: one warm-started
    power step per multiplier (each layer's vectors ``u`` updated in place), then
    :class:`_ClipTrainWeights` on the layers stacked, one autograd node for all of them.

    Parameters
    ----------
    convs
        Layers for which :func:`clip_trains_together` holds.
    stack
        ``True``: a layer axis ``B``; ``False`` (one layer): none.

    Returns
    -------
    tuple
        ``(R' (*kept, B, out, in) complex, W' (B, out, in))`` (without ``B`` for
        ``stack=False``).
    """
    first = convs[0]
    d = len(first.modes)
    weight: Tensor
    skip: Tensor | None
    if not stack:
        weight, skip = first.weight, first.skip
        u0 = torch.view_as_complex(first.u)  # (K + 1, in)
    else:
        weight = torch.stack([c.weight for c in convs], dim=d)  # (*kept, B, out, in, 2)
        skip = torch.stack([c.skip for c in convs if c.skip is not None])  # (B, out, in)
        u0 = torch.view_as_complex(torch.stack([c.u for c in convs], dim=1))  # (K + 1, B, in)
    assert skip is not None
    with torch.no_grad():
        r = hermitian_symmetrize(torch.view_as_complex(weight.detach()), d)
        r = r.reshape(-1, *r.shape[d:])  # (K, [B,] out, in)
        w = skip.detach().to(r.dtype)
        m = torch.cat([r + w, w.unsqueeze(0)], 0)  # (K + 1, [B,] out, in)
        u = _train_vectors(m, u0, first.n_power, first.exact_train_norms)
        if not stack:
            first.u.copy_(torch.view_as_real(u))
        else:
            for j, c in enumerate(convs):
                c.u.copy_(torch.view_as_real(u[:, j]))
    weights: tuple[Tensor, Tensor] = _ClipTrainWeights.apply(weight, skip, u, m, first._target(), d)
    return weights


def exact_train_norms(model: nn.Module, enabled: bool = True) -> int:
    """Train every :class:`LipSpectralConv` in ``model`` with exact norms (or switch it back).

    A constrained layer's training forward normalizes its multipliers by ``sigma_k = ||M_k
    u_k||`` with ``u_k`` from one warm-started power step per optimizer step: an estimate from
    below that lags the moving weights, while eval normalizes by the exact norms. With
    ``enabled`` the training forward first sets ``u_k`` to the exact top right singular vectors
    (:func:`exact_vectors`: a batched float64 ``eigh`` of each multiplier's Gram), so training
    and eval apply the same normalization up to float32 rounding; gradients flow as before
    (through ``sigma_k = ||M_k u_k||`` at fixed ``u_k``, which is the gradient of the exact norm
    where the top singular value is simple). The certificate never depends on it (eval weights
    are exact either way, except ``"clip"`` on layers above :data:`SVD_ALL_WORK`, whose eval
    scales divide by proven bounds up to about :data:`CLIP_HEADROOM` above the exact norms).
    The flag is module state, not a parameter: a model rebuilt from a checkpoint trains with
    power iteration until this is called again.

    Parameters
    ----------
    model
        Any module; its :class:`LipSpectralConv` submodules with ``k`` set are switched.
    enabled
        ``True``: exact norms; ``False``: power iteration (the default of every layer).

    Returns
    -------
    int
        How many layers were switched.

    Examples
    --------
    >>> from liponet.models import LipFNO
    >>> model = LipFNO(1, 1, modes=(4,), width=8, depth=2)
    >>> exact_train_norms(model) > 0
    True
    """
    convs = _constrained_convs(model)
    for conv in convs:
        conv.exact_train_norms = enabled
    return len(convs)


def _constrained_convs(model: nn.Module, normalization: str | None = None) -> list[LipSpectralConv]:
    """The :class:`LipSpectralConv` submodules with ``k`` set (and this normalization, if given)."""
    return [
        m
        for m in model.modules()
        if isinstance(m, LipSpectralConv)
        and m.k is not None
        and (normalization is None or m.normalization == normalization)
    ]


def warm_polar_train(model: nn.Module, tol: float = WARM_POLAR_TOL, enabled: bool = True) -> int:
    """Set (or switch off) the warm-started polar factors of ``"orthogonal"`` training forwards.

    A ``"orthogonal"`` training forward computes ``k`` times the unitary polar factor of every
    multiplier by a batched ``eigh`` of its Gram matrix, about two thirds of the layer's step in
    2-D. By default (every constrained ``"orthogonal"`` layer, ``tol =``
    :data:`WARM_POLAR_TOL`) a layer keeps the right singular basis ``V0`` of its last exact
    call and, while the weights stay close, applies the first-order polar factor around it
    instead (:func:`_warm_polar`: four batched products, no ``eigh``; its own exact gradient):
    accepted only while every off-diagonal entry of ``V0^H M^H M V0`` is at most ``tol``
    relative to its diagonal, which keeps it within about ``10 tol^2`` of the exact factor
    entrywise; otherwise the call is exact and refreshes ``V0``. A training device, like the
    power iteration of ``"clip"`` and ``"global"``: eval weights and the certificate never
    depend on it (the float64-polished exact factors). ``enabled=False`` (or
    :func:`exact_train_norms`, which overrides it) trains on the exact factors every call.

    The basis, its cooldown, freshness and ``tol`` are module state
    (``<layer>.warm_polar._extra_state`` in ``state_dict()``), so a run resumed from a
    checkpoint is bitwise the uninterrupted one. Cost: one complex64 ``q x q`` matrix per
    independent multiplier, about the size of the layer's weights: a checkpoint with Adam's
    moments 1.30x to 1.33x the size (``benchmarks/results/warm_polar_state.md``). A checkpoint
    written before the warm default (no such key) still loads, strict or not: its layers start
    exact (no basis) with the constructor's ``tol``, so that resume is not bitwise the run
    that wrote it, which trained exact. Pays off when optimizer steps are small: on 1-D
    advection and Burgers (Adam at ``1e-3`` with cosine decay) most layer calls are warm at the
    test error of exact training (``benchmarks/results/fno_accuracy_orthogonal_warm_default.md``),
    and the 2-D train step falls from 1.70x to 1.35x neuraloperator's
    (``benchmarks/results/performance.md``).

    Parameters
    ----------
    model
        Any module; its :class:`LipSpectralConv` submodules with ``k`` set and
        ``normalization="orthogonal"`` are switched.
    tol
        The acceptance threshold (> 0).
    enabled
        ``False``: every training call exact (``warm_polar.tol = 0``, saved with the state).
        Either way the basis is forgotten: the next training call is exact.

    Returns
    -------
    int
        How many layers were switched.

    Examples
    --------
    >>> from liponet.models import LipFNO
    >>> model = LipFNO(1, 1, modes=(4,), width=8, depth=2, normalization="orthogonal",
    ...                block="fourier")
    >>> [type(m).__name__ for m in model.modules()].count("_WarmPolar")  # on by default
    2
    >>> warm_polar_train(model, enabled=False)  # exact polar factors every training call
    2
    """
    if not (math.isfinite(tol) and tol > 0.0):
        raise ValueError(f"tol must be a finite positive number, got {tol}")
    convs = _constrained_convs(model, "orthogonal")
    for conv in convs:
        if conv.warm_polar is not None:
            conv.warm_polar.tol = tol if enabled else 0.0
            conv.warm_polar.reset()
    return len(convs)


class SpectralMultiplier(nn.Module):
    """Plain Fourier layer with frozen weights (the export of :class:`LipSpectralConv`).

    Same code path (:func:`spectral_apply`): rfftn, one einsum over kept modes, irfftn, plus the
    pointwise skip and bias. Weights are buffers (complex ones stored as real ``(..., 2)``).

    Examples
    --------
    >>> import torch
    >>> conv = LipSpectralConv(2, 2, modes=(3,), skip=True).eval()
    >>> plain = conv.export()
    >>> x = torch.randn(1, 2, 16)
    >>> torch.allclose(plain(x), conv(x), atol=1e-6)
    True
    """

    def __init__(
        self, kept: Tensor, skip: Tensor | None, bias: Tensor | None, modes: Sequence[int]
    ) -> None:
        super().__init__()
        self.modes = tuple(modes)
        self.kept: Tensor
        self.skip: Tensor | None
        self.bias: Tensor | None
        self.register_buffer("kept", torch.view_as_real(kept.detach().clone()))
        self.register_buffer("skip", None if skip is None else skip.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        """``W x + irfftn(R_k X_k) + b``."""
        return spectral_apply(x, torch.view_as_complex(self.kept), self.skip, self.bias, self.modes)


class FourierBlock(CertifiedModule):
    """The fused FNO block ``y = sigma(W x + K x + b)`` with a tight certificate.

    Parameters
    ----------
    width
        Channels in and out.
    modes
        Kept modes per spatial dimension (see :class:`LipSpectralConv`).
    activation
        Channel activation (over dim 1): a 1-Lipschitz one (``maxmin``, ``groupsort2``,
        ``fullsort``, ``relu``, ``abs``) for constrained blocks, ``gelu`` allowed in the
        unconstrained twin,
        ``None`` for a linear block (FNO's last layer).
    k
        Target norm of the linear part; ``None``: unconstrained.
    normalization, n_power
        As in :class:`LipSpectralConv`.

    Lipschitz constant
    ------------------
    ``max(max_k ||W' + R'_k||_2, ||W'||_2)`` times the activation's constant (1, or 1.1289 for
    GELU), in liponet's function norm at every resolution. The linear part's factor is exact
    (tight) whenever some frequency is unkept; certified by float64 SVD.

    Examples
    --------
    >>> import torch
    >>> block = FourierBlock(4, modes=(3,)).eval()
    >>> block(torch.randn(2, 4, 16)).shape
    torch.Size([2, 4, 16])
    >>> block.lipschitz_bound() <= 1.0 + 1e-6
    True
    """

    def __init__(
        self,
        width: int,
        modes: Sequence[int],
        activation: str | None = "maxmin",
        k: float | None = 1.0,
        normalization: str = "global",
        n_power: int = 1,
    ) -> None:
        super().__init__()
        self.conv = LipSpectralConv(
            width, width, modes, k=k, skip=True, bias=True, normalization=normalization,
            n_power=n_power,
        )  # fmt: skip
        self.act = None if activation is None else make_activation(activation, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """``sigma(W x + K x + b)`` on ``(batch, width, *spatial)``."""
        y = self.conv(x)
        return y if self.act is None else self.act(y)

    def lipschitz_bound(self) -> float:
        """Linear part's certified norm times the activation's constant."""
        bound = self.conv.lipschitz_bound()
        return bound if self.act is None else bound * self.act.lipschitz_bound()

    def export(self) -> nn.Module:
        """``nn.Sequential(SpectralMultiplier, activation)``."""
        parts = [self.conv.export()] + ([] if self.act is None else [self.act.export()])
        return nn.Sequential(*parts)


class PaddedDomain(CertifiedModule):
    """Zero-pad the field, apply ``inner``, crop back: FNO's domain padding for non-periodic data.

    Parameters
    ----------
    inner
        A certified map of fields ``(batch, c, *spatial) -> (batch, c', *spatial)``.
    padding
        Fraction of each spatial size appended (zeros) at the end of each dimension
        (``round(padding * n_i)`` points).

    Lipschitz constant
    ------------------
    At most ``inner``'s constant, in liponet's function norm. Proof: with ``N`` grid points and
    ``P`` padded ones, zero padding scales norms exactly: ``||pad u||^2 = (1/(N+P)) sum u^2 =
    N/(N+P) ||u||^2``; cropping drops non-negative terms: ``||crop v||^2 <= (1/N) sum_all v^2 =
    (N+P)/N ||v||^2``. So ``||crop(G(pad u)) - crop(G(pad u'))|| <= sqrt((N+P)/N) L_G
    sqrt(N/(N+P)) ||u - u'|| = L_G ||u - u'||`` (and ``L_G`` does not depend on the padded grid).

    Examples
    --------
    >>> import torch
    >>> padded = PaddedDomain(FourierBlock(2, (3,)), padding=0.25).eval()
    >>> padded(torch.randn(1, 2, 16)).shape
    torch.Size([1, 2, 16])
    """

    def __init__(self, inner: nn.Module, padding: float) -> None:
        super().__init__()
        if not (math.isfinite(padding) and padding >= 0):
            raise ValueError(f"padding must be a finite fraction >= 0, got {padding}")
        self.inner = inner
        self.padding = float(padding)

    def forward(self, x: Tensor) -> Tensor:
        """Pad, apply ``inner``, crop."""
        return _padded(self.inner, self.padding, x)

    def lipschitz_bound(self) -> float:
        """``inner``'s certified constant (padding then cropping adds no factor)."""
        if not isinstance(self.inner, CertifiedModule):
            raise TypeError(f"cannot certify {type(self.inner).__name__}")
        return self.inner.lipschitz_bound()

    def export(self) -> nn.Module:
        """Plain module doing the same with ``inner.export()``."""
        assert isinstance(self.inner, CertifiedModule)
        return _PlainPadded(self.inner.export(), self.padding)


def _padded(inner: nn.Module, padding: float, x: Tensor) -> Tensor:
    sizes = x.shape[2:]
    pads = [round(padding * int(n)) for n in sizes]  # int(): sizes are tensors in jit.trace
    if not any(pads):
        return inner(x)
    flat: list[int] = []
    for p in reversed(pads):  # F.pad lists the last dimension first
        flat += [0, p]
    y = inner(nn.functional.pad(x, flat))
    for i, n in enumerate(sizes):
        y = y.narrow(2 + i, 0, n)
    return y


class _PlainPadded(nn.Module):
    def __init__(self, inner: nn.Module, padding: float) -> None:
        super().__init__()
        self.inner = inner
        self.padding = padding

    def forward(self, x: Tensor) -> Tensor:
        return _padded(self.inner, self.padding, x)
