"""Norms of fields and chunked distance computations behind the operator certificates.

Every norm here is named by a string (``"function"``, ``"euclidean"``, ``"sup"``,
``"sobolev:S"``) so that certificates, constants and the command line speak the same language.
The Hilbert norms are computed as Euclidean norms of *features* (a fixed linear map of the
field), which lets distances between two large sets be computed blockwise with one matrix
product per block. Distances are rounded **up**: the matrix-product formula
``|x|^2 + |y|^2 - 2 x.y`` loses accuracy by cancellation, so a provable float64 rounding margin is
added before the square root; the sup distance is exact (a maximum of exact differences).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "NORM_NAMES",
    "check_norm",
    "features",
    "field_norm",
    "is_hilbert",
    "pairwise_distances",
]

#: Names accepted wherever a norm is asked for (``sobolev:S`` takes any real ``S``).
NORM_NAMES = ("function", "euclidean", "sup", "sobolev:S")

#: Unit roundoff of float64.
_EPS64 = 2.0**-53

#: Extra factor on the worst-case float64 error of the blockwise squared distance
#: (feature scaling, FFT and the inner products each contribute a few roundings per term).
_ROUNDING_SAFETY = 16.0


def check_norm(norm: str) -> str:
    """Return ``norm`` if liponet knows it, else raise ``ValueError`` listing the names."""
    if norm in ("function", "euclidean", "sup"):
        return norm
    if norm.startswith("sobolev:"):
        try:
            s = float(norm.split(":", 1)[1])
        except ValueError:
            s = math.nan
        if math.isfinite(s):
            return norm
    raise ValueError(f"unknown norm {norm!r}; available: {', '.join(NORM_NAMES)}")


def is_hilbert(norm: str) -> bool:
    """Whether ``norm`` is a Hilbert norm (computed through :func:`features`)."""
    return check_norm(norm) != "sup"


def _sobolev_weights(spatial: tuple[int, ...], s: float, device: torch.device) -> Tensor:
    """``(1 + |2 pi k|^2)^(s/2)`` on the FFT frequency grid of a unit periodic box, float64."""
    k2 = torch.zeros(spatial, dtype=torch.float64, device=device)
    for dim, n in enumerate(spatial):
        k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64, device=device) * (2 * math.pi)
        shape = [1] * len(spatial)
        shape[dim] = n
        k2 = k2 + k.reshape(shape) ** 2
    return (1.0 + k2) ** (s / 2)


def features(u: Tensor, norm: str) -> Tensor:
    """Float64 features whose Euclidean distances are the ``norm`` distances of the fields.

    Parameters
    ----------
    u
        ``(batch, channels, *spatial)`` fields (``(batch, ...)`` for ``"euclidean"``).
    norm
        ``"function"``: flattened field / ``sqrt(n_points)`` (the mean-over-grid L2 norm of
        liponet). ``"euclidean"``: flattened field. ``"sobolev:S"``: the periodic ``H^S`` norm on
        the unit box, ``sum_k (1 + |2 pi k|^2)^S |c_k|^2`` with ``c_k`` the Fourier coefficients of
        the mean-normalized field (``S = 0`` is ``"function"``; ``S < 0`` is weaker).

    Returns
    -------
    Tensor
        ``(batch, n_features)`` float64.
    """
    norm = check_norm(norm)
    if norm == "sup":
        raise ValueError("the sup norm is not a Hilbert norm: it has no features")
    x = u.to(torch.float64)
    if norm == "euclidean":
        return x.reshape(x.shape[0], -1)
    if x.ndim < 3:
        raise ValueError(
            f"norm {norm!r} needs fields (batch, channels, *spatial), got {tuple(x.shape)}"
        )
    spatial = tuple(x.shape[2:])
    n_points = math.prod(spatial)
    if norm == "function":
        return x.reshape(x.shape[0], -1) / math.sqrt(n_points)
    s = float(norm.split(":", 1)[1])
    dims = tuple(range(2, x.ndim))
    coeffs = torch.fft.fftn(x, dim=dims, norm="ortho")  # (b, c, *spatial) complex, Parseval
    coeffs = coeffs * _sobolev_weights(spatial, s, x.device)
    return torch.view_as_real(coeffs).reshape(x.shape[0], -1) / math.sqrt(n_points)


def _pointwise_magnitude(u: Tensor) -> Tensor:
    """``(batch, channels, *spatial) -> (batch, n_points)``: Euclidean norm over channels."""
    return u.pow(2).sum(1).sqrt().reshape(u.shape[0], -1)


def field_norm(u: Tensor, norm: str) -> Tensor:
    """Norm of each field of a batch, float64, ``(batch,)``.

    ``"sup"`` is the maximum over grid points of the Euclidean norm over channels.

    Examples
    --------
    >>> import torch
    >>> u = torch.tensor([[[3.0, -4.0, 0.0, 0.0]]])
    >>> field_norm(u, "function"), field_norm(u, "sup")
    (tensor([2.5000], dtype=torch.float64), tensor([4.], dtype=torch.float64))
    """
    if check_norm(norm) == "sup":
        if u.ndim < 3:
            raise ValueError(
                f"the sup norm needs fields (batch, channels, *spatial), got {tuple(u.shape)}"
            )
        return _pointwise_magnitude(u.to(torch.float64)).amax(1)
    return torch.linalg.vector_norm(features(u, norm), dim=1)


#: Pairs whose expansion margin exceeds this fraction of their squared distance are recomputed
#: from their difference (see :func:`_hilbert_block`).
_CLOSE_RELATIVE = 1e-9

#: Elements of the difference rows held at once for those pairs (~64 MB in float64).
_DIRECT_ELEMENTS = 2**23


def _hilbert_block(q: Tensor, c: Tensor) -> Tensor:
    """Rounded-up Euclidean distances between feature rows ``(m, f)`` and ``(n, f)``.

    Both sets are first centred on the block's mean (distances are translation invariant; this
    limits cancellation), then the rounding margin is taken relative to the centred norms. A
    second, absolute margin covers the rounding of the features themselves (scaling, FFT),
    which is relative to the uncentred norms. Pairs so close that the first margin would
    dominate their distance are recomputed from the difference of the (uncentred) feature rows,
    whose rounding is relative to the distance itself; the smaller of the two bounds is kept.
    """
    raw = torch.linalg.vector_norm(q, dim=1)[:, None] + torch.linalg.vector_norm(c, dim=1)[None]
    feature_error = _ROUNDING_SAFETY * (math.log2(q.shape[1] + 1) + 4) * _EPS64 * raw  # (m, n)
    q0, c0 = q, c
    centre = c.mean(0, keepdim=True)
    q, c = q - centre, c - centre
    qn = q.pow(2).sum(1)  # (m,)
    cn = c.pow(2).sum(1)  # (n,)
    scale = qn[:, None] + cn[None, :]  # (m, n)
    sq = scale - 2.0 * torch.einsum("mf,nf->mn", q, c)  # (m,f),(n,f)->(m,n)
    margin = _ROUNDING_SAFETY * (q.shape[1] + 8) * _EPS64 * scale
    out = (sq.clamp_min(0.0) + margin).sqrt()
    # Close pairs (the ones a nearest-neighbour bound picks) lose digits to the cancellation in
    # the expansion above: recompute them from the difference itself, whose rounding is relative
    # to the distance (each entry of ``q_i - c_j`` rounded once, then ``f + 1`` rounded sums).
    close = (margin > _CLOSE_RELATIVE * sq).nonzero()
    for part in close.split(max(1, _DIRECT_ELEMENTS // max(1, q.shape[1]))):
        i, j = part[:, 0], part[:, 1]
        direct = torch.linalg.vector_norm(q0[i] - c0[j], dim=1)  # uncentred: exact inputs
        direct = direct * (1.0 + _ROUNDING_SAFETY * (q.shape[1] + 2) * _EPS64)
        out[i, j] = torch.minimum(out[i, j], direct)
    return out + feature_error


#: Elements of the difference tensor held at once by the sup distance (~64 MB in float64).
_SUP_ELEMENTS = 2**23


def _sup_block(q: Tensor, c: Tensor) -> Tensor:
    """Exact sup distances between fields ``(m, channels, *spatial)`` and ``(n, ...)``.

    Rows of ``q`` are processed a few at a time so that at most ``_SUP_ELEMENTS`` differences
    are held at once.
    """
    rows = max(1, _SUP_ELEMENTS // max(1, c.numel()))
    out = []
    for part in q.split(rows):
        diff = part[:, None] - c[None, :]  # (r, n, channels, *spatial)
        out.append(diff.pow(2).sum(2).sqrt().reshape(part.shape[0], c.shape[0], -1).amax(2))
    return torch.cat(out)


def pairwise_distances(a: Tensor, b: Tensor, norm: str) -> Callable[[slice, slice], Tensor]:
    """A function ``(rows, cols) -> distances`` between blocks of ``a`` and ``b``.

    The returned closure computes ``d(a[rows], b[cols])`` (float64, rounded up) on demand, so
    that callers can stream over blocks of two large sets without ever holding all distances.

    Parameters
    ----------
    a, b
        ``(m, ...)`` and ``(n, ...)`` fields of the same shape.
    norm
        One of :data:`NORM_NAMES`.
    """
    norm = check_norm(norm)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"fields to compare must have the same shape, got {tuple(a.shape[1:])} and "
            f"{tuple(b.shape[1:])}"
        )
    if norm == "sup":
        return lambda rows, cols: _sup_block(a[rows].to(torch.float64), b[cols].to(torch.float64))
    return lambda rows, cols: _hilbert_block(features(a[rows], norm), features(b[cols], norm))
