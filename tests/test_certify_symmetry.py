"""Symmetry-reduced certificates and calibration at scale (liponet.certify.symmetry/calibration)."""

import itertools
import math

import pytest
import torch
from opcheck import ROLL, SHIFT1, advection_pairs
from opcheck import grid_free_fno as fno

from liponet.certify import LipschitzConstant, operator_error_bound
from liponet.certify.calibration import file_pairs, generated_pairs, streamed_error_bound
from liponet.certify.symmetry import (
    OrbitSearch,
    SymmetryGroup,
    SymmetryPremiseError,
    apply_element,
    check_model_symmetry,
    invariant_features,
    operator_symmetry,
    orbit_distances,
    symmetric_error_bound,
)
from liponet.data import generate
from liponet.data.generators.initial import sine_series_batch
from liponet.models import LipDeepONet, LipFNO


def all_elements(u, group):
    """Every transformed copy of each field: (batch, order, channels, *spatial)."""
    order = group.order(tuple(u.shape[2:]))
    return torch.stack([apply_element(u, group, g) for g in range(order)], 1)


def brute_orbit(q, c, group):
    moved = all_elements(c, group)  # (n, order, ...)
    diff = q[:, None, None] - moved[None]
    d = diff.pow(2).flatten(3).sum(3).div(math.prod(q.shape[2:])).sqrt()  # (m, n, order)
    return d.min(2)


@pytest.mark.parametrize(
    ("spatial", "group"),
    [
        ((12,), SymmetryGroup((0,))),
        ((12,), SymmetryGroup((0,), reflection=True)),
        ((6, 5), SymmetryGroup((0, 1))),
        ((6, 5), SymmetryGroup((1,))),
        ((4, 6), SymmetryGroup((0, 1), reflection=True)),
        ((7,), SymmetryGroup(())),
    ],
)
def test_orbit_distances_match_brute_force_and_elements_reproduce_them(spatial, group):
    torch.manual_seed(0)
    q = torch.randn(3, 2, *spatial, dtype=torch.float64)
    c = torch.randn(5, 2, *spatial, dtype=torch.float64)
    c[1] = apply_element(q[:1], group, group.order(spatial) - 1)[0]  # an exact orbit member
    dist, element = orbit_distances(q, c, group)
    want = brute_orbit(q, c, group)
    torch.testing.assert_close(dist, want.values, rtol=1e-9, atol=1e-7)
    for i, j in itertools.product(range(3), range(5)):
        moved = apply_element(c[j : j + 1], group, int(element[i, j]))
        direct = (q[i] - moved[0]).pow(2).sum().div(math.prod(spatial)).sqrt()
        torch.testing.assert_close(direct, want.values[i, j], rtol=1e-9, atol=1e-12)
    assert float(dist[0, 1]) < 1e-6  # found the exact member
    # the invariant features give a lower bound of every orbit distance
    lb = torch.cdist(invariant_features(q, group), invariant_features(c, group))
    assert bool((lb <= want.values + 1e-12).all())


def test_apply_element_is_a_group_action_that_preserves_the_norm():
    u = torch.randn(2, 1, 8, dtype=torch.float64)
    g = SymmetryGroup((0,), reflection=True)
    assert torch.equal(apply_element(u, g, 3), torch.roll(u, 3, -1))
    reflected = apply_element(u, g, 8)
    assert torch.equal(reflected[..., 0], u[..., 0]) and torch.equal(reflected[..., 1], u[..., 7])
    for e in range(16):
        moved = apply_element(u, g, e)  # a permutation of each field's values
        assert torch.equal(moved.flatten(1).sort(1).values, u.flatten(1).sort(1).values)
    with pytest.raises(ValueError, match="out of range"):
        apply_element(u, g, 16)
    with pytest.raises(ValueError, match="every spatial axis"):
        SymmetryGroup((1,), reflection=True).check((4, 4))


# --------------------------------------------------------------------------------- premises


def test_model_premise_accepts_grid_free_unpadded_fnos_only():
    assert "verified" in check_model_symmetry(fno(), SHIFT1)
    assert "verified" in check_model_symmetry(fno(2), SymmetryGroup((0, 1)))
    aux = fno(output_scale="auxiliary", radius=2.0)
    assert "verified" in check_model_symmetry(aux, SHIFT1)
    with pytest.raises(SymmetryPremiseError, match="coordinate channels"):
        check_model_symmetry(fno(grid=True), SHIFT1)
    with pytest.raises(SymmetryPremiseError, match="pads the domain"):
        check_model_symmetry(fno(padding=0.25), SHIFT1)
    deeponet = LipDeepONet(n_sensors=16, domain=([0.0], [1.0]), n_basis=4, width=8, depth=1)
    with pytest.raises(SymmetryPremiseError, match="not a part whose equivariance"):
        check_model_symmetry(deeponet, SHIFT1)


