import math

import pytest
import torch
from certcheck import check_all, check_attack, perturb

from liponet.layers import (
    NORMALIZATIONS,
    ConvexPotentialBlock,
    ConvexPotentialChain,
    LipSpectralConv,
)
from liponet.layers.fourier import mix_modes, spectral_apply
from liponet.layers.residual import adjoint_weights, convex_potential_chain, shares_transforms
from liponet.models import LipFNO

GRIDS = {1: (9,), 2: (5, 8), 3: (4, 5, 4)}
MODES = {1: (3,), 2: (2, 3), 3: (2, 2, 2)}


def _dense(kept, skip, modes, channels, sizes):
    """A Fourier multiplier (no bias) as a dense float64 matrix on the grid ``sizes``."""
    n = channels * math.prod(sizes)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, channels, *sizes)
    return spectral_apply(basis, kept, skip, None, modes).reshape(n, -1).T


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_adjoint_is_the_transpose_of_the_dense_matrix(dim):
    torch.manual_seed(0)
    conv = LipSpectralConv(3, 2, MODES[dim], k=None, skip=True).double().eval()
    perturb(conv, scale=1.0)
    r, w = conv.effective_weights()
    forward = _dense(r, w, MODES[dim], 3, GRIDS[dim])  # (2N, 3N)
    r_adj, w_adj = adjoint_weights(r, w)
    backward = _dense(r_adj, w_adj, MODES[dim], 2, GRIDS[dim])  # (3N, 2N)
    torch.testing.assert_close(backward, forward.T, rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("normalization", sorted(NORMALIZATIONS))
def test_convex_potential_block_is_certified(dim, normalization):
    hidden = 2 if normalization == "orthogonal" else 5

    def make():
        torch.manual_seed(0)
        block = ConvexPotentialBlock(4, MODES[dim], hidden=hidden, normalization=normalization)
        return perturb(block, scale=1.0)

    x = torch.randn(3, 4, *GRIDS[dim])
    check_all(make, x, norm="function")
    block = make().double().eval()
    assert block.lipschitz_bound() == 1.0  # K normalized just below 1: exactly 1
    # the block is genuinely nonlinear and not an isometry: some pair contracts
    y = block(x.double())
    assert not torch.allclose(y, x.double(), atol=1e-3)
    finer = torch.randn(3, 4, *(2 * n for n in GRIDS[dim]), dtype=torch.float64)
    check_attack(block, finer, "function")


def test_softplus_block_is_certified_and_exports():
    """Softplus (slopes in (0, 1)) keeps the proof: exact Jacobian norms and attacks stay <= 1."""

    def make():
        torch.manual_seed(2)
        block = ConvexPotentialBlock(4, (3,), hidden=8, normalization="clip", activation="softplus")
        return perturb(block, scale=1.0)

    x = torch.randn(3, 4, 16)
    check_all(make, x, norm="function")
    block = make().double().eval()
    assert block.lipschitz_bound() == 1.0
    torch.testing.assert_close(block.export()(x.double()), block(x.double()))
    relu = make().double().eval()
    relu.activation = "relu"
    assert not torch.allclose(relu(x.double()), block(x.double()), atol=1e-3)  # it is used


def test_certificate_tracks_a_kernel_larger_than_one():
    """A K with norm s > 1 breaks the factor 2/||K||^2 = 2: the certificate says 2 s^2 - 1."""
    torch.manual_seed(1)
    block = perturb(ConvexPotentialBlock(4, (3,)), scale=1.0).double().eval()
    r, w = block.conv.effective_weights()
    s = block.conv.lipschitz_bound()
    # eval weights scaled by 1.5, bypassing the normalization (and its certificate likewise)
    block.conv.effective_weights = lambda: (1.5 * r, 1.5 * w)
    block.conv.lipschitz_bound = lambda: 1.5 * s
    bound = block.lipschitz_bound()
    assert bound == pytest.approx(2 * 1.5**2 - 1, rel=1e-5)
    x = torch.randn(4, 4, 16, dtype=torch.float64)
    est = check_attack(block, x, "function", n_steps=60)
    assert est > 1.05  # the attack sees the expansion the certificate accounts for


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden"):
        ConvexPotentialBlock(4, (3,), hidden=0)
    with pytest.raises(ValueError, match="normalization"):
        ConvexPotentialBlock(4, (3,), normalization="nope")
    with pytest.raises(ValueError, match="slopes in"):
        ConvexPotentialBlock(4, (3,), activation="maxmin")


def test_symmetry_premise_covers_the_new_parts():
    """cpl blocks, the increment form and the learned budget commute with cyclic shifts."""
    from liponet.certify.symmetry import SymmetryGroup, check_model_symmetry
    from liponet.models import LipFNO

    torch.manual_seed(0)
    model = LipFNO(2, 1, (4,), width=4, depth=2, grid=False, increment=True, budget="learned")
    model = perturb(model).double().eval()
    assert "verified" in check_model_symmetry(model, SymmetryGroup((0,)))
    x = torch.randn(3, 2, 16, dtype=torch.float64)
    shifted = model(torch.roll(x, 5, dims=-1))
    torch.testing.assert_close(shifted, torch.roll(model(x), 5, dims=-1), rtol=0, atol=1e-12)


def _separate_blocks(blocks, x):
    """The blocks one by one with the textbook formula ``x - 2 K^T relu(K x + b)``."""
    for block in blocks:
        r, w = block._weights()
        z = torch.relu(spectral_apply(x, r, w, block.conv.bias, block.modes))
        r_adj, w_adj = adjoint_weights(r, w)
        x = x - 2.0 * spectral_apply(z, r_adj, w_adj, None, block.modes)
    return x


#: Grids on which the chain shares transforms (kept modes <= a quarter of the grid points).
SHARED_GRIDS = {1: (16,), 2: (8, 9), 3: (6, 7, 6)}
UNSHARED_GRIDS = {1: (9,), 2: (3, 5), 3: (3, 3, 3)}


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shared", [True, False])
def test_chain_equals_the_blocks_one_by_one(dim, dtype, mode, shared):
    """The FFT-sharing chain computes the old formula: outputs and every gradient to rounding."""
    grid = SHARED_GRIDS[dim] if shared else UNSHARED_GRIDS[dim]
    assert shares_transforms(MODES[dim], grid) == shared
    torch.manual_seed(0)
    blocks = [ConvexPotentialBlock(6, MODES[dim], hidden=5, normalization="clip") for _ in range(3)]
    for block in blocks:
        perturb(block, scale=1.0)
    chain = ConvexPotentialChain(*blocks).to(dtype)
    getattr(chain, mode)()
    x = torch.randn(3, 6, *grid, dtype=dtype, requires_grad=True)
    params = list(chain.parameters())
    u0 = [block.conv.u.clone() for block in blocks]  # power iteration: same start for both
    y = chain(x)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *params], g, allow_unused=True)
    for block, u in zip(blocks, u0, strict=True):
        block.conv.u.copy_(u)
    y_ref = _separate_blocks(blocks, x)
    grads_ref = torch.autograd.grad(y_ref, [x, *params], g, allow_unused=True)
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    scale = float(y_ref.detach().abs().max())
    torch.testing.assert_close(y, y_ref, rtol=0.0, atol=tol * scale)
    assert (mode == "train") == all(gp is not None for gp in grads[1:])
    for got, ref in zip(grads, grads_ref, strict=True):
        if ref is None:
            assert got is None
            continue
        torch.testing.assert_close(got, ref, rtol=0.0, atol=tol * float(ref.abs().max()))
    # and the model path: a LipFNO's blocks form one chain
    model = LipFNO(1, 1, MODES[dim], width=4, depth=2)
    assert sum(isinstance(m, ConvexPotentialChain) for m in model.modules()) == 1


