import itertools
import json
import math

import pytest
import torch
from certcheck import check_all, check_attack, check_jacobian, perturb

from liponet.certify import ErrorBound, rollout_error_bound
from liponet.functional import batched_norm
from liponet.layers import LipLinear, LipSpectralConv
from liponet.models import (
    FNO,
    LipFNO,
    available_models,
    build_model,
    get_model_class,
    rollout,
)
from liponet.models.fno import FieldLinear

VARIANTS = {
    "a_k1": dict(k=1.0),
    "a_k3": dict(k=3.0),
    "b_free_last": dict(free_last_layer=True),
    "c_vector": dict(output_scale="vector"),
    "d_auxiliary": dict(output_scale="auxiliary", radius=20.0),
    "padding_clip": dict(padding=0.25, normalization="clip"),
    "orthogonal_relu_nogrid": dict(normalization="orthogonal", activation="relu", grid=False),
    "cpl_clip_k2": dict(block="cpl", normalization="clip", k=2.0),
    "cpl_increment": dict(block="cpl", increment=True, padding=0.25),
    "increment_k05": dict(k=0.5, increment=True),
    "learned_budget_cpl": dict(k=2.5, budget="learned", block="cpl", normalization="clip"),
    "cpl_hidden": dict(block="cpl", normalization="clip", hidden=10, k=1.5),
    "cpl_hidden_cayley": dict(block="cpl", normalization="cayley", hidden=10, k=1.5),
    "cayley_k2": dict(normalization="cayley", k=2.0),
    "cpl_softplus": dict(block="cpl", normalization="clip", cpl_activation="softplus", k=1.3),
}

GRIDS = {1: (16,), 2: (8, 8), 3: (5, 5, 6)}
MODES = {1: (4,), 2: (3, 2), 3: (2, 2, 2)}


def _kwargs(dim, **extra):
    return dict(in_channels=2, out_channels=1, modes=MODES[dim], width=4, depth=2, **extra)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lipfno_variants_are_certified_1d(variant):
    kwargs = _kwargs(1, **VARIANTS[variant])
    x = torch.randn(3, 2, *GRIDS[1])

    def make():
        torch.manual_seed(0)
        return perturb(LipFNO(**kwargs))

    check_all(make, x, norm="function")
    model = make().double().eval()
    bound = model.lipschitz_bound()
    if variant.startswith("a_"):
        assert bound <= kwargs["k"] * (1 + 1e-6)
    # Same certificate at twice the training resolution: attacks there stay below it too.
    check_attack(model, torch.randn(3, 2, 2 * GRIDS[1][0], dtype=torch.float64), "function")


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize(
    "variant", ["a_k3", "c_vector", "padding_clip", "cpl_increment", "learned_budget_cpl"]
)
def test_lipfno_nd(dim, variant):
    kwargs = _kwargs(dim, **VARIANTS[variant])
    x = torch.randn(2, 2, *GRIDS[dim])

    def make():
        torch.manual_seed(0)
        return perturb(LipFNO(**kwargs))

    check_all(make, x, norm="function")
    finer = torch.randn(2, 2, *(2 * n for n in GRIDS[dim]), dtype=torch.float64)
    check_attack(make().double().eval(), finer, "function")


