import math

import pytest
import torch

import liponet.functional as functional
from liponet.functional import (
    NORM_GRID_BITS,
    _GramTest,
    batched_norm,
    bjorck,
    cayley_unitary,
    cholesky_norm_upper,
    cholesky_rounding_constant,
    chunks,
    distance_upper,
    distance_upper_fast,
    drifted_norm_bounds,
    gram_norm_upper,
    grid_norm_upper,
    grid_norm_upper_parts,
    isometry_norm_upper,
    norm_grid_index,
    norm_grid_level,
    perturbed_norm_upper,
    polar_eigh,
    polar_factor,
    polish_isometry,
    polished_isometry_bound,
    power_iteration,
    qr_unitary,
    scale_multipliers,
    scale_multipliers_error,
    spectral_norm_exact,
    spectral_norm_upper,
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_spectral_norm_upper_is_an_upper_bound(dtype):
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(7, 5, 3, generator=gen, dtype=dtype)
    bound = spectral_norm_upper(w)
    assert bound.shape == (7,) and bound.dtype == torch.float64
    # Reference: largest eigenvalue of W^H W by eigvalsh in float64.
    w64 = w.to(torch.complex128)
    ref = torch.linalg.eigvalsh(w64.mH @ w64)[..., -1].sqrt()
    assert bool((bound >= ref * (1 - 1e-13)).all())
    torch.testing.assert_close(bound, ref, rtol=1e-9, atol=0)


def test_spectral_norm_upper_on_complex_matches_real_embedding():
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(4, 3, generator=gen, dtype=torch.complex128)
    real_embedding = torch.cat([torch.cat([w.real, -w.imag], 1), torch.cat([w.imag, w.real], 1)], 0)
    torch.testing.assert_close(
        spectral_norm_exact(w), torch.linalg.matrix_norm(real_embedding, 2), rtol=1e-12, atol=0
    )


def test_spectral_norm_upper_rejects_nan_and_bad_shapes():
    with pytest.raises(ValueError, match="NaN"):
        spectral_norm_upper(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match=r"\(\.\.\., m, n\)"):
        spectral_norm_upper(torch.ones(3))


def test_power_iteration_underestimates_and_converges():
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(6, 8, 8, generator=gen, dtype=torch.float64)
    exact = spectral_norm_exact(w)
    u = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen, dtype=torch.float64), dim=-1)
    sigma1, _ = power_iteration(w, u, 1)
    assert bool((sigma1 <= exact * (1 + 1e-12)).all())
    sigma, _ = power_iteration(w, u, 500)
    torch.testing.assert_close(sigma, exact, rtol=1e-6, atol=0)


def test_bjorck_orthonormalizes_and_never_exceeds_one():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(3, 6, 4, generator=gen, dtype=torch.complex128)
    w = w / spectral_norm_exact(w)[:, None, None]
    q = bjorck(w, n_iter=60)
    s = torch.linalg.svdvals(q)
    assert float(s.max()) <= 1 + 1e-12
    torch.testing.assert_close(s, torch.ones_like(s), rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="beta"):
        bjorck(w, beta=0.7)


def test_batched_norm_conventions():
    u = torch.ones(2, 3, 4, 5)
    torch.testing.assert_close(batched_norm(u, "function"), torch.full((2,), 3.0**0.5))
    torch.testing.assert_close(batched_norm(u, "euclidean"), torch.full((2,), 60.0**0.5))
    with pytest.raises(ValueError, match="available"):
        batched_norm(u, "sup")
    with pytest.raises(ValueError, match="fields"):
        batched_norm(torch.ones(2, 3), "function")


