"""Issue 12: every certificate checks its own premises.

Each case first reproduces the original failure (the premise is false, or the old label was
"certified" where nothing was proved), then checks that the certificate now refuses or lowers its
label. The checks measure against exact quantities (pair ratios, kernel l1 norms, Jacobians).
"""

import math

import pytest
import torch

from liponet.certify import (
    ErrorBound,
    LipschitzConstant,
    PremiseError,
    certified_radius,
    conformal_error_bound,
    estimate_true_lipschitz,
    generator_lipschitz,
    grid_lipschitz,
    max_error_bound,
    model_constant,
    multiplier_lipschitz,
    observed_errors,
    operator_error_bound,
    reference,
    robustness_bound,
    rollout_error_bound,
    true_lipschitz,
    weights_fingerprint,
)
from liponet.certify.operator import max_pair_ratio
from liponet.data import PDEBenchDataset, generate
from liponet.functional import TARGET_MARGIN
from liponet.layers import LipLinear
from liponet.models import LipFNO

# ---------------------------------------------------------------- 1. discrete L_G


def test_fractional_shifts_of_exact_samples_are_no_isometry_and_get_no_certificate(tmp_path):
    # the tiny bench preset: 32 cells, stride 2, beta 0.1, 9 frames over t = 2: 0.4 cell per frame
    path = generate("advection", tmp_path / "adv.h5", n_samples=48, nx=32, nt=9, beta=0.1)
    ds = PDEBenchDataset(path, split="train", task="step", t_in=3, t_out=4, reduced_resolution=2)
    a, b = ds.to_tensors()
    ratio, _ = max_pair_ratio(a.double(), b.double())
    assert ratio > 1.05  # the old "certified" L_G = 1 is false for these samples
    import h5py

    with h5py.File(path) as f:
        attrs = dict(f.attrs)
    assert attrs["discretization"] == "exact-samples"
    constant, why = generator_lipschitz(attrs, frames=1, spatial_stride=2)
    assert constant is None and "not whole cells" in why
    # the continuous theorem applied to the samples: the bound is not labelled certified
    model = LipFNO(1, 1, modes=(4,), width=4, depth=1).double().eval()
    with torch.no_grad():
        bound = operator_error_bound(
            a[:4].double(), a[4:].double(), calib_targets=b[4:].double(),
            calib_preds=model(a[4:].double()), lipschitz_model=model,
            lipschitz_true=true_lipschitz("advection"), data_discretization="exact-samples",
        )  # fmt: skip
    assert bound.label == "estimated" and "continuous operator" in bound.notes[0]
    # whole cells: a permutation of the values, certified on the same kind of file
    whole, why = generator_lipschitz(attrs, frames=5, spatial_stride=2)  # 2 cells
    assert whole is not None and whole.value == 1.0 and whole.label == "certified"


def test_diffusion_reaction_scheme_constant_bounds_every_pair_of_its_samples(tmp_path):
    path = generate("diffusion_reaction_1d", tmp_path / "dr.h5", n_samples=40, nx=32, nt=5)
    import h5py

    with h5py.File(path) as f:
        attrs = dict(f.attrs)
    for norm in ("function", "sup"):
        constant, _ = generator_lipschitz(attrs, frames=1, norm=norm)
        assert constant is not None and constant.premises.value_range == (0.0, 1.0)
        ds = PDEBenchDataset(path, split="train", task="step", t_in=1, t_out=2)
        a, b = ds.to_tensors()
        ratio, _ = max_pair_ratio(a.double(), b.double(), norm, norm)
        assert ratio <= constant.value
    # a spatial stride subsamples the grid the scheme acts on: no certificate
    assert generator_lipschitz(attrs, frames=1, spatial_stride=2)[0] is None


# ---------------------------------------------------------------- 2. sup norm


