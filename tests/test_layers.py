import pytest
import torch
from certcheck import check_all, check_attack, check_jacobian
from deel.torchlip.normalizers import bjorck_normalization

import liponet.layers.linear as liplinear_module
from liponet.functional import TARGET_MARGIN, power_iteration
from liponet.layers import (
    GELU,
    AuxiliaryScale,
    CertifiedSequential,
    FullSort,
    GroupSort,
    LipLinear,
    OutputScale,
    make_activation,
    sup_norm_bound,
)


@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("k", [1.0, 2.5, None])
@pytest.mark.parametrize("shape", [(5, 3), (3, 5)])
def test_liplinear_certificate(shape, k, orthogonal):
    torch.manual_seed(0)
    x = torch.randn(4, shape[0])

    def make():
        torch.manual_seed(1)
        return LipLinear(shape[0], shape[1], k=k, orthogonal=orthogonal)

    check_all(make, x)
    layer = make().double().eval()
    if k is not None:  # normalized to k (times the margin), tight: the Jacobian norm reaches it
        assert layer.lipschitz_bound() == pytest.approx(k * TARGET_MARGIN, rel=1e-7)
        assert check_jacobian(layer, x.double()) == pytest.approx(k * TARGET_MARGIN, rel=1e-7)


@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("k", [1.0, 2.5, 3.0])
def test_liplinear_float32_certificate_is_at_most_k(k, orthogonal):
    # float32 rounding of the stored weight lifted the certificate to k * (1 + ~1e-7) before
    # the layer aimed at k * TARGET_MARGIN
    for seed in range(20):
        torch.manual_seed(seed)
        layer = LipLinear(32, 16, k=k, orthogonal=orthogonal)
        with torch.no_grad():
            layer.weight.add_(0.3 * torch.randn_like(layer.weight))
        bound = layer.eval().lipschitz_bound()
        assert k * (1 - 1e-5) < bound <= k, (seed, bound)


def _level_layers(dtype, orthogonal, k=1.0, shapes=((96, 96), (160, 80), (80, 160)), seeds=3):
    """Constrained layers above LEVEL_TEST_WORK, moved off their init, with their exact norms."""
    for shape in shapes:
        for seed in range(seeds):
            torch.manual_seed(seed)
            layer = LipLinear(*shape, k=k, orthogonal=orthogonal).to(dtype)
            with torch.no_grad():
                layer.weight.add_(0.05 * torch.randn_like(layer.weight))
            layer.eval()
            assert shape[0] * shape[1] * min(shape) >= liplinear_module.LEVEL_TEST_WORK
            exact = float(torch.linalg.matrix_norm(layer.effective_weight().double(), 2))
            yield layer, exact


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("k", [1.0, 2.5])
def test_liplinear_level_certificate_against_exact_norms(dtype, orthogonal, k, monkeypatch):
    # Large constrained layers certify their eval weight by a float64 Cholesky test at a level
    # just above the target (no SVD): a bound of the exact SVD norm, within 8 epsilons of the
    # target and <= k.
    def no_svd(a):
        raise AssertionError("an SVD certified the eval weight")

    monkeypatch.setattr(liplinear_module, "spectral_norm_upper", no_svd)
    eps = 2.0**-23 if dtype == torch.float32 else 1e-10
    target = k * TARGET_MARGIN
    for layer, exact in _level_layers(dtype, orthogonal, k):
        bound = layer.lipschitz_bound()
        assert exact <= bound <= min(k, target * (1 + 8 * eps)), (exact, bound)
        assert bound <= exact * (1 + 8 * eps)


def test_liplinear_level_certificate_is_a_jacobian_bound():
    torch.manual_seed(0)
    x = torch.randn(6, 96)

    def make():
        torch.manual_seed(1)
        return LipLinear(96, 96, k=2.0)

    check_all(make, x)


