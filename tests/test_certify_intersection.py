"""Multi-pair (ball-intersection) operator certificates (liponet.certify.intersection)."""

import math

import pytest
import torch
from opcheck import ROLL, SHIFT1, advection_pairs
from opcheck import grid_free_fno as fno

from liponet.certify import (
    EmptyIntersectionError,
    LipschitzConstant,
    NeighbourSearch,
    SymmetryGroup,
    SymmetryPremiseError,
    centroid_bound,
    field_operator,
    generated_pairs,
    multi_pair_error_bound,
    operator_error_bound,
)
from liponet.certify.intersection import single_bounds
from liponet.certify.symmetry import apply_element
from liponet.models import LipDeepONet, LipFNO

#: A false constant (a premise violation) with a certified label.
HALF = LipschitzConstant(0.5, "certified", source="wrong on purpose")


def fnorm(u):
    return u.pow(2).flatten(1).mean(1).sqrt()


# ------------------------------------------------------------------------------ the geometry


def test_centroid_bound_contains_every_common_point_and_is_tight_on_orthogonal_balls():
    """Any y in all balls is within the bound of p, for any weights; and the bound is the
    exact maximum for k equal balls through the origin along orthonormal directions."""
    torch.manual_seed(0)
    q, k, n = 50, 6, 8
    y = torch.randn(q, 1, n, dtype=torch.float64)
    centres = y[:, None] + 0.5 * torch.randn(q, k, 1, n, dtype=torch.float64)
    radii = fnorm((centres - y[:, None]).reshape(q * k, 1, n)).reshape(q, k)
    radii = radii * (1 + torch.rand(q, k, dtype=torch.float64))  # y inside every ball
    p = y + torch.randn(q, 1, n, dtype=torch.float64)
    for _ in range(5):
        w = torch.rand(q, k, dtype=torch.float64) ** 3
        bound, slack = centroid_bound(centres, radii, p, w)
        assert bool((fnorm(y - p) <= bound).all()) and bool((slack >= 0).all())
    # the one-hot weights are the single-pair bounds
    one_hot = torch.stack(
        [centroid_bound(centres, radii, p, torch.eye(k, dtype=torch.float64)[i].expand(q, k))[0]
         for i in range(k)], 1,
    )  # fmt: skip
    torch.testing.assert_close(single_bounds(centres, radii, p), one_hot, rtol=1e-12, atol=0)
    exact = fnorm((centres - p[:, None]).reshape(q * k, 1, n)).reshape(q, k) + radii
    assert bool((single_bounds(centres, radii, p) >= exact).all())
    # tightness: centres d e_i (orthonormal in the function norm), radius d, p = 0
    d, kk = 0.7, 4
    e = torch.eye(kk, dtype=torch.float64)[None, :, None] * math.sqrt(kk)  # ||e_i|| = 1
    zero = torch.zeros(1, 1, kk, dtype=torch.float64)
    bound, _ = centroid_bound(d * e, torch.full((1, kk), d, dtype=torch.float64), zero,
                              torch.ones(1, kk, dtype=torch.float64))  # fmt: skip
    far = (2 * d / kk) * e.sum(1)  # a point of every ball at distance 2d/sqrt(k) from 0
    assert float(fnorm(far)[0]) == pytest.approx(2 * d / math.sqrt(kk), rel=1e-12)
    assert float(bound[0]) == pytest.approx(2 * d / math.sqrt(kk), rel=1e-9)
    assert float(bound[0]) >= float(fnorm(far)[0])


def test_neighbour_search_finds_the_k_nearest_over_the_orbit():
    torch.manual_seed(1)
    q = torch.randn(4, 1, 12, dtype=torch.float64)
    c = torch.randn(40, 1, 12, dtype=torch.float64)
    y = torch.randn(40, 1, 12, dtype=torch.float64)
    s = NeighbourSearch(q, SHIFT1, k=5)
    for c0 in range(0, 40, 7):  # chunk by chunk
        s.update(c[c0 : c0 + 7], y[c0 : c0 + 7], c0)
    moved = torch.stack([torch.roll(c, r, -1) for r in range(12)], 1)  # (n, shifts, 1, 12)
    brute = (q[:, None, None] - moved[None]).pow(2).flatten(3).mean(3).sqrt().min(2).values
    torch.testing.assert_close(s.distance, brute.topk(5, 1, largest=False).values, rtol=1e-9,
                               atol=1e-9)  # fmt: skip
    # the kept fields are the moved pair itself: input at that distance, target moved alike
    for i in range(4):
        for j in range(5):
            idx, el = int(s.index[i, j]), int(s.element[i, j])
            torch.testing.assert_close(s.inputs[i, j], apply_element(c[idx : idx + 1], SHIFT1,
                                       el)[0])  # fmt: skip
            torch.testing.assert_close(s.targets[i, j], apply_element(y[idx : idx + 1], SHIFT1,
                                       el)[0])  # fmt: skip