@pytest.mark.parametrize("shape", [(3, 4, 4), (2, 5, 3), (2, 3, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_polar_factor_is_the_converged_bjorck_with_an_exact_gradient(shape, dtype):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=dtype)
    q = polar_factor(w)
    scaled = w / spectral_norm_exact(w)[:, None, None]
    torch.testing.assert_close(q, bjorck(scaled, n_iter=200), rtol=1e-8, atol=1e-8)
    assert torch.autograd.gradcheck(polar_factor, (w.clone().requires_grad_(),))


@pytest.mark.parametrize("shape", [(3, 4, 4), (2, 5, 3), (2, 3, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_qr_unitary_is_the_qr_factor_with_an_exact_gradient(shape, dtype):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=dtype)
    q = qr_unitary(w)
    tall = w if shape[-2] >= shape[-1] else w.mH
    qt = q if shape[-2] >= shape[-1] else q.mH  # the isometry of the tall side
    n = tall.shape[-1]
    torch.testing.assert_close(qt.mH @ qt, torch.eye(n, dtype=dtype).expand(shape[0], n, n))
    r = qt.mH @ tall  # W = Q R: R upper triangular with a real positive diagonal
    torch.testing.assert_close(r, r.triu(), rtol=0.0, atol=1e-12)
    diag = r.diagonal(dim1=-2, dim2=-1)
    assert bool((diag.real > 0).all())
    if dtype.is_complex:
        assert float(diag.imag.abs().max()) < 1e-12
    torch.testing.assert_close(qt @ r, tall)
    # conjugation commutes with it (the Fourier layers fill mirrored modes with conjugates)
    torch.testing.assert_close(qr_unitary(w.conj()), q.conj(), rtol=0.0, atol=1e-13)
    assert torch.autograd.gradcheck(qr_unitary, (w.clone().requires_grad_(),))


def _cayley_reference(w: torch.Tensor) -> torch.Tensor:
    """The textbook Cayley transform, one matrix at a time, by a square solve of size max(m, n).

    Square: ``(I + A)^{-1} (I - A)``, ``A = W - W^H``; tall ``[T; C]``: the first ``n`` columns
    of the transform of ``[[T - T^H, -C^H], [C, 0]]``; wide: through ``W^H``.
    """
    out = []
    for x in w:
        wide = x.shape[0] < x.shape[1]
        x = x.mH if wide else x
        m, n = x.shape
        a = torch.zeros(m, m, dtype=x.dtype)
        a[:n, :n] = x[:n] - x[:n].mH
        a[n:, :n] = x[n:]
        a[:n, n:] = -x[n:].mH
        eye = torch.eye(m, dtype=x.dtype)
        q = torch.linalg.solve(eye + a, eye - a)[:, :n]
        out.append(q.mH if wide else q)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(3, 4, 4), (2, 5, 3), (2, 3, 5), (2, 6, 1)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_cayley_unitary_is_the_cayley_transform_with_a_gradient(shape, dtype):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=dtype)
    q = cayley_unitary(w)
    torch.testing.assert_close(q, _cayley_reference(w), rtol=0.0, atol=1e-12)
    qt = q if shape[-2] >= shape[-1] else q.mH  # the isometry of the tall side
    n = qt.shape[-1]
    eye = torch.eye(n, dtype=dtype).expand(shape[0], n, n)
    torch.testing.assert_close(qt.mH @ qt, eye, rtol=0.0, atol=1e-13)
    # conjugation commutes with it (the Fourier layers fill mirrored modes with conjugates)
    torch.testing.assert_close(cayley_unitary(w.conj()), q.conj(), rtol=0.0, atol=1e-13)
    if shape[-2] == shape[-1]:  # only the skew part matters; a Hermitian W gives I
        herm = w + w.mH
        torch.testing.assert_close(cayley_unitary(w + herm), q, rtol=0.0, atol=1e-12)
        torch.testing.assert_close(cayley_unitary(herm), eye, rtol=0.0, atol=0.0)
    assert torch.autograd.gradcheck(cayley_unitary, (w.clone().requires_grad_(),))


def test_cayley_unitary_float32_departs_from_unitary_by_its_conditioning():
    # I + A has Hermitian part I (never singular); float32 rounding leaves Q unitary to about
    # n u cond(I + A) <= n u (1 + ||A||_2): ~1e-6 at the scales a layer starts from
    # (tests/test_fourier.py), growing with ||A|| (the result is only a training device).
    # The Gram is formed in float64 (a float32 product adds its own ~n u).
    torch.manual_seed(0)
    n, u = 32, 2.0**-24
    eye = torch.eye(n, dtype=torch.complex128).expand(64, n, n)
    for scale in (1e-3, 1.0, 1e3):
        w = scale * torch.randn(64, n, n, dtype=torch.complex64)
        q = cayley_unitary(w).to(torch.complex128)
        a_norm = torch.linalg.matrix_norm((w - w.mH).to(torch.complex128), 2)
        departure = torch.linalg.matrix_norm(q.mH @ q - eye, 2)
        assert bool((departure <= n * u * (1 + a_norm)).all()), scale
        ref = cayley_unitary(w.to(torch.complex128))
        assert bool(((q - ref).abs().amax((-2, -1)) <= n * u * (1 + a_norm)).all()), scale
    w = torch.randn(5, 4, 4)  # real in, real out
    assert cayley_unitary(w).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        cayley_unitary(torch.randn(4))


def test_qr_unitary_is_stable_where_a_cholesky_qr_is_not():
    # cond ~ 1e5 in float32: the Gram matrix (cond ~ 1e10) is singular to working precision.
    torch.manual_seed(0)
    u, _, vh = torch.linalg.svd(torch.randn(8, 16, 16, dtype=torch.complex64))
    s = torch.logspace(0, -5, 16)
    w = (u * s.to(u.dtype)) @ vh
    q = qr_unitary(w.requires_grad_())
    eye = torch.eye(16, dtype=q.dtype).expand(8, 16, 16)
    torch.testing.assert_close(q.detach().mH @ q.detach(), eye, rtol=0.0, atol=1e-5)
    q.real.sum().backward()
    assert w.grad is not None and bool(torch.isfinite(w.grad).all())


def test_perturbed_norm_upper_bounds_the_rounded_matrix():
    torch.manual_seed(0)
    b = torch.randn(50, 16, 16, dtype=torch.complex128)
    a = b.to(torch.complex64).to(torch.complex128)  # b rounded to float32, as stored weights
    upper = perturbed_norm_upper(a, b, spectral_norm_upper(b))
    exact = spectral_norm_exact(a)
    assert bool((upper >= exact).all())
    assert float(((upper - exact) / exact).max()) < 1e-6  # exact enough: float32 rounding only
    with pytest.raises(ValueError, match="one shape"):
        perturbed_norm_upper(a, b[:, :3], exact)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.float64])
def test_distance_upper_bounds_the_exact_distance_when_the_subtraction_rounds(dtype):
    # a - b rounds *down* in magnitude in float32 (1 - 3.1e-8 -> 1 - 2**-24): the plain
    # Frobenius norm of the rounded difference is below the exact distance, the bound is not.
    real = torch.float64 if dtype == torch.float64 else torch.float32
    a = torch.ones(40, 6, 5, dtype=real)
    tiny = 3.1e-8 if real == torch.float32 else 3.1e-17
    b = torch.full_like(a, tiny)
    if dtype.is_complex:
        a, b = torch.complex(a, -a), torch.complex(b, -b)
    exact = torch.linalg.matrix_norm(a.to(torch.complex128) - b.to(torch.complex128))
    plain = torch.linalg.matrix_norm((a - b).to(torch.complex128))
    bound = distance_upper(a, b)
    if real == torch.float32:
        assert bool((plain < exact).all())  # the margin is needed
    assert bool((bound >= exact).all())
    assert float((bound / exact).max()) < 1 + 2e-6  # and small
    # Random pairs over a wide dynamic range, batch shapes kept.
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 70, 4, 4, generator=gen, dtype=dtype) * 10.0 ** torch.randint(
        -30, 30, (3, 70, 4, 4), generator=gen
    ).to(real)
    y = x + torch.randn(3, 70, 4, 4, generator=gen, dtype=dtype) * 1e-3 * x.abs()
    exact = torch.linalg.matrix_norm(x.to(torch.complex128) - y.to(torch.complex128))
    bound = distance_upper(x, y)
    assert bound.shape == (3, 70) and bool((bound >= exact).all())
    with pytest.raises(ValueError, match="one shape and dtype"):
        distance_upper(x, y.to(torch.complex128))


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.float64])
def test_distance_upper_fast_bounds_the_exact_distance(dtype):
    # The squares summed in float32: within N 2**-24 of the exact distance, never below it,
    # also where the subtraction rounds down, across a wide dynamic range and in the subnormal
    # range; a plain float32 sum of squares (no margin) falls below the exact distance.
    real = torch.float64 if dtype == torch.float64 else torch.float32
    n_real = 64 * 64 * (2 if dtype.is_complex else 1)
    gen = torch.Generator().manual_seed(1)
    for exponent in (-30, -10, 0, 10, 15):
        x = torch.randn(50, 64, 64, generator=gen, dtype=dtype) * 10.0**exponent
        y = x + torch.randn(50, 64, 64, generator=gen, dtype=dtype) * 1e-3 * 10.0**exponent
        exact = torch.linalg.matrix_norm(x.to(torch.complex128) - y.to(torch.complex128))
        bound = distance_upper_fast(x, y)
        assert bool((bound >= exact).all())
        u = torch.finfo(real).eps / 2
        if exponent > -30 or real == torch.float64:  # (float32: squares of 1e-33 underflow)
            assert float((bound / exact).max()) < 1 + 2 * n_real * u + 2e-12
    a = torch.ones(40, 6, 5, dtype=real)
    tiny = 3.1e-8 if real == torch.float32 else 3.1e-17
    b = torch.full_like(a, tiny)
    exact = torch.linalg.matrix_norm(a.double() - b.double())
    assert bool((distance_upper_fast(a, b) >= exact).all())
    sub = torch.full((3, 4, 4), 1e-44 if real == torch.float32 else 1e-320, dtype=real)
    assert bool((distance_upper_fast(sub, 0 * sub) > 0).all())  # squares underflow to 0
    if real == torch.float32:  # without the margin the float32 sum can fall below the exact
        diff = torch.view_as_real(x - y) if dtype.is_complex else x - y
        plain = torch.linalg.vector_norm(diff.reshape(50, -1), dim=1)
        exact = torch.linalg.matrix_norm(x.to(torch.complex128) - y.to(torch.complex128))
        assert bool((plain.double() < exact).any())
        huge = torch.full((2, 3, 3), 1e30, dtype=dtype)
        assert not bool(torch.isfinite(distance_upper_fast(huge, -huge)).all())  # overflow
    with pytest.raises(ValueError, match="one shape and dtype"):
        distance_upper_fast(a, a.to(torch.complex128))


