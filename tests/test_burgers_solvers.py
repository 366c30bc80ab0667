"""The three Burgers solvers against the exact Cole-Hopf solution, in one place.

``liponet.studies.burgers.burgers_exact`` (Cole-Hopf, from ``u(x, 0) = sin(2 pi x)``) is the
reference; each solver keeps its own purpose: the finite-volume data generator (PDEBench's scheme,
``liponet.data``), the pseudo-spectral reference of the operator certificates
(``liponet.certify.reference.burgers``) and the py-pde solution the regression study fits
(``liponet.studies.burgers.solve_burgers``).
"""

import math

import torch

from liponet.certify import reference
from liponet.data.generators.burgers import Burgers
from liponet.studies.burgers import burgers_exact, solve_burgers

NU, T = 0.05, 0.3  # a steep but resolved front (inviscid shock time 1 / (2 pi) ~ 0.16)


def _sine_and_exact(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``sin(2 pi x)`` at ``n`` cell centres and the exact solution there at ``T``."""
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    exact = burgers_exact(torch.stack([x, torch.full_like(x, T)], 1), NU)
    return torch.sin(2 * math.pi * x)[None], exact


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


def test_finite_volume_generator_converges_to_the_exact_solution():
    # PDEBench's convention: diffusion nu / pi, so nu = pi NU is the same PDE.
    errors = []
    for n in (32, 64):
        u0, exact = _sine_and_exact(n)
        u = Burgers(n, 2, {"nu": NU * math.pi, "t_final": T}).advance(u0, T)[0]
        errors.append(float((u - exact).abs().max()))
    assert errors[1] < 2e-3, errors  # measured 3.5e-3, 7.7e-4 (max |u| = 0.51)
    assert errors[0] / errors[1] > 3.0, errors  # second order (measured 4.5x)


def test_pseudo_spectral_reference_matches_the_exact_solution():
    u0, exact = _sine_and_exact(64)
    u = reference.burgers(u0[:, None], NU, T)[0, 0]
    torch.testing.assert_close(u, exact, rtol=0, atol=1e-8)  # measured 1.2e-10
