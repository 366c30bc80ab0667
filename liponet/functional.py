"""Pure math behind liponet's certificates and constraints.

Two families of functions live here and must never be confused:

* **Certified** (:func:`spectral_norm_upper`): guaranteed upper bounds of spectral norms, computed
  in float64 from the weights as they are. These are what ``lipschitz_bound()`` returns.
* **Training devices** (:func:`power_iteration`, :func:`bjorck`, :func:`qr_unitary`,
  :func:`cayley_unitary`): cheap, differentiable, warm-startable normalizers used inside
  ``forward``. Power iteration converges to the largest singular value *from below*; it can
  under-estimate and never produces a certificate by itself.

All functions are batched over leading dimensions and accept real or complex matrices.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "BJORCK_BETA",
    "NORMS",
    "NORM_GRID_BITS",
    "POLAR_GRAM_RCOND",
    "SVD_RELATIVE_MARGIN",
    "TARGET_MARGIN",
    "add_up",
    "batched_norm",
    "bjorck",
    "cayley_unitary",
    "cholesky_norm_upper",
    "cholesky_rounding_constant",
    "chunks",
    "conj_t",
    "distance_upper",
    "distance_upper_fast",
    "drifted_norm_bounds",
    "gram_norm_upper",
    "grid_norm_upper",
    "grid_norm_upper_parts",
    "isometry_norm_upper",
    "norm_grid_index",
    "norm_grid_level",
    "perturbed_norm_upper",
    "polar_eigh",
    "polar_factor",
    "polish_isometry",
    "polished_isometry_bound",
    "power_iteration",
    "qr_unitary",
    "scale_multipliers",
    "scale_multipliers_error",
    "spectral_norm_exact",
    "spectral_norm_upper",
]

#: Relative margin added to a float64 SVD's largest singular value to make it a guaranteed upper
#: bound. LAPACK's SVD is backward stable: the computed sigma_max of an n x n matrix has absolute
#: error <= c * n * 2**-52 * ||W||, i.e. relative error < 1e-11 for n <= 10**4 with a generous c.
#: Float32 weights are exactly representable in float64, so no other rounding enters.
SVD_RELATIVE_MARGIN = 1e-10

#: Factor applied to a constrained layer's target norm ``k`` before normalizing (just below 1).
#: The eval weights are stored in float32, whose rounding lifts the normalized norm by up to a
#: few ``1e-7`` relative; aiming at ``k * (1 - 2**-20)`` (``~1e-6`` below) keeps every layer's
#: certificate ``<= k``, so a network whose parts' budgets multiply to ``k`` certifies ``<= k``.
TARGET_MARGIN = 1.0 - 2.0**-20

#: Step of the Björck orthonormalization W <- (1 + beta) W - beta W W^H W (converges for
#: beta in (0, 0.5] when ||W||_2 <= 1; singular values never exceed 1 along the way).
BJORCK_BETA = 0.5


#: Norms understood by :func:`batched_norm`.
NORMS = ("euclidean", "function")


def batched_norm(u: Tensor, norm: str = "euclidean") -> Tensor:
    """Norm of each sample of a batch, in one of liponet's two conventions.

    Parameters
    ----------
    u
        ``(batch, ...)``.
    norm
        ``"euclidean"``: the 2-norm of everything but the batch dimension (pointwise models,
        sensor vectors). ``"function"``: the L2 norm of a vector-valued function on a domain of
        unit measure with uniform quadrature, for fields ``(batch, channels, *spatial)``:
        ``sqrt(mean over grid points of sum over channels of u**2)``.

    Returns
    -------
    Tensor
        ``(batch,)``.

    Examples
    --------
    >>> import torch
    >>> batched_norm(torch.ones(1, 2, 8), "function")  # two channels equal to 1
    tensor([1.4142])
    """
    if norm == "euclidean":
        return torch.linalg.vector_norm(u.reshape(u.shape[0], -1), dim=1)
    if norm == "function":
        if u.ndim < 3:
            raise ValueError(
                f"the function norm needs fields (batch, channels, *spatial), got {tuple(u.shape)}"
            )
        return u.pow(2).sum(1).reshape(u.shape[0], -1).mean(1).sqrt()
    raise ValueError(f"unknown norm {norm!r}; available: {', '.join(NORMS)}")


def conj_t(w: Tensor) -> Tensor:
    """Return the conjugate transpose of a batch of matrices ``(..., m, n) -> (..., n, m)``.

    Examples
    --------
    >>> import torch
    >>> conj_t(torch.tensor([[1 + 2j, 3j]])).tolist()
    [[(1-2j)], [-3j]]
    """
    return w.mH if w.is_complex() else w.mT


def spectral_norm_exact(w: Tensor) -> Tensor:
    """Largest singular value of each matrix of a batch, by a float64 (complex128) SVD.

    Parameters
    ----------
    w
        Real or complex tensor of shape ``(..., m, n)``.

    Returns
    -------
    Tensor
        float64 tensor of shape ``(...)``: the computed largest singular values, *without*
        a safety margin (use :func:`spectral_norm_upper` for certificates).

    Examples
    --------
    >>> import torch
    >>> spectral_norm_exact(torch.diag(torch.tensor([3.0, -4.0])))
    tensor(4., dtype=torch.float64)
    """
    if w.ndim < 2:
        raise ValueError(f"w must have shape (..., m, n), got {tuple(w.shape)}")
    w64 = w.detach().to(torch.complex128 if w.is_complex() else torch.float64)
    if w64.numel() == 0:
        return torch.zeros(w64.shape[:-2], dtype=torch.float64, device=w.device)
    return torch.linalg.svdvals(w64)[..., 0]


def spectral_norm_upper(w: Tensor) -> Tensor:
    """Guaranteed upper bound of the spectral norm of each matrix of a batch.

    The float64 SVD's largest singular value times ``1 + SVD_RELATIVE_MARGIN``.

    Parameters
    ----------
    w
        Real or complex tensor of shape ``(..., m, n)``.

    Returns
    -------
    Tensor
        float64 tensor of shape ``(...)``.

    Raises
    ------
    ValueError
        If ``w`` is not a batch of matrices or holds NaN/inf (no bound exists).

    Examples
    --------
    >>> import torch
    >>> w = torch.diag(torch.tensor([3.0, -4.0]))
    >>> float(spectral_norm_upper(w)) >= 4.0
    True
    >>> spectral_norm_upper(torch.ones(5, 2, 3)).shape
    torch.Size([5])
    """
    if not bool(torch.isfinite(w).all()):
        raise ValueError("w holds NaN or inf values: no spectral-norm bound exists")
    return spectral_norm_exact(w) * (1.0 + SVD_RELATIVE_MARGIN)


#: Relative slack for the float64 rounding inside :func:`perturbed_norm_upper` (see its proof).
ROUNDING_SLACK = 1e-14


def perturbed_norm_upper(a: Tensor, b: Tensor, b_norm_upper: Tensor) -> Tensor:
    """Guaranteed upper bound of ``||A||_2`` from a nearby ``B`` whose norm is already bounded.

    ``||A||_2 <= ||B||_2 + ||A - B||_2 <= ||B||_2 + ||A - B||_F``. Used when ``A`` is ``B``
    rounded (e.g. a float32 weight scaled by a float64 factor and stored): one SVD of ``B``'s
    unscaled matrix then certifies ``A`` without a second SVD.

    Parameters
    ----------
    a, b
        Float64 or complex128 ``(..., m, n)``; their entries are taken as exact values.
    b_norm_upper
        float64 ``(...)``: guaranteed upper bounds of ``||B||_2``.

    Returns
    -------
    Tensor
        float64 ``(...)``: ``b_norm_upper + ||fl(A - B)||_F (1 + SVD_RELATIVE_MARGIN)
        + ROUNDING_SLACK (2 ||B||_F + ||fl(A - B)||_F)`` (the last factor bounds
        ``||A||_F + ||B||_F``).

    Notes
    -----
    Proof of the rounding terms (unit roundoff ``u = 2**-53``, componentwise for complex
    entries): the computed difference ``D = fl(A - B)`` satisfies ``|D - (A - B)| <= u |A - B|
    <= u (|A| + |B|)`` entrywise, so ``||A - B||_F <= ||D||_F + u (||A||_F + ||B||_F)`` (times
    ``sqrt(2)`` for complex entries); a float64 Frobenius norm of ``N`` terms has relative
    error below ``N u`` (covered by ``SVD_RELATIVE_MARGIN`` for ``N <= 10**5``), and the
    slack ``1e-14`` exceeds ``sqrt(2) u (1 + 10**-5)`` by a factor of 50 for the norms of
    ``A`` and ``B`` computed the same way.

    Examples
    --------
    >>> import torch
    >>> b = torch.eye(2, dtype=torch.float64)
    >>> a = b + 1e-3
    >>> float(perturbed_norm_upper(a, b, torch.tensor(1.0))) >= float(torch.linalg.svdvals(a)[0])
    True
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"a and b must be batches of matrices of one shape, got {tuple(a.shape)}, "
            f"{tuple(b.shape)}"
        )
    fro = _frobenius(a - b)
    size = 2.0 * _frobenius(b) + fro  # >= ||A||_F + ||B||_F
    bound = b_norm_upper + fro * (1.0 + SVD_RELATIVE_MARGIN) + ROUNDING_SLACK * size
    if not bool(torch.isfinite(bound).all()):  # NaN/inf anywhere in a or b reaches the bound
        raise ValueError("a or b holds NaN or inf values: no spectral-norm bound exists")
    return bound


#: Relative margin of :func:`distance_upper`: covers the one rounding of each difference
#: (``<= 2**-24`` relative, float32) and the float64 sum of squares (``< N 2**-53``).
DISTANCE_RELATIVE_MARGIN = 1e-6


def _matrix_pairs(a: Tensor, b: Tensor) -> tuple[torch.Size, Tensor, Tensor]:
    """``(batch shape, a, b)`` with the batch flattened: pairs of matrices of one shape, dtype."""
    if a.shape != b.shape or a.dtype != b.dtype or a.ndim < 2:
        raise ValueError(
            f"a and b must be batches of matrices of one shape and dtype, got "
            f"{tuple(a.shape)} {a.dtype}, {tuple(b.shape)} {b.dtype}"
        )
    return a.shape[:-2], a.reshape(-1, *a.shape[-2:]), b.reshape(-1, *b.shape[-2:])


def distance_upper(a: Tensor, b: Tensor) -> Tensor:
    """Guaranteed upper bound of ``||A - B||_F`` (hence of ``||A - B||_2``) for each matrix pair.

    Parameters
    ----------
    a, b
        Real or complex ``(..., m, n)`` of one shape and dtype (float32/float64 or their complex
        types); their entries are taken as exact values.

    Returns
    -------
    Tensor
        float64 ``(...)``: ``||fl(A - B)||_F (1 + DISTANCE_RELATIVE_MARGIN)``.

    Notes
    -----
    Proof. Each entry of ``fl(A - B)`` (componentwise for complex entries) is one rounded
    subtraction in the inputs' precision: ``fl(x - y) = (x - y)(1 + e)`` with
    ``|e| <= 2**-24`` (a result in the subnormal range is exact, so the relative bound holds
    there too), hence ``|x - y| <= |fl(x - y)| / (1 - 2**-24)``. The squares are summed in
    float64 with relative error below ``N 2**-53`` (``N`` terms per matrix, ``< 2**-30`` for
    ``N <= 10**6``; float32 squares never underflow in float64). The margin ``1e-6`` exceeds the
    product of both factors. A NaN or inf anywhere makes the result non-finite (callers check).

    Examples
    --------
    >>> import torch
    >>> a = torch.eye(2)
    >>> float(distance_upper(a, 0 * a)) >= 2**0.5  # ||I||_F
    True
    """
    batch, a2, b2 = _matrix_pairs(a, b)
    out = torch.empty(a2.shape[0], dtype=torch.float64, device=a.device)
    for i, j in chunks(a2.shape[0], a2[0].numel()):  # small temporaries: no page faults
        d = a2[i:j] - b2[i:j]
        if d.is_complex():
            d = torch.view_as_real(d)
        out[i:j] = torch.linalg.vector_norm(d.reshape(j - i, -1), dim=1, dtype=torch.float64)
    return (out * (1.0 + DISTANCE_RELATIVE_MARGIN)).reshape(batch)


def distance_upper_fast(a: Tensor, b: Tensor) -> Tensor:
    """:func:`distance_upper` with the squares summed in the inputs' precision: about twice faster.

    Guaranteed upper bound of ``||A - B||_F`` (hence of ``||A - B||_2``) for each matrix pair,
    within about ``N 2**-24`` (relative) of it for float32 inputs with ``N`` real entries per
    matrix (``5e-4`` at ``64 x 64`` complex), where :func:`distance_upper` is within ``1e-6``;
    differences whose squares underflow (below ``~1e-19`` in float32) add up to ``sqrt(N)``
    times ``2**-74.5`` absolute.

    Parameters
    ----------
    a, b
        Real or complex ``(..., m, n)`` of one shape and dtype (float32/float64 or their complex
        types); their entries are taken as exact values.

    Returns
    -------
    Tensor
        float64 ``(...)``; non-finite where the inputs are, or where a square overflows the
        inputs' precision (callers check; :func:`distance_upper` accumulates in float64).

    Notes
    -----
    Proof (``u`` the unit roundoff of the inputs' precision, ``N`` the real entries per matrix,
    ``gamma_j = j u / (1 - j u)``). Each entry (each real part) of ``fl(A - B)`` is one rounded
    subtraction, ``|x - y| <= |fl(x - y)| / (1 - u)`` (exact in the subnormal range). Each
    square ``fl(d^2)`` is within ``u d^2`` of ``d^2`` plus, in the subnormal range, at most the
    smallest subnormal ``t``; their sum, in any order, is within ``gamma_(N - 1)`` of the sum
    of its terms (Higham 2002, Lemma 3.4 and 4.2). So ``sum d^2 <= (s + N t) / (1 -
    gamma_N)`` for the computed ``s``, and the bound is ``sqrt((s + N t) / (1 - gamma_N)) / (1
    - u)``, evaluated in float64 (a few operations on exact float32 values, relative error
    below ``1e-15``) and raised by ``1 + 1e-12``.

    Examples
    --------
    >>> import torch
    >>> a = torch.eye(2)
    >>> float(distance_upper_fast(a, 0 * a)) >= 2**0.5  # ||I||_F
    True
    """
    batch, a2, b2 = _matrix_pairs(a, b)
    real = a.real.dtype if a.is_complex() else a.dtype
    finfo = torch.finfo(real)
    u, t = finfo.eps / 2, finfo.smallest_normal * finfo.eps
    n_real = a2[0].numel() * (2 if a.is_complex() else 1)
    out = torch.empty(a2.shape[0], dtype=real, device=a.device)
    for i, j in chunks(a2.shape[0], a2[0].numel()):  # small temporaries: no page faults
        d = a2[i:j] - b2[i:j]
        if d.is_complex():
            d = torch.view_as_real(d)
        d = d.reshape(j - i, -1)
        torch.sum(d * d, dim=1, out=out[i:j])
    gamma = n_real * u / (1 - n_real * u)
    s = (out.to(torch.float64) + n_real * t) / (1 - gamma)
    return (s.sqrt() / (1 - u) * (1.0 + 1e-12)).reshape(batch)


