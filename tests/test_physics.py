import math

import pytest
import torch

from liponet.models import MLP, LipDeepONet, LipMLP
from liponet.physics import (
    Advection,
    Burgers,
    DiffusionReaction,
    PhysicsLoss,
    grid_derivatives,
    make_pde,
    pointwise_derivatives,
)

F64 = torch.float64
K = 2 * math.pi  # wavenumber of one period on [0, 1)


# Exact solutions u(x, t) written in torch (so autograd differentiates the formula itself).
def advection_exact(beta):
    return lambda x, t: torch.sin(K * (x - beta * t)) + 0.5 * torch.cos(2 * K * (x - beta * t))


def heat_exact(nu):  # diffusion-reaction with rho = 0: Fourier modes decay as exp(-nu k^2 t)
    return lambda x, t: (
        torch.exp(-nu * K**2 * t) * torch.sin(K * x)
        + torch.exp(-nu * (3 * K) ** 2 * t) * torch.cos(3 * K * x)
    )


def logistic_exact(rho, u0=0.2):  # spatially constant diffusion-reaction
    return lambda x, t: 1.0 / (1.0 + (1.0 / u0 - 1.0) * torch.exp(-rho * t)) + 0.0 * x


def burgers_exact(nu, eps=0.5):  # Cole-Hopf: u = -2 nu' phi_x / phi, phi solves the heat eq.
    nup = nu / math.pi

    def u(x, t):
        decay = eps * torch.exp(-nup * K**2 * t)
        phi = 1.0 + decay * torch.cos(K * x)
        return 2 * nup * K * decay * torch.sin(K * x) / phi

    return u


CASES = {
    "advection": (Advection(beta=0.7), advection_exact(0.7), Advection(beta=0.5)),
    "heat": (DiffusionReaction(nu=0.01, rho=0.0), heat_exact(0.01), DiffusionReaction(0.02, 0.0)),
    "logistic": (
        DiffusionReaction(nu=0.3, rho=2.0),
        logistic_exact(2.0),
        DiffusionReaction(nu=0.3, rho=1.0),
    ),
    "burgers": (Burgers(nu=0.1), burgers_exact(0.1), Burgers(nu=0.3)),
}


