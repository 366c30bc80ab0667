"""The logistic reaction's pairwise constant: never below exact Jacobian norms or pair ratios."""

from __future__ import annotations

import math

import pytest
import torch

from liponet.certify import (
    LipschitzConstant,
    PremiseError,
    generator_lipschitz,
    logistic_pair_bound,
    logistic_pair_lipschitz,
)
from liponet.data.generators.reaction_diffusion import DiffusionReaction1D


def scheme(nx=16, nt=3, **params):
    """The generator's own map between frames 0 and nt - 1, and the file's attributes."""
    fam = DiffusionReaction1D(nx, nt, {"t_final": 1.0, **params})
    attrs = {**fam.attributes(), **fam.discretization_attributes()}

    def g(u):
        for _ in range(nt - 1):
            u = fam.advance(u, fam.dt_save)
        return u

    return g, attrs, nt - 1


def fields(n, nx, seed, lo=0.0):
    """Positive sine-series fields rescaled to [lo, 1] per sample (as the generator's inputs)."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.arange(nx, dtype=torch.float64) + 0.5) / nx
    k = torch.randint(1, 4, (n, 3, 1), generator=gen)
    amp = torch.rand(n, 3, 1, generator=gen, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, 3, 1, generator=gen, dtype=torch.float64)
    u = (amp * torch.sin(2 * math.pi * k * x + phase)).sum(1)
    low, high = u.amin(-1, keepdim=True), u.amax(-1, keepdim=True)
    return lo + (1 - lo) * (u - low) / (high - low)


@pytest.mark.parametrize(("rho", "nu"), [(5.0, 0.1), (1.0, 0.5), (3.0, 0.0)])
def test_pair_constant_bounds_exact_jacobians_on_the_segment(rho, nu):
    g, attrs, frames = scheme(rho=rho, nu=nu)
    a, b = fields(3, 16, seed=1), fields(3, 16, seed=2)
    pair = logistic_pair_lipschitz(a, b, attrs, frames=frames)
    whole = generator_lipschitz(attrs, frames=frames)[0].value
    assert bool((pair <= whole).all())
    for p in range(3):
        for s in (0.0, 0.3, 0.7, 1.0):
            w = a[p] + s * (b[p] - a[p])
            jac = torch.autograd.functional.jacobian(lambda u: g(u[None])[0], w)
            exact = float(torch.linalg.matrix_norm(jac, 2))
            assert exact <= float(pair[p]), (p, s, exact, float(pair[p]))
        # at the pointwise minimum itself the bound is Schur's test on the exact Jacobian
        lower = torch.minimum(a[p], b[p])
        jac = torch.autograd.functional.jacobian(lambda u: g(u[None])[0], lower)
        schur = math.sqrt(float(jac.sum(0).max()) * float(jac.sum(1).max()))
        assert float(pair[p]) == pytest.approx(min(schur, whole), rel=1e-9)


def test_pair_constant_never_below_pair_ratios_and_far_below_exp_rho_t():
    g, attrs, frames = scheme(nx=32, nt=5, rho=5.0, nu=0.1)
    a = fields(24, 32, seed=3)
    i, j = torch.triu_indices(24, 24, offset=1)
    y = g(a)
    for norm, reduce in (("function", lambda d: d.pow(2).mean(-1).sqrt()),
                         ("sup", lambda d: d.abs().amax(-1))):  # fmt: skip
        pair = logistic_pair_lipschitz(a[i], a[j], attrs, frames=frames, norm=norm)
        ratio = reduce(y[i] - y[j]) / reduce(a[i] - a[j])
        assert bool((ratio <= pair).all())
        assert float(pair.max()) < 0.1 * math.exp(5.0)  # the class constant exp(rho t) = 148


def test_gradient_ascent_on_pairs_stays_below_their_pair_constant():
    # an attack: maximize ||G(a) - G(b)|| / ||a - b|| over non-negative pairs (b = a + small d)
    g, attrs, frames = scheme(rho=4.0, nu=0.05)
    torch.manual_seed(0)
    a0 = fields(4, 16, seed=5, lo=0.0)
    d = (1e-3 * torch.randn(4, 16, dtype=torch.float64)).requires_grad_()
    a = a0.clone().requires_grad_()
    opt = torch.optim.Adam([a, d], lr=1e-2)
    for _ in range(60):
        aa = a.clamp(0, 1)
        bb = (aa + d).clamp(0, 1)
        ratio = (g(aa) - g(bb)).norm(dim=-1) / (aa - bb).norm(dim=-1).clamp_min(1e-12)
        opt.zero_grad()
        (-ratio.sum()).backward()
        opt.step()
    with torch.no_grad():
        aa, bb = a.clamp(0, 1), (a + d).clamp(0, 1)
        ratio = (g(aa) - g(bb)).norm(dim=-1) / (aa - bb).norm(dim=-1)
        pair = logistic_pair_lipschitz(aa, bb, attrs, frames=frames)
    assert bool((ratio <= pair).all()), (ratio, pair)


def test_pairwise_bound_covers_and_beats_the_class_constant():
    g, attrs, frames = scheme(nx=32, nt=5, rho=5.0, nu=0.1)
    a = fields(40, 32, seed=7)[:, None]
    y = g(a[:, 0])[:, None]
    pred = y + 0.01 * torch.sin(7 * a)  # a model off by a smooth error
    model = LipschitzConstant(1.0, "certified", source="a 1-Lipschitz model")
    bound = logistic_pair_bound(a[:10], a[10:], y[10:], pred[10:], model, attrs, frames=frames)
    observed = (y[:10] - pred[:10]).pow(2).mean((-2, -1)).sqrt()
    assert bound.label == "certified" and bool((observed <= bound.bound).all())
    whole = generator_lipschitz(attrs, frames=frames)[0].value
    dist = (a[:10, None] - a[None, 10:]).pow(2).mean((-2, -1)).sqrt()
    errors = (y[10:] - pred[10:]).pow(2).mean((-2, -1)).sqrt()
    plain = (errors[None] + (whole + 1.0) * dist).amin(1)
    assert bool((bound.bound < 0.1 * plain).all())


def test_refusals_name_the_premise():
    _, attrs, frames = scheme()
    a = fields(2, 16, seed=0)
    with pytest.raises(PremiseError, match="< 0"):
        logistic_pair_lipschitz(a - 0.1, a, attrs, frames=frames)
    with pytest.raises(PremiseError, match="stride"):
        logistic_pair_lipschitz(a, a, attrs, frames=frames, spatial_stride=2)
    with pytest.raises(PremiseError, match="not Strang"):
        logistic_pair_lipschitz(a, a, {**attrs, "discretization": "exact-samples"}, frames=1)
    with pytest.raises(PremiseError, match="rho"):
        logistic_pair_lipschitz(a, a, {**attrs, "rho": -1.0}, frames=frames)
    with pytest.raises(PremiseError, match="substeps"):
        logistic_pair_lipschitz(a, a, {**attrs, "Nu": 0.37}, frames=frames)