def test_auxiliary_sup_bounds_hold_at_every_resolution():
    # The product-rule certificate relies on sup ||g(a)|| and sup |s(a)| over ||a|| <= radius,
    # bounded without reference to a grid. Inputs on the sphere ||a|| = radius, pushed outward
    # by gradient ascent on ||g(a)||, stay within them at several resolutions (padding and grid
    # channels make g(0) itself resolution-dependent).
    radius = 3.0
    torch.manual_seed(0)
    model = perturb(LipFNO(**_kwargs(1, output_scale="auxiliary", radius=radius, padding=0.2)))
    model = model.double().eval()
    scaled = model.net
    sup_s, sup_g = scaled.sup_bounds()
    for n in (7, 16, 64):
        a = torch.randn(8, 2, n, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([a], lr=0.1)
        for _ in range(20):
            on_sphere = a * (radius / batched_norm(a, "function")).view(-1, 1, 1)
            loss = -batched_norm(scaled.base(on_sphere), "function").sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            on_sphere = a * (radius / batched_norm(a, "function")).view(-1, 1, 1)
            g_norm = float(batched_norm(scaled.base(on_sphere), "function").max())
            s_max = float(scaled.aux(on_sphere).abs().max())
        assert g_norm <= sup_g
        assert s_max <= sup_s
        check_jacobian(model, on_sphere[:2].detach(), "function")


def test_unconstrained_twin_is_certified():
    x = torch.randn(3, 2, 16)

    def make():
        torch.manual_seed(0)
        return FNO(2, 1, modes=(4,), width=4, depth=2)

    check_all(make, x, norm="function")
    # GELU's slope is counted: same weights with ReLU give a bound smaller by 1.1289042**2
    # (one activation in the first block, one in the projection).
    gelu = make()
    relu = FNO(2, 1, modes=(4,), width=4, depth=2, activation="relu")
    relu.load_state_dict(gelu.state_dict())
    ratio = gelu.lipschitz_bound() / relu.lipschitz_bound()
    assert ratio == pytest.approx(1.1289042**2, rel=1e-12)


@pytest.mark.parametrize("name", ["LipFNO", "FNO"])
def test_registry_rebuilds_from_json_kwargs(name):
    kwargs = dict(in_channels=3, out_channels=2, modes=[5, 4], width=6, depth=2, padding=0.1)
    checkpoint = json.loads(json.dumps({"name": name, "kwargs": kwargs}))
    assert name in available_models() and get_model_class(name).__name__ == name
    torch.manual_seed(0)
    model = perturb(build_model(checkpoint["name"], **checkpoint["kwargs"])).eval()
    fresh = build_model(checkpoint["name"], **checkpoint["kwargs"]).eval()
    fresh.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 12, 10)
    torch.testing.assert_close(fresh(x), model(x), rtol=0.0, atol=0.0)
    assert fresh.lipschitz_bound() == model.lipschitz_bound()


