import math

import h5py
import numpy as np
import pytest
import torch

from liponet.data import PDEBenchDataset, available_families, generate, simulate
from liponet.data.generators.reaction_diffusion import DIFFUSION_SAFETY

FAST = {
    "advection": dict(nx=32, nt=6),
    "burgers": dict(nx=32, nt=6),
    "diffusion_reaction_1d": dict(nx=32, nt=6),
}


def test_registry_lists_families_and_rejects_unknown(tmp_path):
    assert {"advection", "burgers", "diffusion_reaction_1d"} <= set(available_families())
    with pytest.raises(ValueError, match=r"unknown family 'burger'.*available: .*burgers"):
        generate("burger", tmp_path / "x.h5", n_samples=2, nx=8, nt=3)
    with pytest.raises(ValueError, match=r"unknown parameter.*nuu.*accepted: nu, t_final"):
        generate("burgers", tmp_path / "x.h5", n_samples=2, nx=8, nt=3, nuu=1.0)


@pytest.mark.parametrize("family", sorted(FAST))
def test_round_trip_reader_returns_the_computed_arrays(tmp_path, family):
    sizes = FAST[family]
    path = generate(family, tmp_path / "f.h5", n_samples=12, seed=3, batch_size=5, **sizes)
    computed = torch.cat([a["tensor"] for _, a in simulate(family, n_samples=12, seed=3, **sizes)])
    assert computed.shape == (12, sizes["nt"], sizes["nx"])
    assert torch.isfinite(computed).all()
    with h5py.File(path) as f:
        np.testing.assert_array_equal(f["tensor"][:], computed.numpy())
        x = f["x-coordinate"][:]
        np.testing.assert_allclose(x, (np.arange(32) + 0.5) / 32, rtol=1e-7)
        assert f["t-coordinate"].shape == (sizes["nt"] + 1,)
    for split in ("train", "val", "test"):
        ds = PDEBenchDataset(path, split=split, task="step", t_in=1, t_out=-1)
        X, Y = ds.to_tensors()
        idx = list(ds.indices)
        torch.testing.assert_close(X, computed[idx, 1:2], rtol=0, atol=0)
        torch.testing.assert_close(Y, computed[idx, -1:], rtol=0, atol=0)
        torch.testing.assert_close(ds[0][0], computed[idx[0], 1:2], rtol=0, atol=0)


def test_samples_do_not_depend_on_batch_size_or_count():
    a = next(simulate("burgers", n_samples=6, nx=32, nt=4, seed=1, batch_size=6))[1]["tensor"]
    b = torch.cat(
        [
            c["tensor"]
            for _, c in simulate("burgers", n_samples=3, nx=32, nt=4, seed=1, batch_size=2)
        ]
    )
    torch.testing.assert_close(a[:3], b, rtol=0, atol=0)
    c = next(simulate("burgers", n_samples=3, nx=32, nt=4, seed=2))[1]["tensor"]
    assert not torch.equal(b, c)


def test_initial_conditions_follow_pdebench_distribution():
    from liponet.data.generators.initial import sine_series

    s = sine_series(0, range(2000), length=1.0)
    # two picks among 4 modes: counts sum to 2 per sample
    counts = (s.wavenumber / (2 * math.pi * torch.arange(1, 5))).round()
    assert torch.all(counts.sum(1) == 2)
    assert 0.07 < s.absolute.double().mean() < 0.13
    assert 0.07 < s.windowed.double().mean() < 0.13
    assert 0.45 < (s.sign > 0).double().mean() < 0.55
    assert s.amp.min() >= 0 and s.amp.max() < 1
    dr = next(simulate("diffusion_reaction_1d", n_samples=4, nx=32, nt=2))[1]["tensor"]
    torch.testing.assert_close(dr[:, 0].amin(1), torch.zeros(4), rtol=0, atol=1e-7)
    torch.testing.assert_close(dr[:, 0].amax(1), torch.ones(4), rtol=0, atol=1e-7)


