import math

import pytest
import torch
from certcheck import check_attack, check_export, check_jacobian, check_persistence

from liponet.certify import (
    BOUND_METHODS,
    GridInterpolant,
    TargetLipschitzEstimate,
    estimate_target_lipschitz,
    max_error_bound,
)
from liponet.models import MLP, LipMLP

DOMAIN_1D = ([0.0], [1.0])
DOMAIN_2D = ([0.0, 0.0], [1.0, 1.0])


def f1(p):  # 3-Lipschitz on R
    return torch.sin(3 * p[:, :1])


def f2(p):  # |grad| <= 3 (see test docstring)
    return (torch.sin(3 * p[:, 0]) * torch.cos(2 * p[:, 1]))[:, None]


def grid_values(f, axes):
    nodes = torch.cartesian_prod(*axes).reshape(-1, len(axes))
    return f(nodes).reshape(*(a.numel() for a in axes), -1)


VARIANTS = {
    "a_k1": lambda d: LipMLP(d, 1, width=8, depth=2, k=1.0),
    "a_k4": lambda d: LipMLP(d, 1, width=8, depth=2, k=4.0),
    "b_free_last": lambda d: LipMLP(d, 1, width=8, depth=2, free_last_layer=True),
    "c_vector": lambda d: LipMLP(d, 1, width=8, depth=2, output_scale="vector"),
    "d_auxiliary": lambda d: LipMLP(
        d, 1, width=8, depth=2, output_scale="auxiliary", domain=([0.0] * d, [1.0] * d)
    ),
    "mlp_gelu": lambda d: MLP(d, 1, width=8, depth=2),
}


def fit(model, f, axes, steps=60):
    torch.manual_seed(0)
    x = torch.cartesian_prod(*axes).reshape(-1, len(axes)).double()
    y = f(x)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("dim", [1, 2])
def test_certificate_holds_on_dense_validation_for_every_variant(name, dim):
    """f2: |grad f|^2 = 9 cos^2 cos^2 + 4 sin^2 sin^2 <= 9, so L_f = 3 for both targets."""
    torch.manual_seed(1)
    f = f1 if dim == 1 else f2
    axes = [torch.linspace(0, 1, 9, dtype=torch.float64)] * dim
    model = fit(VARIANTS[name](dim).double(), f, axes)
    values = grid_values(f, axes)
    points = torch.rand(20_000, dim, dtype=torch.float64)
    points[:dim] = 0.5  # the cell faces are covered too
    errors = (f(points) - model(points).detach()).abs()[:, 0]
    assert errors.max() > 0
    for method in BOUND_METHODS:
        res = max_error_bound(model, axes, values, 3.0, method=method, subdivisions=4)
        assert res.certified and res.label == "certified" and res.consistent
        assert res.violations(points, errors) == 0, (method, res.bound, float(errors.max()))
        assert float(errors.max()) <= res.bound
        assert res.floor <= res.bound
        assert res.per_cell.shape == (8,) * dim


def test_one_dimensional_cell_bound_is_the_exact_maximum():
    x = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    values = torch.tensor([0.0, 1.0, -0.5], dtype=torch.float64)
    g = lambda p: torch.zeros(p.shape[0], 1, dtype=torch.float64)  # noqa: E731
    lip = 2.0 + 0.5
    res = max_error_bound(g, [x], values, 2.0, lipschitz_model=0.5, method="cell")
    t = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    for j in range(2):
        a, b = x[j], x[j + 1]
        pts = a + t * (b - a)
        cone = torch.minimum(
            values[j].abs() + lip * (pts - a), values[j + 1].abs() + lip * (b - pts)
        )
        # dense sampling reaches the exact max up to the cone's slope times the spacing
        assert cone.max() <= res.per_cell[j] + 1e-12
        assert res.per_cell[j] <= cone.max() + lip * (b - a) / 100_000 + 1e-12
    # A jump larger than L h: the max is at the far corner, min(|e_a|, |e_b|) + L h.
    res = max_error_bound(
        g, [x[:2]], torch.tensor([0.0, 5.0]), 2.0, lipschitz_model=0.5, method="cell"
    )
    assert res.bound == pytest.approx(0.0 + lip * 0.3)
    assert not res.consistent and not res.certified  # |5 - 0| > 2 * 0.3