# --------------------------------------------------------------------------------- coverage


def test_multi_pair_covers_exact_data_and_beats_single_pair_bounds():
    model = fno()
    calib_a, calib_u = advection_pairs(400, seed=1)
    query_a, query_u = advection_pairs(60, seed=2)
    with torch.no_grad():
        calib_p, query_p = model(calib_a), model(query_a)
    observed = fnorm(query_p - query_u)
    classic = operator_error_bound(query_a, calib_a, calib_targets=calib_u, calib_preds=calib_p,
                                   lipschitz_model=model, lipschitz_true=ROLL)  # fmt: skip
    for group in (None, SHIFT1):
        b = multi_pair_error_bound(query_a, query_p, [(calib_a, calib_u)], lipschitz_true=ROLL,
                                   group=group, operator="advection", neighbours=16)  # fmt: skip
        assert b.label == "certified"
        assert not bool(b.violations(observed).any())
        assert bool((b.bound <= b.single + 1e-15).all())
        if group is None:  # the single ball through Ĝ(a) never loses to e_i + (L_G + L) d
            assert bool((b.single <= classic.bound * (1 + 1e-9)).all())
        assert float((b.bound < 0.99 * b.single).double().mean()) > 0.5  # several balls help


def test_any_model_qualifies_grid_channels_exports_and_deeponets():
    """The surrogate is only evaluated at the query: models the orbit bound refuses (coordinate
    channels, exported modules, DeepONets) get shift-reduced multi-pair bounds that cover."""
    kw = {"nx": 32, "nt": 2, "beta": 0.25, "t_final": 1.0}  # 8 whole cells of 32
    query_a, query_u = next(generated_pairs("advection", 40, seed=0, **kw))
    torch.manual_seed(0)
    onet = LipDeepONet(n_sensors=32, domain=([0.0], [1.0]), n_basis=4, width=8, depth=1)
    grid_fno = fno(grid=True, width=8)
    maps = {
        "grid": grid_fno,
        "export": fno(seed=3).export(),
        "deeponet": field_operator(onet.eval().double()),
    }
    for name, apply in maps.items():
        with torch.no_grad():
            pred = apply(query_a)
        b = multi_pair_error_bound(
            query_a, pred, generated_pairs("advection", 1500, seed=1, batch_size=500, **kw),
            lipschitz_true=ROLL, group=SHIFT1, operator="advection", neighbours=8,
        )  # fmt: skip
        assert b.label == "certified", name
        assert not bool(b.violations(fnorm(pred - query_u)).any()), name


def test_two_dimensional_fields_and_the_reflection_for_heat():
    kw = {"nx": 16, "nt": 2, "bx": 0.25, "by": 0.125, "t_final": 1.0}
    query_a, query_u = next(generated_pairs("advection_2d", 20, seed=0, **kw))
    torch.manual_seed(0)
    model = LipFNO(1, 1, modes=(4, 4), width=4, depth=1).eval().double()  # grid=True default
    with torch.no_grad():
        pred = model(query_a.double())
    b = multi_pair_error_bound(
        query_a, pred, generated_pairs("advection_2d", 400, seed=1, batch_size=200, **kw),
        lipschitz_true=ROLL, group=SymmetryGroup((0, 1)), operator="advection", neighbours=8,
        float32_storage=True,  # the 2-D family stores float32 frames
    )  # fmt: skip
    assert b.label == "certified" and b.name == "multi-pair shift-reduced"
    assert not bool(b.violations(fnorm(pred - query_u.double())).any())
    # heat commutes with the reflection too: needs no real multipliers here (model unused)
    a = torch.randn(30, 1, 16, dtype=torch.float64)
    heat = torch.fft.irfft(torch.fft.rfft(a) * torch.exp(-0.3 * torch.arange(9.0)), n=16)
    b = multi_pair_error_bound(a[:5].flip(-1), heat[:5].flip(-1) + 0.01, [(a, heat)],
                               lipschitz_true=ROLL, group=SymmetryGroup((0,), reflection=True),
                               operator="heat", neighbours=4)  # fmt: skip
    assert b.name == "multi-pair symmetry-reduced" and b.label == "certified"
    # the queries are reflected calibration inputs: the bound finds the 0.01 error exactly
    torch.testing.assert_close(b.bound, torch.full((5,), 0.01, dtype=torch.float64), rtol=1e-6,
                               atol=1e-9)  # fmt: skip
    with pytest.raises(SymmetryPremiseError, match="reflection"):
        multi_pair_error_bound(
            a[:2], heat[:2], [(a, heat)], lipschitz_true=ROLL,
            group=SymmetryGroup((0,), reflection=True), operator="advection",
        )  # fmt: skip


# -------------------------------------------------------------------------- broken premises


