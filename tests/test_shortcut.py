import math

import pytest
import torch
from certcheck import check_all, check_attack, check_jacobian, perturb

from liponet.certify import jacobian_lipschitz
from liponet.layers import SpectralShortcut
from liponet.layers.shortcut import hermitian_multipliers, shortcut_apply, shortcut_multipliers
from liponet.models import FNO, LipFNO
from liponet.train.checkpoint import load_model, save_checkpoint

N = 16


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "s", "size"),
    [(3, 1, 1.0, N), (4, 2, 1.0, N), (3, 1, 0.5, N), (2, 1, None, N), (3, 1, 1.0, 15)],
)
def test_shortcut_is_certified(in_channels, out_channels, s, size):
    def make():
        torch.manual_seed(0)
        return perturb(SpectralShortcut(in_channels, out_channels, size, s=s), scale=0.8)

    x = torch.randn(3, in_channels, size)
    check_all(make, x, norm="function")
    model = make().double().eval()
    bound = model.lipschitz_bound()
    if s is not None:
        assert bound <= s
        # the perturbation pushes some multipliers above s: the clip binds and the bound is used
        assert bound > s * (1 - 1e-5)
    # a linear map: its Jacobian norm is the exact constant, the largest multiplier norm
    exact = float(jacobian_lipschitz(model, x.double()[:1], "function").max())
    assert exact == pytest.approx(bound, rel=1e-6)
    # the same certificate on a finer and a coarser grid (other multipliers, none larger)
    for n in (2 * size, size // 2 + 1, size // 2):
        check_jacobian(model, torch.randn(2, in_channels, n, dtype=torch.float64), "function")


def test_shortcut_starts_as_the_last_frame_and_trains_as_it_evaluates():
    shortcut = SpectralShortcut(6, 2, N)
    x = torch.randn(4, 6, N)
    for mode in (True, False):
        shortcut.train(mode)
        torch.testing.assert_close(shortcut(x), x[:, 4:], rtol=0, atol=1e-5)
    torch.manual_seed(1)
    perturb(shortcut, scale=0.8)
    shortcut.train()
    y_train = shortcut(x)
    shortcut.eval()
    torch.testing.assert_close(y_train, shortcut(x), rtol=0, atol=1e-5)


def test_zero_multiplier_has_finite_gradients():
    shortcut = SpectralShortcut(2, 1, N)
    with torch.no_grad():
        shortcut.weight[3].zero_()
    shortcut(torch.randn(2, 2, N)).pow(2).sum().backward()
    assert shortcut.weight.grad is not None
    assert bool(torch.isfinite(shortcut.weight.grad).all())


def _band_limited(n_samples, channels, n, top, gen):
    """Random real fields with modes ``0 .. top`` only (no Nyquist content for ``top < n/2``)."""
    spec = torch.zeros(n_samples, channels, n // 2 + 1, dtype=torch.complex128)
    coef = torch.randn(n_samples, channels, top + 1, 2, generator=gen, dtype=torch.float64)
    spec[..., : top + 1] = torch.view_as_complex(coef)
    return torch.fft.irfft(spec, n=n, norm="ortho")


def test_shortcut_fits_an_exact_shift():
    # u_next = the last frame shifted by c = 0.64 cells: the multiplier exp(-2 pi i k c / n) on
    # the last frame, zero on the others, at every mode. Frames are independent, so it is the
    # unique least-squares solution; S alone (s = 1: the shift has norm 1) must fit it.
    n, c, frames = 32, 0.64, 3
    gen = torch.Generator().manual_seed(0)
    x = _band_limited(256, frames, n, n // 2 - 1, gen)
    k = torch.arange(n // 2 + 1, dtype=torch.float64)
    phase = torch.exp(-2j * math.pi * k * c / n)
    y = torch.fft.irfft(torch.fft.rfft(x[:, -1:], norm="ortho") * phase, n=n, norm="ortho")
    shortcut = SpectralShortcut(frames, 1, n).double()
    opt = torch.optim.LBFGS(
        shortcut.parameters(), max_iter=500, history_size=50, tolerance_grad=0, tolerance_change=0
    )

    def closure():
        opt.zero_grad()
        loss = (shortcut(x) - y).pow(2).mean() / y.pow(2).mean()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    shortcut.eval()
    rel = float((shortcut(x) - y).norm() / y.norm())
    assert rel < 1e-5, rel  # measured 9.5e-7: the clip's TARGET_MARGIN
    learned = shortcut.eval_multipliers()[: n // 2, 0]  # the Nyquist mode has no content
    torch.testing.assert_close(learned[:, -1], phase[: n // 2], rtol=0, atol=1e-5)
    assert float(learned[:, :-1].abs().max()) < 1e-5
    assert shortcut.lipschitz_bound() <= 1.0


def test_resolution_rule():
    torch.manual_seed(0)
    shortcut = perturb(SpectralShortcut(2, 1, 8), scale=0.5).double().eval()
    stored = shortcut.eval_multipliers()  # (5, 1, 2), modes 0..4 of 8 points
    assert float(stored[0].imag.abs().max()) == 0.0 and float(stored[4].imag.abs().max()) == 0.0
    # finer grid: modes 5..8 of 16 points apply the highest stored multiplier (mode 4)
    fine = shortcut_multipliers(stored, 16)
    torch.testing.assert_close(fine[:5], stored)
    torch.testing.assert_close(fine[5:8], stored[4:].expand(3, 1, 2))
    # a pure cosine of mode 6 on 16 points goes through S_4
    t = torch.arange(16, dtype=torch.float64)
    x = torch.stack([torch.cos(2 * math.pi * 6 * t / 16), torch.sin(2 * math.pi * 6 * t / 16)])
    x = x.unsqueeze(0)
    xk = torch.fft.rfft(x, norm="ortho")  # content at mode 6 only
    yk = torch.zeros(1, 1, 9, dtype=torch.complex128)
    yk[..., 6] = stored[4] @ xk[0, :, 6]
    expected = torch.fft.irfft(yk, n=16, norm="ortho")
    torch.testing.assert_close(shortcut(x), expected)
    torch.testing.assert_close(shortcut_apply(x, fine), expected)
    # coarser grid (6 points): modes 0..3, the real part at its Nyquist mode 3
    coarse = shortcut_multipliers(stored, 6)
    torch.testing.assert_close(coarse[:3], stored[:3])
    torch.testing.assert_close(coarse[3], stored[3].real.to(coarse.dtype))
    # odd grid (7 points): modes 0..3, no Nyquist mode, mode 3 complex as stored
    torch.testing.assert_close(shortcut_multipliers(stored, 7), stored[:4])


def _pair(depth=2, k=0.3, **extra):
    torch.manual_seed(0)
    spectral = LipFNO(3, 1, (4,), width=4, depth=depth, k=k, increment="spectral",
                      shortcut_size=N, **extra)  # fmt: skip
    plain = LipFNO(3, 1, (4,), width=4, depth=depth, k=k, increment=True, **extra)
    plain.load_state_dict({k: v for k, v in spectral.state_dict().items() if "shortcut" not in k})
    return spectral, plain


def test_lipfno_spectral_starts_as_the_increment_form():
    spectral, plain = _pair()
    x = torch.randn(4, 3, N)
    for mode in (True, False):
        spectral.train(mode)
        plain.train(mode)
        torch.testing.assert_close(spectral(x), plain(x), rtol=0, atol=1e-5)
    assert spectral.lipschitz_bound() <= plain.lipschitz_bound()
    assert spectral.lipschitz_bound() == pytest.approx(
        spectral.net.shortcut.lipschitz_bound() + spectral.net.inner.lipschitz_bound()
    )
    assert spectral.lipschitz_bound() <= 1.3


@pytest.mark.parametrize("cls", [LipFNO, FNO])
def test_models_with_spectral_shortcut_are_certified(cls):
    def make():
        torch.manual_seed(0)
        return perturb(
            cls(2, 1, (4,), width=4, depth=2, increment="spectral", shortcut_size=N), scale=0.5
        )

    x = torch.randn(3, 2, N)
    check_all(make, x, norm="function")
    model = make().double().eval()
    check_attack(model, torch.randn(3, 2, 2 * N, dtype=torch.float64), "function")
    if cls is LipFNO:
        assert model.lipschitz_bound() <= 2.0
    else:
        assert model.net.shortcut.lipschitz_bound() > 1.0  # unconstrained: its own norm counts


def test_spectral_increment_errors():
    with pytest.raises(ValueError, match="shortcut_size"):
        LipFNO(2, 1, (4,), increment="spectral")
    for size in (N, [N], [N, 0], [N, N, N], "16"):  # one count >= 1 per spatial dimension
        with pytest.raises(ValueError, match=r"one count >= 1 per spatial dimension \(2, from"):
            LipFNO(2, 1, (4, 4), increment="spectral", shortcut_size=size)
    with pytest.raises(ValueError, match="applies to increment='spectral' only"):
        LipFNO(2, 1, (4,), increment=True, shortcut_size=N)
    with pytest.raises(ValueError, match="expected False, True"):
        LipFNO(2, 1, (4,), increment="yes")
    with pytest.raises(ValueError, match="multiple of out_channels"):
        LipFNO(3, 2, (4,), increment="spectral", shortcut_size=N)
    with pytest.raises(ValueError, match="multiple of out_channels"):
        SpectralShortcut(3, 2, N)
    with pytest.raises(ValueError, match=r"shape \(batch, 2, n\)"):
        SpectralShortcut(2, 1, N)(torch.randn(1, 2, 4, 4))


def test_checkpoint_round_trip(tmp_path):
    kwargs = dict(in_channels=2, out_channels=1, modes=[4], width=4, depth=2,
                  increment="spectral", shortcut_size=N)  # fmt: skip
    torch.manual_seed(0)
    model = perturb(LipFNO(**kwargs), scale=0.5).eval()
    config = {"model": {"name": "LipFNO", "kwargs": kwargs}}
    path = save_checkpoint(tmp_path / "m.pt", model, config=config)
    loaded, _ = load_model(path)
    x = torch.randn(2, 2, N)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.lipschitz_bound() == model.lipschitz_bound()


def test_symmetry_premise_accepts_the_shortcut():
    from liponet.certify.symmetry import (
        SymmetryGroup,
        SymmetryPremiseError,
        check_model_symmetry,
    )

    torch.manual_seed(0)
    model = LipFNO(2, 1, (4,), width=4, depth=2, grid=False, increment="spectral",
                   shortcut_size=N)  # fmt: skip
    model = perturb(model).double().eval()
    for m in (model, model.export()):
        assert "verified" in check_model_symmetry(m, SymmetryGroup((0,)))
    x = torch.randn(3, 2, N, dtype=torch.float64)
    shifted = model(torch.roll(x, 5, dims=-1))
    torch.testing.assert_close(shifted, torch.roll(model(x), 5, dims=-1), rtol=0, atol=1e-12)
    # complex multipliers do not commute with the reflection: refused; real ones (init) do
    reflect = SymmetryGroup((0,), reflection=True)
    with pytest.raises(SymmetryPremiseError, match="SpectralShortcut"):
        check_model_symmetry(model.net.shortcut, reflect)
    assert "verified" in check_model_symmetry(SpectralShortcut(2, 1, N).eval(), reflect)


def _lstsq_reference(x, y):
    """Per-mode least squares by numpy-free dense solves: ``S_k = argmin ||S X_k - Y_k||``."""
    xk = torch.fft.rfft(x.double(), norm="ortho")  # (n, in, K)
    yk = torch.fft.rfft(y.double(), norm="ortho")  # (n, out, K)
    rows = []
    for k in range(xk.shape[-1]):
        sol = torch.linalg.lstsq(xk[:, :, k], yk[:, :, k]).solution  # (in, out)
        rows.append(sol.T)
    return torch.stack(rows)  # (K, out, in)


@pytest.mark.parametrize(("in_channels", "out_channels", "size"), [(3, 1, N), (4, 2, 15)])
def test_fit_is_the_per_mode_least_squares_step(in_channels, out_channels, size):
    torch.manual_seed(0)
    x = torch.randn(200, in_channels, size, dtype=torch.float64)
    target = perturb(SpectralShortcut(in_channels, out_channels, size, s=None), 0.3).double()
    y = target(x) + 0.05 * torch.randn(200, out_channels, size, dtype=torch.float64)
    shortcut = SpectralShortcut(in_channels, out_channels, size, s=None).double()
    shortcut.fit_(x, y, chunk=37)  # chunking changes nothing
    fitted = torch.view_as_complex(shortcut.weight.detach())
    reference = _lstsq_reference(x, y)
    reference[0] = reference[0].real.to(reference.dtype)
    if size % 2 == 0:
        reference[-1] = reference[-1].real.to(reference.dtype)
    torch.testing.assert_close(fitted, reference, rtol=0, atol=1e-10)
    # the least-squares residual is below the noise's and below any other multiplier's
    err = (shortcut.eval()(x) - y).pow(2).sum()
    assert err <= (target.eval()(x) - y).pow(2).sum()


def test_fit_projects_to_the_ball_and_stays_certified():
    torch.manual_seed(1)
    x = torch.randn(64, 2, N, dtype=torch.float64)
    y = torch.cat([2 * torch.roll(x[:, -1:], 1, -1), 0.5 * x[:, :1]], 1)  # S_k norms 2 (one
    free = SpectralShortcut(2, 2, N, s=None).double().fit_(x, y)  # singular value 2, one 0.5)
    assert free.eval().lipschitz_bound() == pytest.approx(2.0, rel=1e-6)
    shortcut = SpectralShortcut(2, 2, N, s=1.0).double().fit_(x, y).eval()
    bound = shortcut.lipschitz_bound()
    assert 1 - 1e-5 < bound <= 1.0
    # singular values clipped, not the multiplier scaled: the 0.5 direction is kept
    sv = torch.linalg.svdvals(shortcut.eval_multipliers())
    torch.testing.assert_close(sv[1:-1], torch.tensor([[1.0, 0.5]]).double().expand(N // 2 - 1, 2),
                               rtol=0, atol=1e-5)  # fmt: skip
    check_jacobian(shortcut, x[:2], "function")
    check_attack(shortcut, x[:2], "function")


def test_fit_nearly_collinear_frames_takes_the_small_solution():
    # every frame of the window is the same field: the Gram matrix has rank 1 per mode, and the
    # minimum-norm solution spreads the step over the frames (norm 1 / sqrt(frames))
    torch.manual_seed(2)
    u = torch.randn(50, 1, N, dtype=torch.float64)
    x, y = u.expand(50, 4, N), torch.roll(u, 1, -1)
    shortcut = SpectralShortcut(4, 1, N).double().fit_(x, y).eval()
    torch.testing.assert_close(shortcut(x), y, rtol=0, atol=1e-8)
    assert shortcut.lipschitz_bound() == pytest.approx(0.5, rel=1e-6)


def test_fit_errors():
    shortcut = SpectralShortcut(3, 1, N)
    x, y = torch.randn(5, 3, N), torch.randn(5, 1, N)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3, 16\)"):
        shortcut.fit_(torch.randn(5, 3, 2 * N), y)
    with pytest.raises(ValueError, match=r"y must have shape \(5, 1, 16\)"):
        shortcut.fit_(x, y[:4])
    with pytest.raises(ValueError, match="no windows"):
        shortcut.fit_(x[:0], y[:0])
    with pytest.raises(ValueError, match="rcond"):
        shortcut.fit_(x, y, rcond=-1.0)


@pytest.mark.parametrize("cls", [LipFNO, FNO])
@pytest.mark.parametrize("increment", [True, "spectral"])
def test_gate_starts_at_the_shortcut_and_stays_certified(cls, increment):
    size = N if increment == "spectral" else None
    torch.manual_seed(0)
    model = cls(2, 1, (4,), width=4, depth=2, increment=increment, shortcut_size=size, gate=True)
    x = torch.randn(3, 2, N)
    base = model.net.shortcut(x) if increment == "spectral" else x[:, -1:]
    for mode in (True, False):
        model.train(mode)
        torch.testing.assert_close(model(x), base, rtol=0, atol=0)  # g = 0: f adds nothing
    # a trained gate: certified, and its |g| is a factor of f's constant
    model.train()
    loss = (model(x) - torch.randn(3, 1, N)).pow(2).mean()
    loss.backward()
    gate = model.net.inner[len(model.net.inner) - 1]
    assert gate.scale.grad is not None and float(gate.scale.grad.abs().max()) > 0

    def make():
        torch.manual_seed(0)
        made = cls(2, 1, (4,), width=4, depth=2, increment=increment, shortcut_size=size,
                   gate=True)  # fmt: skip
        perturb(made, scale=0.5)
        with torch.no_grad():
            made.net.inner[len(made.net.inner) - 1].scale.fill_(0.7)
        return made

    if increment == "spectral":  # the u_last form differs only by its base: not rechecked
        check_all(make, x, norm="function")
    trained = make().double().eval()
    f_alone = trained.net.inner[0].lipschitz_bound()
    assert trained.net.inner.lipschitz_bound() == pytest.approx(0.7 * f_alone, rel=1e-6)
    with pytest.raises(ValueError, match="gate=True scales the increment"):
        cls(2, 1, (4,), width=4, depth=2, gate=True)


# -- any number of spatial dimensions -------------------------------------------------------

GRIDS = [(6, 8), (5, 7), (4, 3, 6)]  # even and odd counts (Nyquist or none), 2-D and 3-D


def _full_spectrum_step(stored, x):
    """``S(x)`` by the definition: the complex FFT of the whole grid, ``S_{-k} = conj S_k``.

    Every mode of the full spectrum gets the multiplier of its ``rfftn`` mode or the conjugate of
    its mirror's; the inverse FFT's imaginary part must vanish. An independent path to what the
    Hermitian form of the stored multipliers promises.
    """
    grid = tuple(x.shape[2:])
    d = len(grid)
    full = torch.zeros(*grid, *stored.shape[-2:], dtype=stored.dtype)
    kd = grid[-1] // 2 + 1
    full[..., :kd, :, :] = stored
    for j in range(kd, grid[-1]):  # k_d > n_d / 2: the conjugate of the mirrored rfftn mode
        mirror = stored[..., grid[-1] - j, :, :]
        for axis in range(d - 1):
            mirror = torch.roll(torch.flip(mirror, [axis]), 1, axis)
        full[..., j, :, :] = mirror.conj()
    dims = tuple(range(-d, 0))
    xk = torch.fft.fftn(x.to(full.dtype), dim=dims, norm="ortho").flatten(2)
    yk = torch.einsum("bik,koi->bok", xk, full.flatten(0, d - 1))  # (b,in,K),(K,out,in)
    y = torch.fft.ifftn(yk.unflatten(2, grid), dim=dims, norm="ortho")
    return y.real, y.imag


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("s", [1.0, None])
def test_nd_shortcut_is_certified_and_tight(grid, s):
    def make():
        torch.manual_seed(0)
        return perturb(SpectralShortcut(2, 1, grid, s=s), scale=0.8)

    x = torch.randn(2, 2, *grid)
    check_all(make, x, norm="function")
    model = make().double().eval()
    bound = model.lipschitz_bound()
    if s is not None:
        assert s * (1 - 1e-5) < bound <= s  # the clip binds
    exact = float(jacobian_lipschitz(model, x.double()[:1], "function").max())
    assert exact == pytest.approx(bound, rel=1e-6)
    # other grids, finer, coarser and odd: other multipliers (or averages), none larger
    for other in (tuple(2 * n for n in grid), tuple(max(1, n // 2) for n in grid),
                  tuple(n + 1 for n in grid)):  # fmt: skip
        check_jacobian(model, torch.randn(1, 2, *other, dtype=torch.float64), "function")


@pytest.mark.parametrize("grid", GRIDS)
def test_nd_stored_multipliers_are_the_applied_map(grid):
    torch.manual_seed(1)
    model = perturb(SpectralShortcut(2, 2, grid, s=0.9), scale=0.8).double()
    x = torch.randn(3, 2, *grid, dtype=torch.float64)
    for mode in (True, False):
        model.train(mode)
        stored = model.train_multipliers() if mode else model.eval_multipliers()
        real, imag = _full_spectrum_step(stored.detach(), x)
        assert float(imag.abs().max()) < 1e-12  # Hermitian: the definition's output is real
        torch.testing.assert_close(model(x), real, rtol=0, atol=1e-12)
    # the Hermitian slices hold mirrored conjugates exactly (the eval multipliers as stored)
    a = model.eval().eval_multipliers()
    mirrored = a[..., 0, :, :]
    for axis in range(len(grid) - 1):
        mirrored = torch.roll(torch.flip(mirrored, [axis]), 1, axis)
    assert torch.equal(a[..., 0, :, :], mirrored.conj())


def test_nd_resolution_rule():
    torch.manual_seed(0)
    shortcut = perturb(SpectralShortcut(1, 1, (6, 8)), scale=0.5).double().eval()
    stored = shortcut.eval_multipliers()  # (6, 5, 1, 1): frequencies 0, 1, 2, -3, -2, -1 x 0..4
    fine = shortcut_multipliers(stored, (12, 16))  # (12, 9, 1, 1)
    fine_f = torch.fft.fftfreq(12, 1 / 12).long()  # 0..5, -6..-1
    for i, f in enumerate(fine_f.tolist()):
        g = max(-3, min(3, f)) % 6  # clamped to the stored range; +-3 both the stored Nyquist
        for k in range(1, 9):  # off the Hermitian slices: the stored multiplier itself
            if k == 8:
                continue  # the fine grid's Nyquist slice: Hermitian form, checked below
            torch.testing.assert_close(fine[i, k], stored[g, min(k, 4)])
    # a single complex exponential mode (f, k) = (5, 6) of the fine grid goes through S[3, 4]
    t = torch.arange(12, dtype=torch.float64)[:, None] / 12
    u = torch.arange(16, dtype=torch.float64)[None, :] / 16
    x = torch.cos(2 * math.pi * (5 * t + 6 * u))[None, None]
    expected = (stored[3, 4, 0, 0] * torch.exp(2j * math.pi * (5 * t + 6 * u))).real
    torch.testing.assert_close(shortcut(x)[0, 0], expected)
    # every applied multiplier on any grid has norm <= the certificate
    bound = shortcut.lipschitz_bound()
    for other in ((12, 16), (3, 4), (7, 9), (6, 8)):
        applied = shortcut_multipliers(stored, other)
        assert float(applied.abs().max()) <= bound
    with pytest.raises(ValueError, match="one count per stored axis"):
        shortcut_multipliers(stored, 8)


def _lstsq_reference_nd(x, y):
    """Dense per-mode least squares over the flattened ``rfftn`` modes."""
    dims = tuple(range(2, x.ndim))
    xk = torch.fft.rfftn(x.double(), dim=dims, norm="ortho")
    yk = torch.fft.rfftn(y.double(), dim=dims, norm="ortho")
    modes = xk.shape[2:]
    xk, yk = xk.flatten(2), yk.flatten(2)
    rows = [torch.linalg.lstsq(xk[:, :, k], yk[:, :, k]).solution.T for k in range(xk.shape[-1])]
    return torch.stack(rows).reshape(*modes, y.shape[1], x.shape[1])


@pytest.mark.parametrize("grid", [(8, 6), (5, 7)])
def test_nd_fits_recover_a_known_multiplier(grid):
    # windows of 2 frames -> 1 frame through a random complex step (norm above 1) plus noise:
    # the fit is the dense per-mode least squares, and without noise it recovers the step
    torch.manual_seed(0)
    target = perturb(SpectralShortcut(2, 1, grid, s=None), 0.5).double().eval()
    x = torch.randn(300, 2, *grid, dtype=torch.float64)
    exact = target(x)
    noisy = exact + 0.05 * torch.randn_like(exact)
    fitted = SpectralShortcut(2, 1, grid, s=None).double().fit_(x, noisy, chunk=70)
    reference = _lstsq_reference_nd(x, noisy)
    # the reference's mirrored modes differ by rounding only; the stored form averages them
    expected = hermitian_multipliers(reference, grid)
    torch.testing.assert_close(fitted.eval().eval_multipliers(), expected, rtol=0, atol=1e-10)
    recovered = SpectralShortcut(2, 1, grid, s=None).double().fit_(x, exact).eval()
    truth = target.eval_multipliers()
    torch.testing.assert_close(recovered.eval_multipliers(), truth, rtol=0, atol=1e-9)
    # in the ball: certified and inside it
    ball = SpectralShortcut(2, 1, grid, s=0.5).double().fit_(x, exact).eval()
    assert ball.lipschitz_bound() <= 0.5
    check_jacobian(ball, x[:1], "function")


def test_nd_rollout_fit_recovers_a_shift():
    from liponet.train.shortcut_fit import rollout_multipliers

    # a shift by (1, 2) cells per frame: trajectories of 6 frames, windows of one frame
    u = torch.randn(5, 8, 6, dtype=torch.float64)
    frames = torch.stack([torch.roll(u, (t, 2 * t), dims=(-2, -1)) for t in range(6)], 1)
    x = frames[:, :-1].flatten(0, 1)[:, None]  # (25, 1, 8, 6), trajectory after trajectory
    y = frames[:, 1:].flatten(0, 1)[:, None]
    k1 = torch.fft.fftfreq(8, 1 / 8, dtype=torch.float64)[:, None]
    k2 = torch.arange(4, dtype=torch.float64)[None, :]
    shift = torch.exp(-2j * math.pi * (k1 / 8 + 2 * k2 / 6))[..., None, None]
    for radius in (None, 1.0):
        step = rollout_multipliers(x, y, (8, 6), radius=radius)
        torch.testing.assert_close(step, hermitian_multipliers(shift, (8, 6)), rtol=0, atol=1e-8)


@pytest.mark.parametrize("cls", [LipFNO, FNO])
def test_nd_models_with_spectral_shortcut_are_certified(cls):
    grid = (8, 6)

    def make():
        torch.manual_seed(0)
        made = cls(2, 1, (3, 3), width=4, depth=1, increment="spectral", shortcut_size=list(grid))
        return perturb(made, scale=0.5)

    x = torch.randn(2, 2, *grid)
    check_all(make, x, norm="function")
    model = make().double().eval()
    check_attack(model, torch.randn(2, 2, 10, 12, dtype=torch.float64), "function")
    shortcut = model.net.shortcut
    assert model.lipschitz_bound() == pytest.approx(
        shortcut.lipschitz_bound() + model.net.inner.lipschitz_bound()
    )
    if cls is LipFNO:
        assert shortcut.lipschitz_bound() <= 1.0
    else:
        assert shortcut.lipschitz_bound() > 1.0  # unconstrained: its own norm counts


def test_nd_checkpoint_round_trip_and_symmetry(tmp_path):
    from liponet.certify.symmetry import SymmetryGroup, check_model_symmetry

    kwargs = dict(in_channels=1, out_channels=1, modes=[3, 3], width=4, depth=1, grid=False,
                  increment="spectral", shortcut_size=[8, 6])  # fmt: skip
    torch.manual_seed(0)
    model = perturb(LipFNO(**kwargs), scale=0.5).eval()
    config = {"model": {"name": "LipFNO", "kwargs": kwargs}}
    path = save_checkpoint(tmp_path / "m.pt", model, config=config)
    loaded, _ = load_model(path)
    x = torch.randn(2, 1, 8, 6)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.lipschitz_bound() == model.lipschitz_bound()
    assert "verified" in check_model_symmetry(model.double(), SymmetryGroup((0, 1)))
    shifted = model(torch.roll(x.double(), (3, 2), dims=(-2, -1)))
    torch.testing.assert_close(shifted, torch.roll(model(x.double()), (3, 2), dims=(-2, -1)),
                               rtol=0, atol=1e-12)  # fmt: skip
