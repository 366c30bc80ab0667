"""``"orthogonal"`` training: the one-node training weights and the warm-started polar factors.

The warm polar factors (first-order around the last exact basis; the default of every
constrained ``"orthogonal"`` layer, ``warm_polar_train(model, enabled=False)`` switches them
off) are a training device: the eval weights and the certificate never depend on it. The basis
is module state (``warm_polar._extra_state``): round-tripped by ``state_dict``, optional in old
checkpoints, refused when malformed.
"""

import copy

import pytest
import torch
from trainfixtures import benchmark_module

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
    assert conv.warm_polar_tol == WARM_POLAR_TOL  # the default
    first = _weights_and_grads(conv)  # no basis yet: exact
    warm = conv.warm_polar
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
    conv._train_weights()
    warm = conv.warm_polar
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
    # the default (warm) against a twin that never had a basis: the same parameters give
    # bitwise the same eval outputs and certificate, whatever the warm state
    torch.manual_seed(0)
    model = LipFNO(2, 1, (4, 3), width=6, depth=2, block="fourier", normalization="orthogonal")
    twin = copy.deepcopy(model)
    warm_polar_train(twin, enabled=False)
    x = torch.randn(3, 2, 12, 10)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for _ in range(6):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    warm = [c.warm_polar for c in model.modules() if getattr(c, "warm_polar", None)]
    assert len(warm) == 2 and sum(w.warm_calls for w in warm) > 0  # the default is warm
    state = model.state_dict()
    keys = [k for k in state if "warm_polar" in k]
    assert len(keys) == 2 and all(k.endswith("conv.warm_polar._extra_state") for k in keys)
    twin.load_state_dict({k: v for k, v in state.items() if "warm_polar" not in k})
    model.eval(), twin.eval()
    assert torch.equal(model(x), twin(x))
    assert model.lipschitz_bound() == twin.lipschitz_bound() <= 1.0


def test_switches_exact_override_and_validation():
    model = LipFNO(1, 1, (4,), width=6, depth=2, block="fourier", normalization="orthogonal")
    assert warm_polar_train(LipFNO(1, 1, (4,), width=6, depth=2, block="fourier")) == 0
    assert warm_polar_train(model, tol=1.0) == 2
    exact_train_norms(model)  # exact every call, whatever the tolerance
    model.train()
    x = torch.randn(2, 1, 16)
    model(x), model(x)
    convs = [c for c in model.modules() if isinstance(c, LipSpectralConv)]
    assert all(c.warm_polar.v0 is None and c.warm_polar.warm_calls == 0 for c in convs)
    exact_train_norms(model, enabled=False)
    model(x), model(x)
    assert all(c.warm_polar.warm_calls == 1 for c in convs)
    assert warm_polar_train(model, enabled=False) == 2
    assert all(c.warm_polar_tol == 0.0 and c.warm_polar.v0 is None for c in convs)
    model(x), model(x)
    assert all(c.warm_polar.v0 is None and c.warm_polar.warm_calls == 1 for c in convs)
    with pytest.raises(ValueError, match="tol must be"):
        warm_polar_train(model, tol=0.0)
    global_conv = LipSpectralConv(2, 2, (3,))  # no basis: only "orthogonal" layers have one
    assert global_conv.warm_polar is None and "warm_polar" not in str(global_conv.state_dict())


# ----------------------------------------------------------------------------- state


def _trained_conv(steps=4, lr=1e-4):
    """A 2-D orthogonal layer after Adam steps small enough for warm calls."""
    conv = _conv(2, (4, 3), dtype=torch.float32)
    opt = torch.optim.Adam(conv.parameters(), lr=lr)
    x = torch.randn(2, 3, 10, 8, generator=torch.Generator().manual_seed(3))
    for _ in range(steps):
        opt.zero_grad()
        conv(x).square().mean().backward()
        opt.step()
    return conv, opt, x


def _continue(conv, opt, x, steps=3):
    outs = []
    for _ in range(steps):
        opt.zero_grad()
        out = conv(x)
        out.square().mean().backward()
        opt.step()
        outs.append(out.detach())
    return outs