@pytest.mark.parametrize("adjoint", [False, True])
def test_chain_and_mode_mixing_backward_pass_gradcheck(adjoint):
    """Hand-written backward passes (mode mixing, kept-mode FFTs) against finite differences."""
    torch.manual_seed(0)
    xk = torch.randn(2, 3, 4, dtype=torch.complex128, requires_grad=True)
    r = torch.randn(4, 5 if not adjoint else 3, 3 if not adjoint else 5, dtype=torch.complex128)
    r.requires_grad_(True)

    def mix(xk, r):
        w = r.transpose(-2, -1).conj() if adjoint else r
        return mix_modes(xk, w)

    assert torch.autograd.gradcheck(mix, (xk, r))
    assert shares_transforms((3, 2), (8, 6))
    blocks = [perturb(ConvexPotentialBlock(4, (3, 2)), scale=1.0).double().eval() for _ in range(2)]
    weights = [b.chain_weights() for b in blocks]
    kept = [w[0].detach().clone().requires_grad_(True) for w in weights]
    skips = [w[1].detach().clone().requires_grad_(True) for w in weights]
    x = torch.randn(2, 4, 8, 6, dtype=torch.float64, requires_grad=True)

    def chain(x, k0, k1, s0, s1):
        ws = [(k0, s0, weights[0][2]), (k1, s1, weights[1][2])]
        return convex_potential_chain(torch.relu(x) - x.mean(), ws, (3, 2))

    assert torch.autograd.gradcheck(chain, (x, *kept, *skips))


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("activation", ["relu", "softplus"])
@pytest.mark.parametrize("shared", [True, False])
def test_fused_chain_backward_gradcheck_through_the_layers_symmetrization(dim, activation, shared):
    """The chain's one autograd node (hand-written backward) against finite differences.

    Both nodes: FFTs shared between blocks (``_ChainFunction``) and blocks one by one
    (``_BlocksFunction``). The weights enter as the layers hold them: raw parameters,
    Hermitian-symmetrized on the ``k_d = 0`` slice, stacked over blocks; a broken backward (a
    wrong sign, factor or term) fails here.
    """
    from liponet.layers.fourier import hermitian_symmetrize
    from liponet.layers.residual import _BlocksFunction, _ChainFunction

    torch.manual_seed(0)
    modes, grid = MODES[dim], (SHARED_GRIDS if shared else UNSHARED_GRIDS)[dim]
    node = _ChainFunction if shared else _BlocksFunction
    blocks = [perturb(ConvexPotentialBlock(3, modes, hidden=4), scale=1.0) for _ in range(2)]
    raw = torch.stack([b.conv.weight.detach() for b in blocks], dim=dim).double()
    skip = torch.stack([b.conv.skip.detach() for b in blocks]).double()
    bias = 0.3 * torch.randn(2, 4, dtype=torch.float64)
    x = torch.randn(2, 3, *grid, dtype=torch.float64)

    def chain(x, raw, skip, bias):
        r = hermitian_symmetrize(torch.view_as_complex(raw), dim)  # (*kept, B, hidden, width)
        return node.apply(x, modes, activation, r, skip, bias)

    inputs = tuple(t.clone().requires_grad_() for t in (x, raw, skip, bias))
    assert torch.autograd.gradcheck(chain, inputs)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shared", [True, False])