def test_advection_grid_map_is_an_isometry_for_whole_cell_shifts():
    # L_G = 1 (true_lipschitz("advection")) holds on grid values for whole-cell shifts only: the
    # exact solution at cell centres of non-band-limited samples is not a grid isometry otherwise.
    from liponet.certify.operator import max_pair_ratio

    nx = 32
    ratios = {}
    for cells in (3.0, 2.5):
        u = next(simulate("advection", n_samples=16, nx=nx, nt=2, beta=cells / nx, t_final=1.0))[1][
            "tensor"
        ].double()
        a, g = u[:, :1], u[:, 1:]
        ratios[cells] = (max_pair_ratio(a, g)[0], 1 / max_pair_ratio(g, a)[0])
    assert all(abs(r - 1) < 1e-12 for r in ratios[3.0]), ratios
    assert ratios[2.5][0] > 1.01 and ratios[2.5][1] < 0.99, ratios  # measured 1.032, 0.965


def test_advection_is_an_exact_shift():
    # beta * dt_save = 2 cells per frame: frame n is frame 0 rolled by 2n cells (exact shift)
    nx, nt = 64, 5
    beta = 2 / nx / (1.0 / (nt - 1))
    u = next(simulate("advection", n_samples=4, nx=nx, nt=nt, beta=beta, t_final=1.0))[1]["tensor"]
    for n in range(nt):
        torch.testing.assert_close(u[:, n], torch.roll(u[:, 0], 2 * n, dims=-1), rtol=0, atol=1e-6)
    # non-integer shift of a smooth (trigonometric) sample: spectral interpolation of frame 0
    from liponet.data.generators.advection import Advection
    from liponet.data.generators.initial import SineSeries

    one = torch.ones(1, 4, dtype=torch.float64)
    series = SineSeries(
        amp=one * torch.tensor([[0.5, 0.3, 0.0, 0.0]]),
        wavenumber=2 * math.pi * torch.tensor([[1.0, 3.0, 0.0, 0.0]], dtype=torch.float64),
        phase=one * 0.7,
        absolute=torch.tensor([False]),
        sign=torch.tensor([1.0], dtype=torch.float64),
        windowed=torch.tensor([False]),
        left=one[:, 0] * 0.2,
        right=one[:, 0] * 0.8,
    )
    fam = Advection(nx, 3, {"beta": 0.37, "t_final": 1.0})
    x = torch.as_tensor(fam.x)
    frames = fam.march(series, x, lambda: None)
    k = torch.fft.rfftfreq(nx, d=1.0 / nx, dtype=torch.float64)
    for n, t in enumerate((0.0, 0.5, 1.0)):
        shifted = torch.fft.irfft(
            torch.fft.rfft(frames[:, 0]) * torch.exp(-2j * math.pi * k * 0.37 * t), n=nx
        )
        torch.testing.assert_close(frames[:, n], shifted, rtol=0, atol=1e-12)