def test_method_ordering_where_theory_says_so():
    torch.manual_seed(0)
    axes = [
        torch.linspace(0, 1, 7, dtype=torch.float64),
        torch.linspace(0, 1, 5, dtype=torch.float64),
    ]
    values = grid_values(f2, axes)
    model = fit(LipMLP(2, 1, width=8, depth=2, k=2.0).double(), f2, axes, steps=30)
    res = {
        m: max_error_bound(model, axes, values, 3.0, method=m, subdivisions=6)
        for m in BOUND_METHODS
    }
    lip = 3.0 + model.lipschitz_bound()
    # Pointwise: up - g <= min_i(e_i + L d_i), g - lo <= min_i(-e_i + L d_i), on the same sub-grid
    # and with the same safety term: envelope <= cell per cell (dim >= 2).
    assert bool((res["envelope"].per_cell <= res["cell"].per_cell + 1e-12).all())
    # The cone's sub-grid max is at most the global bound's max|e| + L * half-diagonal.
    delta = math.hypot(1 / 6, 1 / 4) / (2 * 6)
    assert res["cell"].bound <= res["global"].bound + lip * delta + 1e-12
    # 1-D: envelope (sub-grid) <= exact cell bound + L delta.
    x = torch.linspace(0, 1, 9, dtype=torch.float64)
    model1 = fit(LipMLP(1, 1, width=8, depth=2, k=2.0).double(), f1, [x], steps=30)
    v1 = grid_values(f1, [x])
    env = max_error_bound(model1, [x], v1, 3.0, method="envelope", subdivisions=8)
    cell = max_error_bound(model1, [x], v1, 3.0, method="cell")
    lip1 = 3.0 + model1.lipschitz_bound()
    assert bool((env.per_cell <= cell.per_cell + lip1 * (1 / 8) / 16 + 1e-12).all())


def test_envelope_floor_logic():
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    g = lambda p: torch.zeros(p.shape[0], 1, dtype=torch.float64)  # noqa: E731
    # Constant data: up - lo = 2 L_f min(t, h - t), floor = L_f h / 2 (centre on the sub-grid).
    res = max_error_bound(g, [x], torch.zeros(5), 2.0, lipschitz_model=0.0, subdivisions=4)
    assert res.floor == pytest.approx(2.0 * 0.25 / 2)
    # g = 0 is the midpoint of the envelope: the bound is the floor plus the safety term.
    assert res.bound == pytest.approx(res.floor + 2.0 * 0.25 / 8)
    # Data on a line of slope L_f: the envelope collapses to the line, floor 0.
    res = max_error_bound(g, [x], 2.0 * x, 2.0, lipschitz_model=0.0)
    assert res.floor == pytest.approx(0.0, abs=1e-12)
    # The floor never exceeds any method's bound, whatever g.
    for method in BOUND_METHODS:
        res = max_error_bound(g, [x], torch.sin(3 * x), 3.0, lipschitz_model=0.0, method=method)
        assert res.floor <= res.bound
        assert bool((res.floor_per_cell <= res.per_cell + 1e-12).all())


def test_interpolant_is_certified_and_its_certificate_holds():
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 6, dtype=torch.float64)
    values = torch.tensor([0.0, 0.5, 0.1, 0.9, 0.9, -0.2], dtype=torch.float64)
    interp = GridInterpolant([x], values)
    assert interp.lipschitz_bound() == pytest.approx(float((values.diff() / 0.2).abs().max()))
    axes = [
        torch.linspace(0, 1, 5, dtype=torch.float64),
        torch.tensor([0.0, 0.2, 1.0], dtype=torch.float64),
    ]
    make = lambda: GridInterpolant(axes, torch.randn(5, 3, 2, dtype=torch.float64))  # noqa: E731
    model = make()
    pts = torch.rand(16, 2, dtype=torch.float64) * 1.4 - 0.2  # also outside the box (clamped)
    check_jacobian(model, pts)
    check_attack(model, pts)
    check_export(model, pts)
    check_persistence(make, model, pts)
    # Reproduces the nodes.
    nodes = torch.cartesian_prod(*axes)
    torch.testing.assert_close(model(nodes), model.values)
    # Its error certificate against a known target.
    axes = [torch.linspace(0, 1, 9, dtype=torch.float64)] * 2
    interp = GridInterpolant(axes, grid_values(f2, axes))
    points = torch.rand(20_000, 2, dtype=torch.float64)
    errors = (f2(points) - interp(points)).abs()[:, 0]
    for method in BOUND_METHODS:
        res = max_error_bound(interp, axes, grid_values(f2, axes), 3.0, method=method)
        assert res.certified and res.violations(points, errors) == 0


def test_wrong_target_constant_is_caught_by_validation():
    # sin(8 pi x) vanishes at every node of an 9-node grid: the data look constant, so a tiny L_f
    # is consistent with them, the bound is tiny, and dense validation exposes it.
    x = torch.linspace(0, 1, 9, dtype=torch.float64)
    f = lambda p: torch.sin(8 * math.pi * p[:, :1])  # noqa: E731
    interp = GridInterpolant([x], f(x[:, None]))
    points = torch.rand(10_000, 1, dtype=torch.float64)
    errors = (f(points) - interp(points)).abs()[:, 0]
    wrong = max_error_bound(interp, [x], f(x[:, None]), 0.1, method="envelope")
    assert wrong.consistent and wrong.violations(points, errors) > 1000
    right = max_error_bound(interp, [x], f(x[:, None]), 8 * math.pi, method="envelope")
    assert right.violations(points, errors) == 0
    # Data that contradict L_f make the result void.
    void = max_error_bound(interp, [x], torch.sin(3 * x), 0.5, method="cell")
    assert not void.consistent and not void.certified and void.label == "void"
    assert "violate" in void.note


