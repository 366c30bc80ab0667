"""A full-band linear Fourier multiplier from a window of frames to the next frame.

Time-stepping PDEs have a linear part that acts on every Fourier mode: advection's exact step is
a per-mode phase ``exp(-i k c)``, diffusion's a damping ``exp(-nu k^2 dt)``. The increment form
``u_last + f(x)`` carries the last frame unchanged and its ``f`` sees the kept modes only, so the
high modes of the step are never learned. :class:`SpectralShortcut` learns ``S_k`` at *every*
rfft mode of the training grid (not truncated), from the input window (frames stacked time-major
as channels) to one frame, with ``max_k ||S_k||_2 <= s``; ``S(x) + f(x)`` then replaces
``u_last + f(x)`` (:class:`liponet.models.Increment` with ``shortcut=``).

One spatial dimension (the time-stepping tasks of the benchmarks); the layer refuses others.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..functional import TARGET_MARGIN, spectral_norm_exact, spectral_norm_upper
from .base import CertifiedModule
from .cache import WeightKeyedCache

__all__ = [
    "PlainSpectralShortcut",
    "SpectralShortcut",
    "lstsq_multipliers",
    "project_multipliers",
    "shortcut_apply",
    "shortcut_multipliers",
]


def _realified(a: Tensor, n: int) -> Tensor:
    """``a`` (``(n // 2 + 1, out, in)`` complex) with real multipliers at ``k = 0`` and Nyquist.

    A real field has a real spectrum there, and ``irfft`` keeps only the real part of those
    outputs: the multiplier it applies is ``Re(A_k)``. Writing it so makes the applied map the
    stored one, whatever the FFT backend does with an imaginary part there.
    """
    keep = torch.ones(a.shape[0], 1, 1, dtype=a.real.dtype, device=a.device)
    keep[0] = 0.0
    if n % 2 == 0:
        keep[-1] = 0.0
    return torch.complex(a.real, a.imag * keep)


def shortcut_multipliers(stored: Tensor, n: int) -> Tensor:
    """The multipliers a shortcut applies on a grid of ``n`` points.

    Parameters
    ----------
    stored
        Complex ``(K, out, in)``: ``S_k`` for ``k = 0 .. K-1``.
    n
        Points of the grid the input lives on (any ``n >= 1``).

    Returns
    -------
    Tensor
        Complex ``(n // 2 + 1, out, in)``: ``S_k`` for the stored modes, the highest stored
        multiplier ``S_{K-1}`` for the modes beyond them (a finer grid), and the real part at
        ``k = 0`` and at the grid's Nyquist mode (``n`` even). Every one has norm
        ``<= max_k ||S_k||_2`` (``||Re A|| <= (||A|| + ||conj A||) / 2``).

    Examples
    --------
    >>> import torch
    >>> s = torch.ones(5, 1, 2, dtype=torch.complex64) * 1j
    >>> shortcut_multipliers(s, 16).shape, shortcut_multipliers(s, 4).shape
    (torch.Size([9, 1, 2]), torch.Size([3, 1, 2]))
    """
    kn, kept = n // 2 + 1, stored.shape[0]
    if kn <= kept:
        a = stored[:kn]
    else:
        a = torch.cat([stored, stored[-1:].expand(kn - kept, *stored.shape[1:])])
    return _realified(a, n)


def shortcut_apply(x: Tensor, multipliers: Tensor) -> Tensor:
    """``irfft(A_k rfft(x)_k)`` with the orthonormal FFT, every mode of the grid.

    Parameters
    ----------
    x
        Real ``(batch, in, n)``.
    multipliers
        Complex ``(n // 2 + 1, out, in)`` (:func:`shortcut_multipliers`).

    Returns
    -------
    Tensor
        Real ``(batch, out, n)``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 8)
    >>> eye = torch.zeros(5, 1, 3, dtype=torch.complex64)
    >>> eye[:, 0, 2] = 1
    >>> torch.allclose(shortcut_apply(x, eye), x[:, 2:], atol=1e-6)
    True
    """
    n = x.shape[-1]
    xk = torch.fft.rfft(x, norm="ortho")  # (b, in, K)
    a = multipliers.to(xk.dtype)
    yk = torch.einsum("bik,koi->bok", xk, a)  # (b,in,K),(K,out,in)->(b,out,K)
    return torch.fft.irfft(yk, n=n, norm="ortho")  # (b, out, n)


def project_multipliers(a: Tensor, radius: float) -> Tensor:
    """Each ``(K, out, in)`` multiplier with its singular values clipped to ``radius``.

    The nearest multiplier of norm ``<= radius`` in Frobenius norm (per mode), in ``a``'s dtype.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[[3.0 + 4j]], [[0.5 + 0j]]], dtype=torch.complex128)
    >>> project_multipliers(a, 1.0).abs().flatten().tolist()
    [1.0, 0.5]
    """
    u, sv, vh = torch.linalg.svd(a, full_matrices=False)
    return u @ (sv.clamp_max(radius).to(a.dtype)[..., None] * vh)


@torch.no_grad()
def lstsq_multipliers(
    x: Tensor,
    y: Tensor,
    size: int,
    rcond: float = 1e-12,
    chunk: int = 4096,
    device: torch.device | str | None = None,
) -> Tensor:
    """The unconstrained per-mode least-squares step from windows ``x`` to frames ``y``.

    Per rfft mode ``k``, ``S_k`` minimizes ``sum_i ||S_k X_ik - Y_ik||^2`` (orthonormal FFT),
    solved in float64 from the per-mode Gram matrices with the minimum-norm pseudo-inverse
    (eigenvalues below ``rcond`` times the largest of the mode dropped). Shapes are checked
    by :meth:`SpectralShortcut.fit_`, its caller.

    Returns
    -------
    Tensor
        Complex128 ``(size // 2 + 1, out, in)``, real at ``k = 0`` and Nyquist.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(64, 2, 16)
    >>> a = lstsq_multipliers(x, 0.5 * x[:, -1:], 16)
    >>> torch.allclose(a[:, 0, 1].real, torch.full((9,), 0.5, dtype=torch.float64))
    True
    """
    kn = size // 2 + 1
    device = x.device if device is None else device
    n_in, n_out = x.shape[1], y.shape[1]
    gram = torch.zeros(kn, n_in, n_in, dtype=torch.complex128, device=device)
    cross = torch.zeros(kn, n_in, n_out, dtype=torch.complex128, device=device)
    for i in range(0, x.shape[0], int(chunk)):
        xk = torch.fft.rfft(x[i : i + int(chunk)].to(device, torch.float64), norm="ortho")
        yk = torch.fft.rfft(y[i : i + int(chunk)].to(device, torch.float64), norm="ortho")
        gram += torch.einsum("nik,njk->kij", xk.conj(), xk)  # (n,in,K),(n,in,K)->(K,in,in)
        cross += torch.einsum("nik,nok->kio", xk.conj(), yk)  # (n,in,K),(n,out,K)->(K,in,out)
    w, v = torch.linalg.eigh(gram)  # Hermitian, ascending eigenvalues per mode
    keep = w > rcond * w[:, -1:].clamp_min(0.0)
    inv = torch.where(keep, 1.0 / torch.where(keep, w, torch.ones_like(w)), torch.zeros_like(w))
    solution = v @ (inv[..., None] * (v.conj().transpose(-2, -1) @ cross))  # (K, in, out)
    return _realified(solution.transpose(-2, -1), size)  # (K, out, in): S_k X_k = Y_k


def _norms(a: Tensor) -> Tensor:
    """``||A_k||_2`` of ``(K, out, in)`` multipliers, differentiable (vector norm for rank 1)."""
    if min(a.shape[-2:]) == 1:  # a row or column: the spectral norm is the Euclidean norm
        return torch.linalg.vector_norm(a, dim=(-2, -1))
    return torch.linalg.matrix_norm(a, ord=2)


class SpectralShortcut(CertifiedModule):
    """Full-band linear time step ``S(x) = irfft(S_k rfft(x)_k)`` with ``max_k ||S_k|| <= s``.

    ``x`` is a window of frames stacked time-major as channels ``(batch, in, n)``; the output is
    one frame ``(batch, out, n)``. ``S_k`` (complex ``out x in``) is learned at every rfft mode
    ``k = 0 .. size // 2`` of the training grid, initialized to the identity on the last frame
    (``S_k = [0 ... 0 I]``), so that ``S(x) = u_last`` at initialization.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the window and of one frame (``in`` a multiple of ``out``).
    size
        Points of the training grid; ``size // 2 + 1`` multipliers are stored.
    s
        Bound of every multiplier's norm (clip: a multiplier above ``s`` is shrunk to it);
        ``None``: unconstrained (the twin of :class:`liponet.models.FNO`).

    Notes
    -----
    Other resolutions: a grid of ``n`` points applies the stored ``S_k`` for ``k <= n // 2``
    and, on a finer grid, the highest stored multiplier for the modes beyond them
    (:func:`shortcut_multipliers`); ``k = 0`` and the grid's Nyquist mode apply the real part.
    The certificate is the same on every grid.

    Lipschitz constant
    ------------------
    In liponet's function norm, ``max_k ||S'_k||_2`` over the stored eval multipliers ``S'_k``
    (every multiplier applied on any grid is one of them or its real part, whose norm is not
    larger; with the orthonormal FFT a Fourier multiplier's norm is the largest of its
    multipliers'). Certified by float64 SVDs (:func:`~liponet.functional.spectral_norm_upper`)
    of the eval multipliers exactly as the forward applies them. Those are the multipliers
    clipped with their float64 norms to ``s`` times :data:`~liponet.functional.TARGET_MARGIN`,
    so the rounding to the weights' dtype keeps the certificate ``<= s``. Training forwards
    clip with the norms of the training multipliers themselves (exact: no power iteration), so
    the function trained is the one evaluated up to rounding.

    Examples
    --------
    >>> import torch
    >>> shortcut = SpectralShortcut(3, 1, size=16).eval()
    >>> x = torch.randn(2, 3, 16)
    >>> torch.allclose(shortcut(x), x[:, -1:], atol=1e-5)
    True
    >>> shortcut.lipschitz_bound() <= 1.0
    True
    """

    def __init__(
        self, in_channels: int, out_channels: int, size: int, s: float | None = 1.0
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or in_channels % out_channels:
            raise ValueError(
                f"SpectralShortcut: in_channels ({in_channels}) must be a positive multiple of "
                f"out_channels ({out_channels}) (a window of frames stacked as channels)"
            )
        if int(size) < 1:
            raise ValueError(f"SpectralShortcut: size must be >= 1 grid points, got {size}")
        if s is not None and not s > 0:
            raise ValueError(f"SpectralShortcut: s must be > 0 or None, got {s}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size = int(size)
        self.s = None if s is None else float(s)
        weight = torch.zeros(self.size // 2 + 1, out_channels, in_channels, 2)
        eye = torch.arange(out_channels)
        weight[:, eye, in_channels - out_channels + eye, 0] = 1.0  # identity on the last frame
        self.weight = nn.Parameter(weight)
        self._cache = WeightKeyedCache([self.weight])

    def _stored(self, weight: Tensor) -> Tensor:
        """Complex ``(K, out, in)``, real at ``k = 0`` and at the training grid's Nyquist."""
        return _realified(torch.view_as_complex(weight), self.size)

    def train_multipliers(self) -> Tensor:
        """Multipliers of training forwards: clipped by their own norms (differentiable)."""
        a = self._stored(self.weight)
        if self.s is None:
            return a
        return a / (_norms(a) / (self.s * TARGET_MARGIN)).clamp_min(1.0)[:, None, None]

    def eval_multipliers(self) -> Tensor:
        """The certified multipliers ``S'_k`` (``(K, out, in)`` complex, cached; no gradient)."""
        return self._cache.get("eval", [self.weight], self._compute_eval)

    def _compute_eval(self, weight: Tensor) -> Tensor:
        a = self._stored(weight.detach())
        if self.s is None:
            return a.clone()
        a64 = a.to(torch.complex128)
        scale = (self.s * TARGET_MARGIN / spectral_norm_exact(a64)).clamp_max(1.0)
        return (a64 * scale[:, None, None]).to(a.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, in, n) -> (batch, out, n)``, any ``n``."""
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralShortcut: input must have shape (batch, {self.in_channels}, n) "
                f"(one spatial dimension), got {tuple(x.shape)}"
            )
        stored = self.train_multipliers() if self.training else self.eval_multipliers()
        return shortcut_apply(x, shortcut_multipliers(stored, x.shape[-1]))

    @torch.no_grad()
    def fit_(
        self, x: Tensor, y: Tensor, rcond: float = 1e-12, chunk: int = 4096
    ) -> SpectralShortcut:
        """Set every ``S_k`` to the least-squares step from windows ``x`` to frames ``y``.

        Per rfft mode ``k`` of the training grid, ``S_k`` minimizes ``sum_i ||S_k X_ik - Y_ik||^2``
        over the samples (``X = rfft(x)``, ``Y = rfft(y)``, orthonormal FFT): a dynamic-mode-
        decomposition-style fit of the window-to-frame map, solved in float64 from the per-mode
        Gram matrices with the minimum-norm pseudo-inverse (eigenvalues below ``rcond`` times
        the largest of the mode dropped: the frames of a window can be nearly collinear). Modes
        ``k = 0`` and Nyquist keep the real part (what the forward applies there). With a bound
        ``s``, every ``S_k`` is then projected to the ball ``||S_k||_2 <= s`` (singular values
        clipped, the nearest multiplier in Frobenius norm). An initialization: training moves
        ``S`` on from it, and the certificate is always that of the weights as they are.

        Parameters
        ----------
        x
            Windows ``(n, in_channels, size)`` on the training grid.
        y
            Next frames ``(n, out_channels, size)``.
        rcond
            Relative cutoff of the pseudo-inverse (``>= 0``).
        chunk
            Samples per FFT batch (memory only; the result does not depend on it).

        Returns
        -------
        SpectralShortcut
            ``self``.

        Examples
        --------
        >>> import torch
        >>> x = torch.randn(64, 2, 16)
        >>> y = torch.roll(x[:, -1:], 1, dims=-1)  # a shift by one cell: a phase per mode
        >>> shortcut = SpectralShortcut(2, 1, size=16).fit_(x, y).eval()
        >>> torch.allclose(shortcut(x), y, atol=1e-5), shortcut.lipschitz_bound() <= 1.0
        (True, True)
        """
        shape_x = (self.in_channels, self.size)
        shape_y = (self.out_channels, self.size)
        if x.ndim != 3 or tuple(x.shape[1:]) != shape_x:
            raise ValueError(
                f"SpectralShortcut.fit_: x must have shape (n, {shape_x[0]}, {shape_x[1]}) "
                f"(windows on the training grid), got {tuple(x.shape)}"
            )
        if y.ndim != 3 or tuple(y.shape[1:]) != shape_y or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"SpectralShortcut.fit_: y must have shape ({x.shape[0]}, {shape_y[0]}, "
                f"{shape_y[1]}) (one frame per window of x), got {tuple(y.shape)}"
            )
        if x.shape[0] < 1:
            raise ValueError("SpectralShortcut.fit_: x holds no windows (n = 0)")
        if not rcond >= 0 or int(chunk) < 1:
            raise ValueError(
                f"SpectralShortcut.fit_: rcond must be >= 0 and chunk >= 1, got {rcond}, {chunk}"
            )
        solution = lstsq_multipliers(x, y, self.size, rcond, chunk, self.weight.device)
        return self.assign_(solution)

    @torch.no_grad()
    def assign_(self, multipliers: Tensor) -> SpectralShortcut:
        """Set ``S_k`` to ``multipliers`` projected to the ball ``||S_k||_2 <= s``.

        The projection clips each multiplier's singular values (in float64) to ``s`` times
        :data:`~liponet.functional.TARGET_MARGIN`, the nearest multiplier in Frobenius norm;
        ``k = 0`` and Nyquist keep the real part (what the forward applies there). With
        ``s=None`` the multipliers are stored as they are (after that real part).

        Parameters
        ----------
        multipliers
            Complex ``(size // 2 + 1, out_channels, in_channels)``, e.g. an unconstrained fit
            (:func:`lstsq_multipliers`).

        Returns
        -------
        SpectralShortcut
            ``self``.

        Examples
        --------
        >>> import torch
        >>> a = torch.full((5, 1, 2), 3.0 + 0j, dtype=torch.complex128)
        >>> SpectralShortcut(2, 1, size=8, s=1.0).assign_(a).lipschitz_bound() <= 1.0
        True
        """
        shape = (self.size // 2 + 1, self.out_channels, self.in_channels)
        if tuple(multipliers.shape) != shape or not multipliers.is_complex():
            raise ValueError(
                f"SpectralShortcut.assign_: multipliers must be complex of shape {shape}, got "
                f"{multipliers.dtype} {tuple(multipliers.shape)}"
            )
        a = _realified(multipliers.to(self.weight.device, torch.complex128), self.size)
        if self.s is not None:
            a = project_multipliers(a, self.s * TARGET_MARGIN)
            a = _realified(a, self.size)
        self.weight.copy_(torch.view_as_real(a.to(torch.view_as_complex(self.weight).dtype)))
        return self

    def lipschitz_bound(self) -> float:
        """``max_k ||S'_k||_2`` by float64 SVD of the eval multipliers (cached)."""
        return self._cache.get("bound", [self.weight], self._compute_bound)

    def _compute_bound(self, weight: Tensor) -> float:
        return float(spectral_norm_upper(self.eval_multipliers()).max())

    def export(self) -> nn.Module:
        """A :class:`PlainSpectralShortcut` holding the eval multipliers."""
        return PlainSpectralShortcut(self.eval_multipliers())

    def extra_repr(self) -> str:
        """Summarize the configuration."""
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"size={self.size}, s={self.s}"
        )


class PlainSpectralShortcut(nn.Module):
    """The exported :class:`SpectralShortcut`: fixed multipliers, plain torch.

    Parameters
    ----------
    multipliers
        Complex ``(K, out, in)`` (stored as a real ``(..., 2)`` buffer, so ``.double()`` works).

    Examples
    --------
    >>> import torch
    >>> plain = SpectralShortcut(2, 1, size=8).eval().export()
    >>> plain(torch.randn(3, 2, 8)).shape
    torch.Size([3, 1, 8])
    """

    def __init__(self, multipliers: Tensor) -> None:
        super().__init__()
        self.multipliers: Tensor
        self.register_buffer("multipliers", torch.view_as_real(multipliers.detach().clone()))

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, in, n) -> (batch, out, n)``."""
        stored = torch.view_as_complex(self.multipliers)
        return shortcut_apply(x, shortcut_multipliers(stored, x.shape[-1]))