def test_heat_equation_matches_exact_fourier_solution():
    """rho = 0: the generator solves u_t = nu u_xx. Reference: each Fourier mode m of frame 0
    decays as exp(-nu (2 pi m)^2 t) (the exact solution of the periodic heat equation).

    Tolerance (a rigorous bound, not a fit): the difference to the exact solution is, mode by
    mode, |u_m(0)| |exp(-nu k^2 t) - g_m^s| with g_m = 1 - 4 nu dt/dx^2 sin^2(pi m dx) the
    amplification of one forward-Euler step on the 3-point Laplacian and s the steps taken; by
    the triangle inequality the pointwise error is at most the sum of these over modes (plus
    float32 storage, 1e-6). The discrete scheme itself is checked against g_m^s to 1e-6.
    """
    nx, nt, nu, t_final = 64, 5, 0.01, 0.4
    u = next(
        simulate(
            "diffusion_reaction_1d", n_samples=6, nx=nx, nt=nt, nu=nu, rho=0.0, t_final=t_final
        )
    )[1]["tensor"].double()
    dx, dt_save = 1.0 / nx, t_final / (nt - 1)
    steps = math.ceil(dt_save / (DIFFUSION_SAFETY * dx * dx / (2 * nu)))
    dt = dt_save / steps
    m = torch.fft.fftfreq(nx, d=1.0 / nx).double()
    u0 = torch.fft.fft(u[:, 0])
    g = 1 - 4 * nu * dt / dx**2 * torch.sin(math.pi * m * dx) ** 2
    for n in range(1, nt):
        t = n * dt_save
        exact = torch.fft.ifft(u0 * torch.exp(-nu * (2 * math.pi * m) ** 2 * t)).real
        discrete = torch.fft.ifft(u0 * g ** (steps * n)).real
        torch.testing.assert_close(u[:, n], discrete, rtol=0, atol=1e-6)
        bound = (
            u0.abs() / nx * (torch.exp(-nu * (2 * math.pi * m) ** 2 * t) - g ** (steps * n)).abs()
        ).sum(1)
        err = (u[:, n] - exact).abs().amax(1)
        assert torch.all(err <= bound + 1e-6), (err, bound)
        assert torch.all(bound < 5e-3)  # the bound itself is small: a meaningful check


def test_generation_is_atomic(tmp_path):
    target = tmp_path / "atomic.h5"
    calls = []

    def boom(done, total):
        calls.append((done, total))
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate("burgers", target, n_samples=4, nx=16, nt=4, batch_size=2, progress=boom)
    assert calls == [(1, 8), (2, 8), (3, 8)]
    assert list(tmp_path.iterdir()) == []
    # an existing file survives an interrupted regeneration untouched
    generate("advection", target, n_samples=2, nx=16, nt=3)
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        generate("burgers", target, n_samples=4, nx=16, nt=4, batch_size=2, progress=boom)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["atomic.h5"]


def test_attributes_follow_pdebench_names(tmp_path):
    expect = {"advection": {"beta"}, "burgers": {"Nu"}, "diffusion_reaction_1d": {"Nu", "rho"}}
    # and the discretization the stored map realises, for liponet.certify.generator_lipschitz
    ours = {"discretization", "nx", "dt"}
    discretization = {
        "advection": "exact-samples",
        "burgers": "finite-volume-muscl-rusanov",
        "diffusion_reaction_1d": "strang-logistic-ftcs",
    }
    for family, attrs in expect.items():
        path = generate(family, tmp_path / f"{family}.h5", n_samples=2, nx=8, nt=3)
        with h5py.File(path) as f:
            extra = {"diffusion_number"} if family == "diffusion_reaction_1d" else set()
            assert set(f.attrs) == attrs | ours | extra
            assert f.attrs["discretization"] == discretization[family]
            dt = float(f["t-coordinate"][1])
            assert int(f.attrs["nx"]) == 8 and float(f.attrs["dt"]) == pytest.approx(dt)
            assert set(f) == {"tensor", "x-coordinate", "t-coordinate"}


def test_darcy_constant_coefficient_matches_poisson_series():
    """a = 1: -Lap u = beta on the unit square, u = 0 on the boundary. Reference: the double sine
    series u = sum_{m,n odd} 16 beta sin(m pi x) sin(n pi y) / (pi^4 m n (m^2 + n^2)), truncated at
    m, n < 400 (tail < 1e-7). The 5-point scheme is second order: the error must drop ~4x when h
    halves, and be < 2e-4 at n = 32 (h^2 u_xxxx / 12-type truncation, u ~ 0.07)."""
    from liponet.data.generators.darcy import solve_darcy

    def series(x):
        m = torch.arange(1, 400, 2, dtype=torch.float64)
        s = torch.sin(torch.pi * m[:, None] * x[None])  # (modes, n)
        coef = 16 / (torch.pi**4 * m[:, None] * m[None] * (m[:, None] ** 2 + m[None] ** 2))
        return torch.einsum("mn,mx,ny->xy", coef, s, s)

    errors = []
    for n in (16, 32):
        x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        u = solve_darcy(torch.ones(1, n, n, dtype=torch.float64), beta=1.0)[0]
        errors.append(float((u - series(x)).abs().max()))
    assert errors[1] < 2e-4
    assert 3.0 < errors[0] / errors[1] < 5.0