def test_chunks_cover_the_range_once():
    for n, per in [(0, 5), (1, 10**9), (1000, 4096), (7, 1)]:
        covered = [i for start, stop in chunks(n, per) for i in range(start, stop)]
        assert covered == list(range(n))


@pytest.mark.parametrize("step", [1e-6, 1e-2, 10.0])
def test_drifted_norm_bounds_bracket_the_exact_norm(step):
    gen = torch.Generator().manual_seed(1)
    p = torch.randn(200, 8, 6, generator=gen, dtype=torch.complex64)
    w = p + step * torch.randn(200, 8, 6, generator=gen, dtype=torch.complex64)
    sigma = spectral_norm_exact(p)
    lower, upper = drifted_norm_bounds(w, p, sigma, spectral_norm_upper(p))
    exact = spectral_norm_exact(w)
    assert bool((upper >= exact).all())
    assert bool((lower <= exact * (1 + 1e-12)).all())
    # Weyl's inequality with the Frobenius distance: never looser than that.
    dist = torch.linalg.matrix_norm(w.to(torch.complex128) - p.to(torch.complex128))
    assert bool((upper <= sigma * (1 + 1e-9) + dist * (1 + 2e-6)).all())
    with pytest.raises(ValueError, match="NaN or inf"):
        w[3, 0, 0] = float("nan")
        drifted_norm_bounds(w, p, sigma, sigma)


def _hard_matrices(dtype: torch.dtype) -> torch.Tensor:
    """Random, ill-conditioned, rank-deficient and near-tie matrices (12 x 9) of ``dtype``."""
    gen = torch.Generator().manual_seed(7)
    real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    cases = [torch.randn(12, 9, generator=gen, dtype=torch.float64) for _ in range(4)]
    u, _, vh = torch.linalg.svd(torch.randn(12, 9, generator=gen, dtype=torch.float64), False)
    for s in (
        torch.logspace(0, -12, 9),  # ill-conditioned
        torch.tensor([3.0, 2.0] + [0.0] * 7),  # rank two
        torch.tensor([1.0, 1.0 - 1e-9, 1.0 - 2e-9] + [0.5] * 6),  # near tie at the top
        torch.tensor([1e-30] + [0.0] * 8),  # tiny
    ):
        cases.append(u @ torch.diag(s.double()) @ vh)
    m = torch.stack(cases)
    if dtype.is_complex:
        m = torch.complex(m, torch.randn(m.shape, generator=gen, dtype=torch.float64))
    return m.to(dtype) if dtype.is_complex else m.to(real)


def _assert_upper(fn, dtype):
    m = _hard_matrices(dtype)
    exact = spectral_norm_exact(m)  # float64 SVD of the stored values
    bound = fn(m)
    assert bool((bound >= exact).all()), (bound - exact).min()
    return bound / exact


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_gram_norm_upper_is_a_tight_enough_upper_bound(dtype):
    ratio = _assert_upper(gram_norm_upper, dtype)
    # One Gram step over-estimates by at most rank^(1/4) (rank <= 9) plus rounding; the last
    # matrix (1e-30) underflows in float32 products and is only bounded, not tightly.
    assert float(ratio[:7].max()) <= 9**0.25 * (1 + 1e-5)
    if not dtype.is_complex:  # rank two, sigma = (3, 2): (3^4 + 2^4)^(1/4) / 3
        assert float(ratio[5]) == pytest.approx((1 + (2 / 3) ** 4) ** 0.25, rel=1e-5)
    # The check has teeth: one step of power iteration (an under-estimate) fails it.
    gen = torch.Generator().manual_seed(0)

    def power(m: torch.Tensor) -> torch.Tensor:
        u = torch.randn(m.shape[0], m.shape[-1], generator=gen, dtype=torch.float64).to(m.dtype)
        return power_iteration(m, u / torch.linalg.vector_norm(u, dim=-1, keepdim=True))[0]

    with pytest.raises(AssertionError):
        _assert_upper(power, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_cholesky_norm_upper_proves_levels_above_the_norm_and_nothing_below(dtype):
    m = _hard_matrices(dtype)
    exact = spectral_norm_exact(m)
    wide = 1e-2 if dtype in (torch.float32, torch.complex64) else 1e-8  # above the margin
    for rel in (1.0 + wide, 1.5):
        bound = cholesky_norm_upper(m, exact * rel)
        proved = torch.isfinite(bound)
        assert bool(proved[:7].all())  # every level clearly above the norm is proven ...
        assert bool((bound[proved] >= exact[proved]).all())  # ... by an upper bound
        assert bool((bound[proved] <= exact[proved] * rel * (1 + 1e-12)).all())
    # a level at or below the norm is never "proven" (the near tie included)
    assert not bool(torch.isfinite(cholesky_norm_upper(m[:7], exact[:7])).any())
    assert not bool(torch.isfinite(cholesky_norm_upper(m[:7], exact[:7] * 0.999)).any())
    # with headroom the level follows the estimate: a bound close to the norm
    loose = torch.full_like(exact, 1e6)
    bound = cholesky_norm_upper(m, loose, headroom=2 * wide)[:7]
    assert bool((bound >= exact[:7]).all())
    assert bool((bound <= exact[:7] * (1 + 2 * wide) * (1 + 1e-6)).all())
    # The check has teeth: power iteration (an under-estimate) used as a "bound" fails it.
    gen = torch.Generator().manual_seed(0)

    def power(x: torch.Tensor) -> torch.Tensor:
        u = torch.randn(x.shape[0], x.shape[-1], generator=gen, dtype=torch.float64).to(x.dtype)
        return power_iteration(x, u / torch.linalg.vector_norm(u, dim=-1, keepdim=True))[0]

    with pytest.raises(AssertionError):
        _assert_upper(power, dtype)


def test_cholesky_norm_upper_rejects_bad_input():
    with pytest.raises(ValueError, match="float32/float64"):
        cholesky_norm_upper(torch.ones(1, 2, 2, dtype=torch.float16), torch.ones(1).double())
    with pytest.raises(ValueError, match="level must have shape"):
        cholesky_norm_upper(torch.ones(3, 2, 2), torch.ones(2).double())
    # NaN or inf proves nothing
    for bad in (math.nan, math.inf):
        x = torch.eye(2).repeat(2, 1, 1)
        x[1, 0, 1] = bad
        bound = cholesky_norm_upper(x, torch.full((2,), 2.0, dtype=torch.float64))
        assert math.isfinite(float(bound[0])) and float(bound[1]) == math.inf


def test_cholesky_norm_upper_covers_the_rounding_of_the_entries():
    # The matrices to bound are x's components moved by up to entry_error relative: the bound
    # covers the worst case (every component scaled by 1 + e) and adds e ||x||_F to ||x||'s.
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 5, 4, generator=gen, dtype=torch.complex128)
    e = 1e-3
    moved = torch.complex(x.real * (1 + e), x.imag * (1 - e))
    level = spectral_norm_exact(moved) * 1.05
    bound = cholesky_norm_upper(x, level, entry_error=e)
    assert bool(torch.isfinite(bound).all()) and bool((bound <= level).all())
    assert bool((bound >= spectral_norm_exact(moved)).all())
    fro = torch.linalg.matrix_norm(x)
    assert bool((bound >= spectral_norm_exact(x) + e * fro).all())


