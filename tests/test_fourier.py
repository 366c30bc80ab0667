import math

import pytest
import torch
from certcheck import check_all, check_attack, check_jacobian

from liponet.functional import TARGET_MARGIN, spectral_norm_exact
from liponet.layers import (
    NORMALIZATIONS,
    FourierBlock,
    GroupSort,
    LipSpectralConv,
    MaxMin,
    PaddedDomain,
    SpectralMultiplier,
    fourier,
)
from liponet.layers.fourier import (
    CLIP_HEADROOM,
    NORM_FREE,
    SCALAR_NORMALIZATIONS,
    kept_mode_shape,
    spectral_apply,
)

# (modes, grid with some modes unkept, smallest grid allowed (every mode kept))
SHAPES = {
    1: ((3,), (9,), (5,)),
    2: ((2, 3), (5, 8), (3, 5)),
    3: ((2, 2, 2), (4, 5, 4), (3, 3, 3)),
}


def _dense(conv, sizes):
    """The linear part (no bias) of ``conv`` as a dense float64 matrix on the grid ``sizes``."""
    n = conv.in_channels * math.prod(sizes)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, conv.in_channels, *sizes)
    r, w = conv.effective_weights()
    out = spectral_apply(basis, r, w, None, conv.modes)
    return out.reshape(n, -1).T  # (out * N, in * N)


def _exact_norm(conv, sizes):
    # Same grid in and out: the function-norm scaling sqrt(N_in / N_out) is 1.
    return float(torch.linalg.matrix_norm(_dense(conv, sizes), ord=2))


def _randomize(conv, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return conv


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [1.0, 2.5, None])
@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
@pytest.mark.parametrize("skip", [True, False])
def test_certificate_is_the_exact_norm_of_the_linear_part(dim, k, normalization, skip):
    modes, grid, smallest = SHAPES[dim]
    conv = LipSpectralConv(3, 2, modes, k=k, skip=skip, normalization=normalization)
    conv = _randomize(conv.double()).eval()
    bound = conv.lipschitz_bound()
    if k is not None:
        assert bound <= k * (1 + 1e-9)
    # Some modes unkept: the certificate is exact (tight to 1e-6, in fact ~1e-10).
    assert _exact_norm(conv, grid) == pytest.approx(bound, rel=1e-6)
    # Every mode kept: still an upper bound; and the same bound at a finer grid.
    assert _exact_norm(conv, smallest) <= bound * (1 + 1e-9)
    finer = tuple(n + 3 for n in grid)
    assert _exact_norm(conv, finer) == pytest.approx(bound, rel=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_tight_when_the_skip_dominates(dim):
    # Small R_k: max_k ||W + R_k|| may fall below ||W||, which the unkept modes then attain.
    modes, grid, _ = SHAPES[dim]
    conv = _randomize(LipSpectralConv(2, 2, modes, k=None, skip=True).double()).eval()
    with torch.no_grad():
        conv.weight.mul_(1e-3)
        conv.skip.copy_(torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64)))
        conv.weight[..., 0, 0, :] = torch.tensor([-0.5, 0.0])  # shrink at all kept modes
    bound = conv.lipschitz_bound()
    assert bound == pytest.approx(3.0, rel=1e-9)
    assert _exact_norm(conv, grid) == pytest.approx(bound, rel=1e-6)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [1.0, None])
def test_tight_when_mode_zero_dominates_with_an_imaginary_part(dim, k):
    # Real inputs see only Re(R_0) at k = 0 (and the Hermitian part on the k_d = 0 slice): a
    # bound from the raw complex R_0 would be valid but loose. The layer symmetrizes, so it is
    # tight.
    modes, grid, _ = SHAPES[dim]
    conv = _randomize(LipSpectralConv(2, 2, modes, k=k, skip=True).double()).eval()
    centre = (*tuple(m - 1 for m in modes[:-1]), 0)
    with torch.no_grad():
        conv.weight.mul_(0.1)
        conv.weight[centre] = torch.tensor([[[4.0, 30.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, -30.0]]])
    bound = conv.lipschitz_bound()
    mk, _w = conv.multipliers()
    index0 = 0
    for c, size in zip(centre, kept_mode_shape(modes), strict=True):
        index0 = index0 * size + c
    norms = torch.linalg.matrix_norm(mk, ord=2)
    assert int(norms.argmax()) == index0  # the max is attained at k = 0
    assert float(mk[index0].imag.abs().max()) == 0.0
    assert _exact_norm(conv, grid) == pytest.approx(bound, rel=1e-6)
    if k is None:  # the raw complex R_0 (imaginary parts 30) would give a far looser bound
        raw = torch.view_as_complex(conv.weight.detach())[centre] + conv.skip.detach()
        assert float(torch.linalg.matrix_norm(raw, ord=2)) > 5 * bound


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_forward_equals_the_full_complex_multiplier(dim):
    # Reference: full complex FFT, A_k on kept k, conj(A_{-k}) mirrored, W elsewhere.
    modes, grid, _ = SHAPES[dim]
    conv = _randomize(LipSpectralConv(2, 3, modes, skip=True, bias=False).double()).eval()
    x = torch.randn(2, 2, *grid, dtype=torch.float64)
    mk, w = conv.multipliers()
    torch.testing.assert_close(conv(x), _reference_forward(x, mk, w, modes), rtol=0.0, atol=1e-12)


def _reference_forward(x, mk, w, modes):
    """The full complex FFT of ``x`` times ``A_k`` on kept ``k`` (``conj(A_{-k})`` mirrored, ``W``
    elsewhere), transformed back: what a layer with multipliers ``mk`` ``(K, out, in)`` computes.
    """
    dim, grid = len(modes), x.shape[2:]
    out_c, in_c = mk.shape[-2:]
    mk = mk.reshape(*kept_mode_shape(modes), out_c, in_c)
    full = w.to(torch.complex128).expand(*grid, out_c, in_c).clone()
    ranges = [range(-(m - 1), m) for m in modes[:-1]] + [range(modes[-1])]
    for idx in torch.cartesian_prod(*[torch.tensor(list(r)) for r in ranges]).reshape(-1, dim):
        signed = [int(v) for v in idx]
        pos = tuple(s % n for s, n in zip(signed, grid, strict=True))
        neg = tuple(-s % n for s, n in zip(signed, grid, strict=True))
        leading = zip(signed[:-1], modes[:-1], strict=True)
        kept = (*(s + m - 1 for s, m in leading), signed[-1])
        full[pos] = mk[kept]
        full[neg] = mk[kept].conj()
    dims = tuple(range(2, 2 + dim))
    spec = torch.fft.fftn(x, dim=dims, norm="ortho")
    ref = torch.einsum("b i ..., ... o i -> b o ...", spec, full)
    ref = torch.fft.ifftn(ref, dim=dims, norm="ortho")
    assert float(ref.imag.abs().max()) < 1e-12  # the multiplier is Hermitian: real output
    return ref.real


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("skip", [True, False])
def test_spectral_conv_properties(dim, skip):
    modes, grid, _ = SHAPES[dim]
    x = torch.randn(2, 3, *grid)

    def make():
        torch.manual_seed(0)
        return _randomize(LipSpectralConv(3, 2, modes, skip=skip), seed=1)

    check_all(make, x, norm="function")


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("activation", ["maxmin", "groupsort2", "relu", "fullsort"])
def test_block_properties_and_resolution(dim, activation):
    modes, grid, _ = SHAPES[dim]
    x = torch.randn(2, 4, *grid)

    def make():
        torch.manual_seed(0)
        return _randomize(FourierBlock(4, modes, activation=activation), seed=2)

    check_all(make, x, norm="function")
    block = make().double().eval()
    finer = torch.randn(2, 4, *(2 * n for n in grid), dtype=torch.float64)
    check_attack(block, finer, norm="function")  # the same bound at twice the resolution