def test_model_steps_through_the_fused_chain_as_through_the_plain_one(
    dim, mode, shared, monkeypatch
):
    """A LipFNO (softplus blocks) with the fused chain and with the plain recurrence: outputs
    and every parameter gradient equal to rounding; the fused node is the one recorded."""
    from liponet.layers import residual

    grid = ({1: (32,), 2: (12, 16)} if shared else {1: (6,), 2: (4, 5)})[dim]
    assert shares_transforms(MODES[dim], grid) == shared
    node = "_ChainFunctionBackward" if shared else "_BlocksFunctionBackward"
    torch.manual_seed(0)
    model = LipFNO(2, 1, MODES[dim], width=6, depth=3, cpl_activation="softplus")
    model = perturb(model, scale=1.0).double()
    getattr(model, mode)()
    chain = next(m for m in model.modules() if isinstance(m, ConvexPotentialChain))
    x = torch.randn(3, 2, *grid, dtype=torch.float64, requires_grad=True)
    seen = []
    chain.register_forward_hook(lambda mod, inp, out: seen.append(type(out.grad_fn).__name__))
    params = [p for p in model.parameters()]
    buffers = {k: v.clone() for k, v in model.state_dict().items() if k.endswith(".u")}
    y = model(x)
    g = torch.randn_like(y)
    grads = torch.autograd.grad(y, [x, *params], g, allow_unused=True)
    assert seen == [node]
    model.load_state_dict({**model.state_dict(), **buffers})  # the same power-iteration start
    monkeypatch.setattr(residual, "_fused", lambda x: False)
    y_ref = model(x)
    grads_ref = torch.autograd.grad(y_ref, [x, *params], g, allow_unused=True)
    assert seen[-1] != node
    torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-12 * float(y_ref.detach().abs().max()))
    for got, ref in zip(grads, grads_ref, strict=True):
        assert (got is None) == (ref is None)
        if ref is not None:
            torch.testing.assert_close(got, ref, rtol=0, atol=1e-11 * float(ref.abs().max()))


def test_chain_under_autocast_takes_the_plain_operations():
    """Autocast (bf16 on CPU here) keeps the plain recurrence and its dtype rules."""
    from liponet.layers import residual

    torch.manual_seed(0)
    model = LipFNO(1, 1, (3,), width=4, depth=2).train()
    x = torch.randn(2, 1, 16)
    assert residual._fused(x)
    seen = []
    chain = next(m for m in model.modules() if isinstance(m, ConvexPotentialChain))
    chain.register_forward_hook(lambda mod, inp, out: seen.append(type(out.grad_fn).__name__))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not residual._fused(x)
        y = model(x)
    assert torch.isfinite(y).all() and seen[0] not in (
        "_ChainFunctionBackward",
        "_BlocksFunctionBackward",
    )
    y.float().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("dims", [1, 2])
def test_chain_under_autocast_keeps_spectra_in_float32(monkeypatch, dims):
    """Under bf16 autocast the skip on a spectrum runs in float32, not bfloat16.

    CUDA's first device check (torch 2.11) failed here: its ``view_as_complex`` refuses
    bfloat16, which autocast's matmul returned. torch 2.13 on CPU accepts it silently, so the
    strict rule is imposed here, and the mixing must equal the float32 product.
    """
    from liponet.layers import residual

    strict = torch.view_as_complex

    def refuse_half(t):
        assert t.dtype in (torch.float32, torch.float64), f"a complex view of {t.dtype}"
        return strict(t)

    monkeypatch.setattr(torch, "view_as_complex", refuse_half)
    torch.manual_seed(0)
    xk = torch.randn(2, 3, 5, dtype=torch.complex64)
    w = torch.randn(4, 3)
    ref = torch.einsum("oi,bik->bok", w.to(xk.dtype), xk)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(residual._mix_channels(xk, w), ref, rtol=1e-6, atol=1e-6)
        model = LipFNO(1, 1, (3,) * dims, width=4, depth=3).train()
        y = model(torch.randn(2, 1, *(12,) * dims))
    y.float().sum().backward()
    assert torch.isfinite(y).all() and all(p.grad is not None for p in model.parameters())