def test_gram_norm_upper_rejects_other_dtypes():
    with pytest.raises(ValueError, match="float32/float64"):
        gram_norm_upper(torch.ones(2, 2, dtype=torch.float16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["global", "clip", "no skip"])
def test_scale_multipliers_error_bounds_the_rounding(dtype, kind):
    # Exact reference in numpy's long double (64-bit significand; enough above float64's 53
    # bits to see float64 roundings) or float64 for float32 weights.
    np = pytest.importorskip("numpy")
    gen = torch.Generator().manual_seed(3)
    ctype = torch.complex64 if dtype == torch.float32 else torch.complex128
    spread = 10.0 ** torch.randint(-3, 3, (20, 1, 1), generator=gen).double()
    r = (torch.randn(20, 6, 5, generator=gen, dtype=torch.complex128) * spread).to(ctype)
    w = None if kind == "no skip" else torch.randn(6, 5, generator=gen, dtype=dtype)
    n = 20 if w is None else 21
    if kind == "global":
        scale = torch.full((n,), 0.3711, dtype=torch.float64)
    else:
        scale = torch.rand(n, generator=gen, dtype=torch.float64).clamp_min(0.2)
        scale[::3] = 1.0
    r2, w2 = scale_multipliers(r, w, scale)
    assert r2.dtype == r.dtype and (w2 is None) == (w is None)
    ld = np.longdouble
    rr = r.real.double().numpy().astype(ld), r.imag.double().numpy().astype(ld)
    sc = scale.numpy().astype(ld)[:20, None, None]
    a_re = r2.real.double().numpy().astype(ld)
    a_im = r2.imag.double().numpy().astype(ld)
    b_re, b_im = sc * rr[0], sc * rr[1]
    if w is not None and w2 is not None:
        wl = w.double().numpy().astype(ld)
        a_re = a_re + w2.double().numpy().astype(ld)
        b_re = b_re + sc * wl
    err = np.sqrt(((a_re - b_re) ** 2 + (a_im - b_im) ** 2).sum(axis=(1, 2)))
    r_fro = torch.linalg.matrix_norm(r.to(torch.complex128))
    w_fro = None if w is None else torch.linalg.matrix_norm(w.double())
    bound = scale_multipliers_error(r_fro, w_fro, scale, dtype, 30)
    assert bound.shape == (n,)
    assert bool((torch.from_numpy(err.astype(np.float64)) <= bound[:20]).all())
    if w is not None and w2 is not None:  # the skip alone
        skip_err = np.sqrt(
            ((w2.double().numpy().astype(ld) - scale.numpy().astype(ld)[20] * wl) ** 2).sum()
        )
        assert float(skip_err) <= float(bound[20])
    u = torch.finfo(dtype).eps / 2
    assert (
        float((bound[:20] / (scale[:20] * r_fro + (0 if w_fro is None else 2 * w_fro))).max())
        < 10 * u
    )


@pytest.mark.parametrize("shape", [(3, 4, 4), (2, 5, 3), (2, 3, 5)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_polar_eigh_is_the_polar_factor_with_an_exact_gradient(shape, dtype):
    torch.manual_seed(0)
    w = torch.randn(*shape, dtype=dtype)
    torch.testing.assert_close(polar_eigh(w), polar_factor(w), rtol=0.0, atol=1e-12)
    assert torch.autograd.gradcheck(polar_eigh, (w.clone().requires_grad_(),))
    # the gradient is the SVD polar factor's (one closed form), to rounding
    g = torch.randn(shape, dtype=dtype)
    grads = []
    for fn in (polar_eigh, polar_factor):
        x = w.clone().requires_grad_()
        (fn(x) * g.conj()).real.sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=0.0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.float64, torch.complex128])
def test_polar_eigh_on_hard_matrices_is_an_isometry_near_the_exact_factor(dtype):
    # Random, ill-conditioned (1e-12), rank-deficient, near-tie and tiny matrices: the float32
    # Gram is redone in float64 where too ill-conditioned, and by SVD below float64's threshold.
    m = _hard_matrices(dtype)
    q = polar_eigh(m)
    assert q.dtype == m.dtype
    wide = torch.complex128 if dtype.is_complex else torch.float64
    q64 = q.to(wide)
    eye = torch.eye(9, dtype=wide).expand(len(m), 9, 9)
    tol = 1e-5 if dtype in (torch.float32, torch.complex64) else 1e-12
    torch.testing.assert_close(q64.mH @ q64, eye, rtol=0.0, atol=tol)
    # equal to the SVD's polar factor of the stored values where it is unique (full rank,
    # conditioned well enough for the stored precision to determine it)
    ref = polar_factor(m[:5].to(wide))
    torch.testing.assert_close(q64[:4], ref[:4], rtol=0.0, atol=10 * tol)


def test_polar_eigh_float32_matches_float64_polar_of_the_same_values():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(64, 16, 16, generator=gen, dtype=torch.complex64)
    w = w + 4 * torch.eye(16, dtype=w.dtype)  # well conditioned: float32 eigh kept
    q = polar_eigh(w).to(torch.complex128)
    torch.testing.assert_close(q, polar_factor(w.to(torch.complex128)), rtol=0.0, atol=2e-6)


def test_polish_isometry_squares_the_departure_and_never_exceeds_one():
    gen = torch.Generator().manual_seed(4)
    q = torch.linalg.qr(torch.randn(8, 6, 4, generator=gen, dtype=torch.complex128))[0]
    # singular values 1 +- 1e-3
    u, _, vh = torch.linalg.svd(q, full_matrices=False)
    s = 1 + 1e-3 * (2 * torch.rand(8, 4, generator=gen, dtype=torch.float64) - 1)
    near = (u * s.to(u.dtype).unsqueeze(-2)) @ vh
    for x in (near, near.mH):  # tall and wide
        p = polish_isometry(x)
        sv = torch.linalg.svdvals(p)
        assert float(sv.max()) <= 1.0 + 1e-15
        assert float((sv - 1).abs().max()) <= 1.6e-6  # 1 - s (3 - s^2) / 2 ~ 3/2 (1e-3)^2


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.float64, torch.complex128])
def test_polished_isometry_bound_is_sound_tight_and_the_polish_bit_for_bit(dtype):
    gen = torch.Generator().manual_seed(9)
    wide = torch.complex128 if dtype.is_complex else torch.float64
    k = 1.5 * (1 - 2.0**-20)
    for shape in ((16, 24, 24), (8, 12, 5), (8, 5, 12)):
        q = polar_factor(torch.randn(shape, generator=gen, dtype=wide)).to(dtype)  # rounded
        m = torch.randn(shape, generator=gen, dtype=wide)
        # singular values spread over [0, 2] (far from an isometry, premise still holds)
        u, _, vh = torch.linalg.svd(m, full_matrices=False)
        s = 2 * (1 - 1e-6) * torch.rand(u.shape[0], u.shape[-1], generator=gen, dtype=torch.float64)
        spread = ((u * s.to(wide).unsqueeze(-2)) @ vh).to(dtype)
        for x in (q, 1.9 * q, (1 + 1e-3) * q, q + 1e-4 * m.to(dtype), spread):
            out, bound = polished_isometry_bound(x, k)
            same = (k * polish_isometry(x.to(wide))).to(dtype)  # the eval weights' floats
            assert torch.equal(torch.view_as_real(out) if dtype.is_complex else out,
                               torch.view_as_real(same) if dtype.is_complex else same)  # fmt: skip
            exact = spectral_norm_exact(out.to(wide))
            if x is spread:  # ||X||_2 <= 2 not proven by the row sums of |G|: no bound claimed
                assert bool(torch.isinf(bound).any())
                bound = torch.where(torch.isinf(bound), exact, bound)
            assert bool((bound >= exact).all()), (bound - exact).min()
            assert float(bound.max()) <= k * (1 + 1e-6)  # every s (3 - s^2) / 2 <= 1
        out, bound = polished_isometry_bound(q, k)
        tight = bound / spectral_norm_exact(out.to(wide))
        assert float(tight.max()) <= 1 + 5e-7  # the rounding to float32 (none in float64)
    x = torch.diag(torch.tensor([2.5, 1.0], dtype=torch.float64)).to(dtype).unsqueeze(0)
    out, bound = polished_isometry_bound(x, 1.0)  # ||X|| > 2: f(2.5) = -4.06, no bound
    assert float(spectral_norm_exact(out.to(wide))) > 4.0 and math.isinf(float(bound))
    nan = torch.full((1, 3, 3), float("nan"), dtype=dtype)
    assert math.isinf(float(polished_isometry_bound(nan, 1.0)[1]))


