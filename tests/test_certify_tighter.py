import math

import pytest
import torch
from opcheck import HeatSurrogate, make_data

from liponet.certify import (
    calibration_sweep,
    conformal_error_bound,
    coverage_report,
    error_lipschitz_bound,
    estimate_true_lipschitz,
    grid_lipschitz,
    observed_errors,
    operator_error_bound,
    reference,
    residual_error_bound,
)
from liponet.certify.tighter import conformal_quantile


def heat(a):
    return reference.heat(a, 0.01, 0.5)


MODEL = HeatSurrogate(0.012, 0.5)  # a good surrogate: small, smoothly varying error
#: L_G of the reference heat step on the 32-point samples (a theorem about the discrete map).
HEAT_32 = grid_lipschitz("heat", 32, nu=0.01, t=0.5)


def pairs(n, seed, **family):
    a = make_data(n, 32, seed=seed, **family)
    return a, heat(a), MODEL(a)


def test_error_lipschitz_bound_covers_in_family_and_beats_the_plain_bound():
    calib, targets, preds = pairs(128, 1)
    query, q_targets, q_preds = pairs(64, 2)
    observed = observed_errors(q_targets, q_preds)
    bound = error_lipschitz_bound(query, calib, targets, preds, safety=1.5)
    plain = operator_error_bound(
        query, calib, calib_targets=targets, calib_preds=preds, lipschitz_model=MODEL,
        lipschitz_true=HEAT_32,
    )  # fmt: skip
    assert bound.label == "estimated" and bound.name == "error-lipschitz"
    assert coverage_report(bound, observed).violations == 0
    assert coverage_report(plain, observed).violations == 0
    assert float(bound.bound.median()) < float(plain.bound.median()) / 10


def test_error_lipschitz_bound_fails_when_queries_leave_the_calibration_family():
    # the error operator (a Fourier multiplier) gains 0.048 at wavenumber 1 and 0.096 at 2:
    # calibration on wavenumber 1 alone under-estimates its constant by half
    calib, targets, preds = pairs(128, 3, max_wavenumber=1)
    query, q_targets, q_preds = pairs(64, 4, max_wavenumber=3)
    bound = error_lipschitz_bound(query, calib, targets, preds)
    assert coverage_report(bound, observed_errors(q_targets, q_preds)).violations > 0


def test_estimated_true_constant_fails_when_its_assumption_breaks():
    def cube(a):  # a pointwise nonlinearity: steeper at large amplitude
        return a**3

    calib = make_data(64, 16, seed=5, amplitude=0.3)
    query = make_data(64, 16, seed=6, amplitude=2.0)
    zero = torch.zeros_like
    estimate = estimate_true_lipschitz(calib, cube(calib), safety=1.2)
    bound = operator_error_bound(
        query, calib, calib_targets=cube(calib), calib_preds=zero(calib),
        lipschitz_model=0.0, lipschitz_true=estimate,
    )  # fmt: skip
    assert bound.label == "estimated"
    assert coverage_report(bound, observed_errors(cube(query), zero(query))).violations > 0


def test_conformal_quantile_rank():
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0])
    assert conformal_quantile(scores, 0.5) == 3.0  # rank ceil(6 * 0.5) = 3
    assert conformal_quantile(scores, 0.1) == math.inf  # rank 6 > 5
    with pytest.raises(ValueError, match="alpha"):
        conformal_quantile(scores, 1.5)


def test_conformal_bound_covers_exchangeable_queries_and_fails_under_shift():
    alpha = 0.2
    _, targets, preds = pairs(400, 7)
    bound_in = conformal_error_bound(
        make_data(400, 32, seed=8), alpha=alpha, calib_targets=targets, calib_preds=preds,
        held_out=True,
    )  # fmt: skip
    assert bound_in.label == "statistical"
    _, q_targets, q_preds = pairs(400, 8)
    report = coverage_report(bound_in, observed_errors(q_targets, q_preds))
    # 1 - alpha in expectation; 400 queries: the standard deviation is 0.02
    assert report.coverage >= 1 - alpha - 0.06
    _, s_targets, s_preds = pairs(400, 9, amplitude=3.0)
    shifted = coverage_report(bound_in, observed_errors(s_targets, s_preds))
    assert shifted.coverage < 1 - alpha - 0.2