def test_state_dict_round_trip_continues_bitwise_and_without_it_does_not():
    conv, opt, x = _trained_conv()
    assert conv.warm_polar.warm_calls > 0 and conv.warm_polar.v0 is not None
    state, opt_state = copy.deepcopy(conv.state_dict()), copy.deepcopy(opt.state_dict())
    extra = state["warm_polar._extra_state"]
    assert set(extra) == {"version", "tol", "v0", "cooldown", "fresh"}

    def resumed(with_basis):
        twin = _conv(2, (4, 3), dtype=torch.float32, seed=5)  # other weights, no basis
        kept = state if with_basis else {k: v for k, v in state.items() if "warm_polar" not in k}
        twin.load_state_dict(kept)  # strict, with or without the key
        twin_opt = torch.optim.Adam(twin.parameters(), lr=1e-4)
        twin_opt.load_state_dict(opt_state)
        return twin, twin_opt

    twin, twin_opt = resumed(True)
    assert torch.equal(twin.warm_polar.v0, conv.warm_polar.v0)
    assert (twin.warm_polar.cooldown, twin.warm_polar.fresh) == (
        conv.warm_polar.cooldown,
        conv.warm_polar.fresh,
    )
    old, old_opt = resumed(False)  # a checkpoint from before the warm default: starts exact
    assert old.warm_polar.v0 is None and old.warm_polar_tol == WARM_POLAR_TOL
    ref = _continue(conv, opt, x)
    got = _continue(twin, twin_opt, x)
    assert all(torch.equal(a, b) for a, b in zip(ref, got, strict=True))
    assert torch.equal(twin.weight, conv.weight) and torch.equal(twin.skip, conv.skip)
    # the unsound resume (basis dropped): the first call is exact, so not the same floats
    lost = _continue(old, old_opt, x)
    assert not torch.equal(lost[0], ref[0])
    # a tolerance switched off is state too
    warm_polar_train(conv, enabled=False)
    off = LipSpectralConv(3, 4, SHAPES[2], k=1.3, skip=True, normalization="orthogonal")
    off.load_state_dict(conv.state_dict())
    assert off.warm_polar_tol == 0.0


def _bad_states():
    conv, _, _ = _trained_conv(steps=2)
    good = conv.state_dict()["warm_polar._extra_state"]
    v0 = good["v0"]
    cases = {
        "not a dict": (torch.zeros(3), "expected a dict"),
        "missing key": ({k: v for k, v in good.items() if k != "fresh"}, "expected a dict"),
        "extra key": ({**good, "code": "x"}, "expected a dict"),
        "version": ({**good, "version": 2}, "version 2 is not supported"),
        "version tensor": ({**good, "version": torch.ones(2)}, "is not supported"),
        "tol negative": ({**good, "tol": -1.0}, "tol must be"),
        "tol nan": ({**good, "tol": float("nan")}, "tol must be"),
        "tol str": ({**good, "tol": "0.1"}, "tol must be"),
        "cooldown": ({**good, "cooldown": 99}, "cooldown must be"),
        "cooldown bool": ({**good, "cooldown": True}, "cooldown must be"),
        "fresh": ({**good, "fresh": 1}, "fresh must be"),
        "v0 list": ({**good, "v0": [1.0]}, "v0 must be None or a complex tensor"),
        "v0 real": ({**good, "v0": v0.real}, "v0 must be None or a complex tensor"),
        "v0 shape": ({**good, "v0": v0[:-1]}, "v0 has shape"),
        "v0 nan": ({**good, "v0": v0 * float("nan")}, "NaN or infinite"),
        "v0 not unitary": ({**good, "v0": 2 * v0}, "not unitary"),
    }
    return conv, cases


@pytest.mark.parametrize("case", list(_bad_states()[1]))
def test_malformed_warm_state_is_refused_with_the_key_named(case):
    conv, cases = _bad_states()
    bad, needle = cases[case]
    state = {**conv.state_dict(), "warm_polar._extra_state": bad}
    before = copy.deepcopy(conv.warm_polar.get_extra_state())
    with pytest.raises(ValueError, match=needle) as info:
        conv.load_state_dict(state)
    assert "'warm_polar._extra_state': malformed warm polar state" in str(info.value)
    after = conv.warm_polar.get_extra_state()
    assert torch.equal(after["v0"], before["v0"])  # nothing half-loaded into the basis


def test_checkpoint_size_benchmark_counts_the_bases(tmp_path, monkeypatch):
    with benchmark_module("warm_polar_state") as bench:
        monkeypatch.setitem(bench.CONFIGS, "tiny", ((8,), (3,), 4, {"block": "fourier"}))
        row = bench.measure("tiny", tmp_path)
    assert row["layers"] == bench.DEPTH and row["basis_shape"].endswith("x4x4")
    grown = row["checkpoint_with_MB"] - row["checkpoint_without_MB"]
    assert row["bases_MB"] <= grown < row["bases_MB"] + 0.01  # the bases and their framing
