"""The fused training nodes against their reference copies (``tests/_reference_fused.py``).

A speedup of a hand-written forward/backward must compute the same function and the same
gradients: outputs and every input gradient equal to rounding (float64 ``1e-12``, float32
``2e-6``, relative to the largest entry), 1-D and 2-D grids, both activations, with and
without bias, and a whole LipFNO training step (loss and every parameter gradient).
"""

import pytest
import torch
from _reference_fused import _BlocksFunction as RefBlocks
from _reference_fused import _ChainFunction as RefChain
from _reference_fused import _ClipTrainWeights as RefClip
from _reference_fused import _TrainWeight as RefTrainWeight

from liponet.layers import LipSpectralConv, fourier, linear, residual
from liponet.layers.fourier import clip_train_weights, hermitian_symmetrize
from liponet.models import LipFNO

CASES = {  # dim: (modes, shared-FFT grid, one-by-one grid)
    1: ((5,), (32,), (9,)),
    2: ((3, 4), (12, 16), (5, 6)),
}
TOL = {torch.float64: 1e-12, torch.float32: 2e-6}


def _close(got, ref, dtype):
    assert (got is None) == (ref is None)
    if ref is not None:
        scale = float(ref.detach().abs().max())
        torch.testing.assert_close(got, ref, rtol=0.0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("with_bias", [True, False])
def test_chain_nodes_equal_the_reference(dim, dtype, activation, shared, with_bias):
    modes, shared_grid, plain_grid = CASES[dim]
    grid = shared_grid if shared else plain_grid
    assert residual.shares_transforms(modes, grid) == shared
    node, ref_node = (
        (residual._ChainFunction, RefChain) if shared else (residual._BlocksFunction, RefBlocks)
    )
    torch.manual_seed(0)
    ctype = torch.complex128 if dtype == torch.float64 else torch.complex64
    n_blocks, hidden, width, batch = 3, 7, 4, 5
    kept = (*(2 * m - 1 for m in modes[:-1]), modes[-1])
    r = 0.4 * torch.randn(*kept, n_blocks, hidden, width, dtype=ctype)
    r = hermitian_symmetrize(r, dim)  # as the layers hand it over
    w = 0.4 * torch.randn(n_blocks, hidden, width, dtype=dtype)
    b = 0.3 * torch.randn(n_blocks, hidden, dtype=dtype) if with_bias else None
    x = torch.randn(batch, width, *grid, dtype=dtype)
    g = torch.randn_like(x)
    results = []
    for impl in (node, ref_node):
        inputs = [t.clone().requires_grad_() for t in (x, r, w)]
        bias = None if b is None else b.clone().requires_grad_()
        y = impl.apply(*inputs[:1], modes, activation, *inputs[1:], bias)
        wrt = inputs + ([] if bias is None else [bias])
        results.append((y, *torch.autograd.grad(y, wrt, g)))
    for got, ref in zip(*results, strict=True):
        _close(got, ref, dtype)


@pytest.mark.parametrize("shape", [(12, 11), (24, 12), (1, 24), (6, 6)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("orthogonal", [True, False])
def test_train_weight_equals_the_reference(shape, dtype, orthogonal):
    torch.manual_seed(0)
    weight = torch.randn(*shape, dtype=dtype)
    top = torch.linalg.svd(weight, full_matrices=False)[2][0]  # a warm power vector:
    u = torch.nn.functional.normalize(top + 0.05 * torch.randn_like(top), dim=0)  # near the top
    g = torch.randn(*shape, dtype=dtype)
    results = []
    for impl in (linear._TrainWeight, RefTrainWeight):
        wt = weight.clone().requires_grad_()
        out = impl.apply(wt, u, 1.3, orthogonal)
        results.append((out, *torch.autograd.grad(out, [wt], g)))
    for got, ref in zip(*results, strict=True):
        _close(got, ref, dtype)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_clip_train_weights_equal_the_reference(dim, dtype, monkeypatch):
    """All blocks' clip training weights and their gradients, current node against the reference."""
    modes = CASES[dim][0]
    torch.manual_seed(0)
    convs = [
        LipSpectralConv(4, 7, modes, k=1.0, skip=True, normalization="clip").to(dtype)
        for _ in range(3)
    ]
    for conv in convs:
        with torch.no_grad():
            conv.weight.mul_(3.0)  # some multipliers above k: clipped
    start = [conv.u.clone() for conv in convs]
    results: list[tuple[torch.Tensor, ...]] = []
    cotangents: list[torch.Tensor] = []  # drawn once: the same for both nodes
    for node in (fourier._ClipTrainWeights, RefClip):
        monkeypatch.setattr(fourier, "_ClipTrainWeights", node)
        for conv, u in zip(convs, start, strict=True):
            conv.u.copy_(u)
        r, w = clip_train_weights(convs)
        cotangents = cotangents or [torch.randn_like(r), torch.randn_like(w)]
        g_r, g_w = cotangents
        params = [p for conv in convs for p in (conv.weight, conv.skip)]
        loss = (torch.view_as_real(r) * torch.view_as_real(g_r)).sum() + (w * g_w).sum()
        results.append((r, w, *torch.autograd.grad(loss, params)))
    for got, ref in zip(*results, strict=True):
        _close(got, ref, dtype)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
def test_lipfno_training_step_equals_the_reference(dim, dtype, activation, monkeypatch):
    """A LipFNO's loss and every parameter gradient, current nodes against the reference."""
    modes, grid, _ = CASES[dim]
    torch.manual_seed(0)
    model = LipFNO(
        2, 1, modes, width=6, depth=3, hidden=12, normalization="clip", k=1.3,
        cpl_activation=activation,
    )  # fmt: skip
    model = model.to(dtype).train()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 2, *grid, dtype=dtype)
    y = torch.randn(4, 1, *grid, dtype=dtype)
    chain_module = next(m for m in model.modules() if isinstance(m, residual.ConvexPotentialChain))
    seen: list[str] = []
    chain_module.register_forward_hook(
        lambda mod, inp, out: seen.append(type(out.grad_fn).__name__)
    )
    results = []
    for chain, blocks, train_weight, clip in (
        (
            residual._ChainFunction,
            residual._BlocksFunction,
            linear._TrainWeight,
            fourier._ClipTrainWeights,
        ),
        (RefChain, RefBlocks, RefTrainWeight, RefClip),
    ):
        monkeypatch.setattr(fourier, "_ClipTrainWeights", clip)
        monkeypatch.setattr(residual, "_ChainFunction", chain)
        monkeypatch.setattr(residual, "_BlocksFunction", blocks)
        monkeypatch.setattr(linear, "_TrainWeight", train_weight)
        model.load_state_dict(start)  # the same power-iteration vectors
        loss = ((model(x) - y) ** 2).mean()
        assert seen[-1] == f"{chain.__name__}Backward"
        results.append((loss, *torch.autograd.grad(loss, list(model.parameters()))))
    for got, ref in zip(*results, strict=True):
        _close(got, ref, dtype)
