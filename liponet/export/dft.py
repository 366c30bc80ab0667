"""The kept-mode Fourier multiplier in real arithmetic, for runtimes without FFTs or complex types.

ONNX has no complex tensor type that onnxruntime computes with: PyTorch's ONNX exporter
translates ``rfftn`` to ONNX's ``DFT``, but not the complex zero padding of ``irfftn`` nor the
complex contraction over kept modes (measured with torch 2.13 / onnxscript 0.7: "No decompositions
registered for the complex-valued input"), and liponet's FFTs are registered operators
(``liponet::kept_rfftn`` / ``kept_irfftn``) that no exporter knows. A Fourier layer keeps few
modes, though, so its transforms are cheap as explicit products with precomputed cosine and sine
bases: for a grid ``n_1 x ... x n_d`` with kept modes ``m``, the forward transform multiplies
along each dimension by an ``(n_i, 2 m_i - 1)`` (last: ``(n_d, m_d)``) basis, and the inverse by
its transpose. :class:`DFTSpectralMultiplier` does exactly that, with real tensors only.

It is the same linear map as :class:`~liponet.layers.SpectralMultiplier` (whose weights it
takes) on the grid it was built for, so the same certificate holds: the kept-mode DFT with the
orthonormal scaling, the multiplier ``R_k`` at every kept mode, the inverse real DFT that
counts each mode with ``k_d >= 1`` twice and drops the imaginary part at ``k_d = 0`` (as
``irfftn`` does; no Nyquist frequency is ever kept), the pointwise skip and bias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..layers.fourier import check_field, kept_mode_shape

__all__ = ["DFTSpectralMultiplier", "kept_dft_basis"]


def kept_dft_basis(n: int, m: int, centred: bool, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """Cosines and sines of the kept frequencies on ``n`` points, scaled by ``1 / sqrt(n)``.

    Parameters
    ----------
    n
        Grid points of the dimension.
    m
        Kept modes: frequencies ``0 .. m - 1`` (the last, real-FFT dimension) or, ``centred``,
        ``-(m - 1) .. m - 1`` in this order (the layout of :func:`~liponet.layers.fourier`'s
        kept-mode block in the leading dimensions).
    centred
        Whether the frequencies are the two-sided, centred set.
    dtype
        Real dtype of the result; the angles ``2 pi ((f j) mod n) / n`` are reduced exactly in
        integers and evaluated in float64, then rounded once.

    Returns
    -------
    tuple
        ``(cos, sin)``, each ``(n, K)`` with ``K = 2 m - 1`` (centred) or ``m``: entry ``(j, f)``
        is ``cos(2 pi f j / n) / sqrt(n)`` (resp. ``sin``).

    Examples
    --------
    >>> import torch
    >>> c, s = kept_dft_basis(8, 3, centred=False, dtype=torch.float64)
    >>> x = torch.randn(8, dtype=torch.float64)
    >>> spectrum = torch.fft.rfft(x, norm="ortho")[:3]
    >>> torch.allclose(x @ c, spectrum.real) and torch.allclose(-(x @ s), spectrum.imag)
    True
    """
    freqs = torch.arange(-(m - 1), m) if centred else torch.arange(m)
    points = torch.arange(n)
    turns = torch.remainder(points[:, None] * freqs[None, :], n)  # exact integers in [0, n)
    angle = turns.to(torch.float64) * (2 * math.pi / n)  # (n, K)
    scale = 1.0 / math.sqrt(n)
    return (torch.cos(angle) * scale).to(dtype), (torch.sin(angle) * scale).to(dtype)


class DFTSpectralMultiplier(nn.Module):
    """``W x + iDFT(R_k DFT(x)_k on kept modes) + b`` on one grid, with real tensors only.

    The ONNX-friendly twin of :class:`~liponet.layers.SpectralMultiplier` (built from its
    weights by :func:`liponet.export.onnx_ready`): kept-mode transforms as products with
    precomputed cosine/sine bases (:func:`kept_dft_basis`), the complex multiplier as one real
    batched product with the block matrix ``[[Re R_k^T, Im R_k^T], [-Im R_k^T, Re R_k^T]]``.

    Parameters
    ----------
    kept
        Complex ``(*kept, out, in)`` spectral weights ``R_k`` (kept-mode layout of
        :mod:`liponet.layers.fourier`).
    skip
        Real ``(out, in)`` pointwise weight or ``None``.
    bias
        ``(out,)`` or ``None``.
    modes
        ``(m_1, ..., m_d)``.
    sizes
        The grid ``(n_1, ..., n_d)`` the bases are built for; inputs must have it.

    Lipschitz constant
    ------------------
    The same linear map as the :class:`~liponet.layers.SpectralMultiplier` with these weights
    on this grid (``tests/test_export_onnx.py`` compares the dense Jacobians), so its constant is
    that layer's, ``max(max_k ||W + R_k||_2, ||W||_2)`` in liponet's function norm, certified by
    the float64 SVD of :meth:`liponet.layers.LipSpectralConv.lipschitz_bound`. Only float
    rounding differs (sums in another order than the FFT's).

    Examples
    --------
    >>> import torch
    >>> from liponet.layers import LipSpectralConv
    >>> plain = LipSpectralConv(2, 3, modes=(3, 4), skip=True).eval().export()
    >>> dft = DFTSpectralMultiplier.from_multiplier(plain, sizes=(8, 10))
    >>> x = torch.randn(5, 2, 8, 10)
    >>> torch.allclose(dft(x), plain(x), atol=1e-6)
    True
    """

    def __init__(
        self,
        kept: Tensor,
        skip: Tensor | None,
        bias: Tensor | None,
        modes: Sequence[int],
        sizes: Sequence[int],
    ) -> None:
        super().__init__()
        self.modes = tuple(int(m) for m in modes)
        self.sizes = tuple(int(n) for n in sizes)
        d = len(self.modes)
        if len(self.sizes) != d:
            raise ValueError(f"sizes {self.sizes} must have one entry per mode ({self.modes})")
        if not kept.is_complex() or tuple(kept.shape[:d]) != kept_mode_shape(self.modes):
            raise ValueError(
                f"kept must be complex (*{kept_mode_shape(self.modes)}, out, in), got "
                f"{kept.dtype} {tuple(kept.shape)}"
            )
        self.out_channels, self.in_channels = int(kept.shape[-2]), int(kept.shape[-1])
        check_field(
            torch.empty(0, self.in_channels, *self.sizes, device="meta"),
            self.in_channels,
            self.modes,
            "sizes",
        )
        real = kept.real.dtype
        r = kept.detach().reshape(-1, self.out_channels, self.in_channels)  # (K, out, in)
        rt = r.transpose(1, 2)  # (K, in, out)
        # [Xr, Xi] @ [[Re R^T, Im R^T], [-Im R^T, Re R^T]] = [Re(R X), Im(R X)] (rows)
        block = torch.cat(
            [torch.cat([rt.real, rt.imag], 2), torch.cat([-rt.imag, rt.real], 2)], 1
        )  # (K, 2 in, 2 out)
        self.mix: Tensor
        self.skip: Tensor | None
        self.bias: Tensor | None
        self.register_buffer("mix", block.contiguous().clone())
        self.register_buffer("skip", None if skip is None else skip.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        # bases: forward (n, K) for every dimension; the last one's inverse carries the weights
        # 1 (k_d = 0) and 2 (k_d >= 1: the mode and its conjugate partner)
        for i, (n, m) in enumerate(zip(self.sizes, self.modes, strict=True)):
            c, s = kept_dft_basis(n, m, centred=i < d - 1, dtype=real)
            self.register_buffer(f"cos{i}", c.to(kept.device))
            self.register_buffer(f"sin{i}", s.to(kept.device))
        twice = torch.full((self.modes[-1], 1), 2.0, dtype=real, device=kept.device)
        twice[0] = 1.0
        self.icos_last: Tensor
        self.isin_last: Tensor
        self.register_buffer("icos_last", twice * getattr(self, f"cos{d - 1}").T.contiguous())
        self.register_buffer("isin_last", twice * getattr(self, f"sin{d - 1}").T.contiguous())

    @classmethod
    def from_multiplier(cls, layer: nn.Module, sizes: Sequence[int]) -> DFTSpectralMultiplier:
        """The twin of a :class:`~liponet.layers.SpectralMultiplier` on the grid ``sizes``."""
        kept = torch.view_as_complex(layer.kept)  # type: ignore[arg-type]
        return cls(kept, layer.skip, layer.bias, layer.modes, sizes)  # type: ignore[arg-type]

    def _basis(self, i: int) -> tuple[Tensor, Tensor]:
        return getattr(self, f"cos{i}"), getattr(self, f"sin{i}")

    def forward(self, x: Tensor) -> Tensor:
        """Apply the multiplier to ``(batch, in_channels, *sizes)``."""
        if tuple(x.shape[2:]) != self.sizes or x.ndim != len(self.sizes) + 2:
            raise ValueError(
                f"input has shape {tuple(x.shape)}; this DFT layer is built for "
                f"(batch, {self.in_channels}, {', '.join(map(str, self.sizes))})"
            )
        d = len(self.modes)
        b = x.shape[0]
        # forward kept-mode DFT: the last dimension (real -> complex), then the leading ones
        c, s = self._basis(d - 1)
        re, im = torch.matmul(x, c), -torch.matmul(x, s)  # (b, in, ..., m_d)
        for i in range(d - 1):
            c, s = self._basis(i)
            re, im = re.transpose(2 + i, -1), im.transpose(2 + i, -1)  # dim i last
            # (a + i b) e^{-i t} = (a cos + b sin) + i (b cos - a sin)
            re, im = re @ c + im @ s, im @ c - re @ s
            re, im = re.transpose(2 + i, -1), im.transpose(2 + i, -1)
        kept = re.shape[2:]
        # multiplier: (K, b, 2 in) @ (K, 2 in, 2 out) -> (K, b, 2 out)
        xk = torch.cat([re.flatten(2), im.flatten(2)], 1).permute(2, 0, 1)
        yk = torch.matmul(xk, self.mix).permute(1, 2, 0)  # (b, 2 out, K)
        re = yk[:, : self.out_channels].reshape(b, self.out_channels, *kept)
        im = yk[:, self.out_channels :].reshape(b, self.out_channels, *kept)
        # inverse: the leading dimensions (complex -> complex), then the last (complex -> real)
        for i in range(d - 1):
            c, s = self._basis(i)
            re, im = re.transpose(2 + i, -1), im.transpose(2 + i, -1)
            # (a + i b) e^{+i t} = (a cos - b sin) + i (a sin + b cos)
            re, im = re @ c.T - im @ s.T, re @ s.T + im @ c.T
            re, im = re.transpose(2 + i, -1), im.transpose(2 + i, -1)
        y = re @ self.icos_last - im @ self.isin_last  # (b, out, *sizes)
        if self.skip is not None:  # W x: (out, in) @ (b, in, S) -> (b, out, S)
            y = y + torch.matmul(self.skip, x.flatten(2)).view(y.shape)
        if self.bias is not None:
            y = y + self.bias.view(-1, *([1] * d))
        return y

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"modes={self.modes}, sizes={self.sizes}, skip={self.skip is not None}"
        )