def _pointwise(fn):
    return lambda c: fn(c[..., 0], c[..., 1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_pointwise_residual_vanishes_on_exact_solution_only(case):
    pde, exact, wrong = CASES[case]
    coords = torch.rand(200, 2, dtype=F64)
    residual = pde.residual(pointwise_derivatives(_pointwise(exact), coords))
    assert float(residual.detach().abs().max()) < 1e-10
    scale = float(pointwise_derivatives(_pointwise(exact), coords).u_t.detach().abs().max())
    bad = wrong.residual(pointwise_derivatives(_pointwise(exact), coords))
    assert float(bad.detach().abs().max()) > 1e-2 * scale
    # A perturbed solution is not a solution either.
    perturbed = lambda x, t: exact(x, t) + 0.1 * torch.sin(2 * K * x) * t  # noqa: E731
    off = pde.residual(pointwise_derivatives(_pointwise(perturbed), coords))
    assert float(off.detach().abs().max()) > 1e-2


def _grid_field(exact, nt, nx=32, t_end=0.5):
    x = torch.arange(nx, dtype=F64) / nx
    t = torch.linspace(0, t_end, nt, dtype=F64)
    return exact(x.view(1, -1), t.view(-1, 1)).unsqueeze(0), t_end / (nt - 1)  # (1, nt, nx)


@pytest.mark.parametrize("case", sorted(CASES))
def test_grid_residual_vanishes_at_second_order_in_dt(case):
    pde, exact, wrong = CASES[case]
    errors = []
    for nt in (41, 81):
        u, dt = _grid_field(exact, nt)
        errors.append(float(pde.residual(grid_derivatives(u, 1.0, dt)).detach().abs().max()))
    u, dt = _grid_field(exact, 81)
    scale = float(grid_derivatives(u, 1.0, dt).u_t.detach().abs().max())
    assert errors[1] < 1e-3 * scale
    # Halving dt divides the (time finite-difference) error by ~4: second order.
    assert errors[1] < errors[0] / 3.5
    bad = float(wrong.residual(grid_derivatives(u, 1.0, dt)).detach().abs().max())
    assert bad > 1e-2 * scale


def test_spectral_x_derivatives_are_exact_for_band_limited_fields():
    x = torch.arange(16, dtype=F64) / 16
    u = (torch.sin(3 * K * x) + torch.cos(7 * K * x)).expand(2, 3, 16)  # (batch, nt, nx)
    d = grid_derivatives(u, 1.0, 0.1)
    ux = 3 * K * torch.cos(3 * K * x) - 7 * K * torch.sin(7 * K * x)
    uxx = -((3 * K) ** 2) * torch.sin(3 * K * x) - (7 * K) ** 2 * torch.cos(7 * K * x)
    torch.testing.assert_close(d.u_x, ux.expand(2, 3, 16), rtol=0, atol=1e-10)
    torch.testing.assert_close(d.u_xx, uxx.expand(2, 3, 16), rtol=0, atol=1e-9)
    torch.testing.assert_close(d.u_t, torch.zeros_like(u), rtol=0, atol=1e-12)
    # A period of length 2 halves the first derivative.
    torch.testing.assert_close(grid_derivatives(u, 2.0, 0.1).u_x, ux.expand(2, 3, 16) / 2)


def _finite_difference(fn, coords, h=1e-5):
    ex = torch.tensor([h, 0.0], dtype=F64)
    et = torch.tensor([0.0, h], dtype=F64)
    with torch.no_grad():
        u0, up, um = fn(coords), fn(coords + ex), fn(coords - ex)
        u_x = (up - um) / (2 * h)
        u_t = (fn(coords + et) - fn(coords - et)) / (2 * h)
        u_xx = (up - 2 * u0 + um) / h**2
    return u_x, u_t, u_xx


def test_autograd_through_models_matches_finite_differences():
    torch.manual_seed(0)
    mlp = MLP(2, 1, width=8, depth=2).double().eval()
    coords = torch.rand(10, 2, dtype=F64)
    d = pointwise_derivatives(mlp, coords)
    u_x, u_t, u_xx = _finite_difference(lambda c: mlp(c).reshape(-1), coords)
    torch.testing.assert_close(d.u_x, u_x, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(d.u_t, u_t, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(d.u_xx, u_xx, rtol=1e-3, atol=1e-4)
    # DeepONet: autograd through the trunk, per-sample coordinates (batch, n_points, 2).
    onet = LipDeepONet(8, domain=([0.0, 0.0], [1.0, 1.0]), n_basis=4, width=8).double().eval()
    u0 = torch.randn(3, 1, 8, dtype=F64)
    coords = torch.rand(3, 5, 2, dtype=F64)
    fn = lambda c: onet(u0, c)  # noqa: E731
    d = pointwise_derivatives(fn, coords, second_order=False)
    assert d.u.shape == (3, 5) and d.u_xx is None
    u_x, u_t, _ = _finite_difference(lambda c: fn(c).reshape(3, 5), coords)
    torch.testing.assert_close(d.u_x, u_x, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(d.u_t, u_t, rtol=1e-6, atol=1e-8)


def test_physics_loss_terms_and_gradients():
    torch.manual_seed(0)
    model = LipMLP(2, 1, width=8, depth=2)
    loss = PhysicsLoss(Advection(0.5), weight=2.0, ic_weight=3.0, bc_weight=5.0)
    coords = torch.rand(16, 2)
    x0 = torch.stack([torch.rand(8), torch.zeros(8)], dim=-1)
    u0 = torch.sin(K * x0[:, 0])
    terms = loss.pointwise(model, coords, initial=(x0, u0), x_bounds=(0.0, 1.0))
    expected = 2.0 * terms.residual + 3.0 * terms.initial + 5.0 * terms.boundary
    torch.testing.assert_close(terms.total, expected)
    assert float(terms.initial.detach()) > 0 and float(terms.boundary.detach()) > 0
    terms.total.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
    # Exact solution: every term vanishes.
    exact = _pointwise(advection_exact(0.5))
    terms = loss.pointwise(
        exact,
        coords.double(),
        initial=(x0.double(), advection_exact(0.5)(x0[:, 0].double(), 0.0 * x0[:, 0].double())),
        x_bounds=(0.0, 1.0),
    )
    assert float(terms.total.detach()) < 1e-20
    # Grid path with an initial-condition term.
    u, dt = _grid_field(advection_exact(0.5), 81)
    grid = PhysicsLoss(Advection(0.5), ic_weight=1.0).grid(u, 1.0, dt, u0=u[:, 0] + 0.1)
    torch.testing.assert_close(grid.initial, torch.tensor(0.01, dtype=F64))
    assert float(grid.residual) < 1e-6


def test_errors():
    with pytest.raises(ValueError, match=r"unknown PDE 'heat'; available: advection, burgers"):
        make_pde("heat")
    with pytest.raises(ValueError, match="bad coefficients for PDE 'advection'"):
        make_pde("advection", nu=1.0)
    with pytest.raises(ValueError, match=r"coords must be \(\.\.\., 2\)"):
        pointwise_derivatives(lambda c: c.sum(-1), torch.rand(4, 3))
    with pytest.raises(ValueError, match="one value per point"):
        pointwise_derivatives(lambda c: c, torch.rand(4, 2))
    with pytest.raises(ValueError, match="nt >= 3"):
        grid_derivatives(torch.rand(2, 2, 8), 1.0, 0.1)
    with pytest.raises(ValueError, match="positive"):
        grid_derivatives(torch.rand(2, 4, 8), 1.0, 0.0)
