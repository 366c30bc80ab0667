"""``normalization="clip"``'s eval scales ``min(1, k' / u_k)`` from proven bounds ``u_k``.

``u_k`` must be an upper bound of ``||M_k||_2`` (else a scaled multiplier could exceed ``k``),
close to it (else the eval weights shrink more than ``CLIP_HEADROOM``), and a function of the
weights alone (same weights, same eval output, whatever the call history).
"""

import math

import pytest
import torch
from certcheck import check_all, check_attack, check_jacobian

import liponet.layers.fourier as fourier
from liponet.functional import TARGET_MARGIN, grid_norm_upper, spectral_norm_exact
from liponet.layers import LipSpectralConv
from liponet.layers.fourier import CLIP_HEADROOM, CLIP_ROUNDING_ROOM, _power_vectors


def _conv(spectrum: str, seed: int = 0, width: int = 6, modes=(4, 3)) -> LipSpectralConv:
    """A clip layer whose multipliers ``M_k = W + R_k`` have the named kind of spectrum."""
    gen = torch.Generator().manual_seed(seed)
    conv = LipSpectralConv(width, width, modes, k=1.0, skip=True, normalization="clip")
    w = conv.weight.detach()
    with torch.no_grad():
        if spectrum == "random":
            w.copy_(torch.randn(w.shape, generator=gen))
        elif spectrum == "ill-conditioned":  # singular values 10^0 .. 10^-6
            u = torch.linalg.qr(torch.randn(*w.shape[:-3], width, width, generator=gen))[0]
            s = torch.logspace(0, -6, width)
            w[..., 0].copy_(u * s @ u.transpose(-2, -1))
            w[..., 1].zero_()
        elif spectrum == "rank-deficient":  # rank 1 (up to the small skip)
            a = torch.randn(*w.shape[:-3], width, 1, generator=gen)
            w[..., 0].copy_(a @ a.transpose(-2, -1))
            w[..., 1].zero_()
        elif spectrum == "near-tie":  # two equal top singular values in every multiplier
            s = torch.ones(width)
            s[2:] = 0.3
            u = torch.linalg.qr(torch.randn(*w.shape[:-3], width, width, generator=gen))[0]
            w[..., 0].copy_(2.0 * (u * s @ u.transpose(-2, -1)))
            w[..., 1].zero_()
        if spectrum != "random":  # a small skip (exactly 0 makes clip's training step NaN)
            conv.skip.copy_(1e-2 * torch.eye(width))
    return conv.eval()


def _exact(conv: LipSpectralConv) -> torch.Tensor:
    r = conv._symmetric_spectral(conv.weight.detach()).reshape(
        -1, conv.out_channels, conv.in_channels
    )
    return conv._exact_norms(r, conv.skip.detach())


SPECTRA = ["random", "ill-conditioned", "rank-deficient", "near-tie"]


@pytest.fixture
def cholesky_path(monkeypatch):
    """The bounds that avoid an SVD of every multiplier, also on a small layer."""
    monkeypatch.setattr(fourier, "SVD_ALL_WORK", 0)


@pytest.mark.parametrize("spectrum", SPECTRA)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_clip_bounds_are_proven_and_close(spectrum, dtype, cholesky_path):
    conv = _conv(spectrum).to(dtype)
    _, (_, _, upper, scale) = conv._eval_state()
    sigma = _exact(conv)
    assert bool((upper >= sigma).all())  # proven: never below the exact (SVD) norm
    assert bool((upper <= sigma * (1 + 2 * CLIP_HEADROOM) + 1e-30).all())  # close
    target = conv.k * TARGET_MARGIN * (1 - CLIP_ROUNDING_ROOM)
    assert bool((scale * sigma <= target).all())  # every scaled multiplier below k'
    clipped = scale < 1
    if spectrum != "ill-conditioned":  # the others have multipliers above k
        assert bool(clipped.any())
    low = target / (1 + 2 * CLIP_HEADROOM)
    assert bool((scale * sigma)[clipped].min() >= low)  # clipped: within the headroom of k'
    mk, w = conv.multipliers()  # what the forward applies, float64
    exact = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
    bound = conv.lipschitz_bound()
    assert exact <= bound <= 1.0


