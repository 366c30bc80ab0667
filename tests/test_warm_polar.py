"""``"orthogonal"`` training: the one-node training weights and the warm-started polar factors.

``warm_polar_train`` is a training device (first-order polar factors around the last exact
basis); the eval weights and the certificate never depend on it.
"""

import copy

import pytest
import torch

import liponet.layers.fourier as fourier
from liponet.functional import polar_eigh
from liponet.layers import LipSpectralConv, exact_train_norms, warm_polar_train
from liponet.layers.fourier import WARM_POLAR_TOL, _warm_polar
from liponet.models import LipFNO

SHAPES = {1: (5,), 2: (5, 4), 3: (3, 3, 2)}


def _conv(dim, shape=(4, 4), skip=True, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    conv = LipSpectralConv(
        shape[1], shape[0], SHAPES[dim], k=1.3, skip=skip, normalization="orthogonal"
    )
    conv = conv.to(dtype).train()
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.3)
        if skip:
            conv.skip.normal_(0.0, 0.3)
    return conv


def _step(conv, size, seed=1):
    """Move every real and imaginary part by ``+-size`` (an Adam-like step)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (conv.weight, conv.skip):
            if p is not None:
                p.add_(size * torch.randn(p.shape, generator=gen, dtype=p.dtype).sign())


def _weights_and_grads(conv):
    conv.zero_grad()
    r, w = conv._train_weights()
    gen = torch.Generator().manual_seed(7)
    gr = torch.randn(r.shape, generator=gen, dtype=r.dtype)
    loss = (r * gr.conj()).real.sum()
    if w is not None:
        loss = loss + (w * torch.randn(w.shape, generator=gen, dtype=w.dtype)).sum()
    loss.backward()
    grads = [p.grad.clone() for p in (conv.weight, conv.skip) if p is not None]
    return r.detach(), None if w is None else w.detach(), grads


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("shape", [(3, 3), (2, 3), (3, 2)])
@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_node_training_weights_are_the_generic_paths_floats(dim, shape, skip, dtype):
    # the fused node computes the same floats forward as the generic autograd path, and the
    # same gradients up to the order of summation
    conv = _conv(dim, shape, skip, dtype)
    fused = _weights_and_grads(conv)
    try:
        fourier.FUSED_ORTHOGONAL_TRAIN = False
        generic = _weights_and_grads(conv)
    finally:
        fourier.FUSED_ORTHOGONAL_TRAIN = True
    assert torch.equal(fused[0], generic[0])
    assert (fused[1] is None and generic[1] is None) or torch.equal(fused[1], generic[1])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(fused[2], generic[2], strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def test_warm_factor_is_second_order_and_rejects_far_bases():
    torch.manual_seed(0)
    a0 = torch.randn(40, 6, 4, dtype=torch.complex128)
    vh = torch.linalg.svd(a0, full_matrices=False)[2]
    v0 = vh.mH
    for size in (1e-4, 1e-3):
        a = a0 + size * torch.randn(a0.shape, dtype=a0.dtype)
        result = _warm_polar(a, v0, tol=1.0)
        assert result is not None
        err = float((result[0] - polar_eigh(a)).abs().max())
        assert err < 100 * size**2  # first order around the basis: error second order
    far = a0 + 0.3 * torch.randn(a0.shape, dtype=a0.dtype)
    assert _warm_polar(far, v0, tol=WARM_POLAR_TOL) is None
    assert _warm_polar(a0 * float("nan"), v0, tol=1.0) is None


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (5, 3)])
def test_warm_training_weights_close_to_exact_and_gradients_close(dim, shape):
    conv = _conv(dim, shape)
    assert warm_polar_train(conv) == 1
    first = _weights_and_grads(conv)  # no basis yet: exact
    warm = conv._warm_polar
    assert warm.v0 is not None and warm.warm_calls == 0
    conv.warm_polar_tol = 0.0
    exact_first = _weights_and_grads(conv)
    assert torch.equal(first[0], exact_first[0])
    conv.warm_polar_tol = WARM_POLAR_TOL
    _step(conv, 1e-5)
    got = _weights_and_grads(conv)
    assert warm.warm_calls == 1  # accepted
    conv.warm_polar_tol = 0.0
    ref = _weights_and_grads(conv)
    err = float((got[0] - ref[0]).abs().max())
    assert 0.0 < err < 10 * WARM_POLAR_TOL**2
    for g, h in zip(got[2], ref[2], strict=True):
        assert float((g - h).norm() / h.norm()) < 10 * WARM_POLAR_TOL


def test_large_steps_fall_back_to_exact_and_cool_down():
    conv = _conv(2, (4, 4))
    warm_polar_train(conv)
    conv._train_weights()
    warm = conv._warm_polar
    _step(conv, 0.05)  # far beyond the warm basis: rejected, exact, basis refreshed
    r, _ = conv._train_weights()
    assert warm.warm_calls == 0 and warm.cooldown == fourier.WARM_POLAR_COOLDOWN
    conv.warm_polar_tol = 0.0
    r_exact, _ = conv._train_weights()
    assert torch.equal(r, r_exact)
    conv.warm_polar_tol = WARM_POLAR_TOL
    for _ in range(fourier.WARM_POLAR_COOLDOWN):  # exact without trying
        conv._train_weights()
    assert warm.cooldown == 0 and warm.warm_calls == 0
    conv._train_weights()  # unchanged weights: warm again
    assert warm.warm_calls == 1


def test_eval_weights_and_certificate_do_not_depend_on_warm_training():
    torch.manual_seed(0)
    model = LipFNO(2, 1, (4, 3), width=6, depth=2, block="fourier", normalization="orthogonal")
    twin = copy.deepcopy(model)
    assert warm_polar_train(model) == 2
    x = torch.randn(3, 2, 12, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for _ in range(6):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    warm = [c._warm_polar for c in model.modules() if getattr(c, "_warm_polar", None)]
    assert sum(w.warm_calls for w in warm) > 0  # some calls were warm
    twin.load_state_dict(model.state_dict())  # never trained warm: the same parameters
    model.eval(), twin.eval()
    assert torch.equal(model(x), twin(x))
    assert model.lipschitz_bound() == twin.lipschitz_bound() <= 1.0
    assert "_warm_polar" not in str(model.state_dict().keys())


def test_switches_exact_override_and_validation():
    model = LipFNO(1, 1, (4,), width=6, depth=2, block="fourier", normalization="orthogonal")
    assert warm_polar_train(LipFNO(1, 1, (4,), width=6, depth=2, block="fourier")) == 0
    assert warm_polar_train(model, tol=1.0) == 2
    exact_train_norms(model)  # exact every call, whatever the tolerance
    model.train()
    x = torch.randn(2, 1, 16)
    model(x), model(x)
    convs = [c for c in model.modules() if isinstance(c, LipSpectralConv)]
    assert all(c._warm_polar is None or c._warm_polar.warm_calls == 0 for c in convs)
    exact_train_norms(model, enabled=False)
    model(x), model(x)
    assert all(c._warm_polar.warm_calls == 1 for c in convs)
    assert warm_polar_train(model, enabled=False) == 2
    assert all(c.warm_polar_tol == 0.0 and c._warm_polar is None for c in convs)
    with pytest.raises(ValueError, match="tol must be"):
        warm_polar_train(model, tol=0.0)