@pytest.mark.parametrize("variant", ["power iteration", "levels unproven"])
def test_liplinear_level_certificate_fails_without_the_cholesky_test(variant, monkeypatch):
    # The unsound variants: a power-iteration estimate of the eval weight's norm in place of
    # the proven level, or the first level accepted without its factorization. Both fall
    # below the exact norm of some layer, which the check above catches.
    def power(a, target):
        u = torch.ones(a.shape[1], dtype=a.dtype) / a.shape[1] ** 0.5
        return float(power_iteration(a, u, 3)[0])

    def unproven(a, target):
        return target * (1 + liplinear_module.LEVEL_STEPS[0] * 2.0**-23)

    fake = power if variant == "power iteration" else unproven
    monkeypatch.setattr(liplinear_module, "level_norm_upper", fake)
    layers = _level_layers(torch.float32, True, shapes=((160, 160), (160, 80)), seeds=4)
    assert any(exact > layer.lipschitz_bound() for layer, exact in layers)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_level_norm_upper_declines_other_precisions(dtype):
    assert liplinear_module.level_norm_upper(torch.eye(4, dtype=dtype), 1.0) is None


def test_level_norm_upper_declines_a_norm_above_its_levels():
    # A weight not normalized to the target (norm 1 + 1e-5): no level proven, the SVD decides
    q = torch.linalg.qr(torch.randn(90, 90, dtype=torch.float64))[0]
    assert liplinear_module.level_norm_upper((q * (1 + 1e-5)).float(), 1.0) is None
    assert liplinear_module.level_norm_upper(q.float(), 1.0) is not None
    nan = q.float().clone()
    nan[3, 4] = float("nan")
    assert liplinear_module.level_norm_upper(nan, 1.0) is None


def test_liplinear_eval_weight_follows_optimizer_steps():
    torch.manual_seed(0)
    layer = LipLinear(4, 4, k=1.0, orthogonal=False)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    x = torch.randn(8, 4)
    layer.eval()
    before = layer(x).detach()
    layer.train()
    layer(x).sum().backward()
    opt.step()
    layer.eval()
    after = layer(x).detach()
    assert not torch.allclose(before, after)  # the cache saw the step
    torch.testing.assert_close(after, layer.export()(x))
    assert layer.lipschitz_bound() == pytest.approx(TARGET_MARGIN, rel=1e-6)