@pytest.mark.parametrize("dim", [1, 2])
def test_padded_domain_bound(dim):
    modes, grid, _ = SHAPES[dim]
    x = torch.randn(2, 2, *grid)

    def make():
        torch.manual_seed(0)
        return PaddedDomain(_randomize(FourierBlock(2, modes, k=None), seed=3), padding=0.3)

    check_all(make, x, norm="function")
    model = make().double().eval()
    assert model.lipschitz_bound() == model.inner.lipschitz_bound()
    # Without activation the padded block is linear: its exact norm <= bound (cropping loses).
    linear = PaddedDomain(_randomize(FourierBlock(2, modes, None, k=None)).double(), 0.3).eval()
    assert check_jacobian(linear, x.double()[:1], "function") <= linear.lipschitz_bound()


def test_training_normalization_approaches_eval():
    conv = _randomize(LipSpectralConv(4, 4, (5,), skip=True, n_power=2), seed=4)
    x = torch.randn(2, 4, 32)
    conv.train()
    for _ in range(30):  # power iteration, warm-started across forwards
        train_out = conv(x)
    conv.eval()
    torch.testing.assert_close(train_out, conv(x), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("normalization", ["orthogonal", "qr", "polar", "cayley"])
@pytest.mark.parametrize("shape", [(3, 3), (2, 3), (3, 2)])
@pytest.mark.parametrize("skip", [True, False])
def test_norm_free_training_weights_are_the_eval_weights(dim, normalization, shape, skip):
    # Training normalizes only the independent half of the k_d = 0 slice and mirrors it: the
    # same weights (and the same gradients) as normalizing every multiplier, then symmetrizing.
    modes = SHAPES[dim][0]
    conv = LipSpectralConv(*shape, modes, k=1.5, skip=skip, normalization=normalization)
    conv = _randomize(conv.double()).train()
    r, w = conv._train_weights()
    r_eval, w_eval = conv.effective_weights()
    # eval weights of the polar factors take one more float64 Newton-Schulz step (a change of
    # the order of the rounding of the factor, ~ u cond(M)^2 for these random multipliers)
    atol = 1e-12 if normalization in ("qr", "cayley") else 1e-10
    torch.testing.assert_close(r, r_eval, rtol=0.0, atol=atol)
    if skip:
        torch.testing.assert_close(w, w_eval, rtol=0.0, atol=atol)
    mk, _ = conv.multipliers()  # target times isometries (co-isometries when wide)
    target = 1.5 * TARGET_MARGIN  # k (1 - 2^-20), what every constrained layer aims at
    small = min(shape)
    gram = mk.mH @ mk if shape[0] <= shape[1] else mk @ mk.mH  # (in, out): tall if in <= out
    eye = torch.eye(small, dtype=gram.dtype).expand_as(gram)
    torch.testing.assert_close(gram, target**2 * eye, rtol=0.0, atol=1e-12)
    # gradients: against the generic path (all multipliers, then the symmetrization)
    gen = torch.Generator().manual_seed(5)
    gr = torch.randn(r.shape, generator=gen, dtype=r.dtype)
    gw = None if w is None else torch.randn(w.shape, generator=gen, dtype=w.dtype)

    def loss(r: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        return (r * gr.conj()).real.sum() + (0.0 if w is None else (w * gw).sum())

    params = [p for p in (conv.weight, conv.skip) if p is not None]
    fast = torch.autograd.grad(loss(r, w), params)
    m = conv._stacked(conv._symmetric_spectral())
    normalized = NORMALIZATIONS[normalization](m, spectral_norm_exact(m), target)
    ref = torch.autograd.grad(loss(*conv._split(normalized, True)), params)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_eval_weights_are_cached_and_refreshed():
    conv = LipSpectralConv(2, 2, (3,), skip=True).eval()
    first = conv.effective_weights()[0]
    assert conv.effective_weights()[0] is first
    with torch.no_grad():
        conv.weight.mul_(2.0)
    assert conv.effective_weights()[0] is not first


def test_export_is_plain():
    conv = LipSpectralConv(2, 2, (3, 3), skip=True).eval()
    plain = conv.export()
    assert isinstance(plain, SpectralMultiplier)
    assert not list(plain.parameters())
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(plain(x), conv(x), rtol=0.0, atol=1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="modes"):
        LipSpectralConv(2, 2, (0,))
    with pytest.raises(ValueError, match="modes"):
        LipSpectralConv(2, 2, ())
    with pytest.raises(ValueError, match="k must be"):
        LipSpectralConv(2, 2, (3,), k=0.0)
    with pytest.raises(ValueError, match="k must be"):
        LipSpectralConv(2, 2, (3,), k=-1.0)
    with pytest.raises(ValueError, match="unknown normalization 'spectral'; available: global"):
        LipSpectralConv(2, 2, (3,), normalization="spectral")
    with pytest.raises(ValueError, match="n_power"):
        LipSpectralConv(2, 2, (3,), n_power=0)
    with pytest.raises(ValueError, match="channels"):
        LipSpectralConv(0, 2, (3,))
    with pytest.raises(ValueError, match="padding"):
        PaddedDomain(FourierBlock(2, (3,)), padding=-0.1)
    conv = LipSpectralConv(2, 2, (5, 3))
    with pytest.raises(ValueError, match=r"spatial size 8 of dimension 0 is too small.*>= 2\*5-1"):
        conv(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="rank 4"):
        conv(torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="must have 2 channels"):
        conv(torch.randn(1, 3, 16, 16))


def test_maxmin_is_groupsort2_up_to_a_channel_permutation():
    x = torch.randn(3, 6, 5)
    perm = torch.tensor([0, 3, 1, 4, 2, 5])  # adjacent pairs (0,3), (1,4), (2,5)
    torch.testing.assert_close(MaxMin(dim=1)(x)[:, perm], GroupSort(2, dim=1)(x[:, perm]))
    with pytest.raises(ValueError, match="even size"):
        MaxMin(dim=1)(torch.randn(1, 3, 4))


@pytest.mark.parametrize(
    ("sizes", "modes"), [((16,), (5,)), ((15,), (8,)), ((12, 10), (4, 3)), ((9, 8, 7), (3, 2, 4))]
)
def test_kept_fft_backward_matches_autograd(sizes: tuple, modes: tuple) -> None:
    # The hand-written adjoints of the kept-mode transforms equal autograd's own backward
    # (and pass gradcheck), in 1-D to 3-D, odd and even grids.
    from liponet.layers.fourier import _kept_irfftn, _kept_rfftn, _KeptIRFFT, _KeptRFFT

    torch.manual_seed(0)
    x = torch.randn(2, 3, *sizes, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: _KeptRFFT.apply(t, modes), (x,))
    g = torch.randn_like(_kept_rfftn(x.detach(), modes))
    (ours,) = torch.autograd.grad(_KeptRFFT.apply(x, modes), x, g)
    (ref,) = torch.autograd.grad(_kept_rfftn(x, modes), x, g)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    k = _kept_rfftn(x.detach(), modes).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _KeptIRFFT.apply(t, sizes, modes), (k,))
    h = torch.randn(2, 3, *sizes, dtype=torch.float64)
    (ours,) = torch.autograd.grad(_KeptIRFFT.apply(k, sizes, modes), k, h)
    (ref,) = torch.autograd.grad(_kept_irfftn(k, sizes, modes), k, h)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_activations_enter_the_fft_in_float32(dtype):
    # Autocast hands the Fourier path half-precision activations; CPU FFTs reject bfloat16.
    gen = torch.Generator().manual_seed(0)
    modes = (3, 4)
    kept = torch.randn(*kept_mode_shape(modes), 2, 2, dtype=torch.complex64, generator=gen)
    x = torch.randn(2, 2, 8, 9, generator=gen)
    reference = spectral_apply(x.to(dtype).float(), kept, None, None, modes)
    x_half = x.to(dtype).requires_grad_(True)
    y = spectral_apply(x_half, kept, None, None, modes)
    torch.testing.assert_close(y, reference, rtol=1e-5, atol=1e-6)
    y.pow(2).sum().backward()
    assert x_half.grad is not None and x_half.grad.dtype == dtype
    assert bool(torch.isfinite(x_half.grad.float()).all())


def test_lipfno_trains_under_cpu_bf16_autocast():
    from liponet.models import LipFNO

    torch.manual_seed(0)
    model = LipFNO(1, 1, (4,), width=8, depth=2)
    x = torch.randn(4, 1, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = (model(x).float() - x).pow(2).mean()
    loss.backward()
    for param in model.parameters():
        assert param.grad is not None and bool(torch.isfinite(param.grad).all())


def _certificate_close(normalization, exact, bound, k):
    """``"global"``: the exact norm to 1e-6. ``"clip"``: proven bounds ``u_k`` within about
    ``CLIP_HEADROOM`` of the norms (no SVD of every multiplier), and never above ``k``."""
    if normalization == "clip":
        return exact <= bound <= min(k, exact * (1 + 2 * CLIP_HEADROOM))
    return exact <= bound <= exact * (1 + 1e-6)


@pytest.mark.parametrize("normalization", sorted(SCALAR_NORMALIZATIONS))
@pytest.mark.parametrize("modes", [(9,), (5, 4)])
def test_one_svd_certificate_bounds_the_exact_multiplier_norms(normalization, modes, monkeypatch):
    calls = []

    def counted(w: torch.Tensor) -> torch.Tensor:
        calls.append(w.shape)
        return spectral_norm_exact(w)

    monkeypatch.setattr(fourier, "spectral_norm_exact", counted)
    torch.manual_seed(3)
    conv = LipSpectralConv(24, 24, modes, skip=True, normalization=normalization)
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.3)
    conv.eval()
    bound = conv.lipschitz_bound()
    # every multiplier SVD'd at most once per layer (one batch, or with the lean pass the
    # likeliest largest and those its Cholesky tests leave): the certificate reused its norms
    assert sum(shape[0] for shape in calls) <= math.prod(conv.kept_shape) + 1
    mk, w = conv.multipliers()
    exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
    assert _certificate_close(normalization, exact, bound, 1.0)


def _svd_rows(monkeypatch):
    """Count the matrices that go through ``spectral_norm_exact`` in ``fourier``."""
    rows = []

    def counted(w: torch.Tensor) -> torch.Tensor:
        rows.append(w.shape[0])
        return spectral_norm_exact(w)

    monkeypatch.setattr(fourier, "spectral_norm_exact", counted)
    return rows


@pytest.mark.parametrize("normalization", sorted(SCALAR_NORMALIZATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_remembered_norms_give_the_certificate_of_a_fresh_layer(normalization, dtype, monkeypatch):
    # After a weight change the layer SVDs only the multipliers whose norms may matter
    # (drifted bounds): its eval weights and certificate must be those of a layer that never saw
    # the old weights, small steps must skip most SVDs, and a multiplier pushed from the middle
    # of the pack to the top must be found.
    torch.manual_seed(0)
    conv = LipSpectralConv(6, 6, (4, 3), k=1.5, skip=True, normalization=normalization)
    conv = conv.to(dtype).eval()
    with torch.no_grad():  # norms ~1.2 +- 0.1: below k = 1.5 until "promote" lifts one above
        conv.weight.normal_(0.0, 0.05)
    monkeypatch.setattr(fourier, "SVD_ALL_WORK", 0)  # the passes that skip SVDs, on a small layer
    rows = _svd_rows(monkeypatch)
    conv.lipschitz_bound()
    n_all = math.prod(kept_mode_shape((4, 3))) + 1
    # a first call, no memory: "global" SVDs the likeliest largest and near-ties only (the rest
    # proven below it by Cholesky tests), "clip" none (proven bounds)
    if normalization == "global":
        assert rows and sum(rows) < n_all // 2
    else:
        assert rows == []
    gen = torch.Generator().manual_seed(5)
    for change in ("small", "small", "promote", "small", "large"):
        rows.clear()
        with torch.no_grad():
            if change == "small":
                step = torch.randn(conv.weight.shape, generator=gen, dtype=dtype)
                conv.weight.data.add_(1e-5 * step)
            elif change == "promote":  # the multiplier of median norm becomes the largest
                norms = spectral_norm_exact(conv._stacked(conv._symmetric_spectral()))[:-1]
                median = int(norms.argsort()[len(norms) // 2])
                index = torch.unravel_index(torch.tensor(median), conv.kept_shape)
                conv.weight.data[tuple(int(i) for i in index)] *= 8.0
            else:
                conv.weight.data.copy_(torch.randn(conv.weight.shape, generator=gen, dtype=dtype))
        bound = conv.lipschitz_bound()
        fresh = LipSpectralConv(6, 6, (4, 3), k=1.5, skip=True, normalization=normalization)
        fresh = fresh.to(dtype).eval()
        fresh.load_state_dict(conv.state_dict())
        assert bound == pytest.approx(fresh.lipschitz_bound(), rel=1e-12, abs=0.0)
        for mine, theirs in zip(conv.effective_weights(), fresh.effective_weights(), strict=True):
            assert torch.equal(mine, theirs)
        mk, w = conv.multipliers()
        norms = spectral_norm_exact(mk)
        exact = max(float(norms.max()), float(spectral_norm_exact(w)))
        assert _certificate_close(normalization, exact, bound, 1.5)
        if change == "promote":
            assert float(norms[median]) == float(norms.max())  # (or tied with its mirror)
        if change == "small":
            assert sum(rows[:-1]) < n_all // 2  # most multipliers skipped (fresh's SVD is last)


@pytest.mark.parametrize("modes", [(6,), (3, 2), (2, 3, 2)])
@pytest.mark.parametrize("k", [0.9, 50.0])  # most multipliers clipped / none clipped
def test_clip_training_weights_node_equals_the_generic_path(modes, k, monkeypatch):
    """The one-node clip normalization (hand-written backward) is the generic autograd path."""
    import liponet.layers.fourier as fourier

    torch.manual_seed(0)
    conv = LipSpectralConv(5, 4, modes, k=k, skip=True, normalization="clip").double().train()
    with torch.no_grad():
        conv.weight.mul_(3.0)
    u0 = conv.u.clone()
    r, w = conv._train_weights()
    g_r, g_w = torch.randn_like(r), torch.randn_like(w)
    loss = (r.conj() * g_r).real.sum() + (w * g_w).sum()
    grads = torch.autograd.grad(loss, [conv.weight, conv.skip])
    assert conv.u.ne(u0).any()  # the power iteration advanced its vectors
    conv.u.copy_(u0)
    monkeypatch.setitem(fourier.NORMALIZATIONS, "clip_generic", fourier._clip)
    conv.normalization = "clip_generic"  # the generic path: autograd through every op
    r_ref, w_ref = conv._train_weights()
    loss_ref = (r_ref.conj() * g_r).real.sum() + (w_ref * g_w).sum()
    grads_ref = torch.autograd.grad(loss_ref, [conv.weight, conv.skip])
    torch.testing.assert_close(r, r_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(w, w_ref, rtol=0, atol=1e-13)
    for got, ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)
    # and against finite differences (the power vectors held fixed)
    conv.normalization = "clip"

    u = torch.view_as_complex(u0).clone()

    def weights(weight, skip):
        m = conv._stacked(conv._symmetric_spectral(weight.detach()), skip.detach())
        return fourier._ClipTrainWeights.apply(weight, skip, u, m, k, len(modes))

    params = (conv.weight.detach().clone().requires_grad_(), conv.skip.detach().clone())
    assert torch.autograd.gradcheck(weights, (params[0], params[1].requires_grad_()))


@pytest.mark.parametrize("normalization", sorted(SCALAR_NORMALIZATIONS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_certificate_after_optimizer_steps_is_a_fresh_layers_and_holds(
    normalization, dtype, monkeypatch
):
    # After Adam's steps the layer moves its bounds by Weyl's inequality, proves the contenders
    # below the largest by Cholesky tests (float32, then float64) and SVDs only near-ties.
    # After every step: the eval weights and certificate of a layer that never saw the old
    # weights, the exact norm of what the forward applies below the certificate, and (float64)
    # exact Jacobians and attacks below it.
    import liponet.layers.fourier as fourier

    tests = []
    cholesky = fourier.cholesky_norm_upper

    def counted(x: torch.Tensor, level: torch.Tensor, *args: float | None):
        tests.append(x.shape[0])
        return cholesky(x, level, *args)

    monkeypatch.setattr(fourier, "cholesky_norm_upper", counted)
    run = fourier._GramTest.run

    def counted_run(self, rows, level2, rhs=None, need_factor=True):
        tests.append(len(level2))
        return run(self, rows, level2, rhs, need_factor)

    monkeypatch.setattr(fourier._GramTest, "run", counted_run)
    monkeypatch.setattr(fourier, "SVD_ALL_WORK", 0)  # the passes that skip SVDs, on a small layer
    rows = _svd_rows(monkeypatch)
    torch.manual_seed(1)
    k = 1.5  # above every norm: "clip" scales nothing, "global" everything
    make = lambda: LipSpectralConv(6, 6, (4, 3), k=k, skip=True, normalization=normalization)  # noqa: E731
    conv = make().to(dtype)
    with torch.no_grad():  # M_k = W + R_k with W orthogonal: norms within ~0.1 of each other
        conv.weight.mul_(0.2)
    x = torch.randn(2, 6, 8, 6, dtype=dtype)
    target = torch.randn(2, 6, 8, 6, dtype=dtype)
    opt = torch.optim.Adam(conv.parameters(), lr=1e-3)
    conv.eval()
    conv.lipschitz_bound()
    n_all = math.prod(kept_mode_shape((4, 3))) + 1
    svds = 0
    for _ in range(5):
        conv.train()
        loss = (conv(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        conv.eval()
        rows.clear()
        bound = conv.lipschitz_bound()
        svds += sum(rows)
        fresh = make().to(dtype).eval()
        fresh.load_state_dict(conv.state_dict())
        assert bound == pytest.approx(fresh.lipschitz_bound(), rel=1e-12, abs=0.0)
        for mine, theirs in zip(conv.effective_weights(), fresh.effective_weights(), strict=True):
            assert torch.equal(mine, theirs)
        mk, w = conv.multipliers()
        exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
        assert _certificate_close(normalization, exact, bound, k)
        assert bound <= k * (1 + 1e-9)
    if dtype == torch.float64:  # the drifted layer's certificate against its exact Jacobians
        check_jacobian(conv, x[:1], "function")
        check_attack(conv, x[:1], "function", n_steps=5)
    if normalization == "global":
        assert tests  # multipliers in contention: proven below the largest by Cholesky tests
    assert svds < 5 * n_all // 2  # most multipliers never needed an SVD


@pytest.mark.parametrize("modes", [(6,), (3, 2), (2, 3, 2)])
@pytest.mark.parametrize("k", [0.9, 50.0])  # most multipliers clipped / none clipped
def test_stacked_clip_weights_equal_each_layers_own(modes, k):
    """``clip_train_weights`` on a stack of layers: each layer's weights, gradients, vectors."""
    import liponet.layers.fourier as fourier

    torch.manual_seed(0)
    convs = [
        LipSpectralConv(5, 4, modes, k=k, skip=True, normalization="clip").double().train()
        for _ in range(3)
    ]
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(3.0)
    assert fourier.clip_trains_together(convs)
    assert not fourier.clip_trains_together([*convs, LipSpectralConv(5, 4, modes, k=k)])
    u0 = [conv.u.clone() for conv in convs]
    params = [p for conv in convs for p in (conv.weight, conv.skip)]
    r, w = fourier.clip_train_weights(convs)  # (*kept, B, out, in), (B, out, in)
    d = len(modes)
    assert r.shape == (*convs[0].kept_shape, 3, 4, 5) and w.shape == (3, 4, 5)
    g_r, g_w = torch.randn_like(r), torch.randn_like(w)
    loss = (r.conj() * g_r).real.sum() + (w * g_w).sum()
    grads = torch.autograd.grad(loss, params)
    u1 = [conv.u.clone() for conv in convs]
    loss_ref = 0.0
    for j, (conv, u) in enumerate(zip(convs, u0, strict=True)):
        conv.u.copy_(u)
        r_j, w_j = conv._train_weights()
        torch.testing.assert_close(r.select(d, j), r_j, rtol=0, atol=1e-13)
        torch.testing.assert_close(w[j], w_j, rtol=0, atol=1e-13)
        torch.testing.assert_close(conv.u, u1[j], rtol=0, atol=1e-13)
        loss_ref = loss_ref + (r_j.conj() * g_r.select(d, j)).real.sum()
        loss_ref = loss_ref + (w_j * g_w[j]).sum()
    grads_ref = torch.autograd.grad(loss_ref, params)
    for got, ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)

    # the stacked node against finite differences (the power vectors held fixed)
    u = torch.view_as_complex(torch.stack(u1, dim=1)).clone()

    def weights(weight, skip):
        r = fourier.hermitian_symmetrize(torch.view_as_complex(weight.detach()), d)
        r = r.reshape(-1, *r.shape[d:])
        w = skip.detach().to(r.dtype)
        m = torch.cat([r + w, w.unsqueeze(0)], 0)
        return fourier._ClipTrainWeights.apply(weight, skip, u, m, k * (1 - 2**-20), d)

    weight = torch.stack([c.weight.detach() for c in convs], dim=d).requires_grad_()
    skip = torch.stack([c.skip.detach() for c in convs]).requires_grad_()
    assert torch.autograd.gradcheck(weights, (weight, skip))


def _global_calls(dtype, out_channels, monkeypatch):
    """A ``"global"`` layer (the Cholesky passes: ``SVD_ALL_WORK = 0``) through a first call and
    weight changes (small steps; one multiplier promoted from the middle of the pack to the
    top), each followed by a fresh layer with the same weights certified by the SVD of every
    multiplier: ``(bound, eval weights, exact norm, the fresh layer's bound and weights)``."""
    torch.manual_seed(2)
    make = lambda: LipSpectralConv(6, out_channels, (4, 3), k=1.0, skip=True).to(dtype).eval()  # noqa: E731
    conv = make()
    with torch.no_grad():  # norms ~1 +- 0.1: many contenders near the largest
        conv.weight.normal_(0.0, 0.05)
    gen = torch.Generator().manual_seed(3)
    results = []
    for change in ("none", "small", "promote", "small", "small"):
        with torch.no_grad():
            if change == "small":
                step = torch.randn(conv.weight.shape, generator=gen, dtype=dtype)
                conv.weight.data.add_(3e-3 * step)
            elif change == "promote":
                norms = spectral_norm_exact(conv._stacked(conv._symmetric_spectral()))[:-1]
                median = int(norms.argsort()[len(norms) // 2])
                index = torch.unravel_index(torch.tensor(median), conv.kept_shape)
                conv.weight.data[tuple(int(i) for i in index)] *= 4.0
        monkeypatch.setattr(fourier, "SVD_ALL_WORK", 0)
        bound = conv.lipschitz_bound()
        weights = [t.clone() for t in conv.effective_weights()]
        mk, w = conv.multipliers()
        exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
        monkeypatch.setattr(fourier, "SVD_ALL_WORK", 1 << 62)
        fresh = make()
        fresh.load_state_dict(conv.state_dict())
        results.append((bound, weights, exact, fresh.lipschitz_bound(), fresh.effective_weights()))
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("out_channels", [6, 4, 8])  # M^H M on real parts, M M^H, M^H M
def test_global_cholesky_passes_give_the_eval_weights_of_an_svd_of_every_multiplier(
    dtype, out_channels, monkeypatch
):
    # The first call (no memory) and the calls after weight changes prove most multipliers
    # below the largest by Cholesky tests: the eval weights must be bit for bit those of the
    # SVD of every multiplier, the certificate its number and within 1e-6 above the exact norm
    # of what the forward applies.
    tests = []
    run = fourier._GramTest.run

    def counted(self, rows, level2, rhs=None, need_factor=True):
        tests.append(len(level2))
        return run(self, rows, level2, rhs, need_factor)

    monkeypatch.setattr(fourier._GramTest, "run", counted)
    for bound, weights, exact, svd_bound, svd_weights in _global_calls(
        dtype, out_channels, monkeypatch
    ):
        assert exact <= bound <= exact * (1 + 1e-6)
        assert bound == pytest.approx(svd_bound, rel=1e-12, abs=0.0)
        for mine, theirs in zip(weights, svd_weights, strict=True):
            assert torch.equal(mine, theirs)
    assert tests  # the Cholesky passes ran


def test_global_certificate_fails_with_levels_taken_unproven(monkeypatch):
    # The unsound variant: each level the estimates choose accepted as a bound without its
    # Cholesky factorization (as a power-iteration estimate would be). The promoted multiplier
    # is then taken to be below the old largest, and the certificate falls below the exact norm
    # of what the forward applies: the check above catches it.
    def unproven(self, rows, level2, rhs=None, need_factor=True):
        return level2.sqrt(), None

    monkeypatch.setattr(fourier._GramTest, "run", unproven)
    results = _global_calls(torch.float64, 6, monkeypatch)
    assert any(exact > bound * (1 + 1e-9) for bound, _, exact, _, _ in results)


def _one_svd_calls(dtype, out_channels, monkeypatch, svds=None):
    """A small ``"global"`` layer on the one-SVD pass (``ONE_SVD_WORK = 0``) through a first
    call and weight changes, each followed by a fresh layer with the same weights certified by
    the SVD of every multiplier: ``(bound, eval weights, exact norm, fresh bound, weights)``.
    ``svds``: the list of :func:`_svd_rows`, replaced by the SVD'd rows of each call of the
    layer, then of the fresh one."""
    torch.manual_seed(4)
    make = lambda: LipSpectralConv(6, out_channels, (4, 3), k=1.0, skip=True).to(dtype).eval()  # noqa: E731
    conv = make()
    with torch.no_grad():  # norms ~1 +- 0.1: many contenders near the largest
        conv.weight.normal_(0.0, 0.05)
    gen = torch.Generator().manual_seed(3)
    results = []
    per_call = []
    for change in ("none", "small", "promote", "small"):
        with torch.no_grad():
            if change == "small":
                step = torch.randn(conv.weight.shape, generator=gen, dtype=dtype)
                conv.weight.data.add_(3e-3 * step)
            elif change == "promote":  # the last call's largest is no longer the largest
                norms = spectral_norm_exact(conv._stacked(conv._symmetric_spectral()))[:-1]
                median = int(norms.argsort()[len(norms) // 2])
                index = torch.unravel_index(torch.tensor(median), conv.kept_shape)
                conv.weight.data[tuple(int(i) for i in index)] *= 4.0
        monkeypatch.setattr(fourier, "ONE_SVD_WORK", 0)
        bound = conv.lipschitz_bound()
        if svds is not None:
            per_call.append(sum(svds))
            svds.clear()
        weights = [t.clone() for t in conv.effective_weights()]
        mk, w = conv.multipliers()
        exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
        monkeypatch.setattr(fourier, "ONE_SVD_WORK", 1 << 62)
        fresh = make()
        fresh.load_state_dict(conv.state_dict())
        results.append((bound, weights, exact, fresh.lipschitz_bound(), fresh.effective_weights()))
        if svds is not None:
            per_call.append(sum(svds))
            svds.clear()
    if svds is not None:
        svds[:] = per_call
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("out_channels", [6, 4, 8])  # M^H M on real parts, M M^H, M^H M
def test_one_svd_pass_gives_the_eval_weights_and_certificate_of_every_svd(
    dtype, out_channels, monkeypatch
):
    # Small layers SVD the likeliest largest multiplier and test the others once below it:
    # the eval weights and the certificate must be bit for bit those of the SVD of every
    # multiplier (first call, small steps, and a multiplier promoted past the remembered
    # largest), the certificate within 1e-6 above the exact norm of what the forward applies.
    svds = _svd_rows(monkeypatch)
    results = _one_svd_calls(dtype, out_channels, monkeypatch, svds)
    for bound, weights, exact, svd_bound, svd_weights in results:
        assert exact <= bound <= exact * (1 + 1e-6)
        assert bound == svd_bound
        for mine, theirs in zip(weights, svd_weights, strict=True):
            assert torch.equal(mine, theirs)
    # each call of the one-SVD pass SVD'd fewer multipliers than the fresh layer (all of them)
    n_all = math.prod(kept_mode_shape((4, 3))) + 1
    assert svds[1::2] == [n_all] * len(results)
    assert all(rows < n_all // 2 for rows in svds[0::2]), svds


def test_one_svd_pass_fails_with_levels_taken_unproven(monkeypatch):
    # The unsound variant: the cap accepted as every other multiplier's bound without its
    # Cholesky factorization (as a power-iteration estimate would be): the promoted
    # multiplier is taken to lie below the remembered largest, and the certificate falls
    # below the exact norm of what the forward applies.
    def unproven(self, rows, level2, rhs=None):
        return level2.sqrt(), None

    monkeypatch.setattr(fourier._GramTest, "run", unproven)
    results = _one_svd_calls(torch.float64, 6, monkeypatch)
    assert any(exact > bound * (1 + 1e-9) for bound, _, exact, _, _ in results)


def test_one_svd_pass_takes_the_layers_between_its_thresholds():
    assert fourier.ONE_SVD_WORK < fourier.SVD_ALL_WORK
    width64 = torch.zeros(12, 64, 64, dtype=torch.complex64)  # LipFNO width 64, 12 modes
    width32 = torch.zeros(12, 32, 32, dtype=torch.complex64)
    assert fourier._svd_all(width64) and fourier._one_svd(width64)
    assert fourier._svd_all(width32) and not fourier._one_svd(width32)


@pytest.mark.parametrize("normalization", sorted(SCALAR_NORMALIZATIONS))
@pytest.mark.parametrize("remembered", [False, True])
def test_non_finite_weights_have_no_certificate(normalization, remembered):
    conv = LipSpectralConv(3, 3, (4, 3), skip=True, normalization=normalization).eval()
    if remembered:  # the drift path, from a certified state
        conv.lipschitz_bound()
    with torch.no_grad():
        conv.weight[1, 0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        conv.lipschitz_bound()


@pytest.mark.parametrize("normalization", sorted(NORM_FREE))
@pytest.mark.parametrize("shape", [(8, 8), (6, 8), (8, 6)])
def test_isometry_certificate_is_tight_without_an_svd(normalization, shape, monkeypatch):
    # float32 eval weights: k times isometries up to rounding; the Gram bound certifies them
    # to ~1e-7 of the exact SVD norms, with no SVD at all.
    conv = LipSpectralConv(*shape, (4, 3), k=2.0, skip=True, normalization=normalization)
    conv = _randomize(conv, seed=1).eval()
    calls = []
    svd = fourier.spectral_norm_upper
    monkeypatch.setattr(fourier, "spectral_norm_upper", lambda w: calls.append(1) or svd(w))
    bound = conv.lipschitz_bound()
    assert not calls
    mk, w = conv.multipliers()
    exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
    assert exact <= bound <= exact * (1 + 1e-6)
    assert bound <= 2.0  # TARGET_MARGIN covers the float32 rounding
    singular = torch.linalg.svdvals(mk)  # every singular value is k up to rounding
    torch.testing.assert_close(singular, torch.full_like(singular, 2.0), rtol=2e-6, atol=0.0)


def test_isometry_bound_falls_back_to_the_svd_far_from_isometries():
    gen = torch.Generator().manual_seed(2)
    mk = torch.randn(6, 5, 4, generator=gen, dtype=torch.complex128)
    w = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    bound = LipSpectralConv._isometry_bound(mk, w)
    exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
    assert exact <= bound <= exact * (1 + 1e-9)
    with pytest.raises(ValueError, match="NaN or inf"):
        LipSpectralConv._isometry_bound(mk * float("nan"), w)


@pytest.mark.parametrize("normalization", sorted(NORM_FREE))
@pytest.mark.parametrize(("modes", "skip"), [((6,), True), ((4, 3), True), ((5, 4, 3), False)])
def test_isometry_certificate_from_the_eval_weights_is_the_full_one_bit_for_bit(
    normalization, modes, skip, monkeypatch
):
    # lipschitz_bound() bounds W' + R'_k chunk by chunk, one of each conjugate pair: the same
    # float as the bound of every multiplier of multipliers(), and above the exact SVD norms.
    # (The Gram path: "orthogonal" and "polar" take it without POLISHED_EVAL.)
    monkeypatch.setattr(fourier, "POLISHED_EVAL", {})
    conv = LipSpectralConv(6, 6, modes, k=1.5, skip=skip, normalization=normalization)
    conv = _randomize(conv, seed=3).eval()
    bound = conv.lipschitz_bound()
    mk, w = conv.multipliers()
    assert bound == LipSpectralConv._isometry_bound(mk, w)
    exact = float(spectral_norm_exact(mk).max())
    exact = exact if w is None else max(exact, float(spectral_norm_exact(w)))
    assert exact <= bound <= exact * (1 + 1e-6)


def _exact_multiplier_norm(conv):
    mk, w = conv.multipliers()
    exact = float(spectral_norm_exact(mk).max())
    return exact if w is None else max(exact, float(spectral_norm_exact(w)))


def _same_bits(a, b):
    if a is None or b is None:
        return a is None and b is None
    real = torch.view_as_real if a.is_complex() else (lambda t: t)
    return a.dtype == b.dtype and torch.equal(real(a), real(b))


@pytest.mark.parametrize("normalization", sorted(fourier.POLISHED_EVAL))
@pytest.mark.parametrize(("modes", "skip"), [((6,), True), ((4, 3), True), ((5, 4, 3), False)])
@pytest.mark.parametrize("shape", [(6, 6), (4, 6), (6, 4)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_polished_certificate_keeps_the_eval_weights_and_bounds_them(
    normalization, modes, skip, shape, dtype, monkeypatch
):
    # The certificate comes with the eval weights (polished_isometry_bound, then the distance
    # of each W' + R'_k to its polished multiplier): no Gram product, no SVD; above the exact
    # SVD norms, within 1e-6 of them, below k; the eval weights those of the plain path.
    conv = LipSpectralConv(*shape, modes, k=1.5, skip=skip, normalization=normalization)
    conv = _randomize(conv.to(dtype), seed=3).eval()
    calls = []
    for name in ("isometry_norm_upper", "spectral_norm_upper"):
        fn = getattr(fourier, name)
        monkeypatch.setattr(fourier, name, lambda w, fn=fn: calls.append(1) or fn(w))
    bound = conv.lipschitz_bound()
    assert not calls
    exact = _exact_multiplier_norm(conv)
    assert exact <= bound <= exact * (1 + 1e-6)
    assert bound <= 1.5
    monkeypatch.setattr(fourier, "POLISHED_EVAL", {})  # the plain path: normalize, then split
    plain = LipSpectralConv(*shape, modes, k=1.5, skip=skip, normalization=normalization)
    plain = plain.to(dtype)
    plain.load_state_dict(conv.state_dict())
    plain.eval()
    for a, b in zip(plain.effective_weights(), conv.effective_weights(), strict=True):
        assert _same_bits(a, b)


def test_polished_certificate_needs_the_rounding_terms():
    # The unsound variant: the eval weights' norms taken as the target k (1 - 2^-20), what the
    # Newton-Schulz step gives in exact arithmetic: the float32 eval weights exceed it.
    conv = LipSpectralConv(16, 16, (4, 3), k=1.0, skip=True, normalization="orthogonal")
    conv = _randomize(conv, seed=4).eval()
    exact = _exact_multiplier_norm(conv)
    assert exact > conv._target() * (1 + 1e-9)
    assert exact <= conv.lipschitz_bound() <= 1.0


def test_polished_certificate_falls_back_where_no_bound_is_proven(monkeypatch):
    # Multipliers whose polish proves nothing (norm bound inf: ||X|| <= 2 unproven) get the
    # Gram bound (or an SVD) instead; the certificate stays above the exact norms.
    polished = fourier.POLISHED_EVAL["orthogonal"]

    def partial(m, k):
        out, norms = polished(m, k)
        norms[::2] = math.inf
        return out, norms

    monkeypatch.setitem(fourier.POLISHED_EVAL, "orthogonal", partial)
    calls = []
    gram = fourier.isometry_norm_upper
    monkeypatch.setattr(fourier, "isometry_norm_upper", lambda a: calls.append(len(a)) or gram(a))
    conv = LipSpectralConv(6, 6, (4, 3), k=1.5, skip=True, normalization="orthogonal")
    conv = _randomize(conv, seed=5).eval()
    bound = conv.lipschitz_bound()
    assert calls and sum(calls) < len(conv.multipliers()[0])  # only the unproven ones
    exact = _exact_multiplier_norm(conv)
    assert exact <= bound <= exact * (1 + 1e-6)


@pytest.mark.parametrize("modes", [(6,), (4, 3), (5, 4, 3), (3, 4, 2)])
def test_pair_rows_cover_every_multiplier_up_to_conjugation(modes):
    # Every multiplier is bounded itself or is the exact conjugate of one that is; an unsound
    # choice of rows (every other one) leaves multipliers with no bounded partner.
    conv = LipSpectralConv(3, 3, modes, k=1.0, skip=True, normalization="cayley")
    conv = _randomize(conv, seed=4).eval()
    mk, _w = conv.multipliers()

    def covered(rows):
        kept = mk[rows]
        return all(
            bool(((mk[j] == kept).all((-2, -1)) | (mk[j].conj() == kept).all((-2, -1))).any())
            for j in range(len(mk))
        )

    rows = conv._pair_rows()[0][:-1]  # the multipliers of the K kept modes
    assert len(rows) < len(mk) or len(modes) == 1
    assert covered(rows)
    assert not covered(rows[::2])


def test_orthogonal_training_weights_follow_the_eval_weights_in_float32():
    # Training (float32 eigh, gradient) and eval (the same, then a float64 polishing step)
    # apply the same multipliers up to float32 rounding.
    conv = _randomize(LipSpectralConv(8, 8, (5, 4), skip=True, normalization="orthogonal"))
    r, w = conv.train()._train_weights()
    r_eval, w_eval = conv.eval().effective_weights()
    torch.testing.assert_close(r.detach(), r_eval, rtol=0.0, atol=1e-5)
    torch.testing.assert_close(w.detach(), w_eval, rtol=0.0, atol=1e-5)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 3), (2, 3), (3, 2)])
@pytest.mark.parametrize("skip", [True, False])
def test_cayley_forward_equals_an_explicit_per_mode_reference(dim, shape, skip):
    # Per mode, one matrix at a time: M_k = W + R_k (R Hermitian-symmetrized on the k_d = 0
    # slice), A_k = M_k - M_k^H, Q_k = k (I + A_k)^{-1} (I - A_k) by a square solve (tall:
    # the first columns of the Cayley transform of [[T - T^H, -C^H], [C, 0]]; wide through
    # M^H); W' = k Cayley(W) and R'_k = Q_k - W'. The layer must apply exactly these.
    modes, grid, _ = SHAPES[dim]
    out_c, in_c = shape
    conv = LipSpectralConv(in_c, out_c, modes, k=1.7, skip=skip, normalization="cayley")
    conv = _randomize(conv.double(), seed=3).eval()
    target = 1.7 * TARGET_MARGIN

    def cayley(x):
        wide = x.shape[0] < x.shape[1]
        x = x.mH if wide else x
        m, n = x.shape
        a = torch.zeros(m, m, dtype=torch.complex128)
        a[:n, :n] = x[:n] - x[:n].mH
        a[n:, :n], a[:n, n:] = x[n:], -x[n:].mH
        eye = torch.eye(m, dtype=torch.complex128)
        q = torch.linalg.solve(eye + a, eye - a)[:, :n]
        return target * (q.mH if wide else q)

    r = conv._symmetric_spectral().detach().reshape(-1, out_c, in_c)
    w = None if conv.skip is None else conv.skip.detach().to(torch.complex128)
    ref = torch.stack([cayley(rk if w is None else rk + w) for rk in r])
    w_ref = None if w is None else cayley(w)
    assert w_ref is None or float(w_ref.imag.abs().max()) == 0.0  # a real skip stays real
    mk, w_eval = conv.multipliers()
    torch.testing.assert_close(mk, ref, rtol=0.0, atol=1e-12)
    if w_ref is not None:
        torch.testing.assert_close(w_eval, w_ref.real, rtol=0.0, atol=1e-12)
    x = torch.randn(2, in_c, *grid, dtype=torch.float64)
    w_ref = torch.zeros(out_c, in_c, dtype=torch.float64) if w_ref is None else w_ref.real
    expected = _reference_forward(x, ref, w_ref, modes) + conv.bias.detach().reshape(-1, *[1] * dim)
    torch.testing.assert_close(conv(x), expected, rtol=0.0, atol=1e-12)
    conv.train()  # training applies the same multipliers (autograd path, float64 here)
    torch.testing.assert_close(conv(x), expected, rtol=0.0, atol=1e-12)


def test_cayley_starts_at_the_identity():
    conv = LipSpectralConv(3, 5, (4, 3), skip=True, normalization="cayley", k=2.0)
    r, w = (t.detach() for t in conv._train_weights())
    target = 2.0 * TARGET_MARGIN
    eye = torch.eye(5, 3)
    torch.testing.assert_close(w, target * eye, rtol=0.0, atol=0.0)
    assert float(r.abs().max()) == 0.0  # M'_k = R'_k + W' = k I at every mode


def test_cayley_training_weights_are_unitary_to_1e6_from_a_random_start():
    # float32, width 32, the 2-D benchmark's modes, parameters drawn as the other normalizations
    # start (W orthogonal, R_k Gaussian: a skew part of norm ~3): every M'_k / k (and W' / k)
    # within 1e-6 of unitary entrywise (the Gram formed in float64), and close to the float64
    # eval weights.
    torch.manual_seed(0)
    conv = LipSpectralConv(32, 32, (12, 12), skip=True, normalization="cayley").train()
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.5 / math.sqrt(2 * 32))
        torch.nn.init.orthogonal_(conv.skip)
    r, w = conv._train_weights()
    m = conv._stacked(r.detach(), w.detach()).to(torch.complex128) / (TARGET_MARGIN)
    eye = torch.eye(32, dtype=torch.complex128).expand_as(m)
    assert float((m.mH @ m - eye).abs().max()) < 1e-6
    r_eval, w_eval = conv.eval().effective_weights()
    torch.testing.assert_close(r.detach(), r_eval, rtol=0.0, atol=2e-6)
    torch.testing.assert_close(w.detach(), w_eval, rtol=0.0, atol=2e-6)


def _adam_trained(conv, x, steps=5, seed=0):
    """``conv`` after a few Adam steps (lr 1e-2) on a random regression target."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.randn(conv(x).shape, generator=gen, dtype=x.dtype)
    opt = torch.optim.Adam(conv.parameters(), lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        (conv(x) - target).square().mean().backward()
        opt.step()
    return conv


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [1.0, 2.5])
@pytest.mark.parametrize("shape", [(3, 3), (2, 3)])
def test_cayley_certificate_after_adam_steps(dim, k, shape):
    modes, grid, _ = SHAPES[dim]
    x = torch.randn(2, shape[1], *grid)

    def make():
        torch.manual_seed(0)
        conv = LipSpectralConv(shape[1], shape[0], modes, k=k, skip=True, normalization="cayley")
        return _adam_trained(_randomize(conv, seed=1).train(), x)

    check_all(make, x, norm="function")
    conv = make().double().eval()
    bound = conv.lipschitz_bound()
    assert k * (1 - 1e-5) <= bound <= k  # k times isometries: the bound is k, up to rounding
    assert _exact_norm(conv, grid) == pytest.approx(bound, rel=1e-6)


@pytest.mark.parametrize("modes", [(4,), (3, 3)])
def test_clip_training_gradients_are_finite_with_a_zeroed_skip(modes):
    """A zero multiplier (here the skip) is never clipped: its term of the backward is 0, not
    0 / 0 (the fused clip node divided by its norm estimate and returned NaN gradients)."""
    torch.manual_seed(0)
    conv = LipSpectralConv(3, 3, modes, skip=True, normalization="clip").train()
    with torch.no_grad():
        conv.skip.zero_()
    reference = LipSpectralConv(3, 3, modes, skip=True, normalization="clip").train()
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, *([8] * len(modes)))
    conv(x).square().sum().backward()
    assert torch.isfinite(conv.weight.grad).all() and torch.isfinite(conv.skip.grad).all()
    # the same gradients as a tiny nonzero skip's, to first order in its size
    with torch.no_grad():
        reference.skip.fill_(1e-30)
    reference(x).square().sum().backward()
    torch.testing.assert_close(conv.weight.grad, reference.weight.grad)
    torch.testing.assert_close(conv.skip.grad, reference.skip.grad)


@pytest.mark.parametrize("skip", [True, False])
def test_global_gram_parts_written_chunk_by_chunk_are_the_multipliers_parts(skip):
    # The global contenders' parts [Re M_k; Im M_k], written chunk by chunk for any rows
    # (the skip W last where it contends): those of _multipliers_in, bit for bit.
    conv = _randomize(LipSpectralConv(6, 6, (7, 5), skip=skip, normalization="global"), seed=4)
    r = conv._symmetric_spectral(conv.weight.detach()).reshape(-1, 6, 6)
    w = None if conv.skip is None else conv.skip.detach()
    n = r.shape[0]
    sel = torch.tensor([0, 3, 4, 9, 20, 33, n - 1] + ([n] if skip else []))
    x, _ = conv._multipliers_in(r, w, sel)
    want = torch.view_as_real(x).permute(0, 3, 1, 2).reshape(len(sel), 12, 6)
    write = conv._gram_parts_writer(r, w, sel)
    for step in (1, 3, len(sel)):
        got = torch.full((len(sel), 12, 6), math.nan)
        for a in range(0, len(sel), step):
            b = min(a + step, len(sel))
            write(a, b, got[a:b])
        assert torch.equal(got, want)


def _lean_calls(dtype, out_channels, modes, skip, drift, monkeypatch):
    """A small ``"global"`` layer through Adam steps and a multiplier promoted past the
    remembered largest, certified by the lean pass (:meth:`_small_global_state`, with
    :meth:`_small_norms` if ``drift``, else an SVD of every multiplier) and, after each
    change, a fresh layer with the same weights by the general path (``LEAN_SMALL_GLOBAL = False``):
    ``(bound, eval weights, exact norm, the general bound, its weights)``."""
    torch.manual_seed(5)
    make = lambda: LipSpectralConv(6, out_channels, modes, k=1.0, skip=skip).to(dtype)  # noqa: E731
    conv = make()
    with torch.no_grad():  # norms close together: near-ties at the cap
        conv.weight.normal_(0.0, 0.05)
    opt = torch.optim.Adam(conv.parameters(), lr=3e-3)
    x = torch.randn(4, 6, 2 * modes[0] + 1, *(2 * m for m in modes[1:]), dtype=dtype)
    monkeypatch.setattr(fourier, "LEAN_DRIFT", drift)
    results = []
    for change in ("none", "step", "step", "promote", "step"):
        conv.train()
        if change == "step":
            loss = conv(x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        elif change == "promote":  # the remembered largest is no longer the largest
            with torch.no_grad():
                norms = spectral_norm_exact(conv._stacked(conv._symmetric_spectral()))
                median = int(norms[: math.prod(conv.kept_shape)].argsort()[len(norms) // 2])
                index = torch.unravel_index(torch.tensor(median), conv.kept_shape)
                conv.weight.data[tuple(int(i) for i in index)] *= 3.0
        conv.eval()
        monkeypatch.setattr(fourier, "LEAN_SMALL_GLOBAL", True)
        bound = conv.lipschitz_bound()
        weights = [None if t is None else t.clone() for t in conv.effective_weights()]
        mk, w = conv.multipliers()
        exact = float(spectral_norm_exact(mk).max())
        if w is not None:
            exact = max(exact, float(spectral_norm_exact(w)))
        monkeypatch.setattr(fourier, "LEAN_SMALL_GLOBAL", False)
        general = make()
        general.load_state_dict(conv.state_dict())
        general.eval()
        results.append(
            (bound, weights, exact, general.lipschitz_bound(), general.effective_weights())
        )
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("out_channels", [6, 4, 8])
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("drift", [True, False])  # _small_norms, or an SVD of every one
def test_lean_small_global_pass_is_the_general_path_bit_for_bit(
    dtype, out_channels, skip, drift, monkeypatch
):
    # The lean pass of small "global" layers: eval weights bit for bit, the same certificate
    # (float equality), within 1e-6 above the exact norm of what the forward applies, after
    # optimizer steps and a promoted multiplier (the remembered largest wrong).
    results = _lean_calls(dtype, out_channels, (4, 3), skip, drift, monkeypatch)
    for bound, weights, exact, general_bound, general_weights in results:
        assert exact <= bound <= exact * (1 + 1e-6)
        assert bound == general_bound
        for mine, theirs in zip(weights, general_weights, strict=True):
            assert (mine is None and theirs is None) or torch.equal(mine, theirs)


def test_lean_small_norms_fail_with_bounds_not_moved(monkeypatch):
    # The unsound variant: the last call's bounds kept without the distance the weights moved
    # (as if they had not changed): the promoted multiplier is taken to lie below the
    # remembered largest, and the certificate falls below the exact norm of what the forward
    # applies.
    monkeypatch.setattr(fourier, "distance_upper", lambda a, b: torch.zeros(a.shape[:-2]).double())
    results = _lean_calls(torch.float64, 6, (4, 3), True, True, monkeypatch)
    assert any(exact > bound * (1 + 1e-9) for bound, _, exact, _, _ in results)


@pytest.mark.parametrize("remembered", [False, True])
def test_lean_small_global_pass_refuses_non_finite_weights(remembered):
    conv = LipSpectralConv(3, 3, (4,), skip=True).eval()
    if remembered:  # the drift path, from a certified state
        conv.lipschitz_bound()
    with torch.no_grad():
        conv.skip[1, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        conv.lipschitz_bound()