def test_darcy_generated_file_solves_the_equation(tmp_path):
    from liponet.data.generators.darcy import darcy_operator

    path = generate("darcy", tmp_path / "d.h5", n_samples=4, nx=24, beta=2.0, seed=5)
    with h5py.File(path) as f:
        nu, u = f["nu"][:], f["tensor"][:]
        assert nu.shape == (4, 24, 24) and u.shape == (4, 1, 24, 24) and f.attrs["beta"] == 2.0
        assert set(f) == {"nu", "tensor", "x-coordinate", "y-coordinate"}
    assert set(np.unique(nu)) == {np.float32(0.1), np.float32(1.0)}
    residual = darcy_operator(torch.as_tensor(nu, dtype=torch.float64))(
        torch.as_tensor(u[:, 0], dtype=torch.float64)
    )
    # float32 storage of u (~1e-7 relative) amplified by the operator (~8 a / h^2 ~ 4.6e3)
    torch.testing.assert_close(residual, torch.full_like(residual, 2.0), rtol=0, atol=2e-2)
    X, Y = PDEBenchDataset(path, split="train", task="coefficient", val_fraction=0).to_tensors()
    assert len(X) == 4  # int(0.1 * 4) = 0 test samples
    np.testing.assert_array_equal(X.numpy(), nu[:, None])
    np.testing.assert_array_equal(Y.numpy(), u)


def test_diffusion_reaction_2d_group_round_trip(tmp_path):
    path = generate("diffusion_reaction_2d", tmp_path / "dr.h5", n_samples=11, nx=8, nt=4, seed=2)
    computed = next(simulate("diffusion_reaction_2d", n_samples=11, nx=8, nt=4, seed=2))[1]["data"]
    with h5py.File(path) as f:
        assert sorted(f) == [f"{i:04d}" for i in range(11)]
        assert f["0000/data"].shape == (4, 8, 8, 2) and f["0000/data"].compression == "lzf"
        np.testing.assert_allclose(f["0003/grid/t"][:], np.linspace(0, 5, 4), rtol=1e-6)
        assert "Du" in f["0003"].attrs["config"]
    test = PDEBenchDataset(path, split="test", task="step")
    assert list(test.indices) == [9, 10]
    X, Y = test.to_tensors()
    torch.testing.assert_close(X, computed[9:, 0].permute(0, 3, 1, 2), rtol=0, atol=0)
    torch.testing.assert_close(Y, computed[9:, -1].permute(0, 3, 1, 2), rtol=0, atol=0)
    # initial state: standard normal noise per cell
    assert abs(float(computed[:, 0].mean())) < 0.1 and 0.9 < float(computed[:, 0].std()) < 1.1


def test_neumann_laplacian_conserves_mass():
    from liponet.data.generators.fitzhugh_nagumo import neumann_laplacian

    u = torch.randn(3, 10, 10, dtype=torch.float64)
    assert float(neumann_laplacian(u, 0.2).sum(dim=(1, 2)).abs().max()) < 1e-9


def test_dataset_cards_and_presets_are_valid():
    import pathlib

    import yaml

    from liponet.data.generators import get_family

    root = pathlib.Path(__file__).resolve().parents[1] / "datasets"
    presets = yaml.safe_load((root / "presets.yaml").read_text())
    assert presets
    for name, p in presets.items():
        cls = get_family(p["family"])
        cls(p["nx"], p.get("nt"), p["params"])  # validates parameter names and sizes
        assert p["n_samples"] >= 1, name
    for family in available_families():
        assert (root / f"{family}.md").exists(), family