def test_power_iteration_bounds_fail_the_check(cholesky_path, monkeypatch):
    # The check above is not vacuous: bounds from power iteration (a training device, from
    # below) put some scaled multipliers above k on a near-tie spectrum.
    def power_only(self, r, w, k):
        x, _ = self._multipliers_in(r, w, torch.arange(r.shape[0] + 1))
        u = torch.view_as_complex(self.u.detach()).to(x.dtype)
        v = _power_vectors(x, u, 2)
        est = torch.linalg.vector_norm((x @ v.unsqueeze(-1)).squeeze(-1), dim=-1).double()
        return (k / est).clamp_max(1.0), est

    conv = _conv("near-tie", seed=3)
    monkeypatch.setattr(LipSpectralConv, "_clip_scales", power_only)
    monkeypatch.setattr(LipSpectralConv, "_clips_from_parts", lambda *args: False)
    _, (_, _, upper, scale) = conv._eval_state()
    sigma = _exact(conv)
    assert bool((upper < sigma).any())
    assert bool((scale * sigma > conv.k).any())


@pytest.mark.parametrize("spectrum", SPECTRA)
def test_clip_eval_weights_depend_on_the_weights_only(spectrum, cholesky_path):
    # After other weights, after Adam steps, and in a fresh layer: bitwise the same eval
    # weights and certificate for the same weights.
    conv = _conv(spectrum, seed=1)
    other = _conv("random", seed=2)
    x = torch.randn(2, 6, 8, 6)
    opt = torch.optim.Adam(conv.parameters(), lr=1e-3)
    for _ in range(3):
        conv.train()
        loss = conv(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        conv.eval()
        conv.lipschitz_bound()
    state = {k: v.clone() for k, v in conv.state_dict().items()}
    with torch.no_grad():  # visit other weights, then come back
        conv.weight.copy_(other.weight)
        conv.lipschitz_bound()
        conv.weight.copy_(state["weight"])
    fresh = LipSpectralConv(6, 6, (4, 3), k=1.0, skip=True, normalization="clip").eval()
    fresh.load_state_dict(state)
    for mine, theirs in zip(conv.effective_weights(), fresh.effective_weights(), strict=True):
        assert torch.equal(mine, theirs)
    assert conv.lipschitz_bound() == fresh.lipschitz_bound()


@pytest.mark.parametrize("spectrum", ["random", "near-tie"])
def test_clip_certificate_holds_against_jacobians_and_attacks(spectrum, cholesky_path):
    conv = _conv(spectrum, seed=4).double().eval()
    x = torch.randn(1, 6, 8, 6, dtype=torch.float64)
    check_jacobian(conv, x, "function")
    check_attack(conv, x, "function", n_steps=5)


def test_clip_layer_passes_check_all(cholesky_path):
    def make():
        return LipSpectralConv(4, 4, (3, 2), k=1.0, skip=True, normalization="clip").double()

    conv = make()
    with torch.no_grad():
        conv.weight.mul_(4.0)  # most multipliers above k: clipped
    check_all(lambda: make(), torch.randn(2, 4, 8, 6, dtype=torch.float64), "function")


def test_clip_bound_shrinks_eval_norms_by_at_most_the_headroom(cholesky_path):
    # The eval multipliers of clipped modes against the exact-norm definition min(1, k / s_k):
    # never above it, at most ~CLIP_HEADROOM below.
    conv = _conv("random", seed=5, width=8)
    _, (_, _, _, scale) = conv._eval_state()
    sigma = _exact(conv)
    exact_scale = (conv.k * TARGET_MARGIN / sigma).clamp_max(1.0)
    ratio = scale / exact_scale
    assert bool((ratio <= 1.0).all())
    assert float(ratio.min()) >= 1 / (1 + 2 * CLIP_HEADROOM) - math.ulp(1.0)


@pytest.mark.parametrize("spectrum", SPECTRA)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("modes", [(4, 3), (5,), (3, 2, 2)])
def test_clip_state_from_parts_is_the_general_path_bit_for_bit(
    spectrum, dtype, modes, cholesky_path, monkeypatch
):
    # The eval state written from the raw weights' real parts (no complex R, no restacking)
    # against the general path (hermitian_symmetrize, _multipliers_in, grid_norm_upper,
    # scale_multipliers): the same eval weights, bounds, scales, vectors and certificate.
    conv = _conv(spectrum, seed=6, modes=modes).to(dtype)
    assert conv._clips_from_parts(conv.weight, conv.skip)
    (r, w), (none, _, upper, scale) = conv._eval_state()
    assert none is None  # R was never assembled
    vectors = conv._norm_memory.vectors
    bound = conv.lipschitz_bound()
    general = LipSpectralConv(6, 6, modes, k=1.0, skip=True, normalization="clip").to(dtype)
    general.load_state_dict(conv.state_dict())
    monkeypatch.setattr(LipSpectralConv, "_clips_from_parts", lambda *args: False)
    (r2, w2), (rk, _, upper2, scale2) = general.eval()._eval_state()
    assert rk is not None
    for mine, theirs in ((r, r2), (w, w2), (upper, upper2), (scale, scale2)):
        assert mine.dtype == theirs.dtype and torch.equal(mine, theirs)
    assert torch.equal(vectors, general._norm_memory.vectors)
    assert bound == general.lipschitz_bound()


@pytest.mark.parametrize("spectrum", SPECTRA)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("modes", [(4, 3), (5,), (3, 2, 2)])
@pytest.mark.parametrize("skip", [True, False])
def test_clip_bounds_one_per_conjugate_pair_are_every_multipliers_own(
    spectrum, dtype, modes, skip, cholesky_path
):
    # One multiplier of each conjugate pair on the k_d = 0 slice is bounded and its bound
    # given to its partner: the same bounds, bit for bit, as grid_norm_upper of every
    # multiplier itself (so the same scales and eval weights), and M_{-k} = conj(M_k) exactly.
    conv = _conv(spectrum, seed=8, modes=modes).to(dtype)
    if not skip:
        conv = LipSpectralConv(6, 6, modes, k=1.0, normalization="clip").to(dtype).eval()
        with torch.no_grad():
            conv.weight.copy_(_conv(spectrum, seed=8, modes=modes).weight.to(dtype))
    _, (_, _, upper, _) = conv._eval_state()
    r = conv._symmetric_spectral(conv.weight.detach()).reshape(-1, 6, 6)
    w = None if conv.skip is None else conv.skip.detach()
    every = torch.arange(r.shape[0] + int(w is not None))
    x, x_err = conv._multipliers_in(r, w, every)
    assert torch.equal(grid_norm_upper(x, None, x_err)[0], upper)
    rows, where = conv._pair_rows()
    lead = math.prod(conv.kept_shape[:-1])
    zero = x[: r.shape[0]].view(lead, conv.kept_shape[-1], 6, 6)[:, 0]
    assert torch.equal(zero.flip(0), zero.conj())  # partners: exact conjugates
    assert len(rows) == r.shape[0] + 1 - (lead - 1) // 2  # the skip last, with or without one
    assert torch.equal(where[rows], torch.arange(len(rows)))


def test_clip_certificate_from_parts_rebuilds_r_when_the_prior_does_not_settle_it(
    cholesky_path, monkeypatch
):
    # With k raised after the eval state (the a-priori bound no longer below k is impossible
    # for clip; forced here), the exact comparison needs R: rebuilt from the weights, the same
    # certificate as the general path.
    conv = _conv("random", seed=7)
    monkeypatch.setattr(fourier, "CLIP_ROUNDING_ROOM", -0.5)  # scales above k: prior > k
    bound = conv.lipschitz_bound()
    general = LipSpectralConv(6, 6, (4, 3), k=1.0, skip=True, normalization="clip")
    general.load_state_dict(conv.state_dict())
    monkeypatch.setattr(LipSpectralConv, "_clips_from_parts", lambda *args: False)
    assert general.eval().lipschitz_bound() == bound > 1.0