def test_fourier_shift_sup_constant_is_the_kernel_l1_norm_not_one():
    n, shift = 32, 0.3 / 32 + 5 / 32  # 5.3 cells
    c_sup = grid_lipschitz("advection", n, "sup", shift=shift)
    kernel = reference.advection(torch.eye(n, dtype=torch.float64)[:1, None], shift)[0, 0]
    assert c_sup.value == pytest.approx(float(kernel.abs().sum()), rel=1e-9)
    assert c_sup.value > 1.5
    # constructed case: the worst input for grid point 0; Ĝ = 0 and one calibration pair at 0
    u = torch.sign(kernel.flip(0).roll(1)).reshape(1, 1, n)
    truth = reference.advection(u, shift)
    observed = observed_errors(truth, torch.zeros_like(truth), "sup")
    zero = LipschitzConstant(0.0, "certified", "sup", "sup", "the zero map")
    calib = torch.zeros(1, 1, n, dtype=torch.float64)
    old = operator_error_bound(
        u, calib, torch.zeros(1), lipschitz_model=zero, norm="sup",
        lipschitz_true=LipschitzConstant(1.0, "certified", "sup", "sup", "old: continuous"),
    )  # fmt: skip
    assert int(old.violations(observed).sum()) == 1  # the old "certified" pointwise bound fails
    new = operator_error_bound(
        u, calib, torch.zeros(1), lipschitz_model=zero, lipschitz_true=c_sup, norm="sup"
    )
    assert new.label == "certified" and int(new.violations(observed).sum()) == 0
    assert float(new.bound[0]) == pytest.approx(float(observed[0]), rel=1e-9)  # attained
    # L2: the Fourier shift is an isometry of the samples
    assert grid_lipschitz("advection", n, shift=shift).value == pytest.approx(1.0, abs=1e-9)
    # and the continuous theorem is marked as such
    assert true_lipschitz("advection", "sup").premises.discretization == "continuous"


def test_heat_at_small_nu_t_has_sup_constant_above_one():
    c = grid_lipschitz("heat", 64, "sup", nu=1.0, t=1e-5)
    assert c.value == pytest.approx(1.093, abs=1e-3)
    # attained: sign pattern of the kernel
    m = torch.exp(-1e-5 * (2 * math.pi * torch.fft.fftfreq(64, d=1 / 64)) ** 2)
    kernel = torch.fft.ifft(m.to(torch.complex128)).real
    u = torch.sign(kernel.flip(0).roll(1)).reshape(1, 1, 64)
    out = reference.heat(u, 1.0, 1e-5)
    assert float(out.abs().max()) == pytest.approx(c.value, rel=1e-9)
    assert multiplier_lipschitz(m.to(torch.complex128)).value == pytest.approx(1.0)


# ---------------------------------------------------------------- 3. radius


def _aux_fno(radius):
    torch.manual_seed(0)
    return LipFNO(1, 1, modes=(4,), width=4, depth=1, output_scale="auxiliary", radius=radius)


def test_auxiliary_scale_model_is_refused_outside_its_radius():
    model = _aux_fno(0.5).double().eval()
    big = torch.randn(1, 1, 16, dtype=torch.float64)
    big = big * 500 / big.pow(2).mean().sqrt()  # ||a|| = 500
    bound = model.lipschitz_bound()
    with torch.no_grad():
        d = 1e-3 * torch.randn_like(big)
        ratio = float((model(big + d) - model(big)).pow(2).mean().sqrt() / d.pow(2).mean().sqrt())
    assert ratio > bound  # the old path: the certified constant does not hold out there
    c = model_constant(model)
    assert c.premises.radius == 0.5
    small = torch.randn(4, 1, 16, dtype=torch.float64) * 0.05
    with torch.no_grad():
        shift = grid_lipschitz("advection", 16, shift=0.25)
        ok = operator_error_bound(
            small[:2], small[2:], torch.zeros(2), lipschitz_model=c, lipschitz_true=shift
        )
    assert ok.label == "certified" and any("<= 0.5" in p for p in ok.premises)
    with pytest.raises(PremiseError, match=r"query 0 has \|\|a\|\|_function = 500 > radius 0\.5"):
        operator_error_bound(big, small, torch.zeros(4), lipschitz_model=model,
                             lipschitz_true=1.0)  # fmt: skip
    with pytest.raises(PremiseError, match="calibration input"):
        operator_error_bound(small, big, torch.zeros(1), lipschitz_model=c, lipschitz_true=1.0)
    assert "radius" not in " ".join(
        robustness_bound(LipschitzConstant(1.0, "estimated"), 1).premises
    )
    assert any("<= 0.5" in p for p in certified_radius(model, 0.1).premises)