#: Elements per chunk of the batched passes over many matrices (:func:`chunks`).
CHUNK_ELEMENTS = 1 << 17


def chunks(n: int, per_item: int) -> list[tuple[int, int]]:
    """``(start, stop)`` ranges covering ``range(n)``, ``~CHUNK_ELEMENTS / per_item`` long.

    Passes over thousands of matrices in float64 run several times faster chunk by chunk:
    the temporaries stay in cache and small allocations are reused instead of fresh pages.

    Examples
    --------
    >>> chunks(5, CHUNK_ELEMENTS // 2)
    [(0, 2), (2, 4), (4, 5)]
    """
    step = max(1, CHUNK_ELEMENTS // max(1, per_item))
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def drifted_norm_bounds(
    w: Tensor, previous: Tensor, lower: Tensor, upper: Tensor
) -> tuple[Tensor, Tensor]:
    """Spectral-norm bounds of matrices that moved, from bounds of where they were (no SVD).

    Weyl's inequality for singular values, ``| ||W||_2 - ||P||_2 | <= ||W - P||_2 <=
    ||W - P||_F``, turns bounds ``lower <= ||P||_2 <= upper`` of the previous matrices ``P`` into
    bounds of the current ones ``W`` at the cost of one pass over both: ``O(m n)`` per matrix
    instead of an SVD's ``O(m n min(m, n))`` with a large constant. After a small optimizer step
    most matrices stay far enough below the largest norm that they need no new SVD.

    Parameters
    ----------
    w, previous
        ``(..., m, n)`` of one shape and dtype.
    lower, upper
        float64 ``(...)``: bounds of ``||previous||_2``.

    Returns
    -------
    tuple of Tensor
        ``(lower', upper')`` float64 ``(...)``. ``upper'`` is a guaranteed upper bound of
        ``||W||_2`` when ``upper`` is one of ``||P||_2`` (certified: ``upper +
        distance_upper(W, P)``, the float64 addition's rounding ``<= 2**-53 upper'`` covered
        by rounding ``upper'`` up by two ulps). ``lower'`` is ``lower - distance`` without a
        rounding guarantee: use it to choose which matrices to recompute, never as a bound.

    Examples
    --------
    >>> import torch
    >>> p = torch.diag(torch.tensor([2.0, 1.0]))
    >>> w = p + 0.01 * torch.ones(2, 2)
    >>> lo, hi = drifted_norm_bounds(w, p, torch.tensor(2.0), torch.tensor(2.0))
    >>> float(lo) <= float(torch.linalg.matrix_norm(w, 2)) <= float(hi)
    True
    """
    dist = distance_upper(w, previous)
    up = add_up(upper, dist)
    if not bool(torch.isfinite(up).all()):
        raise ValueError("w or previous holds NaN or inf values: no spectral-norm bound exists")
    return lower - dist, up


def gram_norm_upper(x: Tensor) -> Tensor:
    """Guaranteed upper bound of ``||X||_2`` from one Gram step: ``||X^H X||_F^(1/2)`` + rounding.

    ``||X||_2^2 = ||X^H X||_2 <= ||X^H X||_F`` (Delattre et al. 2023's Gram iteration, one
    step): exact up to a factor ``rank^(1/4)``, and within a few percent of ``||X||_2`` for the
    nearly rank-one differences an optimizer step makes, where the Frobenius norm (which is
    ``(sum sigma_i^2)^(1/2)``) over-estimates by more. One batched matrix product, several times
    cheaper than an SVD.

    Parameters
    ----------
    x
        Real or complex ``(..., m, n)`` (float32 or float64 parts); its entries are taken as
        exact values. The product is computed in ``x``'s precision.

    Returns
    -------
    Tensor
        float64 ``(...)``.

    Notes
    -----
    Proof of the rounding margin (``u`` the unit roundoff of ``x``'s precision, ``2**-24`` or
    ``2**-53``). Let ``p = min(m, n)`` and ``G = X^H X`` (or ``X X^H``, the smaller), a ``p x
    p`` matrix whose entries are inner products of length ``q = max(m, n)``. A conventional
    matrix product (any summation order, with or without fused multiply-adds) computes each
    real or imaginary part of an entry, a sum of at most ``2q`` real products, with absolute
    error at most ``gamma_{2q} = 2q u / (1 - 2q u)`` times the sum of the products' magnitudes,
    which is at most ``(|X|^H |X|)_ij``; the complex error is then at most ``sqrt(2) gamma_{2q}
    (|X|^H |X|)_ij`` and its Frobenius norm at most ``sqrt(2) gamma_{2q} || |X| ||_F^2 =
    sqrt(2) gamma_{2q} ||X||_F^2``. So ``||G||_F <= ||fl(G)||_F + c ||X||_F^2`` with ``c = 1.5
    gamma_{2q}``. Both Frobenius norms are accumulated in float64 from the stored entries
    (sums of at most ``N = 2 m n`` squares, then a square root: relative error below ``(N + 2)
    2**-53``); the bound is inflated by ``(1 + 2 (N + 2) 2**-53)`` before and by ``1 + 1e-12``
    after the final square root, which covers its rounding and the few float64 operations of
    the formula. A result in the subnormal range of ``x``'s precision may lose up to the
    smallest subnormal per product instead: ``2 q p^2`` times the smallest normal number is
    added to ``||G||_F`` for it. A NaN or inf in ``x`` gives a non-finite result.

    Examples
    --------
    >>> import torch
    >>> x = torch.outer(torch.arange(1.0, 4.0), torch.ones(3))  # rank one: tight
    >>> exact = float(torch.linalg.matrix_norm(x.double(), 2))
    >>> exact <= float(gram_norm_upper(x)) <= exact * (1 + 1e-5)
    True
    """
    if x.ndim < 2 or x.dtype not in _GRAM_DTYPES:
        raise ValueError(
            f"x must be float32/float64 or their complex types, of shape (..., m, n); got "
            f"{x.dtype} {tuple(x.shape)}"
        )
    m, n = x.shape[-2:]
    xh = conj_t(x)
    g = xh @ x if n <= m else x @ xh  # (..., p, p)
    finfo = torch.finfo(x.real.dtype if x.is_complex() else x.dtype)
    u = finfo.eps / 2
    q, p = max(m, n), min(m, n)
    gamma = 2 * q * u / (1 - 2 * q * u)
    fro_x = _frobenius64(x)
    fro_g = _frobenius64(g) + 2 * q * p * p * finfo.tiny
    rel = 2 * (2 * m * n + 2) * 2.0**-53
    squared = (fro_g + 1.5 * gamma * fro_x**2) * (1.0 + rel)
    return squared.sqrt() * (1.0 + 1e-12)


_GRAM_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_REAL_GRAM_DTYPES = (torch.float32, torch.float64)


def _top_eigenvalue_estimate(gram: Tensor, trace: Tensor) -> Tensor:
    """``eigvalsh``'s largest eigenvalue of each Hermitian matrix, float64 ``(K,)``: an estimate.

    Where LAPACK does not converge (ill-conditioned float32 input), the batch again in float64,
    then the trace (an upper bound for a positive semi-definite matrix; NaN stays NaN).
    """
    wide = torch.complex128 if gram.is_complex() else torch.float64
    for g in (gram, gram.to(wide)):
        try:
            return torch.linalg.eigvalsh(g)[..., -1].to(torch.float64).clamp_min(0.0)
        except torch.linalg.LinAlgError:
            continue
    return trace.clone()


def cholesky_rounding_constant(p: int, u: float, complex_entries: bool) -> float:
    """``g`` with ``||L L^H - A||_2 <= g tr(A)`` for a floating-point Cholesky factor of ``A``.

    The backward-error constant of the a-posteriori positive-definiteness test (Rump 2006,
    "Verification of positive definiteness", BIT 46; the componentwise bound of Demmel 1989 and
    Higham 2002, Thm. 10.3): if the factorization of a ``p x p`` Hermitian ``A`` (diagonal
    entries ``a_ii >= 0``) runs to completion, ``A + E = L L^H`` is positive semi-definite, so
    ``lambda_min(A) >= -||E||_2 >= -g tr(A)``.

    Parameters
    ----------
    p
        The order of ``A``.
    u
        The unit roundoff of the factorization (``2**-24`` float32, ``2**-53`` float64).
    complex_entries
        Complex Hermitian ``A`` (complex arithmetic) or real symmetric.

    Returns
    -------
    float
        Real: ``gamma_{p+2} / (1 - gamma_{p+2})``; complex: ``s / (1 - s)`` with ``s =
        sqrt(2) gamma_{2p+2}`` (``gamma_j = j u / (1 - j u)``).

    Notes
    -----
    Proof. Write ``A = R^H R`` with ``R = L^H`` upper triangular. Each entry of ``R`` is computed
    from its defining equation by real floating-point operations, each rounded once (any order
    of the sums, with or without fused multiply-adds, as blocked and recursive LAPACK codes do):
    ``r_ij = (a_ij - sum_{k<i} conj(r_ki) r_kj) / r_ii`` (a division, or a multiplication by a
    rounded reciprocal: one rounding more) and ``r_jj = (a_jj - sum_{k<j} |r_kj|^2)^(1/2)``.
    Real case: Higham's Lemma 8.4 gives ``|a_ij - sum_{k<=i} r_ki r_kj| <= gamma_{p+2} sum_k
    |r_ki| |r_kj|`` (at most ``p - 1`` products, the division or reciprocal and the square
    root). Complex case: the real and the imaginary part of an off-diagonal equation are each a
    real sum of at most ``2(p - 1)`` products and ``a_ij``'s part, divided by the real
    ``r_ii``; the diagonal equation sums ``2(j - 1)`` squares. So each part of ``E_ij``, the
    residual of the exact equation, is at most ``gamma_{2p+2}`` times the sum of the magnitudes
    of its products: ``S_re = sum_k (|Re r_ki Re r_kj| + |Im r_ki Im r_kj|)`` and ``S_im =
    sum_k (|Re r_ki Im r_kj| + |Im r_ki Re r_kj|)``. Per term, with ``r_ki = a + ib``, ``r_kj =
    c + id``: ``(|ac| + |bd|)^2 + (|ad| + |bc|)^2 = |r_ki|^2 |r_kj|^2 + 4 |abcd| <= 2 |r_ki|^2
    |r_kj|^2``, so by Minkowski ``|E_ij| <= gamma_{2p+2} (S_re^2 + S_im^2)^(1/2) <= s (|R|^T
    |R|)_ij``. Then ``||E||_2 <= || |E| ||_2 <= s || |R| ||_2^2 <= s ||R||_F^2``, and ``||R||_F^2
    = tr(R^H R) = tr(A) + tr(E) <= tr(A) + s ||R||_F^2``, so ``||E||_2 <= s / (1 - s) tr(A)``.
    The real case follows the same way with ``s = gamma_{p+2}``. ``tests/test_functional.py``
    measures ``||L L^H - A||_2 / tr(A)`` of float32 factorizations (random, ill-conditioned,
    near-singular and indefinite-by-rounding matrices) against this constant.

    Examples
    --------
    >>> round(cholesky_rounding_constant(64, 2.0**-24, True) / 2.0**-24)
    184
    """
    n = 2 * p + 2 if complex_entries else p + 2
    gamma = n * u / (1 - n * u)
    s = math.sqrt(2.0) * gamma if complex_entries else gamma
    return s / (1 - s)


def cholesky_norm_upper(
    x: Tensor,
    level: Tensor,
    headroom: float | None = None,
    entry_error: float = 0.0,
    factor_wide: bool = False,
) -> Tensor:
    """Guaranteed upper bounds ``||X_k||_2 <= b_k`` proven by a Cholesky factorization, or inf.

    Tries to prove ``||X_k||_2 <= level_k`` for each matrix of a batch: a Cholesky factorization
    of ``c_k I - X_k^H X_k`` that runs to completion shows that ``X_k^H X_k`` has no eigenvalue
    above ``c_k`` plus a rounding margin (Rump's a-posteriori test of positive definiteness);
    ``c_k`` is chosen so that the proven bound is at most ``level_k``. One Gram product and one
    Cholesky factorization per matrix, several times cheaper than an SVD, and in float32 twice
    cheaper again (with a wider margin, about ``1e-3`` relative at ``64 x 64``). A failed
    factorization proves nothing (the norm may be below the level all the same): inf.

    Parameters
    ----------
    x
        Real or complex ``(K, m, n)`` (float32 or float64 parts); its entries are taken as exact
        values. The products run in ``x``'s precision.
    level
        float64 ``(K,)``, positive: the bound to prove for each matrix.
    headroom
        If given, aim lower where possible: at ``(1 + headroom)`` times the square root of the
        computed Gram matrix's largest eigenvalue (``eigvalsh``, an estimate that only chooses
        the level), when that is below ``level``. The result is then a bound within about
        ``headroom`` of the norm, not just below ``level``. It must exceed the relative
        rounding margin (about ``1e-3`` for float32 ``64 x 64`` matrices, ``1e-12`` in
        float64), or every factorization fails.
    entry_error
        A relative error of ``x``'s entries to allow for (see Notes).
    factor_wide
        Factorize in float64 (complex128) the Gram matrix computed in ``x``'s precision: the
        margin is then the product's rounding alone (about ``2e-4`` relative for float32 ``64
        x 64`` matrices), for the cost of a float64 factorization.

    Returns
    -------
    Tensor
        float64 ``(K,)``: a guaranteed upper bound ``b_k`` of ``||X_k||_2`` where the
        factorization succeeded (``b_k <= level_k`` unless ``level_k`` is below the rounding
        margin, then inf), ``inf`` where it failed.

    Notes
    -----
    Proof (``u`` the unit roundoff of ``x``'s precision, ``gamma_j = j u / (1 - j u)``,
    ``p = min(m, n)``, ``q = max(m, n)``). Let ``G = X^H X`` (or ``X X^H``, the smaller, with the
    same largest eigenvalue ``||X||_2^2``) and ``H`` the Hermitian matrix that the computed
    product's lower triangle and the real parts of its diagonal define (what the factorization
    reads). Each entry of ``H`` is within the rounding bound of :func:`gram_norm_upper`'s proof
    of the exact entry, so ``||G - H||_2 <= ||G - H||_F <= e_G = 1.5 gamma_{2q} ||X||_F^2 + 2 q
    p^2 tiny``. The factorized matrix is ``A = c I - H + D`` with ``c`` the level rounded to
    ``x``'s precision and ``D`` diagonal, the rounding of the diagonal subtraction: ``|D_ii| <= u
    |c - h_ii| <= u (c + max_i h_ii)`` (``h_ii >= 0``). A Cholesky factorization of ``A`` that
    runs to completion in floating point computes ``L L^H = A + E`` with ``||E||_2 <= g
    tr(A)``, ``g`` =
    :func:`cholesky_rounding_constant` (Demmel 1989; Higham 2002, Thm. 10.3 and Lemma 10.5;
    Rump 2006 for the test; the complex case and the proof in that function's docstring).
    ``A >= -||E||_2 I`` (``L L^H`` is positive semi-definite), so ``||X||_2^2 = lambda_max(G)
    <= c + u (c + max_i h_ii) + g tr(A) + e_G``: the returned bound is its square root, with
    every float64 term inflated by
    ``1 + 1e-12`` (a few dozen float64 operations and sums of at most ``2 m n`` terms) and an
    absolute ``4 (p + 1)^2 tiny`` for underflow in the factorization. With ``factor_wide`` the
    stored entries of ``H`` (exact in float64) are factorized in float64: ``e_G`` keeps ``x``'s
    unit roundoff, while ``D``, ``g`` and the underflow term take float64's. ``tiny`` is the
    smallest normal number of the precision of the step it enters. ``||X||_F^2 = tr(G)`` is
    bounded by the computed trace: each diagonal entry is a sum of ``2q`` non-negative products,
    computed with relative error ``<= gamma_{2q}`` (plus ``2q tiny`` for underflow). LAPACK
    stops at the first pivot that is not positive or is NaN (``info > 0``): that counts as
    failed, and so does a NaN or inf in ``x`` (it reaches a pivot). ``||X_exact||_2 <= ||X||_2 +
    ||X_exact - X||_F`` adds ``entry_error ||X||_F``.

    Examples
    --------
    >>> import torch
    >>> x = torch.diag(torch.tensor([3.0, 1.0])).unsqueeze(0)
    >>> float(cholesky_norm_upper(x, torch.tensor([3.01], dtype=torch.float64))[0]) <= 3.01
    True
    >>> cholesky_norm_upper(x, torch.tensor([2.9], dtype=torch.float64))  # ||x|| = 3 > 2.9
    tensor([inf], dtype=torch.float64)
    """
    if x.ndim != 3 or x.dtype not in _GRAM_DTYPES:
        raise ValueError(
            f"x must be float32/float64 or their complex types, of shape (K, m, n); got "
            f"{x.dtype} {tuple(x.shape)}"
        )
    if level.shape != x.shape[:1]:
        raise ValueError(f"level must have shape ({x.shape[0]},), got {tuple(level.shape)}")
    m, n = x.shape[-2:]
    p, q = min(m, n), max(m, n)
    real = x.real.dtype if x.is_complex() else x.dtype
    finfo = torch.finfo(real)
    gamma_g = 2 * q * (finfo.eps / 2) / (1 - 2 * q * (finfo.eps / 2))  # the product's rounding
    if factor_wide:  # the factorization's precision
        real = torch.float64
    f_info = torch.finfo(real)
    u = f_info.eps / 2
    g = cholesky_rounding_constant(p, u, x.is_complex())
    slack = 1.0 + 1e-12
    xh = conj_t(x)
    gram = xh @ x if n <= m else x @ xh  # (K, p, p)
    diag = gram.diagonal(dim1=-2, dim2=-1).real.to(torch.float64)  # (K, p) h_ii >= 0
    h_max = diag.max(-1).values
    trace_h = diag.sum(-1)
    fro2 = (trace_h + 2 * q * p * finfo.tiny) / (1 - gamma_g) * slack  # >= ||X||_F^2
    e_g = (1.5 * gamma_g * fro2 + 2 * q * p * p * finfo.tiny) * slack
    absolute = 4 * (p + 1) ** 2 * f_info.tiny
    level2 = level.to(torch.float64).square()
    if headroom is not None:  # an estimate: it only chooses the level
        top = _top_eigenvalue_estimate(gram, trace_h)
        level2 = torch.minimum(level2, top * (1.0 + headroom) ** 2)
    # c such that the bound below stays <= level^2 (tr(A) <= p c (1 + u) - tr(H) (1 - u)): a
    # choice, not a proof
    trace_a = (p * level2 * (1 + u) - trace_h * (1 - u)).clamp_min(0.0)
    margin = (e_g + u * (level2 + h_max) + g * trace_a + absolute) * 1.01 + 1e-11 * level2
    target = level2 - margin
    if entry_error:  # ||X_exact|| <= ||X|| + entry_error ||X||_F: aim lower by as much
        target = (level2.sqrt() - entry_error * fro2.sqrt() * 1.01).clamp_min(0.0).square() - margin
    c = target.to(real)  # the level actually used: its float value, exactly (rounded down)
    c = torch.where(c.to(torch.float64) > target, torch.nextafter(c, c.new_tensor(-math.inf)), c)
    if factor_wide:  # the stored entries, exactly
        gram = gram.to(torch.complex128 if gram.is_complex() else torch.float64)
    a = gram.neg_()  # in place: A = c I - H
    a_diag = a.diagonal(dim1=-2, dim2=-1)
    a_diag.copy_((c[:, None] + a_diag.real).to(a.dtype))  # fl(c - h_ii)
    # info == 0: every pivot was positive and not NaN; each entry of the factor enters a later
    # pivot (or is one), so the factor is finite too.
    done = (torch.linalg.cholesky_ex(a).info == 0) & (c > 0)
    trace = a_diag.real.to(torch.float64).sum(-1) * slack
    c64 = c.to(torch.float64)
    bound2 = (c64 + (u * (c64 + h_max) + g * trace + e_g + absolute) * slack) * slack
    bound = bound2.sqrt() * slack
    if entry_error:
        bound = add_up(bound, entry_error * fro2.sqrt() * slack)
    return torch.where(done, bound, torch.full_like(bound, math.inf))


#: Levels per octave of :func:`grid_norm_upper`'s grid: ``2^NORM_GRID_BITS``, ``g_j = (1 + i /
#: 2^b) 2^e`` for ``j = e 2^b + i`` (exact float64 numbers, relative spacing ``2^-b`` to
#: ``2^-(b+1)``: ``4.9e-4`` to ``2.4e-4``). Finer: closer bounds, more tests per matrix (the
#: levels within the test's rounding margin of the norm may fail and must be tried).
NORM_GRID_BITS = 10


def norm_grid_level(j: Tensor, bits: int = NORM_GRID_BITS) -> Tensor:
    """The levels ``g_j`` (float64, exact) of the integer indices ``j``.

    Examples
    --------
    >>> import torch
    >>> norm_grid_level(torch.tensor([0, 1, 512]), bits=9).tolist()
    [1.0, 1.001953125, 2.0]
    """
    n = 1 << bits
    e = torch.div(j, n, rounding_mode="floor")
    i = j - e * n
    return torch.ldexp((n + i).to(torch.float64), (e - bits).to(torch.float64))


def norm_grid_index(value: Tensor, bits: int = NORM_GRID_BITS) -> Tensor:
    """The smallest ``j`` with ``g_j >= value`` (``value`` positive float64), exactly.

    Examples
    --------
    >>> import torch
    >>> v = torch.tensor([1.0, 1.001, 3.0], dtype=torch.float64)
    >>> norm_grid_index(v, bits=9).tolist()
    [0, 1, 768]
    """
    n = 1 << bits
    mant, exp = torch.frexp(value.to(torch.float64))  # value = mant 2^exp, mant in [0.5, 1)
    i = torch.ceil((2.0 * mant - 1.0) * n).to(torch.int64)  # exact: i / n in [0, 1]
    return (exp.to(torch.int64) - 1) * n + i  # i == n is the next octave's first level


def _negated_gram(x: Tensor) -> Tensor:
    """``conj(-H)`` ``(K, n, n)`` row-major, ``H`` the Gram matrix ``X^H X`` of ``x`` ``(K, m, n)``.

    ``H`` is the computed product made exactly Hermitian: its lower triangle and the real parts
    of its diagonal, mirrored. For complex ``X = A + iB`` the product runs on real matrices:
    ``Re G = [A; B]^T [A; B]`` (one product of the stacked parts) and ``Im G = T - T^T`` with
    ``T = A^T B`` (one product; exactly antisymmetric, so the diagonal is real), three quarters
    of a complex product's multiplications. Every real or imaginary part of an entry is then a
    real sum of ``2m`` products evaluated in some order (the imaginary one as the difference of
    two sums of ``m``), so the rounding bound of :func:`gram_norm_upper`'s proof (``gamma_{2m}``
    times the sum of the products' magnitudes) holds for it unchanged.
    """
    k, m, n = x.shape
    if not x.is_complex():
        lower = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()
        out = x.new_empty((k, n, n))
        g = x.new_empty((min(k, _gram_step(n)), n, n))
        for i, j in chunks(k, n * n):  # the products chunk by chunk (see _negated_gram_parts)
            gg, xs = g[: j - i], x[i:j]
            torch.bmm(xs.mT, xs, out=gg)
            torch.where(lower, gg, gg.mT, out=out[i:j]).neg_()  # conj(-H) = -H
        return out
    stacked = torch.view_as_real(x.resolve_conj()).permute(0, 3, 1, 2).reshape(k, 2 * m, n)
    return _negated_gram_parts(stacked)


def _negated_gram_parts(stacked: Tensor) -> Tensor:
    """:func:`_negated_gram` of ``X = A + iB`` given as its real parts ``[A; B]`` ``(K, 2m, n)``.

    ``stacked`` contiguous, real: the same floats as ``_negated_gram(X)`` (the same products on
    the same operands), for callers that build the parts without a complex ``X`` first.
    """
    k, m2, n = stacked.shape
    m = m2 // 2
    lower = torch.ones(n, n, dtype=torch.bool, device=stacked.device).tril()
    out = torch.empty((k, n, n, 2), dtype=stacked.dtype, device=stacked.device)
    # The products chunk by chunk into two small buffers that stay in cache and are reused:
    # whole-batch temporaries (megabytes) cost fresh pages on every call, about as much as the
    # products themselves. Each matrix's product is the same batched call's (the same floats).
    step = min(k, _gram_step(n))
    neg_re, t = stacked.new_empty((step, n, n)), stacked.new_empty((step, n, n))
    for i, j in chunks(k, n * n):
        s, nr, tt = stacked[i:j], neg_re[: j - i], t[: j - i]
        # -(A^T A + B^T B): the product negated (exactly: a sign) in the same call
        torch.baddbmm(nr, s.mT, s, beta=0, alpha=-1, out=nr)
        torch.bmm(s[:, :m].mT, s[:, m:], out=tt)  # A^T B
        # Re conj(-H) = -Re H: the lower triangle mirrored
        torch.where(lower, nr, nr.mT, out=out[i:j, ..., 0])
        torch.sub(tt, tt.mT, out=out[i:j, ..., 1])  # Im conj(-H) = Im H = A^T B - B^T A
    return torch.view_as_complex(out)


def _gram_step(n: int) -> int:
    """Matrices per chunk of :func:`_negated_gram` on ``n x n`` Gram matrices (:func:`chunks`)."""
    return max(1, CHUNK_ELEMENTS // (n * n))


#: LAPACK's routines by the type letter of their matrices (``s d c z``).
_LAPACK_LETTERS = {
    torch.float32: "s",
    torch.float64: "d",
    torch.complex64: "c",
    torch.complex128: "z",
}


class _Lapack:
    """``?copy``, ``?potrf`` and ``?potrs`` of the LAPACK that ``torch.linalg.cholesky_ex`` calls.

    Torch's CPU builds link MKL's LAPACK statically into ``libtorch_cpu`` and export its
    symbols: called per matrix through ``ctypes``, the factorization is the very routine that
    ``torch.linalg.cholesky_ex`` runs on each matrix of a batch (the same floats, checked once
    per dtype on a few matrices, :meth:`get`), without the batched call's copies: each matrix is
    copied into one small work array that stays in cache, factorized, and its right-hand sides
    solved at once.
    """

    _loaded: ClassVar[dict[tuple[torch.dtype, int], _Lapack | None]] = {}

    def __init__(self, lib: Any, letter: str, dtype: torch.dtype) -> None:
        import ctypes

        self.ctypes = ctypes
        ptr, num = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        self.copy = getattr(lib, f"{letter}copy_")
        self.copy.argtypes, self.copy.restype = [num, ptr, num, ptr, num], None
        self.potrf = getattr(lib, f"{letter}potrf_")
        self.potrf.argtypes, self.potrf.restype = [ctypes.c_char_p, num, ptr, num, num], None
        self.potrs = getattr(lib, f"{letter}potrs_")
        self.potrs.argtypes = [ctypes.c_char_p, num, num, ptr, num, ptr, num, num]
        self.potrs.restype = None
        self.dtype = dtype
        self.item = torch.empty((), dtype=dtype).element_size()

    @classmethod
    def get(cls, dtype: torch.dtype, p: int) -> _Lapack | None:
        """The routines for ``p x p`` matrices of ``dtype``, or ``None`` (then torch's batch).

        Loaded once per dtype and order; kept only if factorizations through them equal
        ``torch.linalg.cholesky_ex``'s bit for bit, and succeed and fail where it does, on a
        few ``p x p`` matrices (not so for every build and dtype: float64 on MKL builds
        differs in the last bits, and is left to torch).
        """
        key = (dtype, p)
        if key not in cls._loaded:
            cls._loaded[key] = None
            try:
                lapack = cls._load(dtype)
                if lapack is not None and lapack._agrees(p):
                    cls._loaded[key] = lapack
            except (OSError, AttributeError, RuntimeError, ValueError):
                pass
        return cls._loaded[key]

    @classmethod
    def _load(cls, dtype: torch.dtype) -> _Lapack | None:
        import ctypes
        import pathlib

        if dtype not in _LAPACK_LETTERS or not torch.backends.mkl.is_available():
            return None
        path = pathlib.Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
        if not path.exists():
            return None
        return cls(ctypes.CDLL(str(path)), _LAPACK_LETTERS[dtype], dtype)

    def _agrees(self, p: int) -> bool:
        """Whether :meth:`factor` gives ``torch.linalg.cholesky_ex``'s factors and outcomes.

        On four ``p x p`` matrices: well and badly conditioned positive definite ones, one
        that fails at its last pivot and one that fails at its first.
        """
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4, p, p, generator=gen, dtype=self.dtype)
        a = x @ x.mH
        eye = torch.eye(p, dtype=self.dtype)
        top = torch.linalg.eigvalsh(a)[:, -1].to(self.dtype)[:, None, None]
        shift = torch.tensor([1.0, 1e-3, -1e-3, -2.0], dtype=torch.float64)
        a = a + shift.to(self.dtype)[:, None, None] * top * eye
        a[2, -1, -1] = a[2, -1, -1] - top[2, 0, 0] * (1.0 if p > 1 else 2.0)
        ref, info = torch.linalg.cholesky_ex(a)
        conj_a = a.conj().resolve_conj().contiguous()  # row-major conj(A): A column-major
        diag = conj_a.diagonal(dim1=-2, dim2=-1).clone()
        rhs = torch.ones(4, 2, p, dtype=self.dtype)
        solved = rhs.clone()
        ok, factors = self.factor(conj_a, torch.arange(4), diag, solved, keep=True)
        if not torch.equal(ok, info == 0) or not bool(ok[:2].all()) or bool(ok[2:].any()):
            return False
        if not torch.equal(factors[:2].mT.tril(), ref[:2]):
            return False
        want = torch.cholesky_solve(rhs[:1].mT, ref[:1]).mT
        return bool(torch.allclose(solved[:1], want, rtol=1e-3, atol=0.0))

    def factor(
        self, mats: Tensor, rows: Tensor, diag: Tensor, rhs: Tensor | None, keep: bool = False
    ) -> tuple[Tensor, Tensor]:
        """Factorize ``A_j``: matrix ``rows[j]`` of ``mats`` with the diagonal ``diag[j]``.

        ``mats`` contiguous ``(K, p, p)`` whose rows are read as columns (the column-major
        ``A`` whose lower triangle LAPACK reads: ``mats[k]`` is ``conj(A)`` row-major, or for a
        Hermitian ``A`` its transpose); ``diag`` contiguous ``(R, p)``; ``rhs`` contiguous ``(R,
        s, p)`` (each block ``s`` columns of length ``p``) overwritten with ``(L L^H)^{-1}`` times
        it where the factorization succeeded. Returns ``(succeeded (R,) bool, factors)``:
        ``factors`` ``(R, p, p)`` (column-major lower triangles) with ``keep``, else empty.
        """
        c = self.ctypes
        k, p = len(rows), mats.shape[-1]
        work = mats.new_empty((k if keep else 1, p, p))
        n, nn, one, step = c.c_int(p), c.c_int(p * p), c.c_int(1), c.c_int(p + 1)
        info, info2 = c.c_int(0), c.c_int(0)
        s = 0 if rhs is None else rhs.shape[1]
        ns = c.c_int(s)
        size, item = p * p * self.item, self.item
        base, d0, w0 = mats.data_ptr(), diag.data_ptr(), work.data_ptr()
        r0 = 0 if rhs is None else rhs.data_ptr()
        stride = mats.stride(0) * item
        ok = torch.zeros(k, dtype=torch.bool)
        flags = ok.numpy()
        copy, potrf, potrs, lower = self.copy, self.potrf, self.potrs, b"L"
        for j, i in enumerate(rows.tolist()):
            w = w0 + j * size if keep else w0
            copy(nn, base + i * stride, one, w, one)
            copy(n, d0 + j * p * item, one, w, step)
            potrf(lower, n, w, n, info)
            if info.value == 0:
                flags[j] = True
                if s:
                    potrs(lower, n, ns, w, n, r0 + j * s * p * item, n, info2)
        return ok, work if keep else work[:0]


class _GramTest:
    """Hermitian Gram matrices of a batch and the Cholesky test of :func:`grid_norm_upper`.

    The Gram products ``X^H X`` (or ``X X^H``, the smaller) are computed once in ``x``'s
    precision by :func:`_negated_gram` (batched real products: each matrix's the same floats in
    any batch) and made exactly Hermitian from their lower triangle and the real parts of their
    diagonal (the matrix ``H`` a Cholesky factorization reads): every test of a matrix is then a
    function of that matrix and the level alone, whichever rows are tested together. Proof of
    the test: :func:`cholesky_norm_upper`'s, with the factorization in ``x``'s precision and
    ``g`` = :func:`cholesky_rounding_constant`.
    """

    def __init__(self, x: Tensor, entry_error: float = 0.0, parts: bool = False) -> None:
        if parts:  # x holds the real parts [A; B] (K, 2m, n) of a complex X = A + iB, m >= n
            ok = x.ndim == 3 and x.dtype in _REAL_GRAM_DTYPES and x.shape[0] > 0
            ok = ok and x.shape[1] % 2 == 0 and x.shape[1] >= 2 * x.shape[2] and x.is_contiguous()
            if not ok:
                raise ValueError(
                    f"parts must be contiguous float32/float64 real parts [A; B] of shape "
                    f"(K, 2m, n) with K >= 1 and m >= n; got {x.dtype} {tuple(x.shape)}"
                )
        elif x.ndim != 3 or x.dtype not in _GRAM_DTYPES or x.shape[0] == 0:
            raise ValueError(
                f"x must be float32/float64 or their complex types, of shape (K, m, n) with "
                f"K >= 1; got {x.dtype} {tuple(x.shape)}"
            )
        is_complex = parts or x.is_complex()
        m, n = (x.shape[1] // 2, x.shape[2]) if parts else x.shape[-2:]
        p, q = min(m, n), max(m, n)
        self.p, self.entry_error, self.complex = p, entry_error, is_complex
        #: Whether the Gram matrix is ``X^H X`` (right vectors) or ``X X^H`` (left vectors).
        self.right = n <= m
        finfo = torch.finfo(x.real.dtype if x.is_complex() else x.dtype)
        self.u = u = finfo.eps / 2
        self.tiny = finfo.tiny
        gamma_g = 2 * q * u / (1 - 2 * q * u)  # the product's rounding
        self.g = cholesky_rounding_constant(p, u, is_complex)
        #: ``conj(-H)`` ``(K, p, p)`` in row-major layout, so that its transpose ``self.neg``
        #: is ``-H`` in the column-major layout LAPACK factorizes without a transposing copy;
        #: products with ``-H`` run as ``conj(B conj(v))`` on this one (:meth:`neg_times`).
        if parts:
            self.conj_neg = _negated_gram_parts(x)
        else:
            self.conj_neg = _negated_gram(x if self.right else conj_t(x))
        #: ``-H`` (the test factorizes ``c I - H``: only its diagonal changes between levels)
        self.neg = self.conj_neg.mT
        # >= ||H||_F: a sum of 2 p^2 squares in x's precision, within gamma_{2p^2} (< 1e-3)
        self.h_fro = _frobenius(self.conj_neg).to(torch.float64) * 1.001
        diag = -self.conj_neg.diagonal(dim1=-2, dim2=-1).real.to(torch.float64)  # (K, p) h_ii
        self.h_max = diag.max(-1).values
        self.trace_h = diag.sum(-1)
        slack = 1.0 + 1e-12
        self.fro2 = (self.trace_h + 2 * q * p * self.tiny) / (1 - gamma_g) * slack  # >= ||X||_F^2
        self.e_g = (1.5 * gamma_g * self.fro2 + 2 * q * p * p * self.tiny) * slack
        self.absolute = 4 * (p + 1) ** 2 * self.tiny

    def _sel(self, rows: Tensor | None, t: Tensor) -> Tensor:
        return t if rows is None else t[rows]

    def target(self, rows: Tensor | None, level2: Tensor) -> Tensor:
        """The shifted level ``c`` (float32/float64, exactly the float the test uses).

        Chosen so that the bound of :meth:`run` stays ``<= level^2`` (a choice, not a proof),
        rounded down to ``x``'s precision.
        """
        u, g, p = self.u, self.g, self.p
        h_max, trace_h = self._sel(rows, self.h_max), self._sel(rows, self.trace_h)
        trace_a = (p * level2 * (1 + u) - trace_h * (1 - u)).clamp_min(0.0)
        margin = (self._sel(rows, self.e_g) + u * (level2 + h_max) + g * trace_a) * 1.01
        margin = margin + self.absolute * 1.01 + 1e-11 * level2
        if self.entry_error:  # ||X_exact|| <= ||X|| + entry_error ||X||_F: aim lower by as much
            shift = self.entry_error * self._sel(rows, self.fro2).sqrt() * 1.01
            target = (level2.sqrt() - shift).clamp_min(0.0).square() - margin
        else:
            target = level2 - margin
        c = target.to(self.neg.real.dtype)
        return torch.where(c.to(torch.float64) > target, torch.nextafter(c, c.new_tensor(-1.0)), c)

    def fails_surely(self, rows: Tensor | None, level2: Tensor, lower: Tensor) -> Tensor:
        """Whether the test at ``level2`` must fail, given ``lower <= lambda_max(H)`` (proven).

        A success proves ``lambda_max(H) <= c + u (c + max h_ii) + g tr(A) + absolute`` with
        ``tr(A) <= (1 + u) (p c - tr(H))`` (:meth:`run`): a lower bound above that rules the
        test out without running it.
        """
        u, g, p = self.u, self.g, self.p
        c = self.target(rows, level2).to(torch.float64)
        trace_a = ((p * c - self._sel(rows, self.trace_h)) * (1 + u)).clamp_min(0.0)
        top = c + (u * (c + self._sel(rows, self.h_max)) + g * trace_a + self.absolute)
        return (lower > top * (1.0 + 1e-12)) | (c <= 0)

    def run(
        self, rows: Tensor | None, level2: Tensor, rhs: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Test ``rows`` (all if ``None``) at squared levels ``level2``: ``(bound, factor)``.

        ``bound`` float64: the proven bound of ``||X||_2`` where the factorization of ``c I -
        H`` succeeded, ``inf`` where it failed (which proves nothing); ``factor`` the Cholesky
        factors ``L`` (lower triangles; meaningful where it succeeded).

        With ``rhs`` ``(R, s, p)`` (``s`` vectors per tested matrix), ``(bound, solved)``
        instead: ``solved`` is ``(L L^H)^{-1}`` times each vector where the factorization
        succeeded (one inverse-iteration step), ``rhs`` elsewhere, and on a CPU the matrices
        are factorized one by one by the routine ``torch.linalg.cholesky_ex`` calls
        (:class:`_Lapack`), without a batched copy of them: the same floats, the same
        outcomes.
        """
        u, g = self.u, self.g
        slack = 1.0 + 1e-12
        c = self.target(rows, level2)
        lapack = None
        if rhs is not None and self.conj_neg.device.type == "cpu":
            if self.conj_neg.is_contiguous():
                lapack = _Lapack.get(self.conj_neg.dtype, self.p)
        if lapack is not None:
            neg_diag = self.conj_neg.diagonal(dim1=-2, dim2=-1).real  # -h_ii
            neg_diag = neg_diag if rows is None else neg_diag[rows]
            diag = (c[:, None] + neg_diag).to(self.conj_neg.dtype)  # fl(c - h_ii), as below
            trace = diag.real.to(torch.float64).sum(-1) * slack
            every = torch.arange(len(c)) if rows is None else rows
            assert rhs is not None
            solved = rhs.to(self.conj_neg.dtype, copy=True).contiguous()
            factored, _ = lapack.factor(self.conj_neg, every, diag, solved)
            done = factored & (c > 0)
            out = solved
        else:
            # a copy of -H (column-major, as LAPACK reads it), factorized in place
            a = (self.conj_neg.clone() if rows is None else self.conj_neg[rows]).mT
            a_diag = a.diagonal(dim1=-2, dim2=-1)
            a_diag.copy_((c[:, None] + a_diag.real).to(a.dtype))  # A = c I - H: fl(c - h_ii)
            trace = a_diag.real.to(torch.float64).sum(-1) * slack
            info = torch.empty(a.shape[0], dtype=torch.int32, device=a.device)
            # info == 0: every pivot was positive and not NaN (LAPACK stops at the first that
            # is not); the factor overwrites A's lower triangle
            factor, info = torch.linalg.cholesky_ex(a, out=(a, info))
            done = (info == 0) & (c > 0)
            out = factor
            if rhs is not None:
                out = rhs.clone()
                ok = done.nonzero().squeeze(1)
                out[ok] = torch.cholesky_solve(rhs[ok].mT, factor[ok]).mT
        c64 = c.to(torch.float64)
        e_g, h_max = self._sel(rows, self.e_g), self._sel(rows, self.h_max)
        bound2 = (c64 + (u * (c64 + h_max) + g * trace + e_g + self.absolute) * slack) * slack
        bound = bound2.sqrt() * slack
        if self.entry_error:
            bound = add_up(bound, self.entry_error * self._sel(rows, self.fro2).sqrt() * slack)
        return torch.where(done, bound, torch.full_like(bound, math.inf)), out

    def rayleigh(self, rows: Tensor | None, v: Tensor) -> tuple[Tensor, Tensor]:
        """Guaranteed lower bounds ``v^H H v / ||v||^2 <= lambda_max(H)`` and ``H v`` normalized.

        float64 ``(K,)`` and ``(K, p)`` in ``x``'s dtype. The product ``H v`` runs in ``x``'s
        precision: each part of each component is a real sum of at most ``2p`` products, within
        ``gamma_{2p}`` of their magnitudes, so ``|fl(H v) - H v| <= sqrt(2) gamma_{2p} |H| |v|``
        and ``|v^H (fl(H v) - H v)| <= sqrt(2) gamma_{2p} ||H||_F ||v||^2``; the quotient is
        formed in float64 (relative error ``< 1e-12``) and lowered by that.
        """
        w = self.neg_times(rows, v.unsqueeze(-2)).squeeze(-1).neg_()  # H v: (K, p)
        wide = torch.complex128 if w.is_complex() else torch.float64
        v64 = v.to(wide)
        num = torch.linalg.vecdot(v64, w.to(wide)).real  # v^H w (vecdot conjugates v)
        den = _vector_norm(v64).square()
        p, u = self.p, self.u
        err = math.sqrt(2.0) * 2 * p * u / (1 - 2 * p * u) * self._sel(rows, self.h_fro)
        lower = (num / den * (1 - 1e-12) - err * (1 + 1e-12) - p * self.tiny).nan_to_num(0.0)
        return lower.clamp_min(0.0), _unit(w)

    def neg_times(self, rows: Tensor | None, vt: Tensor) -> Tensor:
        """``-H V`` ``(K, p, s)`` for ``V = vt^T`` (``vt`` ``(K, s, p)``): :func:`_conj_apply`.

        Each part of each component is the same real sum of ``2p`` products as in a product
        with ``-H`` itself (conjugation only flips signs).
        """
        return _conj_apply(self.conj_neg if rows is None else self.conj_neg[rows], vt)


#: Power steps ``v <- H v / ||H v||`` on the start vectors of :func:`grid_norm_upper` before the
#: lower bound is taken from them (each a batched matrix-vector product).
GRID_POWER_STEPS = 1

#: Grid levels a matrix may fail in :func:`grid_norm_upper` before its start vector is replaced
#: by the top eigenvector of its Gram matrix (``eigh``: a close lower bound, hence few tests).
GRID_TESTS_BEFORE_EIGH = 3

#: A start vector whose relative residual ``||H v - rho v|| / rho`` exceeds this after the
#: power steps is replaced by ``eigh``'s at once (far from an eigenvector: many levels to test).
GRID_RESIDUAL = 1e-2


def grid_norm_upper(
    x: Tensor, start: Tensor | None = None, entry_error: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Guaranteed upper bounds of ``||X_k||_2`` that are functions of ``X_k`` alone: grid levels.

    For each matrix, the first level ``g_j`` of a fixed grid (:func:`norm_grid_level`,
    ``2^NORM_GRID_BITS`` levels per octave) at which the Cholesky test of ``c I - H`` proves
    ``||X_k|| <= g_j`` in ``x``'s precision (:func:`cholesky_norm_upper`'s test, ``H`` the Gram
    matrix as computed); the bound returned is the one that test proves (``<= g_j``). That
    definition names one number per matrix whatever the search: a test can only succeed where
    ``lambda_max(H)`` is at most its level plus the rounding margin, so every level below a
    proven lower bound ``v^H H v / ||v||^2`` minus that margin fails and needs no run. The start
    vectors (any: remembered from an earlier call, training power-iteration vectors) only choose
    where the search begins, never the result: with a close vector one or two tests per matrix,
    one Gram product, two matrix-vector products and no eigendecomposition. Where a start vector
    is far from an eigenvector (residual above :data:`GRID_RESIDUAL`), the top Ritz vector of a
    Krylov space of it (:data:`GRID_KRYLOV`) replaces it, and where that is far off too, or its
    first :data:`GRID_TESTS_BEFORE_EIGH` levels fail, the top eigenvector of ``H`` (``eigh`` in
    ``x``'s precision). The vectors returned take one inverse-iteration step with the factor of
    the proven level (close to the top eigenvector: the next call's start). Start *blocks* of
    two vectors per matrix are remembered as a pair: the search starts from the top Ritz
    vector of their span (after one power step), and the pair returned takes one
    subspace-iteration step with the same factor (the top two eigenvectors, about): where the
    top two eigenvalues are close and cross as the weights move (training), the pair's span
    still holds the new top vector, where one remembered vector would be far off.

    Parameters
    ----------
    x
        Real or complex ``(K, m, n)`` (float32 or float64 parts); entries taken as exact values.
    start
        ``(K, n)`` start vectors (right singular vectors when ``n <= m``, else ``(K, m)`` left
        ones), ``(K, 2, n)`` start blocks (two vectors each), or ``None`` (``eigh``'s).
    entry_error
        Relative error of ``x``'s entries to allow for, as in :func:`cholesky_norm_upper`.

    Returns
    -------
    tuple
        ``(b (K,) float64, vectors (K, p))``: the bounds ``b_k >= ||X_k||_2`` and the improved
        vectors (a start for the next call; ``(K, 2, p)`` blocks for start blocks).

    Raises
    ------
    ValueError
        If ``x`` holds NaN or inf values (no bound exists) or has a wrong shape or dtype.

    Examples
    --------
    >>> import torch
    >>> x = torch.diag(torch.tensor([3.0, 1.0])).unsqueeze(0)
    >>> b, _ = grid_norm_upper(x)
    >>> 3.0 <= float(b[0]) <= 3.0 * (1 + 2.0**-10)
    True
    """
    if x.ndim != 3 or x.dtype not in _GRAM_DTYPES or x.shape[0] == 0:
        raise ValueError(
            f"x must be float32/float64 or their complex types, of shape (K, m, n) with K >= 1; "
            f"got {x.dtype} {tuple(x.shape)}"
        )
    return _grid_norm_upper(x, start, entry_error, parts=False)


def grid_norm_upper_parts(
    parts: Tensor, start: Tensor | None = None, entry_error: float = 0.0
) -> tuple[Tensor, Tensor]:
    """:func:`grid_norm_upper` of complex ``X = A + iB`` given as its real parts ``[A; B]``.

    The same bounds and vectors, bit for bit, as ``grid_norm_upper(X, start, entry_error)``
    (the Gram products run on the stacked parts either way), for callers that can write the
    parts straight from their own storage: no complex copy of ``X`` and no restacking.

    Parameters
    ----------
    parts
        Contiguous real ``(K, 2m, n)`` (float32 or float64), ``m >= n``: rows ``:m`` of each
        matrix are ``A = Re X``, rows ``m:`` are ``B = Im X``.
    start, entry_error
        As in :func:`grid_norm_upper` (``start`` complex ``(K, n)``).

    Returns
    -------
    tuple
        ``(b (K,) float64, vectors (K, n) complex)`` as :func:`grid_norm_upper`.

    Raises
    ------
    ValueError
        If ``parts`` holds NaN or inf values or has a wrong shape, layout or dtype.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(3, 4, 4, dtype=torch.complex64)
    >>> parts = torch.view_as_real(x).permute(0, 3, 1, 2).reshape(3, 8, 4)
    >>> torch.equal(grid_norm_upper_parts(parts)[0], grid_norm_upper(x)[0])
    True
    """
    ok = parts.ndim == 3 and parts.dtype in _REAL_GRAM_DTYPES and parts.shape[0] > 0
    if not (ok and parts.shape[1] % 2 == 0 and parts.shape[1] >= 2 * parts.shape[2]):
        raise ValueError(
            f"parts must be float32/float64 real parts [A; B] of shape (K, 2m, n) with K >= 1 "
            f"and m >= n; got {parts.dtype} {tuple(parts.shape)}"
        )
    return _grid_norm_upper(parts.contiguous(), start, entry_error, parts=True)


def _grid_norm_upper(
    x: Tensor, start: Tensor | None, entry_error: float, parts: bool
) -> tuple[Tensor, Tensor]:
    """:func:`grid_norm_upper` (``parts``: of :func:`grid_norm_upper_parts`) in fixed chunks."""
    p = x.shape[-1] if parts else min(x.shape[-2:])
    if start is not None and start.shape not in ((x.shape[0], p), (x.shape[0], 2, p)):
        start = None
    bound = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    dtype = torch.complex64 if x.dtype == torch.float32 else torch.complex128
    shape = (x.shape[0], p) if start is None else start.shape
    vectors = x.new_empty(shape, dtype=dtype if parts else x.dtype)
    for i, j in chunks(x.shape[0], max(1, p * p // GRID_CHUNK_FACTOR)):  # fixed chunks
        part = None if start is None else start[i:j]
        bound[i:j], vectors[i:j] = _grid_chunk(_GramTest(x[i:j], entry_error, parts), part)
    return bound, vectors


#: :func:`grid_norm_upper` runs on chunks of this many times :data:`CHUNK_ELEMENTS` elements.
GRID_CHUNK_FACTOR = 16


def _grid_chunk(test: _GramTest, start: Tensor | None) -> tuple[Tensor, Tensor]:
    """:func:`grid_norm_upper` on one chunk: ``(bounds, vectors)``.

    ``start`` ``(K, p)`` vectors or ``(K, 2, p)`` blocks (then the vectors returned are blocks:
    the top vector and a second one, :func:`_ritz_start`).
    """
    n_mat, p = test.conj_neg.shape[0], test.p
    device, dtype = test.conj_neg.device, test.conj_neg.dtype
    if not bool(torch.isfinite(test.h_fro).all()):
        raise ValueError(
            "x holds NaN or inf values (or its Gram matrix overflows): no spectral-norm bound "
            "exists in its precision"
        )
    poor = torch.ones(n_mat, dtype=torch.bool, device=device)
    v = test.conj_neg.new_ones((n_mat, p))
    second: Tensor | None = None
    lower = torch.zeros(n_mat, dtype=torch.float64, device=device)
    if start is not None:
        v = start.to(device=device, dtype=dtype, copy=True)
        v = torch.where(torch.isfinite(v).flatten(1).all(-1).view(-1, *[1] * (v.ndim - 1)), v, 1.0)
        if v.ndim == 3:  # a block: the top Ritz vector of its span, after one power step
            v, second = _ritz_start(test, v)
        else:
            for _ in range(GRID_POWER_STEPS):  # v <- -H v (a sign does not matter)
                v = _unit(test.neg_times(None, v.unsqueeze(-2)).squeeze(-1))
        lower, w = test.rayleigh(None, v)
        # one more power step moves a unit vector close to an eigenvector by about its residual
        poor = ~(_vector_norm(w - v) < GRID_RESIDUAL)
        rows = poor.nonzero().squeeze(1)
        if len(rows):  # a Krylov space of the start: a close vector for a fraction of eigh's cost
            v[rows] = _krylov_vector(test, rows, v[rows])
            lower[rows], w = test.rayleigh(rows, v[rows])
            poor[rows] = ~(_vector_norm(w - v[rows]) < GRID_RESIDUAL)
    rows = poor.nonzero().squeeze(1)
    if len(rows):
        v[rows], top2 = _top_eigenvectors(test.conj_neg[rows].mT)
        if second is not None:
            second[rows] = top2
        lower[rows] = test.rayleigh(rows, v[rows])[0]
    nxt = _first_level(test, None, lower)
    bound = torch.full((n_mat,), math.nan, dtype=torch.float64, device=device)
    failed = torch.zeros(n_mat, dtype=torch.int64, device=device)
    pending = torch.arange(n_mat, device=device)
    fresh = ~poor  # vectors not yet replaced by eigh's
    for _ in range(1 << 16):  # each round tests every pending matrix at its next level once
        if not len(pending):
            break
        stuck = pending[(failed[pending] >= GRID_TESTS_BEFORE_EIGH) & fresh[pending]]
        if len(stuck):
            v[stuck], top2 = _top_eigenvectors(test.conj_neg[stuck].mT)
            if second is not None:
                second[stuck] = top2
            fresh[stuck] = False
            lower_new = test.rayleigh(stuck, v[stuck])[0]
            nxt[stuck] = torch.maximum(nxt[stuck], _first_level(test, stuck, lower_new))
        level = norm_grid_level(nxt[pending])
        every = len(pending) == n_mat  # all rows, in order: no copy of the selection
        # Where a level is proven, its factor of c I - H (c just above the top eigenvalue)
        # gives a close vector in one inverse-iteration step: the next call's start.
        rhs = v if every else v[pending]
        rhs = rhs.unsqueeze(1) if second is None else torch.stack([rhs, second[pending]], 1)
        proved, solved = test.run(None if every else pending, level.square(), rhs)
        ok = proved <= level
        bound[pending[ok]] = proved[ok]
        done = pending[ok]
        if second is None:
            v[done] = _inverse_step(solved[ok, 0], v[done])
        else:
            v[done], second[done] = _inverse_block_step(solved[ok], v[done], second[done])
        pending = pending[~ok]
        nxt[pending] += 1
        failed[pending] += 1
    if len(pending):  # unreachable for finite input (the tests succeed above the norm)
        raise RuntimeError("grid_norm_upper: no level was proven")
    return bound, v if second is None else torch.stack([v, second], 1)


def _ritz_start(test: _GramTest, block: Tensor) -> tuple[Tensor, Tensor]:
    """Start vectors from blocks ``(K, 2, p)``: ``(v, second)``, each ``(K, p)`` (estimates only).

    The top Ritz pair of ``H`` on the span of each block (the two vectors orthonormalized, the
    ``2 x 2`` projection's top eigenvector in closed form), ``v`` its Ritz vector after one
    power step (``H z``, from the same product) and ``second`` the other Ritz vector. Where the
    top two eigenvalues of ``H`` are close and cross between calls, the remembered top vector
    alone is far off while their span is not. Rows whose arithmetic is not finite keep the
    first vector of their block.
    """
    v1 = _unit(block[:, 0])
    basis = torch.stack([v1, _orthogonal_unit(v1, block[:, 1])], 1)  # (K, 2, p), orthonormal
    neg_hv = test.neg_times(None, basis)  # -H V: (K, p, 2)
    t = -(basis.conj() @ neg_hv)  # V^H H V: (K, 2, 2)
    a, d, b = t[:, 0, 0].real, t[:, 1, 1].real, (t[:, 1, 0] + t[:, 0, 1].conj()) / 2
    top = (a + d) / 2 + torch.sqrt(((a - d) / 2).square() + b.abs().square())
    y = torch.where(
        (a >= d).unsqueeze(-1),
        torch.stack([(top - d).to(b.dtype), b], -1),
        torch.stack([b.conj(), (top - a).to(b.dtype)], -1),
    )  # (K, 2): the top eigenvector of [[a, conj(b)], [b, d]]
    y = _unit(y)
    other = torch.stack([-y[:, 1].conj(), y[:, 0].conj()], -1)  # orthogonal to y
    z1 = -(neg_hv @ y.unsqueeze(-1)).squeeze(-1)  # H (V y): one power step on the Ritz vector
    z2 = (basis.mT @ other.unsqueeze(-1)).squeeze(-1)  # V y_2
    ok = (torch.isfinite(z1).all(-1) & torch.isfinite(z2).all(-1)).unsqueeze(-1)
    ok = ok & (_vector_norm(z1) > 0).unsqueeze(-1)
    return torch.where(ok, _unit(z1), v1), torch.where(ok, _unit(z2), basis[:, 1])


def _inverse_block_step(solved: Tensor, v: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`_inverse_step` on ``v`` and ``second`` together, ``second`` made orthogonal to ``v``.

    One subspace-iteration step with ``(c I - H)^{-1}`` (its top two eigenvalues: the top two
    of ``H``), ``solved`` ``(K, 2, p)`` the solutions (:meth:`_GramTest.run`): across calls the
    pair tracks the top two eigenvectors (where non-finite, the vectors given are kept).
    """
    w1 = _unit(solved[:, 0])
    w2 = _orthogonal_unit(w1, solved[:, 1])
    ok = (torch.isfinite(w1).all(-1) & torch.isfinite(w2).all(-1)).unsqueeze(-1)
    return torch.where(ok, w1, v), torch.where(ok, w2, second)


def _orthogonal_unit(v: Tensor, b: Tensor) -> Tensor:
    """``b`` made orthogonal to the unit ``v`` and normalized, rows ``(K, p)`` (an estimate).

    Where ``b`` is (nearly) parallel to ``v`` (or zero), ``v`` shifted by one entry with
    alternating signs takes its place, so that a remembered pair never collapses to one vector.
    """
    b = _unit(b)
    rest = b - torch.linalg.vecdot(v, b).unsqueeze(-1) * v  # v^H b: vecdot conjugates v
    small = (_vector_norm(rest) < 1e-3).unsqueeze(-1)
    if bool(small.any()):
        signs = 1.0 - 2.0 * (torch.arange(v.shape[-1], device=v.device) % 2)
        shifted = v.roll(1, -1) * signs.to(v.real.dtype)
        alt = shifted - torch.linalg.vecdot(v, shifted).unsqueeze(-1) * v
        rest = torch.where(small, alt, rest)
    return _unit(rest)


def _first_level(test: _GramTest, rows: Tensor | None, lower: Tensor) -> Tensor:
    """The smallest grid index whose test is not ruled out by ``lower <= lambda_max(H)``."""
    # Every level whose square is below lower fails (its c plus the test's margin is below it),
    # and so does every level whose c is not positive: the search starts just below both.
    floor = (test._sel(rows, test.e_g) + test.absolute).sqrt().clamp_min(1e-300)
    j = norm_grid_index(torch.maximum(lower.sqrt() * (1 - 1e-9), floor)) - 1
    for _ in range(1 << 12):  # a step or two: the ruled-out levels reach ~e_G above lower
        out = test.fails_surely(rows, norm_grid_level(j).square(), lower)
        if not bool(out.any()):
            return j
        j = j + out.to(j.dtype)
    return j


def _inverse_step(solved: Tensor, v: Tensor) -> Tensor:
    """``(L L^H)^{-1} v`` (``solved``, :meth:`_GramTest.run`) normalized, ``v`` if not finite."""
    w = _unit(solved)
    return torch.where(torch.isfinite(w).all(-1, keepdim=True), w, v)


def _conj_apply(b: Tensor, vt: Tensor) -> Tensor:
    """``conj(B conj(V))`` for ``V = vt^T``: ``(K, p, p), (K, s, p) -> (K, p, s)``.

    ``-H V`` for ``B = conj(-H)`` and ``s`` vectors per matrix given as the rows of ``vt``. They
    enter as the transposed view of a row-major ``(K, s, p)`` (for ``s = 1`` with stride ``p``
    between vectors): on a CPU three times faster than a contiguous ``(K, p, 1)`` operand
    (measured, batched complex64 ``64 x 64``).
    """
    if b.is_complex():
        vt = vt.conj()
    vt = vt.resolve_conj()
    vt = vt.reshape(vt.shape[0], -1).contiguous().unsqueeze(-2) if vt.shape[-2] == 1 else vt
    out = torch.bmm(b, vt.contiguous().mT)
    return out.conj().resolve_conj() if b.is_complex() else out


def _vector_norm(v: Tensor) -> Tensor:
    """Euclidean norms of ``(..., p)`` real or complex vectors along the last axis: ``(...)``.

    On the real view of complex vectors: torch's complex ``vector_norm`` along one axis is a
    slow path (measured 80 times slower for ``(497, 64)`` complex64).
    """
    if v.is_complex():
        return torch.linalg.vector_norm(torch.view_as_real(v), dim=(-2, -1))
    return torch.linalg.vector_norm(v, dim=-1)


def _unit(v: Tensor) -> Tensor:
    """``v`` normalized along the last axis (as ``torch.nn.functional.normalize``)."""
    return v / _vector_norm(v).clamp_min(1e-12).unsqueeze(-1)


#: Dimension of the Krylov space ``span(v, H v, ..., H^(s-1) v)`` from which
#: :func:`grid_norm_upper` takes a close vector where a start vector's residual is large.
GRID_KRYLOV = 10


def _krylov_vector(test: _GramTest, rows: Tensor, v: Tensor) -> Tensor:
    """Top Ritz vectors ``(K, p)`` of ``H`` in the Krylov space of ``v`` (an estimate only).

    ``H`` of ``test``'s matrices ``rows``; the basis ``v, H v, ...`` (each normalized)
    orthonormalized by a QR factorization, ``H`` projected on it and its top eigenvector
    (``eigh`` of ``s x s``) lifted.
    """
    b = test.conj_neg[rows]
    basis = [v]
    for _ in range(min(GRID_KRYLOV, v.shape[-1]) - 1):  # -H v (the sign does not matter)
        basis.append(_unit(_conj_apply(b, basis[-1].unsqueeze(-2)).squeeze(-1)))
    q = torch.linalg.qr(torch.stack(basis, -1)).Q  # (K, p, s)
    t = conj_t(q) @ _conj_apply(b, q.mT)  # -Q^H H Q: (K, s, s)
    t = (t + conj_t(t)) / 2
    try:
        y = torch.linalg.eigh(t)[1][..., 0]  # -H's smallest: H's largest
    except torch.linalg.LinAlgError:  # no convergence: keep the start vectors
        return v
    out = _unit(torch.bmm(q, y.unsqueeze(-1)).squeeze(-1))
    return torch.where(torch.isfinite(out).all(-1, keepdim=True), out, v)


def _top_eigenvectors(neg: Tensor) -> tuple[Tensor, Tensor]:
    """Top two eigenvectors ``(K, p)`` each of ``H`` from ``-H`` ``(K, p, p)`` (``eigh``).

    Estimates only. ``-H`` in column-major layout (a transposed view) is read by LAPACK without
    a copy. For ``p = 1`` the second is the first.
    """
    try:
        vectors = torch.linalg.eigh(neg)[1]  # ascending: -H's smallest is H's largest
    except torch.linalg.LinAlgError:  # no convergence in the weights' precision: in float64
        wide = torch.complex128 if neg.is_complex() else torch.float64
        vectors = torch.linalg.eigh(neg.to(wide))[1].to(neg.dtype)
    return vectors[..., 0], vectors[..., min(1, vectors.shape[-1] - 1)]


def _frobenius64(w: Tensor) -> Tensor:
    """Frobenius norms ``(..., m, n) -> (...)`` accumulated in float64."""
    if w.is_complex():
        w = torch.view_as_real(w)
        return torch.linalg.vector_norm(w, dim=(-3, -2, -1), dtype=torch.float64)
    return torch.linalg.vector_norm(w, dim=(-2, -1), dtype=torch.float64)


def add_up(a: Tensor, b: Tensor) -> Tensor:
    """``a + b`` rounded up: an upper bound of the exact sum of two float64 tensors.

    The float64 addition's result is within half an ulp of the exact sum (round to nearest);
    moving it up by two ulps (:func:`torch.nextafter`) leaves it above the exact sum.

    Examples
    --------
    >>> import torch
    >>> a, b = torch.tensor(1.0, dtype=torch.float64), torch.tensor(2.0**-60, dtype=torch.float64)
    >>> float(add_up(a, b)) > 1.0  # the float64 sum alone rounds to 1.0
    True
    """
    s = a + b
    inf = s.new_tensor(math.inf)
    return torch.nextafter(torch.nextafter(s, inf), inf)


def scale_multipliers(r: Tensor, w: Tensor | None, scale: Tensor) -> tuple[Tensor, Tensor | None]:
    """Scaled multipliers in the weights' precision: ``R'_k = s_k R_k + (s_k - s_W) W``.

    The multipliers ``M_k = R_k + W`` (and, with a skip, ``W`` itself) scaled by real factors:
    ``R'_k + W' = s_k M_k`` and ``W' = s_W W`` up to the rounding that
    :func:`scale_multipliers_error` bounds.

    Parameters
    ----------
    r
        ``(K, out, in)`` complex (float32 or float64 parts).
    w
        ``(out, in)`` real of the same precision, or ``None`` (then ``R'_k = s_k R_k``).
    scale
        float64 ``(K,)``, or ``(K + 1,)`` with a skip (``s_W`` last).

    Returns
    -------
    tuple of Tensor
        ``(R' (K, out, in), W' (out, in) or None)``. Conjugate-symmetric ``R`` with equal scales
        on conjugate pairs gives conjugate-symmetric ``R'`` (every operation is exact under
        conjugation).

    Examples
    --------
    >>> import torch
    >>> r, w = torch.ones(2, 1, 1, dtype=torch.complex64), torch.ones(1, 1)
    >>> r2, w2 = scale_multipliers(r, w, torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64))
    >>> (r2 + w2).real.flatten().tolist()  # 0.5 (1 + 1), 1 (1 + 1)
    [1.0, 2.0]
    """
    dtype = r.real.dtype
    s = scale.to(dtype)  # each factor rounded once
    n = r.shape[0]
    if r.is_complex():  # on the real view: a real factor on a complex tensor is a slow path
        real = torch.view_as_real(r) * s[:n, None, None, None]
        scaled = torch.view_as_complex(real)
    else:
        real = scaled = r * s[:n, None, None]
    if w is None:
        return scaled, None
    s_w = scale[n]
    diff = (scale[:n] - s_w).to(dtype)  # (K,) s_k - s_W
    if bool(diff.any()):  # the real parts round once (the imaginary ones gain an exact 0)
        (real[..., 0] if r.is_complex() else real).add_(diff[:, None, None] * w)
    return scaled, w * s[n]


#: Constant of :func:`scale_multipliers_error`, in units of the weights' unit roundoff.
SCALE_ROUNDING_UNITS = 4.0


def scale_multipliers_error(
    r_fro: Tensor, w_fro: Tensor | None, scale: Tensor, dtype: torch.dtype, entries: int
) -> Tensor:
    """Guaranteed bound of ``||(R'_k + W') - s_k M_k||_F`` for :func:`scale_multipliers`' output.

    A bound known before the scaled weights are compared with the exact ones: a multiplier whose
    norm bound plus this term is below another's certified norm cannot set the layer's
    certificate, so the exact comparison (:func:`perturbed_norm_upper`) is needed only for the
    few near the top.

    Parameters
    ----------
    r_fro
        float64 ``(K,)``: upper bounds of ``||R_k||_F``.
    w_fro
        float64 scalar tensor: an upper bound of ``||W||_F``, or ``None`` without a skip.
    scale
        float64 ``(K,)``, or ``(K + 1,)`` with a skip: the scales given to
        :func:`scale_multipliers`.
    dtype
        The weights' real dtype (float32 or float64).
    entries
        ``out * in``.

    Returns
    -------
    Tensor
        float64 ``(K,)`` or ``(K + 1,)``: for ``k < K`` a bound of ``||R'_k + W' - s_k (R_k +
        W)||_F``; with a skip, last, a bound of ``||W' - s_W W||_F``.

    Notes
    -----
    Proof, per real component of each entry (``w`` only has a real part), with ``u`` the
    weights' unit roundoff (``2**-24`` or ``2**-53``) and every rounding to nearest. The factor
    ``s`` rounded to the weights' precision is ``s (1 + e)``, ``|e| <= u``, and the product with
    ``r`` rounds once more, so ``t_1 = fl(r fl(s_k))`` has ``|t_1 - s_k r| <= (2u + u^2) s_k |r|``.
    The difference ``s_k - s_W`` is computed in float64 (relative error ``<= 2**-53``) and
    rounded to the weights' precision, then multiplied by ``w`` and rounded: ``|t_2 - (s_k -
    s_W) w| <= (2u + 2^-53 + 2u^2) |s_k - s_W| |w|``. The sum rounds once: ``R' = (t_1 + t_2)(1 +
    e)``. ``W' = fl(w fl(s_W))`` has ``|W' - s_W w| <= (2u + u^2) s_W |w|``. Then
    ``|R' + W' - s_k (r + w)| <= |R' - t_1 - t_2| + |t_1 - s_k r| + |t_2 - (s_k - s_W) w| +
    |W' - s_W w| <= 3.1 u (s_k |r| + (|s_k - s_W| + s_W) |w|)`` for ``u <= 2**-24``. When
    ``s_k = s_W`` the second product is exactly ``0`` and the sum exact: the same bound holds.
    Summing the squares over components and entries (Minkowski's inequality) gives the
    Frobenius bound with ``SCALE_ROUNDING_UNITS = 4 > 3.1``. A result in the subnormal range
    may carry an absolute error up to the smallest subnormal per rounding instead: four
    roundings per component, below ``entries * tiny`` in Frobenius norm for ``tiny`` the
    smallest normal number, which is added. The float64 evaluation of this bound rounds by a
    relative ``~1e-15``, far inside the constant's slack (``4`` vs ``3.1``).

    Examples
    --------
    >>> import torch
    >>> r = torch.randn(3, 4, 4, dtype=torch.complex64)
    >>> w = torch.randn(4, 4)
    >>> s = torch.tensor([0.3, 0.7, 1.0, 0.9], dtype=torch.float64)
    >>> r2, w2 = scale_multipliers(r, w, s)
    >>> exact = (r.to(torch.complex128) + w.double()) * s[:3, None, None]
    >>> err = torch.linalg.matrix_norm(r2.to(torch.complex128) + w2.double() - exact)
    >>> r_fro = torch.linalg.matrix_norm(r.to(torch.complex128))
    >>> w_fro = torch.linalg.matrix_norm(w.double())
    >>> bool((err <= scale_multipliers_error(r_fro, w_fro, s, torch.float32, 16)[:3]).all())
    True
    """
    finfo = torch.finfo(dtype)
    u = finfo.eps / 2
    tiny = entries * finfo.tiny
    n = r_fro.shape[0]
    units = SCALE_ROUNDING_UNITS * u
    if w_fro is None:
        return units * scale[:n] * r_fro + tiny
    s_w = scale[n]
    err_r = units * (scale[:n] * r_fro + ((scale[:n] - s_w).abs() + s_w) * w_fro) + tiny
    return torch.cat([err_r, (units * s_w * w_fro + tiny).reshape(1)])


def _frobenius(w: Tensor) -> Tensor:
    """Frobenius norms of a batch of real or complex matrices ``(..., m, n) -> (...)``."""
    if w.is_complex():
        return torch.linalg.vector_norm(torch.view_as_real(w), dim=(-3, -2, -1))
    return torch.linalg.vector_norm(w, dim=(-2, -1))


def power_iteration(w: Tensor, u: Tensor, n_iter: int = 1) -> tuple[Tensor, Tensor]:
    """Estimate the largest singular value of each matrix by (warm-started) power iteration.

    A training device, **not** a certificate: the estimate approaches sigma_max from below.

    Parameters
    ----------
    w
        Matrices ``(..., m, n)``, real or complex.
    u
        Current estimate of the top right singular vectors, ``(..., n)`` (warm start).
    n_iter
        Number of iterations (>= 1).

    Returns
    -------
    tuple of Tensor
        ``(sigma, u)``: the estimates ``(...)`` (differentiable with respect to ``w``, with the
        singular vectors treated as constants) and the updated vectors ``(..., n)`` (detached).

    Examples
    --------
    >>> import torch
    >>> w = torch.diag(torch.tensor([3.0, 1.0]))
    >>> sigma, u = power_iteration(w, torch.tensor([1.0, 1.0]) / 2**0.5, n_iter=20)
    >>> round(float(sigma), 4)  # from below: an estimate, not a certificate
    3.0
    """
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    with torch.no_grad():
        wd = w.detach()
        for _ in range(n_iter):
            v = torch.nn.functional.normalize(
                torch.einsum("...mn,...n->...m", wd, u), dim=-1
            )  # (..., m)
            u = torch.nn.functional.normalize(
                torch.einsum("...mn,...m->...n", wd.conj(), v), dim=-1
            )  # (..., n)
    wu = torch.einsum("...mn,...n->...m", w, u)  # (..., m)
    sigma = torch.linalg.vector_norm(wu, dim=-1)
    return sigma, u


def bjorck(w: Tensor, n_iter: int = 15, beta: float = BJORCK_BETA, tol: float = 0.0) -> Tensor:
    """Björck orthonormalization of a batch of matrices, real or complex.

    ``W <- (1 + beta) W - beta W W^H W``, iterated: it maps every singular value
    sigma in (0, sqrt(1 + 1/beta)) towards 1 and never above 1, so the input should already have
    spectral norm <= 1 (divide by an estimate first). A training device: its output's norm is
    certified separately by :func:`spectral_norm_upper`. deel-torchlip's
    ``bjorck_normalization`` does the same for one real 2-D matrix; this version is batched and
    complex-aware (needed by the Fourier layers).

    Parameters
    ----------
    w
        ``(..., m, n)``.
    n_iter
        Maximum number of iterations.
    beta
        Step in (0, 0.5].
    tol
        Stop early when the Frobenius change of every matrix is below ``tol`` (0: never).

    Examples
    --------
    >>> import torch
    >>> w = torch.tensor([[0.9, 0.1], [0.0, 0.5]])
    >>> q = bjorck(w, n_iter=30)
    >>> torch.allclose(q @ q.T, torch.eye(2), atol=1e-5)
    True
    """
    if not 0.0 < beta <= 0.5:
        raise ValueError(f"beta must be in (0, 0.5], got {beta}")
    tall = w.shape[-2] > w.shape[-1]
    for _ in range(n_iter):
        wh = conj_t(w)
        # The Gram product on the smaller side: W (W^H W) for tall, (W W^H) W otherwise.
        update = w @ (wh @ w) if tall else (w @ wh) @ w
        new = (1.0 + beta) * w - beta * update
        if tol > 0.0 and bool((torch.linalg.matrix_norm(new - w) < tol).all()):
            return new
        w = new
    return w


def _polar_backward(u: Tensor, s: Tensor, vh: Tensor, grad: Tensor) -> Tensor:
    """Adjoint of ``dM -> dQ`` for ``Q = U V^H``, ``M = U S V^H`` tall or square (thin factors)."""
    v = conj_t(vh)
    # dQ = U Omega V^H + (I - U U^H) dM V S^-1 V^H with the skew part
    # Omega = (X - X^H) / (s_i + s_j), X = U^H dM V: its adjoint, with no 1/(s_i - s_j).
    h = conj_t(u) @ grad @ v  # (..., r, r)
    denom = (s.unsqueeze(-1) + s.unsqueeze(-2)).clamp_min(torch.finfo(s.dtype).tiny)
    y = (h - conj_t(h)) * (1.0 / denom).to(h.dtype)  # a complex factor: real ones are slow
    out = u @ y @ vh
    if u.shape[-2] > u.shape[-1]:  # tall: the part orthogonal to the range of U
        gv = grad @ v
        perp = gv - u @ (conj_t(u) @ gv)
        out = out + (perp * (1.0 / s).to(perp.dtype).unsqueeze(-2)) @ vh
    return out


class _Polar(torch.autograd.Function):
    """Unitary polar factor ``Q = U V^H`` of tall or square ``M = U S V^H``, stable backward."""

    @staticmethod
    def forward(ctx: Any, m: Tensor) -> Tensor:
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        ctx.save_for_backward(u, s, vh)
        return u @ vh

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        u, s, vh = ctx.saved_tensors
        return _polar_backward(u, s, vh, grad)


def polar_factor(w: Tensor) -> Tensor:
    """The unitary (isometric) polar factor of each matrix of a batch: the nearest isometry.

    ``W = U S V^H -> U V^H`` by a thin SVD, differentiable with the closed-form backward of
    the polar decomposition (denominators ``s_i + s_j``, stable for repeated singular values,
    unlike the generic SVD backward). What Björck iterations converge to, in one step; a
    training device like :func:`bjorck` (the result's norm is certified separately).

    Parameters
    ----------
    w
        ``(..., m, n)`` real or complex, full rank (the backward divides by singular values).

    Examples
    --------
    >>> import torch
    >>> q = polar_factor(torch.randn(3, 4, 2, dtype=torch.float64))
    >>> torch.allclose(q.mT @ q, torch.eye(2, dtype=torch.float64).expand(3, 2, 2))
    True
    """
    return _tall_apply(_Polar, w)


def _tall_apply(fn: type[torch.autograd.Function], w: Tensor) -> Tensor:
    """``fn`` (defined for tall or square matrices) applied to ``w``, through ``w^H`` when wide."""
    if w.ndim < 2:
        raise ValueError(f"w must have shape (..., m, n), got {tuple(w.shape)}")
    if w.shape[-2] < w.shape[-1]:
        return conj_t(fn.apply(conj_t(w)))
    return fn.apply(w)


#: Smallest ``lambda_min / lambda_max`` of a Gram matrix ``M^H M`` whose eigendecomposition
#: :func:`polar_eigh` keeps, per precision. The computed Gram and its eigenpairs carry absolute
#: errors ``~ n u lambda_max`` (unit roundoff ``u``), so ``U = M V Lambda^(-1/2)`` departs from
#: orthonormality by ``~ n u lambda_max / lambda_min``: at most ``~4e-4`` for a float32 ``M`` of
#: width 64 kept at ``1e-2`` (typically ``~1e-6``: condition numbers near 4 at initialization),
#: ``~7e-9`` in float64 at ``1e-6``. Matrices below the threshold are redone in float64, and
#: below the float64 one by an SVD (exact at any conditioning, rank-deficient included).
POLAR_GRAM_RCOND = {torch.float32: 1e-2, torch.float64: 1e-6}


def _gram_polar_parts(w: Tensor, rcond: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(U, s, V^H, ok)`` of tall or square ``(B, m, n)`` from the eigendecomposition of ``W^H W``.

    ``ok`` ``(B,)`` marks the matrices whose eigenvalue ratio is at least ``rcond`` (all finite).
    """
    vals, v = torch.linalg.eigh(conj_t(w) @ w)  # ascending: (B, n), (B, n, n)
    ok = (vals[:, 0] >= rcond * vals[:, -1]) & (vals[:, -1] > 0) & torch.isfinite(vals).all(-1)
    s = vals.clamp_min(torch.finfo(vals.dtype).tiny).sqrt()  # singular values of W
    u = w @ (v * (1.0 / s).to(v.dtype).unsqueeze(-2))  # (B, m, n): W V S^-1
    return u, s, conj_t(v), ok


def _polar_parts(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Thin ``(U, s, V^H)`` of every tall or square matrix of ``(B, m, n)``, in ``w``'s dtype.

    Eigendecomposition of the Gram in ``w``'s precision; matrices too ill-conditioned for it
    (:data:`POLAR_GRAM_RCOND`) redone in float64, and those too ill-conditioned for that by SVD.
    """
    real = w.real.dtype if w.is_complex() else w.dtype
    u, s, vh, ok = _gram_polar_parts(w, POLAR_GRAM_RCOND.get(real, 1e-6))
    if bool(ok.all()):
        return u, s, vh
    redo = (~ok).nonzero().squeeze(1)
    wide = torch.complex128 if w.is_complex() else torch.float64
    w64 = w[redo].to(wide)
    u64, s64, vh64, ok64 = _gram_polar_parts(w64, POLAR_GRAM_RCOND[torch.float64])
    if not bool(ok64.all()):
        bad = (~ok64).nonzero().squeeze(1)
        u64[bad], s64[bad], vh64[bad] = torch.linalg.svd(w64[bad], full_matrices=False)
    u, s, vh = u.clone(), s.clone(), vh.clone()
    u[redo], s[redo], vh[redo] = u64.to(w.dtype), s64.to(real), vh64.to(w.dtype)
    return u, s, vh


class _PolarEigh(torch.autograd.Function):
    """Unitary polar factor of tall or square ``M`` by ``eigh(M^H M)``, stable backward."""

    @staticmethod
    def forward(ctx: Any, m: Tensor) -> Tensor:
        batch = m.shape[:-2]
        u, s, vh = _polar_parts(m.reshape(-1, *m.shape[-2:]))
        ctx.save_for_backward(u, s, vh)
        return (u @ vh).reshape(*batch, *m.shape[-2:])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        u, s, vh = ctx.saved_tensors
        out = _polar_backward(u, s, vh, grad.reshape(u.shape[0], *grad.shape[-2:]))
        return out.reshape(grad.shape)


def polar_eigh(w: Tensor) -> Tensor:
    """The unitary (isometric) polar factor of each matrix of a batch, by eigh of its Gram.

    ``W = U S V^H -> U V^H`` computed as ``W V Lambda^(-1/2) V^H`` from the eigendecomposition
    ``W^H W = V Lambda V^H`` (``W W^H`` for wide ``W``): one batched Gram product, one batched
    Hermitian eigendecomposition (about half an SVD's cost) and two products. What converged
    Björck iterations (:func:`bjorck`) reach, in one pass; the same map as
    :func:`polar_factor`, whose closed-form backward it shares (denominators ``s_i + s_j``,
    no ``1 / (s_i - s_j)``: stable for repeated singular values). Float32 inputs are
    decomposed in float32; a matrix whose Gram is too ill-conditioned for that
    (:data:`POLAR_GRAM_RCOND`) is redone in float64, and below the float64 threshold by an
    SVD, so rank-deficient inputs still give an isometry (one of many: the polar factor is
    not unique there, and the gradient, which divides by ``s_i + s_j``, is not defined). A
    training device: the result's norm is certified separately.

    Parameters
    ----------
    w
        ``(..., m, n)`` real or complex.

    Examples
    --------
    >>> import torch
    >>> w = torch.randn(3, 4, 2, dtype=torch.float64)
    >>> q = polar_eigh(w)
    >>> torch.allclose(q, polar_factor(w))
    True
    >>> torch.allclose(q.mT @ q, torch.eye(2, dtype=torch.float64).expand(3, 2, 2))
    True
    """
    return _tall_apply(_PolarEigh, w)


def polish_isometry(q: Tensor) -> Tensor:
    """One Newton-Schulz step ``Q (3 I - Q^H Q) / 2`` towards the nearest isometry (no grad).

    Squares the departure from orthonormality (``||Q^H Q - I||`` ``r -> ~3 r^2 / 4``) and never
    lifts a singular value near 1 above 1 (``s (3 - s^2) / 2 <= 1``). Used in float64 to turn a
    float32 polar factor into one orthonormal to float64 rounding.

    Parameters
    ----------
    q
        ``(..., m, n)`` real or complex, close to an isometry (co-isometry when wide).

    Examples
    --------
    >>> import torch
    >>> q = torch.eye(3, dtype=torch.float64) + 1e-4 * torch.randn(3, 3, dtype=torch.float64)
    >>> eye = torch.eye(3, dtype=torch.float64)
    >>> p = polish_isometry(q)
    >>> float((p.mT @ p - eye).norm()) < 1e-6 < float((q.mT @ q - eye).norm())
    True
    """
    with torch.no_grad():
        return _polish_parts(q)[0]


def _polish_parts(q: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`polish_isometry`'s step ``Q (3 I - Q^H Q) / 2`` and the computed Gram it used."""
    qh = conj_t(q)
    if q.shape[-2] >= q.shape[-1]:
        g = qh @ q
        return 1.5 * q - 0.5 * (q @ g), g
    g = q @ qh
    return 1.5 * q - 0.5 * (g @ q), g


def polished_isometry_bound(q: Tensor, k: float) -> tuple[Tensor, Tensor]:
    """``k`` times one float64 Newton-Schulz step of ``q``, rounded to ``q``'s dtype, and its norm.

    Returns ``(Q', b)``: ``Q' = fl(k polish_isometry(q in float64))`` in ``q``'s dtype (the same
    floats as :func:`polish_isometry` followed by the rounding), and float64 ``b`` ``(...)``,
    a guaranteed upper bound of ``||Q'||_2`` for each matrix (``inf`` where the premise below
    is not proven), with no SVD and no product beyond the step's own: the Newton-Schulz map
    never lifts a singular value above 1, so what is left to bound is rounding.

    Parameters
    ----------
    q
        ``(..., m, n)`` real or complex, any matrices (the bound is tight near isometries).
    k
        The scale (> 0).

    Returns
    -------
    tuple of Tensor
        ``Q'`` (``q``'s shape and dtype) and ``b`` (float64, ``q``'s batch shape).

    Notes
    -----
    Proof (``u = 2**-53``, ``p = min(m, n)``, ``r = max(m, n)``, ``X = q`` exactly, ``tiny`` the
    smallest normal float64; tall ``X``, wide ones alike with ``G = X X^H``). The exact step
    ``Y = X (3 I - X^H X) / 2`` has the singular values ``f(s) = s (3 - s^2) / 2`` of those ``s``
    of ``X``; ``1 - f(s) = (s - 1)^2 (s + 2) / 2 >= 0`` and ``f(s) + 1 = (2 - s) (s + 1)^2 / 2
    >= 0`` for ``0 <= s <= 2``, so ``||Y||_2 <= 1`` once ``||X||_2 <= 2`` (above 2, ``|f(s)|``
    exceeds 1: ``f(3) = -9``). The premise: ``||X||_2^2 = lambda_max(G) <= ||G||_inf`` (largest
    absolute row sum; ``G`` Hermitian) ``<= ||G_c||_inf + sqrt(p) ||G - G_c||_F``, where the
    computed Gram ``G_c`` differs from ``G`` by ``e_G <= sqrt(2) gamma_{2r} F^2 + 2 r p^2 tiny``
    in Frobenius norm (``F >= ||X||_F``; :func:`isometry_norm_upper`'s argument), each
    ``|z| <= |Re z| + |Im z|``, the row sums of those ``2 p`` terms computed with relative error
    below ``4 (2 p + 2) u``; ``b = inf`` where this exceeds 4. The
    computed step ``P_c = fl(fl(1.5 X) - 0.5 H_c)``, ``H_c = fl(X G_c)``: ``1.5 X - 0.5 H_c - Y
    = -0.5 (H_c - X G_c) - 0.5 X (G_c - G)``, so ``||P_c - Y||_F <= e_P = 0.75 gamma_{2r} F
    (||G_c||_F + F^2) + 2.01 u (1.5 F + 0.5 ||H_c||_F)`` plus subnormal terms, with ``||G_c||_F
    <= F^2 + e_G`` and ``||H_c||_F <= F ||G_c||_F (1 + 1.5 gamma_{2r})`` (``sqrt(2) < 1.5``; the
    elementwise operations each round once, ``0.5 h`` exactly). Then ``fl(k P_c)`` is within
    ``u k (sqrt(p) + e_P)`` of ``k P_c`` (``||P_c||_F <= sqrt(p) ||Y||_2 + e_P``), and ``Q'``
    within ``d`` of ``fl(k P_c)``, ``d`` the Frobenius norm of their float64 difference
    (each entry rounded once) inflated by ``1 + 2 (2 m n + 2) u`` for the sum of squares and
    ``1 / (1 - u)``. So ``||Q'||_2 <= k (1 + e_P) + u k (sqrt(p) + e_P) + d``, computed in a
    few float64 operations and inflated by ``1 + 1e-12``, plus ``4 m n tiny`` for subnormal
    roundings. The float32 rounding ``d`` dominates: ``~2e-7 k`` for ``64 x 64`` unitary
    matrices, against ``~1e-10 k`` for the float64 step's rounding. NaN or inf in ``q``
    gives ``b = inf``.

    Examples
    --------
    >>> import torch
    >>> x = torch.linalg.qr(torch.randn(4, 6, 5, dtype=torch.float64))[0].float()
    >>> out, bound = polished_isometry_bound(x, 2.0)
    >>> exact = torch.linalg.matrix_norm(out.double(), 2)
    >>> bool((exact <= bound).all()) and bool((bound <= 2.0 * (1 + 1e-6)).all())
    True
    >>> float(polished_isometry_bound(3.0 * torch.eye(2), 1.0)[1])  # ||X|| > 2: no bound
    inf
    """
    if q.ndim < 2:
        raise ValueError(f"q must have shape (..., m, n), got {tuple(q.shape)}")
    wide = torch.complex128 if q.is_complex() else torch.float64
    with torch.no_grad():
        x = q.to(wide)
        polished, g = _polish_parts(x)
        kp = k * polished
        out = kp.to(q.dtype)
        m, n = q.shape[-2:]
        p, r = min(m, n), max(m, n)
        u = 2.0**-53
        tiny = torch.finfo(torch.float64).tiny
        gamma = 2 * r * u / (1 - 2 * r * u)
        rel = 1.0 + 2 * (2 * m * n + 2) * u  # a computed Frobenius norm of (m, n) entries
        f = _frobenius64(x.resolve_conj()) * rel  # >= ||X||_F
        e_g = 1.5 * gamma * f**2 + 2 * r * p * p * tiny  # >= ||G - G_c||_F
        parts = torch.view_as_real(g) if g.is_complex() else g.unsqueeze(-1)
        rows = torch.linalg.vector_norm(parts, 1, dim=(-2, -1)).amax(-1)
        rows = rows * (1.0 + 4 * (2 * p + 2) * u)
        premise = rows * (1.0 + 4 * u) + math.sqrt(p) * e_g <= 4.0  # ||X||_2 <= 2; NaN: False
        g_fro = f**2 + e_g  # >= ||G_c||_F
        h_fro = f * g_fro * (1.0 + 1.5 * gamma) + 2 * r * p * r * tiny  # >= ||H_c||_F
        e_p = 0.75 * gamma * f * (g_fro + f**2) + 2.01 * u * (1.5 * f + 0.5 * h_fro)
        e_p = e_p + f * r * p * p * tiny + 4 * m * n * tiny
        if out is kp:  # no rounding (float64 q)
            d = torch.zeros_like(f)
        else:  # kp - out in place (kp is not needed after)
            diff = torch.view_as_real(kp) if q.is_complex() else kp
            diff.sub_(torch.view_as_real(out) if q.is_complex() else out)
            d = torch.linalg.vector_norm(diff, dim=tuple(range(-q.is_complex() - 2, 0)))
            d = d * (rel / (1.0 - u))
        k = abs(k)
        bound = (k * (1.0 + e_p) + u * k * (math.sqrt(p) + e_p) + d) * (1.0 + 1e-12)
        bound = bound + 4 * m * n * tiny
        return out, torch.where(premise, bound, math.inf)


def isometry_norm_upper(a: Tensor) -> Tensor:
    """Guaranteed upper bound of ``||A||_2`` for each matrix of a batch, tight near isometries.

    For any real ``c`` and ``G = A^H A`` (``A A^H`` when wide, the smaller), ``||A||_2^2 =
    lambda_max(G) <= c + ||G - c I||_2 <= c + ||G - c I||_F`` (Weyl). With ``c`` the mean
    eigenvalue (the trace over the size) and ``A`` a multiple ``t`` of an isometry up to
    rounding ``e``, the bound is ``t (1 + O(e))``: a few ``1e-7`` above the SVD norm for float32
    weights, from one matrix product per matrix instead of an SVD (several times cheaper).
    Looser for matrices far from a multiple of an isometry: callers that need tightness there
    compare it with the lower bound ``||A||_F / sqrt(p) <= ||A||_2`` and fall back to an SVD.

    Parameters
    ----------
    a
        float64 or complex128 ``(..., m, n)``; its entries are taken as exact values.

    Returns
    -------
    Tensor
        float64 ``(...)``.

    Notes
    -----
    Proof of the rounding margin (``u = 2**-53``, ``p = min(m, n)``, ``q = max(m, n)``). The
    computed product ``fl(G)`` differs from ``G`` by at most ``sqrt(2) gamma_{2q} ||A||_F^2`` in
    Frobenius norm, ``gamma_{2q} = 2 q u / (1 - 2 q u)`` (as in :func:`gram_norm_upper`'s proof:
    each real or imaginary part of an entry is a sum of at most ``2q`` products, any order, with
    or without fused multiply-adds); subnormal results add at most ``2 q p^2`` times the smallest
    normal number. ``c`` is whatever float64 number the trace gives: the inequality holds for
    every real ``c``, so its rounding costs nothing. ``D = fl(fl(G) - c I)`` rounds each diagonal
    entry once: ``||D - (fl(G) - c I)||_F <= u ||D||_F / (1 - u)``. The Frobenius norms are sums
    of at most ``N = 2 m n`` (``2 p^2``) squares in float64 then a square root (relative error
    below ``(N + 2) u``). So ``||G - c I||_F <= ||D||_F (1 + 2 u) + sqrt(2) gamma_{2q}
    ||A||_F^2 + 2 q p^2 tiny``; the computed terms are inflated by ``1 + 2 (N + 2) u``, the sum
    with ``c`` rounded up (:func:`add_up`) and the square root by ``1 + 1e-12`` (one rounding,
    and the formula's few float64 operations). A NaN or inf in ``a`` gives a non-finite result.

    Examples
    --------
    >>> import torch
    >>> q = torch.linalg.qr(torch.randn(5, 3, dtype=torch.float64))[0]
    >>> a = (2 * q).float().double()  # 2 times an isometry, rounded to float32
    >>> exact = float(torch.linalg.matrix_norm(a, 2))
    >>> exact <= float(isometry_norm_upper(a)) <= exact * (1 + 1e-6)
    True
    """
    if a.ndim < 2 or a.dtype not in (torch.float64, torch.complex128):
        raise ValueError(
            f"a must be float64 or complex128 of shape (..., m, n); got {a.dtype} {tuple(a.shape)}"
        )
    m, n = a.shape[-2:]
    ah = conj_t(a)
    g = ah @ a if n <= m else a @ ah  # (..., p, p)
    p, q = min(m, n), max(m, n)
    u = 2.0**-53
    gamma = 2 * q * u / (1 - 2 * q * u)
    c = g.diagonal(dim1=-2, dim2=-1).real.sum(-1) / max(p, 1)  # (...) any real number will do
    d = g - torch.diag_embed(c.to(g.dtype).unsqueeze(-1).expand(*c.shape, p))
    rel = 1.0 + 2 * (2 * max(m * n, p * p) + 2) * u
    fro_a = _frobenius64(a) * rel
    spread = _frobenius64(d) * (1.0 + 2 * u) * rel
    spread = spread + (1.5 * gamma * fro_a**2 + 2 * q * p * p * torch.finfo(torch.float64).tiny)
    squared = add_up(c, spread * (1.0 + 4 * u))
    return squared.clamp_min(0.0).sqrt() * (1.0 + 1e-12)


class _UnitaryQR(torch.autograd.Function):
    """Unitary factor ``Q`` of tall or square ``W = QR``, by Householder QR, exact backward.

    ``R`` is upper triangular with a real positive diagonal (the phases are moved into ``Q``).
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor) -> Tensor:
        q, r = torch.linalg.qr(w)  # (..., m, n), (..., n, n)
        d = r.diagonal(dim1=-2, dim2=-1)  # (..., n)
        size = d.abs()
        phase = torch.where(size > 0, d / size.clamp_min(torch.finfo(size.dtype).tiny), 1)
        q = q * phase.unsqueeze(-2)  # Q D, R -> D^H R: R's diagonal becomes |d| > 0
        r = r * phase.conj().unsqueeze(-1)
        ctx.save_for_backward(q, r)
        return q

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        q, r = ctx.saved_tensors
        # dW = dQ R + Q dR gives Y = Q^H dW R^{-1} = Omega + dR R^{-1} with Omega = Q^H dQ
        # skew-Hermitian and dR R^{-1} upper with a real diagonal: Omega is the strictly lower
        # part of Y, minus its conjugate transpose, plus i Im diag(Y); and
        # dQ = (I - Q Q^H) dW R^{-1} + Q Omega. Adjoint, with K = Q^H G:
        # grad_W = (G + Q (Z - K)) R^{-H}, Z = tril(K - K^H, -1) + i Im diag(K).
        n = r.shape[-1]
        k = q.mH @ grad  # (..., n, n)
        mask = torch.ones(n, n, dtype=r.real.dtype, device=r.device).tril(-1)
        mask.diagonal().fill_(0.5)
        x = grad + q @ ((k - k.mH) * mask - k)
        return torch.linalg.solve_triangular(r.mH, x, upper=False, left=False)  # X R^{-H}


def qr_unitary(w: Tensor) -> Tensor:
    """The unitary (isometric) factor of the QR decomposition of each matrix of a batch.

    ``W = Q R`` with ``R`` upper triangular with a real positive diagonal (unique for full-rank
    ``W``), by Householder QR (stable at any condition number); wide matrices through ``W^H``.
    Differentiable with the exact closed-form backward of the QR map (two batched products and
    a triangular solve): the cheapest exact way to unitary matrices here, against 15
    differentiated Björck steps (:func:`bjorck`) or an SVD (:func:`polar_factor`). A training
    device like those: the result's norm is certified separately by
    :func:`spectral_norm_upper`.

    Parameters
    ----------
    w
        ``(..., m, n)`` real or complex, full rank (the backward solves with ``R``).

    Examples
    --------
    >>> import torch
    >>> q = qr_unitary(torch.randn(3, 4, 2, dtype=torch.float64))
    >>> torch.allclose(q.mT @ q, torch.eye(2, dtype=torch.float64).expand(3, 2, 2))
    True
    """
    if w.ndim < 2:
        raise ValueError(f"w must have shape (..., m, n), got {tuple(w.shape)}")
    if w.shape[-2] < w.shape[-1]:
        return conj_t(_UnitaryQR.apply(conj_t(w)))
    return _UnitaryQR.apply(w)


def _cayley_tall(w: Tensor) -> Tensor:
    """:func:`cayley_unitary` of tall or square ``(..., m, n)`` (``m >= n``), differentiable."""
    n = w.shape[-1]
    top, c = w[..., :n, :], w[..., n:, :]  # (..., n, n), (..., m - n, n)
    g = top - conj_t(top)  # skew-Hermitian
    if c.shape[-2]:
        g = g + conj_t(c) @ c  # the Schur complement of the (m x m) Cayley system's block
    eye = torch.eye(n, dtype=w.dtype, device=w.device)
    z = torch.linalg.inv(eye + g)  # (..., n, n); its Hermitian part is >= I: ||z||_2 <= 1
    q = 2 * z - eye
    if not c.shape[-2]:
        return q
    return torch.cat([q, -2 * (c @ z)], -2)  # (..., m, n)


def cayley_unitary(w: Tensor) -> Tensor:
    """The Cayley transform of each matrix of a batch: an isometry (co-isometry when wide).

    Square ``W``: ``Q = (I + A)^{-1} (I - A)`` with ``A = W - W^H`` skew-Hermitian (so only
    the skew part of ``W`` matters; ``W = 0`` gives ``I``). Its eigenvalues
    ``(1 - i t) / (1 + i t)`` lie on the unit circle, so ``Q`` is unitary, real for real ``W``,
    and ``cayley_unitary(conj(W)) = conj(cayley_unitary(W))``. ``I + A`` is never singular
    (its Hermitian part is ``I``) and ``||(I + A)^{-1}||_2 <= 1``: one batched LU inverse
    (``Q = 2 (I + A)^{-1} - I``), well conditioned at any ``W``, differentiable by autograd
    (the inverse's backward, two products). Tall ``W = [T; C]`` (``m > n``): the first ``n``
    columns of the ``m x m`` Cayley transform of ``[[T - T^H, -C^H], [C, 0]]`` (the Cayley
    parametrization of the Stiefel manifold), computed through its ``n x n`` Schur complement
    ``G = T - T^H + C^H C``: ``Z = (I + G)^{-1}``, ``Q = [2 Z - I; -2 C Z]`` (orthonormal
    columns: ``Q^H Q = I`` exactly in exact arithmetic); wide ``W`` through ``W^H``. Every
    isometry without eigenvalue ``-1`` in its top block is reached. A training device: the
    result's norm is certified separately (:func:`isometry_norm_upper`).

    Parameters
    ----------
    w
        ``(..., m, n)`` real or complex.

    Examples
    --------
    >>> import torch
    >>> q = cayley_unitary(torch.randn(3, 4, 4, dtype=torch.complex128))
    >>> eye = torch.eye(4, dtype=torch.complex128)
    >>> torch.allclose(q.mH @ q, eye.expand(3, 4, 4))
    True
    >>> q = cayley_unitary(torch.randn(3, 2, 5, dtype=torch.float64))  # wide: orthonormal rows
    >>> torch.allclose(q @ q.mT, torch.eye(2, dtype=torch.float64).expand(3, 2, 2))
    True
    >>> bool((cayley_unitary(torch.zeros(3, 3)) == torch.eye(3)).all())
    True
    """
    if w.ndim < 2:
        raise ValueError(f"w must have shape (..., m, n), got {tuple(w.shape)}")
    if w.shape[-2] < w.shape[-1]:
        return conj_t(_cayley_tall(conj_t(w)))
    return _cayley_tall(w)
