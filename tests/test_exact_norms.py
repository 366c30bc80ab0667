"""Exact-norm training (:func:`liponet.layers.exact_train_norms`).

The claim: with the flag, a training forward normalizes by the exact multiplier norms, so it
computes the eval function (which the certificate covers), and its gradient is the gradient of
that function (finite differences agree); the certificate machinery is untouched.
"""

from __future__ import annotations

import pytest
import torch
from certcheck import check_all, perturb

from liponet.layers import LipSpectralConv, exact_train_norms
from liponet.layers.fourier import exact_vectors
from liponet.models import LipFNO


@pytest.mark.parametrize("shape", [(5, 6, 4), (3, 4, 7), (2, 3, 1)])
def test_exact_vectors_reach_the_largest_singular_value(shape):
    torch.manual_seed(0)
    m = torch.randn(*shape, dtype=torch.complex128)
    u = exact_vectors(m)
    sigma = torch.linalg.vector_norm(m @ u.unsqueeze(-1), dim=(-2, -1))
    torch.testing.assert_close(sigma, torch.linalg.matrix_norm(m, ord=2), rtol=1e-12, atol=0.0)


def _conv(normalization: str, skip: bool) -> LipSpectralConv:
    conv = LipSpectralConv(3, 5, (4,), k=1.0, skip=skip, normalization=normalization)
    return perturb(conv, scale=1.0).double()


@pytest.mark.parametrize("normalization", ["clip", "global"])
@pytest.mark.parametrize("skip", [True, False])
def test_exact_training_forward_is_the_eval_forward(normalization, skip):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    conv = _conv(normalization, skip)
    y_power = conv.train()(x)  # one power step from random vectors: norms estimated from below
    y_eval = conv.eval()(x)
    # the premise: a power-iteration training forward is not the eval (certified) function
    assert float((y_power - y_eval).detach().abs().max()) > 1e-3
    assert exact_train_norms(conv) == 1
    y_exact = conv.train()(x)
    torch.testing.assert_close(y_exact, y_eval, rtol=1e-6, atol=1e-9)
    exact_train_norms(conv, enabled=False)
    assert not conv.exact_train_norms


@pytest.mark.parametrize("normalization", ["clip", "global"])
def test_exact_training_gradient_matches_finite_differences(normalization):
    """Gradients through ``sigma = ||M u||`` at the exact ``u``: the exact norm's gradient."""
    torch.manual_seed(2)
    x = torch.randn(2, 3, 16, dtype=torch.float64)
    conv = _conv(normalization, skip=True).train()
    exact_train_norms(conv)
    bias = conv.bias

    def f(weight: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        params = {"weight": weight, "skip": skip, "bias": bias}
        return torch.func.functional_call(conv, params, (x,))

    inputs = (conv.weight.detach().clone(), conv.skip.detach().clone())
    assert torch.autograd.gradcheck(f, tuple(t.requires_grad_() for t in inputs))


def _wide(exact: bool) -> LipFNO:
    model = LipFNO(
        2, 1, (4,), width=6, depth=2, block="cpl", hidden=12, normalization="clip", k=1.3
    )
    if exact:
        exact_train_norms(model)
    return model


def test_wide_cpl_model_trains_what_it_evaluates():
    """The stacked clip weights and fused chain of a convex-potential LipFNO, exact: the
    training forward equals the eval forward (with power iteration it does not)."""
    torch.manual_seed(3)
    x = torch.randn(3, 2, 32, dtype=torch.float64)
    for exact in (False, True):
        torch.manual_seed(4)
        model = perturb(_wide(exact), scale=0.5).double()
        y_train = model.train()(x)
        y_eval = model.eval()(x)
        if exact:
            torch.testing.assert_close(y_train, y_eval, rtol=1e-6, atol=1e-9)
        else:
            assert float((y_train - y_eval).detach().abs().max()) > 1e-4


def test_exact_norm_training_keeps_every_certificate_check():
    """A few Adam steps with exact norms, then the certificate checks of every model."""
    torch.manual_seed(5)
    x = torch.randn(3, 2, 32)
    model = _wide(exact=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        model.train()(x).pow(2).mean().backward()
        opt.step()
    state = model.state_dict()

    def make() -> LipFNO:
        fresh = _wide(exact=True)
        fresh.load_state_dict(state)
        return fresh

    check_all(make, x)


def test_bench_builds_the_burgers_screen_models_as_named():
    """``LipFNO-wide-d2-exact`` trains with exact norms, ``-m16`` keeps 16 modes, ``-k2``
    certifies 2; the learning-rate variants build their base network."""
    import pathlib

    from liponet.bench import MODEL_TRAINING, MODELS, PRESETS, TASKS, BenchData, network_of
    from liponet.layers import ConvexPotentialBlock

    x = torch.randn(4, 10, 64)
    y = x[:, :1]
    data = BenchData(
        TASKS["burgers_1d"], pathlib.Path("x"), 10, x, y, x, y, x, y, None, None, 10, 1, (64,),
        0.05,
    )  # fmt: skip
    preset = PRESETS["medium"]

    def convs(model: torch.nn.Module) -> list[LipSpectralConv]:
        return [m for m in model.modules() if isinstance(m, LipSpectralConv)]

    exact = MODELS["LipFNO-wide-d2-exact"](data, preset)
    blocks = [m for m in exact.modules() if isinstance(m, ConvexPotentialBlock)]
    assert len(blocks) == 2 and all(b.hidden == 2 * preset.width for b in blocks)
    assert all(c.exact_train_norms for c in convs(exact))
    assert not any(c.exact_train_norms for c in convs(MODELS["LipFNO-wide-d2"](data, preset)))
    assert {c.modes for c in convs(MODELS["LipFNO-wide-d2-m16"](data, preset))} == {(16,)}
    assert MODELS["LipFNO-wide-d2-k2"](data, preset).eval().lipschitz_bound() <= 2.0
    assert network_of("LipFNO-wide-d2-lr") == "LipFNO-wide-d2"
    assert MODEL_TRAINING["LipFNO-wide-d2-lr"] == {"lr": 1e-2}