def test_estimated_target_constant_is_labelled():
    x = torch.linspace(0, 1, 201, dtype=torch.float64)
    est = estimate_target_lipschitz(torch.sin(3 * x), [x])
    assert isinstance(est, TargetLipschitzEstimate) and "ESTIMATE" in est.how
    assert 2.99 < est.value <= 3.0
    coarse = torch.linspace(0, 1, 9, dtype=torch.float64)
    res = max_error_bound(
        GridInterpolant([coarse], torch.sin(3 * coarse)), [coarse], torch.sin(3 * coarse), est
    )
    assert res.target_is_estimate and not res.certified and res.label == "estimated"
    assert "ESTIMATED" in res.note
    assert res.lipschitz_target == est.value


def test_chunking_does_not_change_the_result():
    axes = [torch.linspace(0, 1, 6, dtype=torch.float64)] * 2
    interp = GridInterpolant(axes, grid_values(f2, axes) * 0.9)
    values = grid_values(f2, axes)
    a = max_error_bound(interp, axes, values, 3.0, subdivisions=3)
    b = max_error_bound(interp, axes, values, 3.0, subdivisions=3, chunk_entries=1)
    torch.testing.assert_close(a.per_cell, b.per_cell, rtol=0, atol=0)
    torch.testing.assert_close(a.floor_per_cell, b.floor_per_cell, rtol=0, atol=0)


def test_bad_inputs_raise_errors_naming_the_argument():
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    v = torch.sin(x)
    g = GridInterpolant([x], v)
    cases = [
        (dict(values=torch.tensor([0.0, float("nan"), 0, 0, 0])), "values"),
        (dict(values=torch.tensor([0.0, float("inf"), 0, 0, 0])), "values"),
        (dict(grid=[torch.tensor([0.0, float("nan"), 0.5, 0.7, 1.0])]), "grid"),
        (dict(values=torch.zeros(4)), "values"),
        (dict(values=torch.zeros(5, 2, 3)), "values"),
        (dict(grid=[torch.tensor([])], values=torch.tensor([])), "empty"),
        (dict(grid=[]), "grid"),
        (dict(grid=[torch.tensor([0.0])], values=torch.zeros(1)), "grid"),
        (dict(grid=[torch.tensor([0.0, 0.5, 0.5, 0.7, 1.0])]), "grid"),
        (dict(lipschitz_target=-1.0), "lipschitz_target"),
        (dict(lipschitz_target=float("nan")), "lipschitz_target"),
        (dict(lipschitz_model=-0.5), "lipschitz_model"),
        (dict(method="sandwich"), "method"),
        (dict(subdivisions=0), "subdivisions"),
        (dict(domain=([0.1], [1.0])), "outside the declared domain"),
        (dict(domain=([-0.5], [1.0])), "does not cover"),
    ]
    for overrides, word in cases:
        kwargs = dict(model=g, grid=[x], values=v, lipschitz_target=1.0)
        kwargs.update(overrides)
        with pytest.raises(ValueError, match=word):
            max_error_bound(**kwargs)
    with pytest.raises(ValueError, match="lipschitz_model"):
        max_error_bound(lambda p: p, [x], v, 1.0)
    model = LipMLP(1, 1, width=4, depth=1)
    with pytest.raises(ValueError, match="training mode"):
        max_error_bound(model, [x], v, 1.0)
    aux = LipMLP(1, 1, width=4, depth=1, output_scale="auxiliary", domain=([0.0], [0.5])).eval()
    with pytest.raises(ValueError, match="model's declared domain"):
        max_error_bound(aux, [x], v, 1.0)
    res = max_error_bound(g, [x], v, 1.0)
    with pytest.raises(ValueError, match="outside the domain"):
        res.bound_at(torch.tensor([[1.5]]))
    with pytest.raises(ValueError, match="points"):
        res.bound_at(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="errors"):
        res.violations(torch.rand(3, 1), torch.zeros(2))
    with pytest.raises(ValueError, match="k must be"):
        LipMLP(1, 1, k=0.0)
    with pytest.raises(ValueError, match="values"):
        estimate_target_lipschitz(torch.zeros(3), [x])
    with pytest.raises(ValueError, match="model returned NaN"):
        max_error_bound(lambda p: p * float("nan"), [x], v, 1.0, lipschitz_model=1.0)