def _textbook_train_weight(layer: LipLinear, u0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LipLinear's training weight recorded op by op: power step, division, deel's Björck."""
    sigma, u = power_iteration(layer.weight, u0, layer.n_power)
    w = layer.weight / sigma
    if layer.orthogonal:
        w = bjorck_normalization(w)
    assert layer.k is not None
    return layer.k * TARGET_MARGIN * w, u


@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("spread", [0.3, 3.0])  # near-orthogonal (1-2 Björck steps) / far (15)
@pytest.mark.parametrize("shape", [(12, 20), (20, 12), (40, 1)])
def test_liplinear_fused_train_weight_matches_textbook(shape, spread, orthogonal):
    # the fused node (_TrainWeight) against the autograd graph of the textbook formula: same
    # weight, same gradient, same power-iteration vector; it fails if the hand-written
    # backward drops a term (e.g. a Björck step's cubic adjoint or the division by sigma)
    torch.manual_seed(0)
    layer = LipLinear(*shape, k=1.7, orthogonal=orthogonal).double().train()
    with torch.no_grad():
        scales = torch.logspace(-2, 0, shape[0], dtype=torch.float64)
        layer.weight.add_(spread * torch.randn_like(layer.weight) * scales)
    u0 = layer.u.clone()
    grad = torch.randn(shape[1], shape[0], dtype=torch.float64)
    fused = layer.current_weight()
    assert fused.grad_fn is not None and "_TrainWeight" in type(fused.grad_fn).__name__
    (g_fused,) = torch.autograd.grad(fused, layer.weight, grad)
    u_fused = layer.u.clone()
    ref, u_ref = _textbook_train_weight(layer, u0)
    (g_ref,) = torch.autograd.grad(ref, layer.weight, grad)
    torch.testing.assert_close(u_fused, u_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(g_fused, g_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("orthogonal", [True, False])
def test_liplinear_fused_train_weight_gradcheck(orthogonal):
    # near-orthogonal, as in training: Björck stops after the same few steps under every
    # finite-difference perturbation, all of them with a gradient (deel-torchlip detaches the
    # cubic term from its fifth step on, a surrogate gradient gradcheck would reject)
    torch.manual_seed(0)
    w0 = torch.linalg.qr(torch.randn(7, 5, dtype=torch.float64))[0]
    w0 = (w0 + 0.02 * torch.randn(7, 5, dtype=torch.float64)).requires_grad_()
    u = torch.nn.functional.normalize(torch.randn(5, dtype=torch.float64), dim=0)
    node = liplinear_module._TrainWeight.apply
    assert torch.autograd.gradcheck(lambda w: node(w, u, 2.0, orthogonal), (w0,))


def test_liplinear_bad_arguments():
    with pytest.raises(ValueError, match="k must be"):
        LipLinear(2, 2, k=0.0)
    with pytest.raises(ValueError, match="k must be"):
        LipLinear(2, 2, k=float("nan"))
    with pytest.raises(ValueError, match="in_features"):
        LipLinear(0, 2)
    with pytest.raises(ValueError, match="n_power"):
        LipLinear(2, 2, n_power=0)


@pytest.mark.parametrize("name", ["groupsort2", "fullsort", "relu", "abs"])
def test_one_lipschitz_activations(name):
    act = make_activation(name)
    x = torch.randn(6, 4, dtype=torch.float64)
    assert act.lipschitz_bound() == 1.0
    est = check_attack(act, x)
    assert est <= 1.0 + 1e-9
    torch.testing.assert_close(act.export()(x), act(x))


def test_groupsort_over_channels_of_fields():
    x = torch.randn(2, 4, 8, dtype=torch.float64)
    act = GroupSort(2, dim=1)
    y = act(x)
    torch.testing.assert_close(y[:, 0::2], torch.minimum(x[:, 0::2], x[:, 1::2]))
    check_attack(act, x, norm="function")
    check_attack(FullSort(dim=1), x, norm="function")


def test_gelu_bound_is_its_maximum_slope():
    x = torch.linspace(-6, 6, 200001, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(torch.nn.functional.gelu(x).sum(), x)
    assert float(slope.abs().max()) <= GELU().lipschitz_bound()
    assert float(slope.abs().max()) >= GELU().lipschitz_bound() - 1e-6


def test_unknown_activation_lists_choices():
    with pytest.raises(ValueError, match="available: groupsort2"):
        make_activation("gelu2")


def test_output_scale_certificate():
    torch.manual_seed(0)

    def make():
        torch.manual_seed(0)
        scale = OutputScale(3, init=1.0)
        with torch.no_grad():
            scale.scale.copy_(torch.tensor([0.5, -2.0, 1.5]))
        return CertifiedSequential(LipLinear(2, 3), scale)

    check_all(make, torch.randn(5, 2))


def test_auxiliary_scale_certificate_on_its_domain():
    torch.manual_seed(0)
    centre = torch.zeros(2)
    radius = 2.0**0.5  # the box [-1, 1]^2

    def make():
        torch.manual_seed(0)
        base = CertifiedSequential(LipLinear(2, 8), GroupSort(2), LipLinear(8, 2))
        aux = CertifiedSequential(LipLinear(2, 4), GroupSort(2), LipLinear(4, 2, k=3.0))
        return AuxiliaryScale(base, aux, centre, radius)

    x = torch.rand(16, 2) * 2 - 1
    model = make().double().eval()
    check_jacobian(model, x.double())
    check_attack(model, x.double(), n_steps=0)  # attacks would leave the domain
    check_all(make, x[:4] * 0.5)


def test_sup_norm_bound_covers_the_ball():
    torch.manual_seed(0)
    net = CertifiedSequential(LipLinear(3, 6), GroupSort(2), LipLinear(6, 2, k=2.0)).double()
    net.eval()
    centre = torch.zeros(3, dtype=torch.float64)
    sup_inf, sup_2 = sup_norm_bound(net, centre, 1.0)
    x = torch.nn.functional.normalize(torch.randn(2000, 3, dtype=torch.float64), dim=1)
    x = x * torch.rand(2000, 1, dtype=torch.float64)
    y = net(x).detach()
    assert float(y.abs().max()) <= sup_inf
    assert float(y.norm(dim=1).max()) <= sup_2
    with pytest.raises(ValueError, match="radius"):
        sup_norm_bound(net, centre, -1.0)