def test_polished_isometry_bound_needs_its_rounding_term():
    # The unsound variant: the Newton-Schulz step's exact-arithmetic claim ``||Q'|| <= k`` (the
    # float64 step's rounding included, the float32 rounding d left out) is below the exact
    # norms of float32 polished factors; the bound is not.
    gen = torch.Generator().manual_seed(10)
    k = 1.0 - 2.0**-20
    q = polar_factor(torch.randn(64, 32, 32, generator=gen, dtype=torch.complex128))
    out, bound = polished_isometry_bound(q.to(torch.complex64), k)
    exact = spectral_norm_exact(out.to(torch.complex128))
    assert float(exact.max()) > k * (1 + 1e-9)  # above the claim without rounding
    assert bool((bound >= exact).all())


def test_isometry_norm_upper_bounds_random_near_isometric_and_other_matrices():
    gen = torch.Generator().manual_seed(5)
    for dtype in (torch.float64, torch.complex128):
        hard = _hard_matrices(dtype)  # random, ill-conditioned, rank-deficient, ties, tiny
        exact = spectral_norm_exact(hard)
        bound = isometry_norm_upper(hard)
        assert bool((bound >= exact).all()), (bound - exact).min()
        for shape in ((16, 64, 64), (8, 12, 5), (8, 5, 12)):
            w = torch.randn(shape, generator=gen, dtype=dtype)
            q = polar_factor(w)
            # near-isometric: 1.5 times an isometry, rounded to float32 (what eval weights are)
            low = torch.complex64 if dtype.is_complex else torch.float32
            a = (1.5 * q).to(low).to(dtype)
            for x in (w, a, a + 1e-3 * w, 0.5 * a):
                exact = spectral_norm_exact(x)
                bound = isometry_norm_upper(x)
                assert bool((bound >= exact).all()), (bound - exact).min()
            tight = isometry_norm_upper(a) / spectral_norm_exact(a)
            assert float(tight.max()) <= 1 + 1e-6  # tight to ~1e-7 at float32 rounding
    # The check has teeth: the mean singular value (what c alone gives) is below the norm.
    x = torch.diag(torch.tensor([2.0, 1.0], dtype=torch.float64)).unsqueeze(0)
    mean = (x.mH @ x).diagonal(dim1=-2, dim2=-1).mean(-1).sqrt()
    assert float(mean) < float(spectral_norm_exact(x)) <= float(isometry_norm_upper(x))
    with pytest.raises(ValueError, match="float64 or complex128"):
        isometry_norm_upper(torch.ones(2, 2))
    assert not bool(torch.isfinite(isometry_norm_upper(torch.full((2, 2), torch.nan).double())))


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_cholesky_norm_upper_factorized_in_float64_is_tighter_and_still_proven(dtype):
    # The float32 Gram product factorized in float64: a margin ~4x narrower than the float32
    # factorization's, still an upper bound on the hard cases, and nothing below the norm.
    m = _hard_matrices(dtype)
    exact = spectral_norm_exact(m)
    for rel in (1.0 + 2e-3, 1.5):
        bound = cholesky_norm_upper(m, exact * rel, factor_wide=True)
        proved = torch.isfinite(bound)
        assert bool(proved[:7].all())
        assert bool((bound[proved] >= exact[proved]).all())
        assert bool((bound[proved] <= exact[proved] * rel * (1 + 1e-12)).all())
    assert not bool(torch.isfinite(cholesky_norm_upper(m[:7], exact[:7], None, 0.0, True)).any())
    # 64 x 64 multipliers like a width-64 FNO's (orthogonal skip + random part): 2e-4 above
    # the norm the float32 factorization proves nothing, this one proves every one
    gen = torch.Generator().manual_seed(1)
    q = torch.linalg.qr(torch.randn(64, 64, generator=gen, dtype=torch.float64))[0]
    wide = torch.complex128 if dtype.is_complex else torch.float64
    big = (q + torch.randn(8, 64, 64, generator=gen, dtype=wide) / 16).to(dtype)
    norms = spectral_norm_exact(big)
    assert not bool(torch.isfinite(cholesky_norm_upper(big, norms * (1 + 2e-4))).any())
    narrow = cholesky_norm_upper(big, norms * (1 + 2e-4), factor_wide=True)
    assert bool(torch.isfinite(narrow).all()) and bool((narrow >= norms).all())