def test_model_premise_reflection_needs_real_multipliers():
    model = fno()
    with pytest.raises(SymmetryPremiseError, match="complex Fourier multipliers"):
        check_model_symmetry(model, SymmetryGroup((0,), reflection=True))
    for conv in (m for m in model.modules() if type(m).__name__ == "LipSpectralConv"):
        with torch.no_grad():
            conv.weight[..., 1] = 0.0  # purely real spectral weights
    assert "verified" in check_model_symmetry(model, SymmetryGroup((0,), reflection=True))
    u = torch.randn(3, 1, 16, dtype=torch.float64)
    flip = SymmetryGroup((0,), reflection=True)
    with torch.no_grad():  # consequence, not the check: it does commute
        torch.testing.assert_close(
            model(apply_element(u, flip, 16)), apply_element(model(u), flip, 16), atol=1e-12, rtol=0
        )


def test_verified_models_do_commute_and_refused_ones_do_not():
    u = torch.randn(4, 1, 32, dtype=torch.float64)
    with torch.no_grad():
        for model, commutes in ((fno(), True), (fno(grid=True), False), (fno(padding=0.25), False)):
            defect = (model(torch.roll(u, 5, -1)) - torch.roll(model(u), 5, -1)).abs().max()
            assert (float(defect) < 1e-12) == commutes, (model, float(defect))


def test_operator_premise_registry():
    assert operator_symmetry("heat", SymmetryGroup((0,), reflection=True))[0] == "certified"
    assert operator_symmetry(None, SHIFT1)[0] == "estimated"
    with pytest.raises(SymmetryPremiseError, match="reverses the velocity"):
        operator_symmetry("advection", SymmetryGroup((0,), reflection=True))
    with pytest.raises(ValueError, match="no symmetry theorem for 'burgers'"):
        operator_symmetry("burgers", SHIFT1)


# --------------------------------------------------------------------------------- coverage


def test_shift_reduced_bound_covers_exact_data_and_beats_the_plain_one():
    model = fno()
    calib_a, calib_u = advection_pairs(200, seed=1)
    query_a, query_u = advection_pairs(100, seed=2)
    with torch.no_grad():
        calib_p, query_p = model(calib_a), model(query_a)
    observed = (query_p - query_u).pow(2).mean((1, 2)).sqrt()
    kw = {
        "calib_targets": calib_u,
        "calib_preds": calib_p,
        "lipschitz_true": ROLL,
    }
    plain = operator_error_bound(query_a, calib_a, lipschitz_model=model, **kw)
    reduced = symmetric_error_bound(
        query_a, calib_a, model=model, group=SHIFT1, operator="advection", **kw
    )
    same = operator_error_bound(
        query_a, calib_a, lipschitz_model=model, symmetry=SHIFT1, operator="advection", **kw
    )
    torch.testing.assert_close(same.bound, reduced.bound)
    assert reduced.label == "certified" and reduced.name == "shift-reduced"
    assert not bool(reduced.violations(observed).any())
    assert bool((reduced.bound <= plain.bound * (1 + 1e-9)).all())
    assert float(reduced.bound.median()) < 0.95 * float(plain.bound.median())
    # the reported bound is e_i + slope * ||a - g a_i|| of the reported pair, recomputed
    moved = apply_element(calib_a[reduced.index], SHIFT1, reduced.element)
    d = (query_a - moved).pow(2).mean((1, 2)).sqrt()
    slope = model.lipschitz_bound() + 1.0
    e = (calib_p - calib_u).pow(2).mean((1, 2)).sqrt()[reduced.index]
    torch.testing.assert_close(reduced.bound, e + slope * d, rtol=1e-9, atol=1e-12)
    # a query on the orbit of a calibration input is bounded by that input's own error
    on_orbit = torch.roll(calib_a[:5], 11, -1)
    b = symmetric_error_bound(
        on_orbit, calib_a, model=model, group=SHIFT1, operator="advection", **kw
    )
    with torch.no_grad():
        err = (model(on_orbit) - torch.roll(calib_u[:5], 11, -1)).pow(2).mean((1, 2)).sqrt()
    own = (calib_p[:5] - calib_u[:5]).pow(2).mean((1, 2)).sqrt()
    assert bool((err <= b.bound).all()) and bool((b.bound <= own + 1e-6).all())


