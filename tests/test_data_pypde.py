"""Generators against py-pde (an independent solver) on a few samples.

(Burgers is checked against its exact Cole-Hopf solution instead: tests/test_burgers_solvers.py.)

py-pde integrates the method-of-lines system with scipy's adaptive RK45 at tight tolerances
(rtol 1e-9), so its time error is negligible. Marked slow: py-pde's numba compilation takes
~20 s per equation on this machine.
"""

import numpy as np
import pytest

from liponet.data import simulate

pde = pytest.importorskip("pde")
pytestmark = pytest.mark.slow

SOLVE = dict(dt=1e-4, solver="scipy", rtol=1e-9, atol=1e-11, tracker=None)


def rel_max(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_diffusion_reaction_1d_against_pypde():
    """Same 3-point periodic Laplacian as py-pde: the semi-discrete systems are identical and only
    time stepping differs (Strang splitting + forward Euler, dt <= dx^2 / (4 nu) ~ 1.2e-4), a
    first-order error in dt; tolerance 1e-4 relative max (measured 1.1e-5 and 7.3e-6)."""
    nu, rho, t_final, nx = 0.5, 1.0, 0.2, 64
    ours = (
        next(
            simulate(
                "diffusion_reaction_1d", n_samples=2, nx=nx, nt=2, nu=nu, rho=rho, t_final=t_final
            )
        )[1]["tensor"]
        .double()
        .numpy()
    )
    grid = pde.CartesianGrid([[0, 1]], [nx], periodic=True)
    eq = pde.PDE({"u": f"{nu} * laplace(u) + {rho} * u * (1 - u)"})
    for i in range(2):
        ref = eq.solve(pde.ScalarField(grid, ours[i, 0]), t_range=t_final, **SOLVE).data
        assert rel_max(ours[i, -1], ref) < 1e-4


def test_diffusion_reaction_2d_against_pypde(monkeypatch):
    """FitzHugh-Nagumo: py-pde's Neumann condition (derivative 0) uses the same mirrored ghost
    cells, so again only time stepping differs (forward Euler, first order): the gap must halve
    when dt halves (measured ratio 2.03), and stay below 1.5e-2 relative max at dt = 5e-3
    (measured 7.6e-3; 1.5e-2 at dt = 1e-2; T = 0.5, 16 x 16)."""
    from liponet.data.generators import fitzhugh_nagumo

    n, t_final = 16, 0.5
    du, dv, k = 1e-3, 5e-3, 5e-3
    grid = pde.CartesianGrid([[-1, 1], [-1, 1]], [n, n])
    eq = pde.PDE(
        {"u": f"{du} * laplace(u) + u - u**3 - {k} - v", "v": f"{dv} * laplace(v) + u - v"},
        bc={"derivative": 0},
    )
    errors = []
    for max_dt in (1e-2, 5e-3):
        monkeypatch.setattr(fitzhugh_nagumo, "MAX_DT", max_dt)
        ours = (
            next(
                simulate("diffusion_reaction_2d", n_samples=1, nx=n, nt=2, t_final=t_final, seed=4)
            )[1]["data"]
            .double()
            .numpy()[0]
        )
        state = pde.FieldCollection(
            [pde.ScalarField(grid, ours[0, ..., 0]), pde.ScalarField(grid, ours[0, ..., 1])]
        )
        ref = eq.solve(state, t_range=t_final, **SOLVE)
        ref_uv = np.stack([ref[0].data, ref[1].data], -1)
        errors.append(rel_max(ours[-1], ref_uv))
    assert errors[1] < 1.5e-2, errors
    assert 1.7 < errors[0] / errors[1] < 2.3, errors