def _cholesky_cases(dtype: torch.dtype, p: int = 48) -> list[torch.Tensor]:
    """Hermitian positive (semi-)definite ``A`` whose float32 factorization is hard."""
    gen = torch.Generator().manual_seed(11)
    wide = torch.complex128 if dtype.is_complex else torch.float64
    q = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=wide))[0]
    cases = []
    for s in (
        torch.rand(p, generator=gen, dtype=torch.float64) + 0.5,  # well conditioned
        torch.logspace(0, -7, p, dtype=torch.float64),  # ill-conditioned
        torch.cat([torch.ones(p - 1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)]),
        torch.cat([torch.full((p // 2,), 1e-7, dtype=torch.float64), torch.ones(p - p // 2)]),
    ):
        cases.append((q * s.to(wide)) @ q.mH)
    g = torch.randn(p, p, generator=gen, dtype=wide)
    gram = g.mH @ g
    top = torch.linalg.eigvalsh(gram)[-1]
    for rel in (1e-3, 1e-6, 0.0):  # c I - G just above singular, at the limit
        cases.append(top * (1 + rel) * torch.eye(p, dtype=wide) - gram)
    return [a.to(dtype) for a in cases]


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64])
def test_cholesky_rounding_constant_covers_measured_backward_errors(dtype):
    # ||L L^H - A||_2 <= g tr(A) for every float32 factorization that runs to completion,
    # measured exactly (float64 products of the stored factor and matrix).
    p = 48
    g = cholesky_rounding_constant(p, 2.0**-24, dtype.is_complex)
    worst = 0.0
    for a in _cholesky_cases(dtype, p):
        factor, info = torch.linalg.cholesky_ex(a)
        if int(info):
            continue
        wide = factor.to(torch.complex128 if dtype.is_complex else torch.float64)
        e = wide @ wide.mH - a.to(wide.dtype)
        trace = float(a.diagonal().real.double().sum())
        worst = max(worst, float(torch.linalg.matrix_norm(e, 2)) / trace)
    assert 0.0 < worst <= g
    # the constant of the real case and the complex one's sqrt(2) gamma_{2p+2}
    u = 2.0**-24
    assert cholesky_rounding_constant(p, u, False) == pytest.approx((p + 2) * u, rel=1e-4)
    assert cholesky_rounding_constant(p, u, True) == pytest.approx(
        math.sqrt(2) * (2 * p + 2) * u, rel=1e-4
    )


def test_norm_grid_index_and_level_are_inverse():
    j = torch.arange(-3000, 3000, 7)
    level = norm_grid_level(j)
    assert torch.equal(norm_grid_index(level), j)
    assert bool((norm_grid_index(level * (1 + 1e-12)) == j + 1).all())
    spacing = norm_grid_level(j + 1) / level - 1
    assert float(spacing.max()) <= 2.0**-NORM_GRID_BITS * (1 + 1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_grid_norm_upper_is_a_close_upper_bound_whatever_the_start(dtype):
    m = _hard_matrices(dtype)[:7]  # the tiny one has no float32 bound close to its norm
    exact = spectral_norm_exact(m)
    bound, vectors = grid_norm_upper(m)
    assert bool((bound >= exact).all())
    # within a grid step plus the float32 test's margin of the norm
    assert float((bound / exact).max()) <= 1 + 2.0**-NORM_GRID_BITS + 2e-4
    gen = torch.Generator().manual_seed(3)
    p = min(m.shape[-2:])
    starts = [
        vectors,
        torch.ones(7, p, dtype=m.dtype),
        torch.randn(7, p, generator=gen).to(m.dtype),
    ]
    for start in starts:  # the start chooses where the search begins, never its result
        assert torch.equal(grid_norm_upper(m, start)[0], bound)
    blocks = [  # start blocks (two vectors per matrix): the same
        torch.stack([vectors, starts[2]], 1),
        torch.stack([starts[1], starts[1]], 1),  # a degenerate pair
        torch.stack([starts[2], torch.full_like(vectors, math.nan)], 1),
        torch.randn(7, 2, p, generator=gen).to(m.dtype),
    ]
    for block in blocks:
        result, pairs = grid_norm_upper(m, block)
        assert torch.equal(result, bound) and pairs.shape == (7, 2, p)
        assert bool(torch.isfinite(pairs).all())
    tiny = grid_norm_upper(_hard_matrices(dtype)[7:])[0]
    assert float(tiny[0]) >= 1e-30


def test_grid_norm_upper_on_width_64_multipliers_after_steps():
    # Multipliers like a width-64 FNO's (orthogonal skip + random part) and the same after
    # small sign steps (Adam-like): proven, close, the same with any start vectors.
    gen = torch.Generator().manual_seed(5)
    q = torch.linalg.qr(torch.randn(64, 64, generator=gen, dtype=torch.float64))[0]
    m = (q + torch.randn(24, 64, 64, generator=gen, dtype=torch.complex128) / 16).to(
        torch.complex64
    )
    bound, vectors = grid_norm_upper(m)
    pairs = torch.stack([vectors, vectors.roll(1, -1)], 1)
    for _ in range(3):
        step = torch.randn(m.shape, generator=gen, dtype=torch.complex128)
        m = m + (1e-4 * (step.real.sign() + 1j * step.imag.sign())).to(m.dtype)
        exact = spectral_norm_exact(m)
        bound, vectors = grid_norm_upper(m, vectors)
        assert bool((bound >= exact).all())
        assert float((bound / exact).max()) <= 1 + 2e-3
        assert torch.equal(grid_norm_upper(m)[0], bound)
        by_pairs, pairs = grid_norm_upper(m, pairs)
        assert torch.equal(by_pairs, bound)
        parts = torch.view_as_real(m).permute(0, 3, 1, 2).reshape(24, 128, 64)
        assert torch.equal(grid_norm_upper_parts(parts, pairs)[0], bound)


def _crossing(top: float, second: float, seed: int = 8) -> torch.Tensor:
    # (K, 32, 32) complex64 with singular values top, second, then <= 0.6, the same singular
    # vectors for every call: swapping top and second makes the top vector the second one
    gen = torch.Generator().manual_seed(seed)
    k, p = 16, 32
    u = torch.linalg.qr(torch.randn(k, p, p, generator=gen, dtype=torch.complex128))[0]
    v = torch.linalg.qr(torch.randn(k, p, p, generator=gen, dtype=torch.complex128))[0]
    s = torch.linspace(0.6, 0.1, p, dtype=torch.float64)
    s[0], s[1] = top, second
    return ((u * s.to(u.dtype)) @ v.mH).to(torch.complex64)


def _tested_rows(monkeypatch) -> list[int]:
    rows: list[int] = []
    run = functional._GramTest.run

    def counting(self, which, level2, rhs=None):
        rows.append(self.conj_neg.shape[0] if which is None else len(which))
        return run(self, which, level2, rhs)

    monkeypatch.setattr(functional._GramTest, "run", counting)
    return rows


def test_grid_norm_upper_start_pairs_follow_crossing_top_singular_values(monkeypatch):
    # Two top singular values that cross between calls (training moves near-tied ones past
    # each other): the remembered top vector is now the second one, ~1% low in its Rayleigh
    # quotient (several failed levels, then eigh); the remembered pair still spans the new top
    # vector (one or two tests each). The bounds are the same either way.
    before, after = _crossing(1.0, 0.99), _crossing(0.99, 1.0)
    _, vector = grid_norm_upper(before, torch.ones(16, 32, dtype=torch.complex64))
    _, pair = grid_norm_upper(before, torch.ones(16, 2, 32, dtype=torch.complex64))  # ones twice
    _, pair = grid_norm_upper(before, pair)  # a second call: the pair tracks the top two
    rows = _tested_rows(monkeypatch)
    by_vector = grid_norm_upper(after, vector)[0]
    single = sum(rows)
    rows.clear()
    by_pair = grid_norm_upper(after, pair)[0]
    assert torch.equal(by_pair, by_vector)
    assert sum(rows) <= 2 * 16 < single


def test_grid_norm_upper_with_history_in_its_lower_bounds_fails_the_check(monkeypatch):
    # Start pairs (and vectors) may only choose where the search begins: every skipped level
    # is ruled out by a lower bound proven for the matrices as they are. The check (the same
    # bounds as a call with no start) is not vacuous: a variant that also skips the levels
    # below the last call's bounds (history taken for a proof) gives other bounds once the
    # norms drop, here on near-rank-one matrices.
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(64, 48, 1, generator=gen, dtype=torch.complex128)
    b = torch.randn(64, 1, 48, generator=gen, dtype=torch.complex128)
    noise = torch.randn(64, 48, 48, generator=gen, dtype=torch.complex128)
    x = (a @ b / 48 + 1e-3 * noise).to(torch.complex64)
    exact = spectral_norm_exact(x)
    bound, pairs = grid_norm_upper(x)
    assert bool((bound >= exact).all())
    assert torch.equal(grid_norm_upper(x, pairs)[0], bound)

    defined = grid_norm_upper(x * 0.99)[0]
    assert torch.equal(grid_norm_upper(x * 0.99, pairs)[0], defined)
    first_level = functional._first_level

    def stale(test, rows, lower):  # the last call's bounds taken as proven lower bounds
        remembered = bound if rows is None else bound[rows]
        return first_level(test, rows, torch.maximum(lower, remembered.square()))

    monkeypatch.setattr(functional, "_first_level", stale)
    smaller = grid_norm_upper(x * 0.99, pairs)[0]  # the norms dropped by 1%
    assert bool((smaller >= spectral_norm_exact(x * 0.99)).all())  # still upper bounds,
    assert bool((smaller > defined).any())  # but not the defined ones


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64])
def test_gram_products_chunk_by_chunk_are_the_whole_batch_ones(dtype):
    # _negated_gram runs its products chunk by chunk into reused buffers: each matrix's -H is
    # the one a single batched product of the whole batch gives (the same floats), across the
    # chunk boundaries and in a last partial chunk; the upper triangle mirrors the lower.
    gen = torch.Generator().manual_seed(7)
    n = 24
    step = functional._gram_step(n)
    k = 2 * step + 3  # two whole chunks and a partial one
    x = torch.randn(k, 40, n, generator=gen, dtype=torch.complex128 if dtype.is_complex else None)
    x = (x * torch.rand(k, 1, 1, generator=gen, dtype=torch.float64)).to(dtype)
    got = functional._negated_gram(x)
    lower = torch.ones(n, n, dtype=torch.bool).tril()
    if dtype.is_complex:
        stacked = torch.view_as_real(x).permute(0, 3, 1, 2).reshape(k, 80, n)
        re = torch.bmm(stacked.mT, stacked)
        t = torch.bmm(stacked[:, :40].mT, stacked[:, 40:])
        want = torch.complex(-torch.where(lower, re, re.mT), t - t.mT)
    else:
        g = torch.bmm(x.mT, x)
        want = -torch.where(lower, g, g.mT)
    assert torch.equal(got, want)
    assert torch.equal(got, got.mH)  # exactly Hermitian


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.complex128])
@pytest.mark.parametrize("shape", [(40, 24), (24, 40)])
def test_gram_test_factorizes_the_hermitian_gram_within_its_rounding_bound(dtype, shape):
    # The test's H (real products for complex X, the lower triangle mirrored) is exactly
    # Hermitian, within e_G (the proof's rounding bound) of the exact Gram matrix in Frobenius
    # norm, and its in-place column-major factorization is LAPACK's of a fresh copy, bit for bit.
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(6, *shape, generator=gen, dtype=torch.complex128 if dtype.is_complex else None)
    x = x.to(dtype)
    test = _GramTest(x)
    h = -test.neg
    assert torch.equal(h, h.mH)
    wide = x.to(torch.complex128 if dtype.is_complex else torch.float64)
    exact = wide.mH @ wide if shape[1] <= shape[0] else wide @ wide.mH
    err = torch.linalg.matrix_norm(h.to(exact.dtype) - exact)
    assert bool((err <= test.e_g).all())
    assert float((err / test.e_g).max()) > 1e-3  # the bound is not vacuous
    level2 = torch.linalg.eigvalsh(exact)[:, -1] * torch.linspace(
        0.999, 1.01, 6, dtype=torch.float64
    )
    bound, factor = test.run(None, level2)
    c = test.target(None, level2)
    fresh = (
        c[:, None, None] * torch.eye(h.shape[-1], dtype=h.dtype) - h
    )  # fl(c - h_ii) on the diagonal
    fresh.diagonal(dim1=-2, dim2=-1).copy_(
        (c[:, None] - h.diagonal(dim1=-2, dim2=-1).real).to(h.dtype)
    )
    ref, info = torch.linalg.cholesky_ex(fresh.contiguous())
    assert torch.equal(torch.isfinite(bound), info == 0)
    assert bool(torch.isfinite(bound).any()) and not bool(torch.isfinite(bound).all())
    ok = info == 0
    assert torch.equal(factor.tril()[ok], ref[ok])


