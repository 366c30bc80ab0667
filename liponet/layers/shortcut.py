"""A full-band linear Fourier multiplier from a window of frames to the next frame.

Time-stepping PDEs have a linear part that acts on every Fourier mode: advection's exact step is
a per-mode phase ``exp(-i k c)``, diffusion's a damping ``exp(-nu |k|^2 dt)``. The increment form
``u_last + f(x)`` carries the last frame unchanged and its ``f`` sees the kept modes only, so the
high modes of the step are never learned. :class:`SpectralShortcut` learns ``S_k`` at *every*
mode of the training grid's ``rfftn`` spectrum (not truncated), from the input window (frames
stacked time-major as channels) to one frame, with ``max_k ||S_k||_2 <= s``; ``S(x) + f(x)``
then replaces ``u_last + f(x)`` (:class:`liponet.models.Increment` with ``shortcut=``).

Any number of spatial dimensions, one code path: on a grid ``(n_1, ..., n_d)`` the modes are
those of ``rfftn`` over the spatial axes, ``(n_1, ..., n_{d-1}, n_d // 2 + 1)``: every frequency
(negative ones included) of the first ``d - 1`` axes, the non-negative ones of the last.

Real fields have Hermitian spectra, and ``irfftn`` reads the slices ``k_d = 0`` and (``n_d``
even) ``k_d = n_d / 2`` of the last axis as Hermitian: what it applies at mode ``k`` there is the
Hermitian part ``(A_k + conj(A_{-k})) / 2`` of the multipliers (``-k`` the mirrored mode; in 1-D
``k = 0`` and Nyquist are their own mirrors and this is ``Re A_k``). The multipliers are stored
and applied in that form (:func:`hermitian_multipliers`), so the applied map is the stored one,
whatever the FFT backend does with a non-Hermitian input; its norm is at most the larger of the
two norms, so the certificate ``max_k ||S_k||`` covers it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional import TARGET_MARGIN, spectral_norm_exact, spectral_norm_upper
from .base import CertifiedModule
from .cache import WeightKeyedCache

__all__ = [
    "PlainSpectralShortcut",
    "SpectralShortcut",
    "hermitian_multipliers",
    "lstsq_multipliers",
    "project_multipliers",
    "shortcut_apply",
    "shortcut_grid",
    "shortcut_modes",
    "shortcut_multipliers",
]


def shortcut_grid(size: int | Sequence[int]) -> tuple[int, ...]:
    """``size`` as a grid: one point count per spatial axis (an ``int``: one axis).

    Raises
    ------
    ValueError
        If the grid is empty or a count is below 1.

    Examples
    --------
    >>> shortcut_grid(16), shortcut_grid([8, 6])
    ((16,), (8, 6))
    """
    grid = (int(size),) if isinstance(size, int) else tuple(int(n) for n in size)
    if not grid or any(n < 1 for n in grid):
        raise ValueError(
            f"size must be a grid of >= 1 points per spatial axis (an int or a sequence of "
            f"ints), got {size!r}"
        )
    return grid


def shortcut_modes(size: int | Sequence[int]) -> tuple[int, ...]:
    """The ``rfftn`` modes of a grid: ``(n_1, ..., n_{d-1}, n_d // 2 + 1)``.

    Examples
    --------
    >>> shortcut_modes(16), shortcut_modes((8, 6))
    ((9,), (8, 4))
    """
    grid = shortcut_grid(size)
    return (*grid[:-1], grid[-1] // 2 + 1)


def _mirrored(a: Tensor, axes: int) -> Tensor:
    """``a`` at ``-k``: index ``i -> (-i) mod n`` along each of its first ``axes`` axes."""
    for axis in range(axes):
        a = torch.roll(torch.flip(a, [axis]), 1, axis)
    return a


def _mirror(grid: tuple[int, ...]) -> Tensor:
    """Flat mode index of each mode's mirror ``-k`` over the flattened :func:`shortcut_modes`.

    The mirror in the same last-axis slice on the slices ``irfftn`` reads as Hermitian
    (``k_d = 0`` and, ``n_d`` even, ``n_d / 2``); the mode itself elsewhere.
    """
    modes = shortcut_modes(grid)
    index = torch.arange(math.prod(modes)).reshape(modes)
    return _hermitian_form(index[..., None, None], grid, take=True).flatten()


def hermitian_multipliers(a: Tensor, size: int | Sequence[int]) -> Tensor:
    """``a`` (``(*modes, out, in)`` complex) as ``irfftn`` applies it on the grid ``size``.

    On the Hermitian slices of the last axis (``k_d = 0`` and, ``n_d`` even, ``n_d / 2``)
    multiplier ``A_k`` becomes ``(A_k + conj(A_{-k})) / 2``; elsewhere it is kept. In 1-D this
    is the real part at ``k = 0`` and Nyquist. Each result's norm is at most
    ``max(||A_k||, ||A_{-k}||)``, and a multiplier already in this form is unchanged.

    Examples
    --------
    >>> import torch
    >>> a = torch.randn(4, 3, 1, 1, dtype=torch.complex128)
    >>> h = hermitian_multipliers(a, (4, 4))
    >>> torch.allclose(h[1, 0], h[3, 0].conj()), bool(h[0, 0].imag.abs().max() == 0)
    (True, True)
    >>> torch.equal(hermitian_multipliers(h, (4, 4)), h)
    True
    """
    return _hermitian_form(a, shortcut_grid(size), take=False)


def _hermitian_form(a: Tensor, grid: tuple[int, ...], take: bool) -> Tensor:
    """:func:`hermitian_multipliers`; ``take``: each Hermitian-slice entry is its mirror's.

    (``take`` maps mode indices to their mirrors' indices in those slices.)
    """
    d = len(grid)
    if d == 1 and not take:  # the mirror of k = 0 and of Nyquist is the mode itself: Re A_k
        keep = torch.ones(a.shape[0], 1, 1, dtype=a.real.dtype, device=a.device)
        keep[0] = 0.0
        if grid[0] % 2 == 0:
            keep[-1] = 0.0
        return torch.complex(a.real, a.imag * keep)

    def form(part: Tensor) -> Tensor:  # one Hermitian slice
        mirrored = _mirrored(part, d - 1)
        return mirrored if take else 0.5 * (part + mirrored.conj())

    kn = grid[-1] // 2 + 1  # a.shape[d - 1], from the grid (plain ints under jit.trace)
    nyquist = int(grid[-1] % 2 == 0 and kn > 1)
    parts = [form(a.narrow(d - 1, 0, 1)), a.narrow(d - 1, 1, kn - 1 - nyquist)]
    if nyquist:
        parts.append(form(a.narrow(d - 1, kn - 1, 1)))
    return torch.cat(parts, d - 1)


def shortcut_multipliers(stored: Tensor, n: int | Sequence[int]) -> Tensor:
    """The multipliers a shortcut applies on a grid of ``n`` points (per axis).

    Parameters
    ----------
    stored
        Complex ``(*modes, out, in)``: ``S_k`` at the :func:`shortcut_modes` of the training
        grid (its ``d - 1`` first axes full frequency ranges in FFT order, the last one
        ``k_d = 0 .. K_d - 1``).
    n
        The input's grid (``d`` counts, or an ``int`` in 1-D), any counts ``>= 1``.

    Returns
    -------
    Tensor
        Complex ``(*shortcut_modes(n), out, in)``. Along the last axis: ``S_k`` for the stored
        modes, the highest stored one for the modes beyond them (a finer grid). Along each other
        axis the signed frequency ``f`` is clamped to the stored range ``|f| <= n_j // 2``
        (``n_j`` the stored count; the stored Nyquist serves both ``+-n_j / 2`` on a finer
        grid). Then the Hermitian form on the input grid (:func:`hermitian_multipliers`: the
        real part at ``k = 0`` and Nyquist in 1-D). Every one has norm ``<= max_k ||S_k||_2``.

    Examples
    --------
    >>> import torch
    >>> s = torch.ones(5, 1, 2, dtype=torch.complex64) * 1j
    >>> shortcut_multipliers(s, 16).shape, shortcut_multipliers(s, 4).shape
    (torch.Size([9, 1, 2]), torch.Size([3, 1, 2]))
    >>> shortcut_multipliers(torch.ones(8, 5, 1, 2, dtype=torch.complex64), (12, 6)).shape
    torch.Size([12, 4, 1, 2])
    """
    grid = shortcut_grid(n)
    d = stored.ndim - 2
    if len(grid) != d:
        raise ValueError(
            f"shortcut_multipliers: the grid {grid} must have one count per stored axis ({d})"
        )
    a = stored
    for axis, (m, stored_n) in enumerate(zip(grid[:-1], stored.shape[: d - 1], strict=True)):
        if m == stored_n:
            continue
        freq = torch.fft.fftfreq(m, 1.0 / m).round().long()  # signed frequencies, FFT order
        index = freq.clamp(-(stored_n // 2), stored_n // 2) % stored_n
        a = a.index_select(axis, index.to(a.device))
    kn, kept = grid[-1] // 2 + 1, stored.shape[d - 1]
    if kn <= kept:
        a = a.narrow(d - 1, 0, kn)
    else:
        top = a.narrow(d - 1, kept - 1, 1)
        a = torch.cat([a, top.expand(*a.shape[: d - 1], kn - kept, *a.shape[d:])], d - 1)
    return hermitian_multipliers(a, grid)


def shortcut_apply(x: Tensor, multipliers: Tensor) -> Tensor:
    """``irfftn(A_k rfftn(x)_k)`` with the orthonormal FFT, every mode of the grid.

    Parameters
    ----------
    x
        Real ``(batch, in, *grid)``, ``d`` spatial axes.
    multipliers
        Complex ``(*shortcut_modes(grid), out, in)`` (:func:`shortcut_multipliers`).

    Returns
    -------
    Tensor
        Real ``(batch, out, *grid)``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 8)
    >>> eye = torch.zeros(5, 1, 3, dtype=torch.complex64)
    >>> eye[:, 0, 2] = 1
    >>> torch.allclose(shortcut_apply(x, eye), x[:, 2:], atol=1e-6)
    True
    """
    d = multipliers.ndim - 2
    dims = tuple(range(-d, 0))
    grid = tuple(x.shape[2:])
    xk = torch.fft.rfftn(x, dim=dims, norm="ortho")  # (b, in, *modes)
    modes = tuple(xk.shape[2:])
    a = multipliers.to(xk.dtype).flatten(0, d - 1)  # (K, out, in)
    yk = torch.einsum("bik,koi->bok", xk.flatten(2), a)  # (b,in,K),(K,out,in)->(b,out,K)
    return torch.fft.irfftn(yk.unflatten(2, modes), s=grid, dim=dims, norm="ortho")


def project_multipliers(a: Tensor, radius: float) -> Tensor:
    """Each ``(..., out, in)`` multiplier with its singular values clipped to ``radius``.

    The nearest multiplier of norm ``<= radius`` in Frobenius norm (per mode), in ``a``'s dtype.
    It commutes with conjugation, so a multiplier in the Hermitian form stays in it (up to the
    SVD's rounding).

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
    size: int | Sequence[int],
    rcond: float = 1e-12,
    chunk: int = 4096,
    device: torch.device | str | None = None,
) -> Tensor:
    """The unconstrained per-mode least-squares step from windows ``x`` to frames ``y``.

    Per ``rfftn`` mode ``k``, ``S_k`` minimizes ``sum_i ||S_k X_ik - Y_ik||^2`` (orthonormal
    FFT over the spatial axes), solved in float64 from the per-mode Gram matrices with the
    minimum-norm pseudo-inverse (eigenvalues below ``rcond`` times the largest of the mode
    dropped). The mirrored modes of a Hermitian slice solve conjugate problems (a real field's
    ``X_{-k}`` is ``conj X_k``); the result is put in the Hermitian form
    (:func:`hermitian_multipliers`), which removes their rounding difference. Shapes are checked
    by :meth:`SpectralShortcut.fit_`, its caller.

    Parameters
    ----------
    x, y
        Windows ``(n, in, *grid)`` and next frames ``(n, out, *grid)``.
    size
        The grid (an ``int`` in 1-D).
    rcond, chunk, device
        Pseudo-inverse cutoff, samples per FFT batch (memory only), device of the solve.

    Returns
    -------
    Tensor
        Complex128 ``(*shortcut_modes(size), out, in)``.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(64, 2, 16)
    >>> a = lstsq_multipliers(x, 0.5 * x[:, -1:], 16)
    >>> torch.allclose(a[:, 0, 1].real, torch.full((9,), 0.5, dtype=torch.float64))
    True
    >>> x2 = torch.randn(64, 1, 8, 6)
    >>> lstsq_multipliers(x2, torch.roll(x2, 1, dims=-2), (8, 6)).shape
    torch.Size([8, 4, 1, 1])
    """
    grid = shortcut_grid(size)
    modes = shortcut_modes(grid)
    dims = tuple(range(-len(grid), 0))
    kn = math.prod(modes)
    device = x.device if device is None else device
    n_in, n_out = x.shape[1], y.shape[1]
    gram = torch.zeros(kn, n_in, n_in, dtype=torch.complex128, device=device)
    cross = torch.zeros(kn, n_in, n_out, dtype=torch.complex128, device=device)
    for i in range(0, x.shape[0], int(chunk)):
        xk = torch.fft.rfftn(x[i : i + int(chunk)].to(device, torch.float64), dim=dims,
                             norm="ortho").flatten(2)  # fmt: skip
        yk = torch.fft.rfftn(y[i : i + int(chunk)].to(device, torch.float64), dim=dims,
                             norm="ortho").flatten(2)  # fmt: skip
        gram += torch.einsum("nik,njk->kij", xk.conj(), xk)  # (n,in,K),(n,in,K)->(K,in,in)
        cross += torch.einsum("nik,nok->kio", xk.conj(), yk)  # (n,in,K),(n,out,K)->(K,in,out)
    w, v = torch.linalg.eigh(gram)  # Hermitian, ascending eigenvalues per mode
    keep = w > rcond * w[:, -1:].clamp_min(0.0)
    inv = torch.where(keep, 1.0 / torch.where(keep, w, torch.ones_like(w)), torch.zeros_like(w))
    solution = v @ (inv[..., None] * (v.conj().transpose(-2, -1) @ cross))  # (K, in, out)
    step = solution.transpose(-2, -1).reshape(*modes, n_out, n_in)  # S_k X_k = Y_k
    return hermitian_multipliers(step, grid)


def _norms(a: Tensor) -> Tensor:
    """``||A_k||_2`` of ``(..., out, in)`` multipliers, differentiable (vector norm for rank 1)."""
    if min(a.shape[-2:]) == 1:  # a row or column: the spectral norm is the Euclidean norm
        return torch.linalg.vector_norm(a, dim=(-2, -1))
    return torch.linalg.matrix_norm(a, ord=2)


class SpectralShortcut(CertifiedModule):
    """Full-band linear time step ``S(x) = irfftn(S_k rfftn(x)_k)`` with ``max_k ||S_k|| <= s``.

    ``x`` is a window of frames stacked time-major as channels ``(batch, in, *grid)``; the output
    is one frame ``(batch, out, *grid)``. ``S_k`` (complex ``out x in``) is learned at every
    ``rfftn`` mode of the training grid (:func:`shortcut_modes`: every frequency of the first
    ``d - 1`` axes, ``k_d = 0 .. n_d // 2`` of the last), initialized to the identity on the last
    frame (``S_k = [0 ... 0 I]``), so that ``S(x) = u_last`` at initialization.

    Parameters
    ----------
    in_channels, out_channels
        Channels of the window and of one frame (``in`` a multiple of ``out``).
    size
        The training grid: its points, one count per spatial axis (an ``int`` in 1-D);
        ``prod(shortcut_modes(size))`` multipliers are stored.
    s
        Bound of every multiplier's norm (clip: a multiplier above ``s`` is shrunk to it);
        ``None``: unconstrained (the twin of :class:`liponet.models.FNO`).

    Notes
    -----
    Other resolutions (:func:`shortcut_multipliers`): along the last axis the stored ``S_k`` for
    ``k <= n_d // 2`` and, on a finer grid, the highest stored multiplier beyond them; along the
    others the stored multiplier of the signed frequency clamped to the stored range. The slices
    ``k_d = 0`` and Nyquist apply the Hermitian form (:func:`hermitian_multipliers`; the real
    part in 1-D). The certificate is the same on every grid.

    Lipschitz constant
    ------------------
    In liponet's function norm, ``max_k ||S'_k||_2`` over the stored eval multipliers ``S'_k``
    (every multiplier applied on any grid is one of them or the Hermitian average of two, whose
    norm is not larger; with the orthonormal FFT a Fourier multiplier's norm is the largest of
    its multipliers'). Certified by float64 SVDs (:func:`~liponet.functional.spectral_norm_upper`,
    with its relative rounding margin) of the eval multipliers exactly as the forward applies
    them. Those are the multipliers clipped with their float64 norms to ``s`` times
    :data:`~liponet.functional.TARGET_MARGIN`, so the rounding to the weights' dtype keeps the
    certificate ``<= s``. Training forwards clip with the norms of the training multipliers
    themselves (exact: no power iteration), so the function trained is the one evaluated up to
    rounding.

    Examples
    --------
    >>> import torch
    >>> shortcut = SpectralShortcut(3, 1, size=16).eval()
    >>> x = torch.randn(2, 3, 16)
    >>> torch.allclose(shortcut(x), x[:, -1:], atol=1e-5)
    True
    >>> shortcut.lipschitz_bound() <= 1.0
    True
    >>> SpectralShortcut(1, 1, size=(8, 8))(torch.randn(2, 1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(
        self, in_channels: int, out_channels: int, size: int | Sequence[int], s: float | None = 1.0
    ) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or in_channels % out_channels:
            raise ValueError(
                f"SpectralShortcut: in_channels ({in_channels}) must be a positive multiple of "
                f"out_channels ({out_channels}) (a window of frames stacked as channels)"
            )
        try:
            grid = shortcut_grid(size)
        except (TypeError, ValueError):
            raise ValueError(
                f"SpectralShortcut: size must be >= 1 grid points per spatial axis (an int or a "
                f"sequence of ints), got {size!r}"
            ) from None
        if s is not None and not s > 0:
            raise ValueError(f"SpectralShortcut: s must be > 0 or None, got {s}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size = grid
        self.s = None if s is None else float(s)
        weight = torch.zeros(*shortcut_modes(grid), out_channels, in_channels, 2)
        eye = torch.arange(out_channels)
        weight[..., eye, in_channels - out_channels + eye, 0] = 1.0  # identity on the last frame
        self.weight = nn.Parameter(weight)
        self._cache = WeightKeyedCache([self.weight])

    def _stored(self, weight: Tensor) -> Tensor:
        """Complex ``(*modes, out, in)`` in the Hermitian form of the training grid."""
        return hermitian_multipliers(torch.view_as_complex(weight), self.size)

    def train_multipliers(self) -> Tensor:
        """Multipliers of training forwards: clipped by their own norms (differentiable)."""
        a = self._stored(self.weight)
        if self.s is None:
            return a
        return a / (_norms(a) / (self.s * TARGET_MARGIN)).clamp_min(1.0)[..., None, None]

    def eval_multipliers(self) -> Tensor:
        """The certified multipliers ``S'_k`` (``(*modes, out, in)`` complex, cached; no grad)."""
        return self._cache.get("eval", [self.weight], self._compute_eval)

    def _compute_eval(self, weight: Tensor) -> Tensor:
        a = self._stored(weight.detach())
        if self.s is None:
            return a.clone()
        a64 = a.to(torch.complex128)
        scale = (self.s * TARGET_MARGIN / spectral_norm_exact(a64)).clamp_max(1.0)
        # mirrored multipliers' float64 norms may differ by rounding: the form is restored
        return hermitian_multipliers(a64 * scale[..., None, None], self.size).to(a.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, in, *grid) -> (batch, out, *grid)``, any grid of ``d`` axes."""
        d = len(self.size)
        if x.ndim != 2 + d or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralShortcut: input must have shape (batch, {self.in_channels}, "
                f"{', '.join(['n'] * d)}) ({d} spatial dimension{'s' * (d > 1)}), got "
                f"{tuple(x.shape)}"
            )
        stored = self.train_multipliers() if self.training else self.eval_multipliers()
        return shortcut_apply(x, shortcut_multipliers(stored, tuple(x.shape[2:])))

    @torch.no_grad()
    def fit_(
        self, x: Tensor, y: Tensor, rcond: float = 1e-12, chunk: int = 4096
    ) -> SpectralShortcut:
        """Set every ``S_k`` to the least-squares step from windows ``x`` to frames ``y``.

        Per ``rfftn`` mode ``k`` of the training grid, ``S_k`` minimizes
        ``sum_i ||S_k X_ik - Y_ik||^2`` over the samples (``X = rfftn(x)``, ``Y = rfftn(y)`` over
        the spatial axes, orthonormal FFT): a dynamic-mode-
        decomposition-style fit of the window-to-frame map, solved in float64 from the per-mode
        Gram matrices with the minimum-norm pseudo-inverse (eigenvalues below ``rcond`` times
        the largest of the mode dropped: the frames of a window can be nearly collinear). The
        Hermitian slices keep the Hermitian form (what the forward applies there; the real part
        at ``k = 0`` and Nyquist in 1-D). With a bound
        ``s``, every ``S_k`` is then projected to the ball ``||S_k||_2 <= s`` (singular values
        clipped, the nearest multiplier in Frobenius norm). An initialization: training moves
        ``S`` on from it, and the certificate is always that of the weights as they are.

        Parameters
        ----------
        x
            Windows ``(n, in_channels, *size)`` on the training grid.
        y
            Next frames ``(n, out_channels, *size)``.
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
        shape_x = (self.in_channels, *self.size)
        shape_y = (self.out_channels, *self.size)
        if tuple(x.shape[1:]) != shape_x:
            raise ValueError(
                f"SpectralShortcut.fit_: x must have shape (n, {', '.join(map(str, shape_x))}) "
                f"(windows on the training grid), got {tuple(x.shape)}"
            )
        if tuple(y.shape[1:]) != shape_y or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"SpectralShortcut.fit_: y must have shape ({x.shape[0]}, "
                f"{', '.join(map(str, shape_y))}) (one frame per window of x), got "
                f"{tuple(y.shape)}"
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
        the Hermitian slices keep the Hermitian form (:func:`hermitian_multipliers`, what the
        forward applies there; the real part at ``k = 0`` and Nyquist in 1-D), taken before and
        after the projection (an average of two multipliers in the ball stays in it). With
        ``s=None`` the multipliers are stored as they are (in that form).

        Parameters
        ----------
        multipliers
            Complex ``(*shortcut_modes(size), out_channels, in_channels)``, e.g. an
            unconstrained fit (:func:`lstsq_multipliers`).

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
        shape = (*shortcut_modes(self.size), self.out_channels, self.in_channels)
        if tuple(multipliers.shape) != shape or not multipliers.is_complex():
            raise ValueError(
                f"SpectralShortcut.assign_: multipliers must be complex of shape {shape}, got "
                f"{multipliers.dtype} {tuple(multipliers.shape)}"
            )
        a = hermitian_multipliers(multipliers.to(self.weight.device, torch.complex128), self.size)
        if self.s is not None:
            a = project_multipliers(a, self.s * TARGET_MARGIN)
            a = hermitian_multipliers(a, self.size)
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
        Complex ``(*modes, out, in)`` (stored as a real ``(..., 2)`` buffer, so ``.double()``
        works).

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
        """``(batch, in, *grid) -> (batch, out, *grid)``."""
        stored = torch.view_as_complex(self.multipliers)
        return shortcut_apply(x, shortcut_multipliers(stored, tuple(x.shape[2:])))