def test_symmetry_needs_the_model_itself_and_refuses_a_grid_model():
    model = fno(grid=True)
    a, u = advection_pairs(20)
    with torch.no_grad():
        p = model(a)
    kw = {"calib_targets": u, "calib_preds": p, "lipschitz_true": ROLL}
    with pytest.raises(SymmetryPremiseError, match="coordinate channels"):
        operator_error_bound(
            a, a, lipschitz_model=model, symmetry=SHIFT1, operator="advection", **kw
        )
    with pytest.raises(ValueError, match="the model itself"):
        operator_error_bound(a, a, lipschitz_model=1.0, symmetry=SHIFT1, operator="advection", **kw)


def test_a_non_equivariant_operator_breaks_the_shift_reduced_bound():
    """Why the operator premise is checked: G(a) = w * a with a non-constant weight w.

    ``|w| <= 1`` makes G 1-Lipschitz, so the plain certificate holds; but G does not commute
    with shifts, and min over orbits then produces bounds that the true errors exceed. There is
    no theorem for it, so the library labels such a bound estimated (operator=None).
    """
    nx = 32
    w = torch.where(torch.arange(nx) < nx // 2, 1.0, 0.0).double()
    model = fno()
    calib_a, _ = advection_pairs(300, seed=3)
    query_a, _ = advection_pairs(200, seed=4)
    calib_u, query_u = w * calib_a, w * query_a
    with torch.no_grad():
        calib_p, query_p = model(calib_a), model(query_a)
    observed = (query_p - query_u).pow(2).mean((1, 2)).sqrt()
    kw = {"calib_targets": calib_u, "calib_preds": calib_p, "lipschitz_true": 1.0}
    plain = operator_error_bound(query_a, calib_a, lipschitz_model=model, **kw)
    assert not bool(plain.violations(observed).any())
    reduced = symmetric_error_bound(
        query_a, calib_a, model=model, group=SHIFT1, operator=None, **kw
    )
    assert reduced.label == "estimated"
    assert int(reduced.violations(observed).sum()) > 0


def test_a_model_with_coordinate_channels_would_break_it():
    """Why the model premise is checked: bypass the check, and a grid model's bound fails."""
    model = fno(grid=True, width=8)
    calib_a, calib_u = advection_pairs(100, seed=5)
    query_a, query_u = torch.roll(calib_a, 7, -1), torch.roll(calib_u, 7, -1)  # on the orbits
    with torch.no_grad():
        calib_p, query_p = model(calib_a), model(query_a)
    observed = (query_p - query_u).pow(2).mean((1, 2)).sqrt()
    e = (calib_p - calib_u).pow(2).mean((1, 2)).sqrt()
    l_model = LipschitzConstant(model.lipschitz_bound(), "certified", source="lipschitz_bound()")
    search = OrbitSearch(query_a, SHIFT1, l_model.value + ROLL.value)
    search.update(calib_a, e, 0)
    bound = search.result(l_model, ROLL, "certified", {})  # the model premise NOT checked
    assert bound.label == "certified"
    assert int(bound.violations(observed).sum()) > 0


# --------------------------------------------------------------------------------- at scale


def chunks_of(a, u, size):
    for i in range(0, a.shape[0], size):
        yield a[i : i + size], u[i : i + size]


@pytest.mark.parametrize("group", [SymmetryGroup(()), SHIFT1])
def test_streamed_bound_equals_the_exhaustive_minimum(group):
    model = fno()
    calib_a, calib_u = advection_pairs(400, seed=7)
    query_a, query_u = advection_pairs(50, seed=8)
    with torch.no_grad():
        e = (model(calib_a) - calib_u).pow(2).mean((1, 2)).sqrt()
        observed = (model(query_a) - query_u).pow(2).mean((1, 2)).sqrt()
    slope = model.lipschitz_bound() + 1.0
    dist, _ = orbit_distances(query_a, calib_a, group)
    want = (e[None] + slope * dist).min(1).values
    kw = {"lipschitz_true": ROLL, "group": group, "operator": "advection"}
    got = streamed_error_bound(query_a, chunks_of(calib_a, calib_u, 64), model, **kw)
    torch.testing.assert_close(got.bound, want, rtol=1e-8, atol=1e-12)
    assert got.n_calib == 400 and got.n_evaluated < 400 and got.unproven == 0
    assert not bool(got.violations(observed).any())
    approx = streamed_error_bound(
        query_a, chunks_of(calib_a, calib_u, 64), model, exact=False, candidates=1, **kw
    )
    assert bool((approx.bound >= got.bound * (1 - 1e-12)).all())
    assert not bool(approx.violations(observed).any())


def test_generated_pairs_are_the_discrete_operator_and_stream_lazily():
    chunks = generated_pairs("advection", 10, nx=32, nt=2, beta=0.25, t_final=1.0, batch_size=4)
    sizes = []
    for a, u in chunks:
        assert a.dtype == torch.float64 and torch.equal(u, torch.roll(a, 8, -1))
        sizes.append(a.shape[0])
    assert sizes == [4, 4, 2]
    a, u = next(generated_pairs("advection", 3, nx=32, nt=2, per_sample=True, t_final=1.0))
    assert a.dtype == torch.float32
    with pytest.raises(ValueError, match="t_out=5 is out of range"):
        next(generated_pairs("advection", 3, nx=32, nt=2, t_out=5))


def test_sine_series_batch_has_the_per_sample_distribution():
    rng = __import__("numpy").random.default_rng(0)
    s = sine_series_batch(rng, 20000, 1.0)
    assert abs(float(s.absolute.double().mean()) - 0.1) < 0.01
    assert abs(float(s.windowed.double().mean()) - 0.1) < 0.01
    picked = (s.wavenumber > 0).sum(1)
    # two picks among four modes: one distinct mode with probability 1/4
    assert abs(float((picked == 1).double().mean()) - 0.25) < 0.02


def test_file_pairs_stream_a_pdebench_file(tmp_path):
    path = generate("advection", tmp_path / "a.hdf5", n_samples=30, nx=32, nt=3, beta=0.25)
    got = list(file_pairs([path], split="train", chunk=7))
    assert [a.shape[0] for a, _ in got][:3] == [7, 7, 7]
    with pytest.raises(FileNotFoundError, match="calibration file not found"):
        next(file_pairs([tmp_path / "missing.hdf5"]))


def test_two_dimensional_fields_streamed_from_the_2d_family():
    model = fno(dim=2)
    kw = {"nx": 16, "nt": 2, "bx": 0.25, "by": 0.125, "t_final": 1.0}
    query_a, query_u = next(generated_pairs("advection_2d", 30, seed=0, **kw))
    with torch.no_grad():
        observed = (model(query_a.double()) - query_u).pow(2).mean((1, 2, 3)).sqrt()
    plain, shifted = (
        streamed_error_bound(
            query_a.double(), generated_pairs("advection_2d", 600, seed=1, batch_size=128, **kw),
            model, lipschitz_true=ROLL, group=group, operator="advection",
        )
        for group in (None, SymmetryGroup((0, 1)))
    )  # fmt: skip
    assert shifted.label == plain.label == "certified"
    assert not bool(shifted.violations(observed).any()) and not bool(
        plain.violations(observed).any()
    )
    assert float(shifted.bound.median()) < float(plain.bound.median())


def test_deeponet_calibration_at_scale_plain_only():
    from liponet.certify import field_operator

    torch.manual_seed(0)
    model = LipDeepONet(n_sensors=32, domain=([0.0], [1.0]), n_basis=4, width=8, depth=1)
    model = model.eval().double()
    kw = {"nx": 32, "nt": 2, "beta": 0.25, "t_final": 1.0}
    query_a, query_u = next(generated_pairs("advection", 40, seed=0, **kw))
    with torch.no_grad():
        observed = (field_operator(model)(query_a) - query_u).pow(2).mean((1, 2)).sqrt()
    b = streamed_error_bound(
        query_a, generated_pairs("advection", 2000, seed=1, batch_size=500, **kw), model,
        lipschitz_true=ROLL,
    )  # fmt: skip
    assert b.label == "certified" and not bool(b.violations(observed).any())
    with pytest.raises(SymmetryPremiseError, match="DeepONets read fixed sensors"):
        streamed_error_bound(
            query_a, generated_pairs("advection", 10, **kw), model,
            lipschitz_true=ROLL, group=SHIFT1, operator="advection",
        )  # fmt: skip


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"increment": True, "in_channels": 3},
        {"budget": "learned", "k": 2.0},
        {"block": "fourier"},
    ],
)
def test_default_block_kinds_are_verified_and_equivariant(variant):
    """Every LipFNO block kind (convex-potential default, increment, learned budget) passes the
    architecture check, and the check is right: a shift commutes with the model to rounding."""
    from liponet.certify.symmetry import SymmetryGroup, check_model_symmetry

    kwargs = {"in_channels": 1, "out_channels": 1, "modes": (6,), "grid": False, "width": 8}
    kwargs.update(variant)
    model = LipFNO(**kwargs).double().eval()
    assert check_model_symmetry(model, SymmetryGroup((0,))).startswith("architecture verified")
    x = torch.randn(2, kwargs["in_channels"], 32, dtype=torch.float64)
    torch.testing.assert_close(
        model(torch.roll(x, 5, -1)), torch.roll(model(x), 5, -1), rtol=0, atol=1e-12
    )