@pytest.mark.parametrize("one_by_one", [False, True])
def test_the_test_without_its_rounding_shift_is_unsound(one_by_one):
    # The check of the tests above can fail: without the rounding shift (g = u = e_G = 0) the
    # float32 Cholesky test "proves" levels below the exact norm of near-rank-one matrices
    # (the factorization of c I - H cannot see a negative eigenvalue ~1e-9 c); with it, none.
    # The same with the one-by-one factorization of the tests that take an inverse step.
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(128, 64, 1, generator=gen, dtype=torch.complex128)
    b = torch.randn(128, 1, 64, generator=gen, dtype=torch.complex128)
    noise = torch.randn(128, 64, 64, generator=gen, dtype=torch.complex128)
    x = (a @ b / 64 + 1e-3 * noise).to(torch.complex64)
    exact = spectral_norm_exact(x)
    level2 = exact.square() * (1 - 1e-9)
    test = _GramTest(x)
    rhs = torch.ones(128, 1, 64, dtype=x.dtype) if one_by_one else None
    sound = test.run(None, level2, rhs)[0]
    assert bool((sound >= exact).all())  # inf: nothing proven below the norm
    test.g, test.u, test.absolute = 0.0, 0.0, 0.0
    test.e_g = torch.zeros_like(test.e_g)
    unsound = test.run(None, level2, rhs)[0]
    assert bool((unsound < exact).any())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex64, torch.complex128])