def test_training_reduces_loss_and_certificate_holds_after():
    torch.manual_seed(0)
    model = LipFNO(1, 1, modes=(6,), width=8, depth=2)
    spec = torch.zeros(16, 1, 17, dtype=torch.complex64)
    spec[..., :5] = torch.randn(16, 1, 5, dtype=torch.complex64)
    x = torch.fft.irfft(spec, n=32, norm="ortho")  # band-limited inputs
    target = torch.roll(x, 5, dims=-1)  # an isometry: shift
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = (model(x) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    model.eval()
    check_attack(model, x[:4], "function", n_steps=10)


def test_rollout_and_error_bound():
    # "True" dynamics: a fixed model; learned model: a perturbed copy. The measured rollout
    # errors must stay below rollout_error_bound(measured defects, model, window=2).
    torch.manual_seed(0)
    kwargs = dict(in_channels=2, out_channels=1, modes=(4,), width=4, depth=2, k=1.2)
    truth = perturb(LipFNO(**kwargs)).double().eval()
    model = LipFNO(**kwargs).double().eval()
    model.load_state_dict(truth.state_dict())
    with torch.no_grad():
        model.net[0].linear.bias.add_(0.05)  # a small model error
    x0 = torch.randn(4, 2, 16, dtype=torch.float64)  # window of 2 one-channel frames
    steps = 6
    with torch.no_grad():
        true_frames = rollout(truth, x0, steps)  # (4, steps, 1, 16)
        pred = rollout(model, x0, steps)
        seq = torch.cat([x0.unsqueeze(2), true_frames], 1)  # (4, 2 + steps, 1, 16)
        defects = [
            float(batched_norm(model(seq[:, t : t + 2, 0]) - seq[:, t + 2], "function").max())
            for t in range(steps)
        ]
        errors = [
            float(batched_norm(pred[:, t] - true_frames[:, t], "function").max())
            for t in range(steps)
        ]
    assert rollout_error_bound(defects, model, window=2).label == "estimated"  # bare numbers
    measured = ErrorBound(
        torch.tensor([defects], dtype=torch.float64), "certified", "measured defects",
        "function", premises=("exact one-step defects on the true trajectory, float64",),
    )  # fmt: skip
    bound = rollout_error_bound(measured, model, window=2)
    assert bound.label == "certified" and bound.bound.shape == (1, steps)
    assert pred.shape == (4, steps, 1, 16)
    assert min(errors) > 0
    for e, b in zip(errors, bound.bound[0].tolist(), strict=True):
        assert e <= b * (1 + 1e-9)


def test_rollout_errors():
    with pytest.raises(ValueError, match="steps"):
        rollout(lambda w: w, torch.zeros(1, 1, 4), 0)
    with pytest.raises(ValueError, match="whole number of frames"):
        rollout(lambda w: w[:, :2], torch.zeros(1, 3, 4), 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"spatial size 8 of dimension 0 is too small"):
        LipFNO(1, 1, modes=(5,), width=4)(torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match="rank 3"):
        LipFNO(1, 1, modes=(5,), width=4)(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match="must have 1 channels"):
        LipFNO(1, 1, modes=(5,), width=4)(torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="k must be"):
        LipFNO(1, 1, modes=(5,), k=0.0)
    with pytest.raises(ValueError, match="k must be"):
        LipFNO(1, 1, modes=(5,), k=-2.0)
    with pytest.raises(ValueError, match="modes"):
        LipFNO(1, 1, modes=(0,))
    with pytest.raises(ValueError, match="not 1-Lipschitz"):
        LipFNO(1, 1, modes=(5,), activation="gelu")
    with pytest.raises(ValueError, match="even width"):
        LipFNO(1, 1, modes=(5,), width=5)
    with pytest.raises(ValueError, match="needs radius"):
        LipFNO(1, 1, modes=(5,), output_scale="auxiliary")
    with pytest.raises(ValueError, match="output_scale"):
        LipFNO(1, 1, modes=(5,), output_scale="aux")
    with pytest.raises(ValueError, match="normalization"):
        LipFNO(1, 1, modes=(5,), normalization="svd")
    with pytest.raises(ValueError, match="depth"):
        LipFNO(1, 1, modes=(5,), depth=0)
    with pytest.raises(ValueError, match="bad arguments for model 'LipFNO'"):
        build_model("LipFNO", in_channels=1, out_channels=1, mode=(5,))


def _passed_frequencies(conv, sizes):
    """Signed frequencies k whose cos/sin input pair gives a non-zero output."""
    grids = torch.meshgrid(
        *[torch.arange(n, dtype=torch.float64) / n for n in sizes], indexing="ij"
    )
    passed = []
    for ks in itertools.product(*[range(-(n // 2) + 1, n // 2) for n in sizes]):
        phase = sum(2 * torch.pi * k * g for k, g in zip(ks, grids, strict=True))
        x = torch.stack([torch.cos(phase), torch.sin(phase)]).unsqueeze(0).float()
        with torch.no_grad():
            if float(conv(x).abs().max()) > 1e-4:
                passed.append(ks)
    return sorted(passed)


@pytest.mark.parametrize(
    ("modes", "n_modes", "sizes"), [((9,), (16,), (20,)), ((3, 4), (5, 6), (8, 10))]
)
def test_kept_modes_match_neuraloperator(modes, n_modes, sizes):
    # The benchmark baseline: neuraloperator's n_modes = (2 m_1 - 1, ..., 2 (m_d - 1)) keeps the
    # same frequencies as liponet's modes (its n_modes=(16,) keeps 9 rfft modes).
    spectral = pytest.importorskip("neuralop.layers.spectral_convolution")
    torch.manual_seed(0)
    theirs = spectral.SpectralConv(2, 2, n_modes=n_modes, bias=False)
    ours = LipSpectralConv(2, 2, modes, bias=False).eval()
    passed = _passed_frequencies(ours, sizes)
    assert passed == _passed_frequencies(theirs, sizes)
    assert len(passed) == math.prod(2 * m - 1 for m in modes)


def test_increment_adds_the_last_frame_and_one_to_the_bound():
    torch.manual_seed(0)
    model = LipFNO(3, 1, modes=(4,), width=4, depth=2, k=0.5, increment=True).eval()
    inner = model.net.inner
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(model(x), x[:, 2:] + inner(x))
    assert model.lipschitz_bound() == pytest.approx(1.0 + inner.lipschitz_bound())
    assert model.lipschitz_bound() <= 1.5 * (1 + 1e-6)
    with pytest.raises(ValueError, match="multiple of out_channels"):
        LipFNO(3, 2, modes=(4,), increment=True)


def test_cpl_blocks_and_auto_k_errors():
    model = LipFNO(1, 1, modes=(4,), width=4, depth=3, block="cpl")
    assert sum(type(m).__name__ == "ConvexPotentialBlock" for m in model.modules()) == 3
    with pytest.raises(ValueError, match="unknown block 'nope'; available: fourier, cpl"):
        LipFNO(1, 1, modes=(4,), block="nope")
    with pytest.raises(ValueError, match="resolve_auto_k"):
        LipFNO(1, 1, modes=(4,), k="auto")
    wide = LipFNO(1, 1, modes=(4,), width=4, depth=2, block="cpl", hidden=12)
    assert [m.hidden for m in wide.modules() if type(m).__name__ == "ConvexPotentialBlock"] == [
        12,
        12,
    ]
    with pytest.raises(ValueError, match="block='cpl' only"):
        LipFNO(1, 1, modes=(4,), width=4, block="fourier", hidden=8)
    with pytest.raises(ValueError, match="must be >= 1"):
        LipFNO(1, 1, modes=(4,), width=4, hidden=0)
    with pytest.raises(ValueError, match="unknown convex-potential activation 'gelu'"):
        LipFNO(1, 1, modes=(4,), width=4, cpl_activation="gelu")
    with pytest.raises(ValueError, match="block='cpl' only"):
        LipFNO(1, 1, modes=(4,), width=4, block="fourier", cpl_activation="softplus")


BUDGET_CASES = [
    dict(block="fourier", normalization=n, k=k)
    for n in ("global", "clip", "orthogonal", "polar", "qr", "cayley")
    for k in (1.0, 3.0)
] + [
    dict(block="cpl", normalization="clip", k=2.0),
    dict(block="fourier", normalization="clip", k=2.0, budget="learned"),
    dict(block="cpl", normalization="clip", k=1.5, budget="learned"),
]


@pytest.mark.parametrize("case", BUDGET_CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_float32_certificate_is_at_most_the_budget(case):
    # The eval weights are stored in float32; their rounding (~1e-7 per layer) used to lift the
    # certificate of a model with budget k to k * (1 + ~8e-7). Every layer now aims at
    # k * TARGET_MARGIN, so the float32 model certifies <= k exactly (and stays close to it).
    for seed in range(3):
        torch.manual_seed(seed)
        model = perturb(LipFNO(2, 1, modes=(4, 3), width=8, depth=3, **case), seed=seed).eval()
        bound = model.lipschitz_bound()
        assert bound <= case["k"], (seed, bound)
        if case["normalization"] == "global" or case.get("budget") == "learned":
            assert bound > case["k"] * (1 - 1e-4), (seed, bound)  # the budget is used
        inc = LipFNO(2, 2, modes=(4,), width=8, depth=3, increment=True, **case).eval()
        assert inc.lipschitz_bound() <= 1.0 + case["k"]


def test_learned_budget_keeps_the_product():
    torch.manual_seed(0)
    model = LipFNO(1, 1, modes=(4,), width=4, depth=2, k=3.0, budget="learned")
    with torch.no_grad():
        model.budget.logits.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    factors = model.budget.factors().detach()
    assert float(factors.prod()) == pytest.approx(3.0, rel=1e-6)
    assert len(set(factors.tolist())) == 4  # unequal allocation
    model.eval()
    assert model.lipschitz_bound() <= 3.0
    assert sum(1 for name, _ in model.named_parameters() if "logits" in name) == 1
    with pytest.raises(ValueError, match="unknown budget"):
        LipFNO(1, 1, modes=(4,), budget="first")
    with pytest.raises(ValueError, match="excludes"):
        LipFNO(1, 1, modes=(4,), budget="learned", free_last_layer=True)


def test_field_linear_certificate_without_a_grid_is_the_layers_own():
    # no grid: every column acts on the input function, the layer's certificate (a proven level
    # for a large constrained one) bounds the exact norm; with a grid: the SVD of its columns
    torch.manual_seed(0)
    field = FieldLinear(LipLinear(96, 160)).eval()
    exact = float(torch.linalg.matrix_norm(field.linear.effective_weight().double(), 2))
    assert field.lipschitz_bound() == field.linear.lipschitz_bound()
    assert exact <= field.lipschitz_bound() <= 1.0
    lift = FieldLinear(LipLinear(98, 160), grid=2).eval()
    w = lift.linear.effective_weight().double()[:, :96]
    assert lift.lipschitz_bound() == pytest.approx(float(torch.linalg.matrix_norm(w, 2)), rel=1e-9)
