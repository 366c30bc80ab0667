import math

import pytest
import torch

from liponet.studies.burgers import burgers_exact, solve_burgers
from liponet.studies.regression import RegressionConfig


def test_cole_hopf_solution_matches_initial_condition_and_pde():
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    start = torch.stack([x, torch.zeros_like(x)], dim=1)
    torch.testing.assert_close(
        burgers_exact(start, 0.05), torch.sin(2 * math.pi * x), rtol=0, atol=1e-10
    )
    # u_t + u u_x - nu u_xx = 0 by finite differences at interior points.
    nu, h = 0.05, 1e-4
    p = torch.tensor([[0.3, 0.2], [0.55, 0.5], [0.9, 0.8]], dtype=torch.float64)
    ex, et = (
        torch.tensor([h, 0.0], dtype=torch.float64),
        torch.tensor([0.0, h], dtype=torch.float64),
    )
    u = burgers_exact(p, nu)
    u_t = (burgers_exact(p + et, nu) - burgers_exact(p - et, nu)) / (2 * h)
    u_x = (burgers_exact(p + ex, nu) - burgers_exact(p - ex, nu)) / (2 * h)
    u_xx = (burgers_exact(p + ex, nu) - 2 * u + burgers_exact(p - ex, nu)) / h**2
    torch.testing.assert_close(
        u_t + u * u_x - nu * u_xx, torch.zeros(3, dtype=torch.float64), rtol=0, atol=1e-5
    )


def test_py_pde_reference_converges_to_the_exact_solution():
    errors = []
    for n in (32, 64):
        ref = solve_burgers(0.05, n_x=n, n_t=16)
        assert ref.x[0] < 0 < 1 < ref.x[-1] and ref.t[0] == 0 and ref.t[-1] == 1
        nodes = torch.cartesian_prod(ref.x, ref.t)
        exact = burgers_exact(nodes, 0.05).reshape(ref.u.shape)
        errors.append(float((ref.u - exact).abs().max()))
    assert errors[1] < 0.02
    assert errors[1] < errors[0] / 2.5  # second order in space


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="nu"):
        solve_burgers(0.0)
    with pytest.raises(ValueError, match="n_x"):
        solve_burgers(0.1, n_x=2)
    with pytest.raises(ValueError, match="subdivisions"):
        RegressionConfig(subdivisions=0).check()
    with pytest.raises(ValueError, match="lr"):
        RegressionConfig(lr=float("nan")).check()