def test_a_non_equivariant_operator_breaks_the_bound_so_the_premise_is_checked():
    """G(a) = w * a with a half-zero weight is 1-Lipschitz but does not commute with shifts.

    Without a theorem the library labels the shift-reduced bound estimated; the true errors of
    an equivariant model exceed it (a shifted calibration input looks like an exact pair).
    """
    nx = 32
    w = torch.where(torch.arange(nx) < nx // 2, 1.0, 0.0).double()
    calib_a, _ = advection_pairs(200, seed=3)
    query_a = torch.roll(calib_a[:40], 5, -1)
    calib_u, query_u = w * calib_a, w * query_a
    pred = torch.roll(calib_u[:40], 5, -1)  # an equivariant model, exact on the calibration set
    observed = fnorm(pred - query_u)
    plain = multi_pair_error_bound(query_a, pred, [(calib_a, calib_u)], lipschitz_true=ROLL,
                                   neighbours=8)  # fmt: skip
    assert plain.label == "certified" and not bool(plain.violations(observed).any())
    reduced = multi_pair_error_bound(query_a, pred, [(calib_a, calib_u)], lipschitz_true=ROLL,
                                     group=SHIFT1, operator=None, neighbours=8)  # fmt: skip
    assert reduced.label == "estimated"
    assert bool(reduced.violations(observed).all())  # every query: its shifted twin "is exact"


def test_a_too_small_constant_empties_the_intersection():
    """Two pairs whose outputs are farther apart than L_G times their inputs' distance allows:
    no operator with that constant exists, and the bound says so instead of a number."""
    a, u = advection_pairs(2, seed=7)
    query = 0.5 * (a[:1] + a[1:])
    spread = float(fnorm(u[:1] - u[1:])[0])
    assert spread > 0
    with pytest.raises(EmptyIntersectionError, match="do not intersect"):
        multi_pair_error_bound(query, query, [(a, u)], lipschitz_true=HALF, neighbours=2)
    ok = multi_pair_error_bound(query, query, [(a, u)], lipschitz_true=ROLL, neighbours=2)
    assert ok.label == "certified"


def test_bad_inputs_are_named():
    a, u = advection_pairs(5)
    with pytest.raises(ValueError, match="query_preds has 3 rows for 5 queries"):
        multi_pair_error_bound(a, u[:3], [(a, u)], lipschitz_true=ROLL)
    with pytest.raises(ValueError, match="calibration inputs"):
        multi_pair_error_bound(a, u, [(a[:, :, :16], u[:, :, :16])], lipschitz_true=ROLL)
    with pytest.raises(ValueError, match="calibration set is empty"):
        multi_pair_error_bound(a, u, [], lipschitz_true=ROLL)
    with pytest.raises(ValueError, match="k must be >= 1"):
        NeighbourSearch(a, SHIFT1, k=0)


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"increment": True, "in_channels": 3},
        {"budget": "learned", "k": 2.0},
        {"block": "fourier"},
    ],
)
def test_exported_modules_are_verified_from_their_architecture_and_do_commute(variant):
    from liponet.certify import check_model_symmetry

    kwargs = {"in_channels": 1, "out_channels": 1, "modes": (6,), "grid": False, "width": 8}
    kwargs.update(variant)
    torch.manual_seed(0)
    plain = LipFNO(**kwargs).double().eval().export()
    assert check_model_symmetry(plain, SHIFT1).startswith("architecture verified")
    x = torch.randn(2, kwargs["in_channels"], 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(plain(torch.roll(x, 5, -1)), torch.roll(plain(x), 5, -1),
                                   rtol=0, atol=1e-12)  # fmt: skip
    with pytest.raises(SymmetryPremiseError, match="complex Fourier multipliers"):
        check_model_symmetry(plain, SymmetryGroup((0,), reflection=True))


@pytest.mark.parametrize(
    ("variant", "why"), [({"grid": True}, "coordinate channels"), ({"padding": 0.25}, "pads")]
)
def test_exported_grid_or_padded_models_are_refused(variant, why):
    from liponet.certify import check_model_symmetry

    kwargs = {"in_channels": 1, "out_channels": 1, "modes": (6,), "grid": False} | variant
    with pytest.raises(SymmetryPremiseError, match=why):
        check_model_symmetry(LipFNO(**kwargs).eval().export(), SHIFT1)


@pytest.mark.parametrize(
    ("spatial", "group"),
    [
        ((12,), SymmetryGroup((0,))),
        ((12,), SymmetryGroup((0,), reflection=True)),
        ((6, 5), SymmetryGroup((0, 1))),
        ((6, 5), SymmetryGroup((1,))),
        ((4, 6), SymmetryGroup((0, 1), reflection=True)),
    ],
)
def test_vectorized_elements_match_apply_element(spatial, group):
    from liponet.certify.intersection import apply_elements

    torch.manual_seed(0)
    order = group.order(spatial)
    u = torch.randn(3 * order, 2, *spatial, dtype=torch.float64)
    codes = torch.arange(3 * order) % order
    torch.testing.assert_close(apply_elements(u, group, codes), apply_element(u, group, codes),
                               rtol=0, atol=0)  # fmt: skip