def test_cli_certify_refuses_data_outside_the_radius(tmp_path, capsys):
    from liponet.cli import main
    from liponet.train import save_checkpoint

    data = generate("advection", tmp_path / "adv.h5", n_samples=40, nx=32, nt=3, beta=0.25,
                    t_final=1.0)  # fmt: skip
    kwargs = {"in_channels": 1, "out_channels": 1, "modes": [4], "width": 4, "depth": 1,
              "output_scale": "auxiliary", "radius": 0.01}  # fmt: skip
    ckpt = save_checkpoint(tmp_path / "m.pt", _aux_fno(0.01).eval(),
                           config={"model": {"name": "LipFNO", "kwargs": kwargs}})  # fmt: skip
    assert main(["certify", str(ckpt), str(data), "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert "> radius 0.01" in err and err.count("\n") == 1


# ---------------------------------------------------------------- 4. training mode


def _off_power_layer():
    layer = LipLinear(2, 2, orthogonal=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor([10.0, 1.0], dtype=torch.float64)))
        layer.u.copy_(torch.tensor([0.0, 1.0]))  # the power-iteration vector misses sigma_max
    return layer


def test_training_mode_model_is_refused():
    layer = _off_power_layer()
    x = torch.zeros(1, 2, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(layer, x)[0, :, 0, :]
    assert float(torch.linalg.matrix_norm(jac, 2)) == pytest.approx(10.0)  # train-mode forward
    assert layer.lipschitz_bound() == pytest.approx(TARGET_MARGIN)  # what the certificate says
    with pytest.raises(PremiseError, match="training mode"):
        model_constant(layer)
    a = torch.randn(3, 2, dtype=torch.float64)
    with pytest.raises(PremiseError, match="training mode"):
        operator_error_bound(a, a, torch.zeros(3), lipschitz_model=layer, lipschitz_true=1.0)
    with pytest.raises(PremiseError, match="training mode"):
        rollout_error_bound([0.1], layer)
    with pytest.raises(PremiseError, match="training mode"):
        robustness_bound(layer, 0.1)
    layer.eval()
    assert model_constant(layer).label == "certified"


def test_constant_remembers_the_weights_it_was_computed_from():
    from liponet.certify import certify_rollout

    layer = LipLinear(4, 4).double().eval()
    c = model_constant(layer)
    assert c.premises.weights == weights_fingerprint(layer)
    with torch.no_grad():
        layer.weight.data.copy_(2 * layer.weight)  # a write that bumps no version counter
    assert weights_fingerprint(layer) != c.premises.weights
    x = torch.randn(2, 4, dtype=torch.float64)
    with pytest.raises(PremiseError, match="other weights"):
        certify_rollout(layer, x, 1, x, torch.zeros(2), c, 1.0)


# ---------------------------------------------------------------- 5. bare numbers


def test_bare_numbers_are_never_certified():
    layer = LipLinear(2, 2).double().eval()
    out = rollout_error_bound([0.0, 0.0, 0.0], layer)  # old: certified zeros
    assert out.label == "estimated"
    with pytest.raises(PremiseError, match="bare numbers"):
        rollout_error_bound([0.0, 0.0, 0.0], layer, step_label="certified")
    measured = ErrorBound(torch.zeros(1, 3, dtype=torch.float64), "certified", "defects",
                          "function", premises=("exact defects",))  # fmt: skip
    assert rollout_error_bound(measured, layer).label == "certified"
    with pytest.raises(ValueError, match="needs source="):
        LipschitzConstant(1.0, "certified")
    # max_error_bound: a float L_g is an unverified claim
    x = torch.linspace(0, 1, 5, dtype=torch.float64)

    def g(p):
        return torch.zeros(p.shape[0], 1, dtype=torch.float64)

    res = max_error_bound(g, [x], torch.zeros(5), 1.0, lipschitz_model=0.0)
    assert res.label == "estimated" and not res.certified and "bare number" in res.note
    vouched = LipschitzConstant(0.0, "certified", "euclidean", "euclidean", "g is constant")
    assert max_error_bound(g, [x], torch.zeros(5), 1.0, lipschitz_model=vouched).certified


# ---------------------------------------------------------------- 7. calibration data


def test_conformal_bound_is_statistical_only_on_held_out_calibration():
    errors = torch.rand(50, dtype=torch.float64)
    queries = torch.zeros(3, 1, 4)
    assert conformal_error_bound(queries, errors).label == "estimated"
    held = conformal_error_bound(queries, errors, held_out=True)
    assert held.label == "statistical" and "held out" in held.premises[0]


def test_estimated_true_constant_keeps_its_label():
    a = torch.randn(8, 1, 8, dtype=torch.float64)
    c = estimate_true_lipschitz(a, 2 * a)
    assert c.label == "estimated" and c.premises.discretization == "any grid"