def _heat_space_time(a, nu_model, t):
    return reference.heat(a, nu_model, t)


def test_residual_bound_covers_a_space_time_heat_surrogate_and_fails_when_unstable():
    nu, nu_model, t_final = 0.01, 0.013, 0.5
    a = make_data(16, 32, seed=10)
    k2 = (2 * math.pi * torch.fft.fftfreq(32, d=1 / 32, dtype=torch.float64)) ** 2

    def residual(t):  # r = û_t - nu û_xx, exact in Fourier for û = heat(a, nu_model, t)
        coeffs = torch.fft.fft(_heat_space_time(a, nu_model, t), dim=-1)
        return torch.fft.ifft((nu - nu_model) * k2 * coeffs, dim=-1).real

    start = a + 0.01 * torch.sin(2 * math.pi * reference.grid(32))  # û(., 0) != a
    initial = observed_errors(a, start)
    # û(t) = heat(a, nu_model, t) + heat(start - a, nu, t): û(0) = start, residual = residual(t)
    surrogate = _heat_space_time(a, nu_model, t_final) + reference.heat(start - a, nu, t_final)
    bound = residual_error_bound(initial, residual, t_final, n_times=64)
    assert bound.label == "estimated"
    observed = observed_errors(heat(a), surrogate)
    assert coverage_report(bound, observed).violations == 0
    # broken assumption: u_t = nu u_xx + lam u is not a contraction. Its exact solution and the
    # surrogate e^{lam t} û have error e^{lam T} (heat error) and residual e^{lam t} residual(t);
    # the stability constant 1 is then wrong and the bound fails.
    lam = 20.0
    unstable = residual_error_bound(
        initial, lambda t: math.exp(lam * t) * residual(t), t_final, n_times=64
    )
    unstable_observed = observed_errors(
        math.exp(lam * t_final) * heat(a), math.exp(lam * t_final) * surrogate
    )
    assert coverage_report(unstable, unstable_observed).violations > 0


def test_calibration_sweep_bound_shrinks_with_more_samples():
    calib, targets, preds = pairs(256, 11)
    query, q_targets, q_preds = pairs(32, 12)
    observed = observed_errors(q_targets, q_preds)

    def make(n):
        return operator_error_bound(
            query, calib[:n], calib_targets=targets[:n], calib_preds=preds[:n],
            lipschitz_model=MODEL, lipschitz_true=HEAT_32,
        )  # fmt: skip

    rows = calibration_sweep(make, [16, 256], observed)
    assert [n for n, _ in rows] == [16, 256]
    assert all(r.coverage == 1.0 for _, r in rows)
    assert rows[1][1].bound_median < rows[0][1].bound_median


def test_pointwise_activations_are_not_lipschitz_in_a_negative_sobolev_norm():
    # why no LipFNO certificate in H^-1: |sin(2 pi N x)| has mean 2/pi while sin(2 pi N x) -> 0
    # in H^-1, so the ratio ||abs(u) - abs(0)||_{H^-1} / ||u - 0||_{H^-1} grows like N
    from liponet.certify import field_norm
    from liponet.layers import Abs

    x = reference.grid(256)
    ratios = []
    for n in (2, 8, 32):
        u = torch.sin(2 * math.pi * n * x).reshape(1, 1, -1)
        ratios.append(float(field_norm(Abs()(u), "sobolev:-1") / field_norm(u, "sobolev:-1")))
    assert ratios[0] < ratios[1] < ratios[2]
    assert ratios[2] > 100  # while Abs is 1-Lipschitz in L2