def test_gram_test_one_by_one_factorization_is_the_batched_one(dtype):
    # The tests that take an inverse step (rhs given) factorize each matrix through torch's
    # own LAPACK routine (_Lapack, one small work array, no batched copy): the same outcomes
    # and bounds, bit for bit, as torch.linalg.cholesky_ex on the batch, and solutions of
    # (L L^H) w = v where the factorization succeeded.
    if functional._Lapack.get(dtype, 32) is None:
        pytest.skip(
            "no _Lapack route for this dtype here (symbols missing, or its factors differ from "
            "cholesky_ex's in the last bits): the batched path runs"
        )
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(40, 48, 32, generator=gen, dtype=dtype)
    test = _GramTest(x)
    exact = spectral_norm_exact(x)
    level2 = exact.square() * torch.linspace(0.9995, 1.003, 40, dtype=torch.float64)
    rows = torch.arange(3, 40, 2)
    for which in (None, rows):
        lv = level2 if which is None else level2[which]
        bound = test.run(which, lv)[0]
        rhs = torch.randn(len(lv), 2, 32, generator=gen, dtype=dtype)
        one_by_one, solved = test.run(which, lv, rhs)
        assert torch.equal(one_by_one, bound)  # the same floats: inf where it failed
        ok = torch.isfinite(bound)
        assert bool(ok.any()) and not bool(ok.all())
        h = -test.neg if which is None else -test.neg[which]
        c = test.target(which, lv)
        a = c[:, None, None] * torch.eye(32, dtype=torch.float64) - h.to(torch.complex128)
        residual = a[ok] @ solved[ok].mT.to(torch.complex128) - rhs[ok].mT.to(torch.complex128)
        rel = torch.linalg.vector_norm(residual, dim=(-2, -1)) / torch.linalg.vector_norm(
            rhs[ok], dim=(-2, -1)
        )
        assert float(rel.max()) < 1e-2  # a solve (of a near-singular A: loose, an estimate)
        assert torch.equal(solved[~ok], rhs[~ok])  # untouched where nothing was proven


def test_grid_norm_upper_without_the_one_by_one_factorization_is_the_same(monkeypatch):
    # grid_norm_upper's bounds through the one-by-one factorization (_Lapack) and through
    # torch's batched one: the same, bit for bit (the vectors may differ: estimates).
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(60, 64, 64, generator=gen, dtype=torch.complex64) / 8
    x[:30] += (
        2
        * torch.randn(30, 64, 1, generator=gen, dtype=torch.complex64)
        @ torch.randn(30, 1, 64, generator=gen, dtype=torch.complex64)
    )
    fast = grid_norm_upper(x)[0]
    monkeypatch.setattr(functional._Lapack, "get", classmethod(lambda cls, dtype, p: None))
    assert torch.equal(grid_norm_upper(x)[0], fast)


def test_grid_norm_upper_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN or inf"):
        grid_norm_upper(torch.full((2, 3, 3), math.nan))
    with pytest.raises(ValueError, match="shape"):
        grid_norm_upper(torch.ones(3, 3))
