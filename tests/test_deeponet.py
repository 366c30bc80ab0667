import copy
import json
import math

import pytest
import torch
from certcheck import check_all, check_attack, check_jacobian, perturb
from torch import Tensor, nn

from liponet.certify import jacobian_lipschitz
from liponet.functional import TARGET_MARGIN
from liponet.models import (
    DeepONet,
    LipDeepONet,
    LipLocalDeepONet,
    LocalDeepONet,
    available_models,
    build_model,
    deeponet,
)
from liponet.models.deeponet import PeriodicEmbedding, extract_patches

M = 8  # sensors
DOMAIN_1D = ([0.0], [1.0])
DOMAIN_2D = ([0.0, 0.0], [1.0, 2.0])

VARIANTS = {
    "a_k1": dict(k=1.0),
    "a_k3": dict(k=3.0),
    "b_free_last": dict(free_last_layer=True),
    "c_vector": dict(output_scale="vector"),
    "d_auxiliary": dict(output_scale="auxiliary"),
}


class InputFunctionView(nn.Module):
    """``u -> G(u)`` at fixed query points, with the model's input-function certificate."""

    def __init__(self, model: nn.Module, coords: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("coords", coords)

    def forward(self, u: Tensor) -> Tensor:
        return self.model(u, self.coords)

    def lipschitz_bound(self) -> float:
        return self.model.lipschitz_bound()

    def export(self) -> nn.Module:
        return InputFunctionView(self.model.export(), self.coords)


class CoordinateView(nn.Module):
    """``y -> G(u)(y)`` for one fixed ``u``; ``y`` is clamped into the domain (1-Lipschitz)."""

    def __init__(self, model: nn.Module, u: Tensor, lo: Tensor, hi: Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("u", u)
        self.register_buffer("lo", lo)
        self.register_buffer("hi", hi)

    def forward(self, y: Tensor) -> Tensor:  # (batch, coord_dim) -> (batch, out_channels)
        y = torch.clamp(y, self.lo, self.hi)
        u = self.u.expand(y.shape[0], *self.u.shape[1:])
        return self.model(u, y.unsqueeze(1))[:, :, 0]

    def lipschitz_bound(self) -> float:
        return float(self.model.coordinate_lipschitz_bound(self.u)[0])

    def export(self) -> nn.Module:
        return CoordinateView(self.model.export(), self.u, self.lo, self.hi)


def _maker(cls=LipDeepONet, domain=DOMAIN_1D, in_channels=1, out_channels=1, **kwargs):
    def make():
        torch.manual_seed(0)
        return perturb(
            cls(
                M,
                domain=domain,
                in_channels=in_channels,
                out_channels=out_channels,
                n_basis=4,
                width=8,
                depth=2,
                **kwargs,
            )
        )

    return make


def _coords(domain, n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(domain[0]), torch.tensor(domain[1])
    return lo + (hi - lo) * torch.rand(n, len(domain[0]), generator=gen)


CASES = {
    **{name: (DOMAIN_1D, 1, 1, kw) for name, kw in VARIANTS.items()},
    "xt_2in_2out": (DOMAIN_2D, 2, 2, {}),
    "xt_2out_auxiliary": (DOMAIN_2D, 1, 2, dict(output_scale="auxiliary")),
    "e_harmonics": (DOMAIN_1D, 1, 1, dict(harmonics=3)),
    "xt_harmonics_auxiliary": (DOMAIN_2D, 1, 2, dict(harmonics=2, output_scale="auxiliary")),
    "xt_harmonics_vector": (DOMAIN_2D, 2, 1, dict(harmonics=2, output_scale="vector")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_input_function_certificate(case):
    domain, cin, cout, kwargs = CASES[case]
    make_model = _maker(domain=domain, in_channels=cin, out_channels=cout, **kwargs)
    coords = _coords(domain, 5).double()
    u = torch.randn(4, cin, M)
    check_all(lambda: InputFunctionView(make_model(), coords), u, norm="function")


@pytest.mark.parametrize("case", sorted(CASES))
def test_coordinate_certificate(case):
    domain, cin, cout, kwargs = CASES[case]
    make_model = _maker(domain=domain, in_channels=cin, out_channels=cout, **kwargs)
    u = torch.randn(1, cin, M, dtype=torch.float64)
    lo, hi = (torch.tensor(d, dtype=torch.float64) for d in domain)
    y = _coords(domain, 6)
    check_all(lambda: CoordinateView(make_model(), u, lo, hi), y, norm="euclidean")


def test_twin_is_certified_too():
    make_model = _maker(cls=DeepONet, domain=DOMAIN_2D)
    coords = _coords(DOMAIN_2D, 5).double()
    check_all(lambda: InputFunctionView(make_model(), coords), torch.randn(4, 1, M), "function")
    model = make_model().double().eval()
    u = torch.randn(3, 1, M, dtype=torch.float64)
    lo, hi = (torch.tensor(d, dtype=torch.float64) for d in DOMAIN_2D)
    for i in range(3):
        view = CoordinateView(model, u[i : i + 1], lo, hi)
        check_jacobian(view, _coords(DOMAIN_2D, 4, seed=i).double())
    assert model.lipschitz_bound() > 1.0


def test_function_norm_includes_the_sensor_count():
    # The raw-sensor-vector Jacobian (Euclidean) times sqrt(m / n) is the function-norm ratio;
    # it must stay below the certificate, and the Euclidean one below L / sqrt(m).
    model = _maker(k=2.0)().double().eval()
    coords = _coords(DOMAIN_1D, 7).double()
    u = torch.randn(5, 1, M, dtype=torch.float64)
    bound = model.lipschitz_bound()
    f = lambda v: model(v, coords)  # noqa: E731
    euclid = jacobian_lipschitz(f, u, "euclidean")
    fn = jacobian_lipschitz(f, u, "function")
    torch.testing.assert_close(fn, euclid * (M / 7) ** 0.5, rtol=1e-12, atol=0.0)
    # Pointwise bound per query point, then the function norm (mean over points) inherits it.
    assert float(euclid.max()) <= bound * (7 / M) ** 0.5 * (1 + 1e-6)
    assert float(fn.max()) <= bound * (1 + 1e-6)
    for j in range(7):  # one query point at a time: the sup over y is what is certified
        one = jacobian_lipschitz(lambda v, j=j: model(v, coords[j : j + 1]), u, "function")
        assert float(one.max()) <= bound * (1 + 1e-6)


def test_bound_composition_and_sup_of_basis():
    model = _maker(k=3.0)().double().eval()
    # three branch layers, each aiming at its target times TARGET_MARGIN
    assert model.branch_lipschitz_bound() == pytest.approx(3.0 * TARGET_MARGIN**3, rel=1e-6)
    t_sup = model.basis_sup_bound()
    dense = torch.linspace(0, 1, 2001, dtype=torch.float64).reshape(-1, 1)
    with torch.no_grad():
        basis = model.trunk(dense)
    assert float(torch.linalg.vector_norm(basis, dim=1).max()) <= t_sup
    assert model.lipschitz_bound() == pytest.approx(3.0 * TARGET_MARGIN**3 * t_sup, rel=1e-6)
    u = torch.randn(3, 1, M, dtype=torch.float64)
    with torch.no_grad():
        b = model.branch_coefficients(u)
    expected = torch.linalg.vector_norm(b[:, 0], dim=1) * model.trunk_lipschitz_bound()
    torch.testing.assert_close(model.coordinate_lipschitz_bound(u), expected, rtol=1e-9, atol=0.0)


def test_layouts_and_query_points_off_the_grid():
    model = LipDeepONet(M, domain=DOMAIN_2D, in_channels=2, out_channels=3, n_basis=4, width=8)
    model.eval()
    u = torch.randn(2, 2, M)
    coords = _coords(DOMAIN_2D, 11)
    out = model(u, coords)
    assert out.shape == (2, 3, 11)
    torch.testing.assert_close(model(u.reshape(2, -1), coords), out)
    torch.testing.assert_close(model(u, coords.expand(2, 11, 2)), out)
    torch.testing.assert_close(model(u, coords[3:7]), out[:, :, 3:7])
    assert bool(model.in_domain(coords).all())
    assert not bool(model.in_domain(torch.tensor([[0.5, 2.5], [-0.1, 1.0]])).any())


def test_registry_rebuild_from_json(tmp_path):
    assert {"LipDeepONet", "DeepONet"} <= set(available_models())
    config = {
        "name": "LipDeepONet",
        "kwargs": dict(
            n_sensors=M, domain=DOMAIN_2D, out_channels=2, n_basis=4, width=8,
            output_scale="auxiliary",
        ),
    }  # fmt: skip
    model = build_model(config["name"], **config["kwargs"]).eval()
    torch.save(model.state_dict(), tmp_path / "w.pt")
    loaded = json.loads(json.dumps(config))
    fresh = build_model(loaded["name"], **loaded["kwargs"])
    fresh.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    fresh.eval()
    u, y = torch.randn(3, 1, M), _coords(DOMAIN_2D, 5)
    torch.testing.assert_close(fresh(u, y), model(u, y))
    assert fresh.lipschitz_bound() == model.lipschitz_bound()


def test_untrained_attack_on_wide_model_stays_below_bound():
    model = LipDeepONet(32, domain=DOMAIN_1D, n_basis=8, width=16).double().eval()
    coords = torch.linspace(0, 1, 16, dtype=torch.float64).reshape(-1, 1)
    u = torch.randn(6, 1, 32, dtype=torch.float64)
    check_attack(InputFunctionView(model, coords), u, "function", n_steps=40)


def test_errors():
    model = LipDeepONet(M, domain=DOMAIN_1D, n_basis=4, width=8)
    with pytest.raises(ValueError, match=r"branch_input must be \(batch, 8\)"):
        model(torch.randn(2, 7), torch.rand(3, 1))
    with pytest.raises(ValueError, match=r"coords must be \(n_points, 1\)"):
        model(torch.randn(2, M), torch.rand(3, 2))
    with pytest.raises(ValueError, match="coords has batch size 3"):
        model(torch.randn(2, M), torch.rand(3, 4, 1))
    with pytest.raises(ValueError, match="n_basis must be an integer >= 1"):
        LipDeepONet(M, domain=DOMAIN_1D, n_basis=0)
    with pytest.raises(ValueError, match="domain must be"):
        LipDeepONet(M, domain=[0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="lo <= hi"):
        LipDeepONet(M, domain=([1.0], [0.0]))
    with pytest.raises(ValueError, match="not 1-Lipschitz"):
        LipDeepONet(M, domain=DOMAIN_1D, activation="gelu")
    with pytest.raises(ValueError, match="harmonics must be an integer >= 0"):
        LipDeepONet(M, domain=DOMAIN_1D, harmonics=-1)
    with pytest.raises(ValueError, match="needs a positive period"):
        LipDeepONet(M, domain=([0.5], [0.5]), harmonics=2)
    with pytest.raises(ValueError, match="bad arguments for model 'DeepONet'"):
        build_model("DeepONet", n_sensors=M, domain=DOMAIN_1D, k=2.0)


@pytest.mark.parametrize("coord_dim", [1, 2])
def test_periodic_embedding_constant_is_exact(coord_dim):
    emb = PeriodicEmbedding(3, period=2.0, coord_dim=coord_dim).double()
    y = torch.rand(5, coord_dim, dtype=torch.float64)
    local = jacobian_lipschitz(emb, y)
    expected = torch.full_like(local, emb.lipschitz_bound())
    torch.testing.assert_close(local, expected, rtol=1e-9, atol=0.0)
    shifted = y.clone()
    shifted[:, 0] += 2.0
    torch.testing.assert_close(emb(shifted), emb(y), rtol=0, atol=1e-12)
    assert emb.out_features == 6 + coord_dim - 1
    assert PeriodicEmbedding(0, 1.0, coord_dim).lipschitz_bound() == 1.0


@pytest.mark.parametrize("scale", [0.5, 3.0, 40.0])
def test_periodic_embedding_scaled_coordinates(scale):
    # Constant max(Omega, scale), exact at every point; the image box/ball holds the embedding.
    emb = PeriodicEmbedding(2, period=1.0, coord_dim=3, scale=scale).double()
    omega = PeriodicEmbedding(2, period=1.0, coord_dim=1).lipschitz_bound()
    assert emb.lipschitz_bound() == pytest.approx(max(omega, scale), rel=1e-9)
    y = torch.rand(6, 3, dtype=torch.float64) * torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    local = jacobian_lipschitz(emb, y)
    torch.testing.assert_close(local, torch.full_like(local, emb.lipschitz_bound()), rtol=1e-9,
                               atol=0.0)  # fmt: skip
    torch.testing.assert_close(emb(y)[:, -2:], y[:, 1:] * scale)
    lo = torch.tensor([0.0, 0.0, 0.0], dtype=torch.float64)
    hi = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    box, centre, radius = emb.image(lo, hi)
    z = emb(y)
    lo_box, hi_box = (torch.tensor(b, dtype=torch.float64) for b in box)
    assert bool((z >= lo_box - 1e-12).all() and (z <= hi_box + 1e-12).all())
    assert float(torch.linalg.vector_norm(z - centre, dim=1).max()) <= radius * (1 + 1e-12)
    with pytest.raises(ValueError, match="scale must be"):
        PeriodicEmbedding(2, 1.0, 2, scale=0.0)


@pytest.mark.parametrize("case", ["e_harmonics", "xt_harmonics_auxiliary", "c_vector"])
def test_basis_sup_bound_holds_on_dense_domain(case):
    domain, cin, cout, kwargs = CASES[case]
    model = _maker(domain=domain, in_channels=cin, out_channels=cout, **kwargs)().double().eval()
    dense = _coords(domain, 4000).double()
    with torch.no_grad():
        basis = model.trunk(model.embedding(dense)).reshape(-1, cout, 4)
    sup = float(torch.linalg.vector_norm(basis, dim=2).max())
    assert sup <= model.basis_sup_bound()
    # The embedded points stay in the ball the bound uses.
    dist = torch.linalg.vector_norm(model.embedding(dense) - model.centre, dim=1)
    assert float(dist.max()) <= model.radius * (1 + 1e-12)


# -- local (patch) DeepONets ---------------------------------------------------------------------

LOCAL_CASES = {
    "1d_patch3": (LipLocalDeepONet, (8,), 3, 1, 1, {}),
    "1d_patch5_k3": (LipLocalDeepONet, (7,), 5, 2, 1, dict(k=3.0)),
    "2d_patch3_2in_2out": (LipLocalDeepONet, (3, 4), 3, 2, 2, {}),
    "2d_patch1": (LipLocalDeepONet, (3, 3), 1, 3, 2, {}),
    "2d_grid_smaller_than_patch": (LipLocalDeepONet, (2, 2), 5, 1, 1, {}),
    "3d_patch3": (LipLocalDeepONet, (2, 3, 2), 3, 1, 1, {}),
    "2d_twin": (LocalDeepONet, (4, 4), 3, 2, 1, {}),
}


def _local_maker(cls, grid, patch, cin, cout, **kwargs):
    d = len(grid)

    def make():
        torch.manual_seed(0)
        model = cls(grid, ([0.0] * d, [1.0] * d), cin, cout, patch=patch, n_basis=3, width=6,
                    depth=2, **kwargs)  # fmt: skip
        return perturb(model)

    return make


@pytest.mark.parametrize("case", sorted(LOCAL_CASES))
def test_local_certificate(case):
    cls, grid, patch, cin, cout, kwargs = LOCAL_CASES[case]
    u = torch.randn(2, cin, *grid)
    check_all(_local_maker(cls, grid, patch, cin, cout, **kwargs), u, norm="function")


def test_local_bound_composition():
    # ||S|| + L_branch * T, with T the exact max of the trunk's norms at the cell centres.
    model = _local_maker(LipLocalDeepONet, (4, 4), 3, 2, 3, k=2.0)().double().eval()
    norm_s = float(torch.linalg.matrix_norm(model.skip.detach(), ord=2))
    assert model.skip_bound() == pytest.approx(norm_s, rel=1e-9)
    assert model.branch_lipschitz_bound() == pytest.approx(2.0 * TARGET_MARGIN**3, rel=1e-6)
    with torch.no_grad():
        basis = model.trunk(model.coords).reshape(16, 3, 3)
    t_max = float(torch.linalg.vector_norm(basis, dim=2).max())
    assert model.basis_sup_bound() == pytest.approx(t_max, rel=1e-9)
    expected = norm_s + 2.0 * TARGET_MARGIN**3 * t_max
    assert model.lipschitz_bound() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("grid", [(6,), (5, 4), (2, 2), (3, 4, 2)])
@pytest.mark.parametrize("patch", [1, 3, 5])
def test_extract_patches_norm_is_sqrt_of_patch_size(grid, patch):
    # The dense matrix of the (linear) patch map: every cell lands in at most patch**d rows, with
    # equality when some cell has all its neighbours on the grid.
    n = math.prod(grid)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, *grid)
    rows = extract_patches(eye, patch)  # (n inputs, n points, s)
    matrix = rows.reshape(n, -1).T  # (n points * s, n inputs)
    norm = float(torch.linalg.matrix_norm(matrix, ord=2))
    s = patch ** len(grid)
    assert norm <= s**0.5 * (1 + 1e-12)
    if all(g >= patch for g in grid):
        assert norm == pytest.approx(s**0.5, rel=1e-12)


def test_extract_patches_layout_and_errors():
    u = torch.arange(2 * 5.0).reshape(1, 2, 5)  # two channels on a 1-D grid of 5
    rows = extract_patches(u, 3)
    assert rows.shape == (1, 5, 6)
    torch.testing.assert_close(rows[0, 2], torch.tensor([1.0, 2, 3, 6, 7, 8]))  # channel-major
    torch.testing.assert_close(rows[0, 0], torch.tensor([0.0, 0, 1, 0, 5, 6]))  # zero padding
    with pytest.raises(ValueError, match="patch must be an odd integer"):
        extract_patches(u, 2)
    with pytest.raises(ValueError, match="batch, channels"):
        extract_patches(torch.ones(5), 3)


def test_local_layouts_export_and_errors():
    model = _local_maker(LipLocalDeepONet, (4, 6), 3, 2, 3)().eval()
    u = torch.randn(5, 2, 4, 6)
    out = model(u)
    assert out.shape == (5, 3, 4, 6)
    torch.testing.assert_close(model(u.flatten(2)), out.flatten(2))  # flattened sensors
    torch.testing.assert_close(model.export()(u), out, rtol=0.0, atol=1e-6)
    # a local operator: changing the input far from a point leaves the output there unchanged
    v = u.clone()
    v[:, :, 3, 5] += 10.0
    torch.testing.assert_close(model(v)[:, :, :2, :4], out[:, :, :2, :4])
    with pytest.raises(ValueError, match=r"u must be \(batch, 2, 4, 6\)"):
        model(torch.randn(5, 2, 6, 4))
    with pytest.raises(ValueError, match="patch must be an odd integer"):
        LipLocalDeepONet((4,), ([0.0], [1.0]), patch=4)
    with pytest.raises(ValueError, match="grid must be"):
        LipLocalDeepONet((4, 0), ([0.0, 0.0], [1.0, 1.0]))
    with pytest.raises(ValueError, match="2 coordinates"):
        LipLocalDeepONet((4, 4), ([0.0], [1.0]))
    assert {"LipLocalDeepONet", "LocalDeepONet"} <= set(available_models())


def test_local_deeponet_fits_a_local_operator():
    # u -> u + 0.1 * (discrete Laplacian of u) in 1-D, zero boundary: a local linear operator a
    # global DeepONet with 4 basis functions cannot represent on 16 points (its best rank-4
    # approximation misses most of the identity part), a local one can.
    torch.manual_seed(0)
    n = 16

    def target(u):
        padded = torch.nn.functional.pad(u, (1, 1))
        return u + 0.1 * (padded[..., 2:] - 2 * u + padded[..., :-2])

    x = torch.randn(128, 1, n)
    y = target(x)
    local = LipLocalDeepONet((n,), ([0.0], [1.0]), n_basis=4, width=8, depth=1)
    glob = LipDeepONet(n, ([0.0], [1.0]), n_basis=4, width=8, depth=1)
    coords = ((torch.arange(n) + 0.5) / n).reshape(-1, 1)
    errors = {}
    for name, f, params in (
        ("local", local, local.parameters()),
        ("global", lambda u: glob(u, coords), glob.parameters()),
    ):
        opt = torch.optim.Adam(params, lr=1e-2)
        for _ in range(100):
            loss = (f(x) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            xt = torch.randn(64, 1, n)
            errors[name] = float((f(xt) - target(xt)).norm() / target(xt).norm())
    assert errors["local"] < 0.1, errors
    assert errors["global"] > 0.5, errors


def _export64(module: nn.Module, x: Tensor) -> Tensor:
    """The float64 evaluation the certificates made before ``_plain64``: export, copy, convert."""
    with torch.no_grad():
        return copy.deepcopy(module.export()).double().eval()(x)


@pytest.mark.parametrize(
    "make",
    [
        _maker(**VARIANTS["a_k3"]),
        _maker(**VARIANTS["b_free_last"]),
        _maker(**VARIANTS["c_vector"]),
        _maker(**VARIANTS["d_auxiliary"]),
        _maker(DeepONet, activation="gelu"),
        _maker(activation="maxmin"),
        _maker(activation="abs"),
        _maker(activation="relu"),
        _maker(domain=DOMAIN_2D, harmonics=2, activation="fullsort"),
        _local_maker(LipLocalDeepONet, (3, 4), 3, 2, 2),
        _local_maker(LocalDeepONet, (4, 4), 3, 2, 1),
    ],
)
def test_float64_trunk_evaluation_is_the_exported_ones_bit_for_bit(make):
    # basis_sup_bound evaluates the trunk in float64 from the eval weights directly
    # (deeponet._plain64); the certificate must be the one of the exported, converted network.
    model = make()
    model.train()  # eval weights are what is exported, whatever the mode
    x = torch.randn(5, model.trunk.in_features, dtype=torch.float64)
    with torch.no_grad():
        fast = deeponet._plain64(model.trunk, x)
    assert fast.dtype == torch.float64
    assert torch.equal(fast, _export64(model.trunk, x))
    with torch.no_grad():
        if isinstance(model, LipLocalDeepONet | LocalDeepONet):
            t = _export64(model.trunk, model.coords.double())
            t = t.reshape(-1, model.out_channels, model.n_basis)
            expected = float(torch.linalg.vector_norm(t, dim=2).max()) * deeponet._EVAL_SLACK
        else:
            centre = model.centre.unsqueeze(0)
            v = _export64(model.trunk, centre)[0].reshape(model.out_channels, model.n_basis)
            at_centre = float(torch.linalg.vector_norm(v, dim=1).max())
            bound = model.trunk.lipschitz_bound()
            expected = (at_centre + bound * model.radius) * deeponet._EVAL_SLACK
    assert model.basis_sup_bound() == expected
