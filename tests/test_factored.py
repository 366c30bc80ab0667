import copy
import math

import pytest
import torch
from certcheck import check_all, check_attack, perturb

from liponet.layers import FactoredConvexPotentialBlock, FactoredConvexPotentialChain
from liponet.layers.factored import _plain_chain, factored_chain
from liponet.layers.fourier import spectral_apply
from liponet.layers.residual import adjoint_weights
from liponet.models import LipFNO

GRIDS = {1: (9,), 2: (5, 8)}
MODES = {1: (3,), 2: (2, 3)}


def _make_block(dim, hidden=7, seed=0):
    torch.manual_seed(seed)
    block = FactoredConvexPotentialBlock(4, MODES[dim], hidden=hidden)
    return perturb(block, scale=1.0)


def _naive(x, weights, modes):
    """``x - 2 M^T V^T relu(V M x + b)`` block by block with two ``spectral_apply`` calls each."""
    for r, w, v, b in weights:
        u = spectral_apply(x, r, w, None, modes)  # M x
        h = torch.einsum("hw,bw...->bh...", v, u) + b.view(-1, *([1] * len(modes)))
        z = torch.einsum("hw,bh...->bw...", v, torch.relu(h))  # V^T relu(.)
        r_adj, w_adj = adjoint_weights(r, w)
        x = x - 2.0 * spectral_apply(z, r_adj, w_adj, None, modes)
    return x


def _dense_k(block, sizes):
    """``K = V M`` of an eval block as a dense float64 matrix on the grid ``sizes``."""
    r, w = block.conv.effective_weights()
    v = block.expand.effective_weight()
    n = block.width * math.prod(sizes)
    basis = torch.eye(n, dtype=torch.float64).reshape(n, block.width, *sizes)
    mx = spectral_apply(basis, r, w, None, block.modes)  # (n, width, *sizes)
    return torch.einsum("hw,nw...->nh...", v, mx).reshape(n, -1).T


@pytest.mark.parametrize("dim", [1, 2])
def test_factored_block_is_certified(dim):
    x = torch.randn(3, 4, *GRIDS[dim])
    check_all(lambda: _make_block(dim), x, norm="function")
    block = _make_block(dim).double().eval()
    assert block.lipschitz_bound() == 1.0  # V and M normalized just below 1: exactly 1
    y = block(x.double())
    assert not torch.allclose(y, x.double(), atol=1e-3)  # genuinely not the identity
    finer = torch.randn(3, 4, *(2 * n for n in GRIDS[dim]), dtype=torch.float64)
    check_attack(block, finer, "function")


@pytest.mark.parametrize("dim", [1, 2])
def test_product_bound_is_the_exact_norm_of_k(dim):
    """``s`` is a proven bound of ``||V M||`` and tight: the dense operator's exact 2-norm."""
    block = _make_block(dim).double().eval()
    sizes = tuple(2 * n + 2 for n in GRIDS[dim])  # frequencies beyond the kept ones: skip-only
    exact = float(torch.linalg.matrix_norm(_dense_k(block, sizes), ord=2))
    s = block.product_norm_upper()
    assert exact <= s <= exact * (1 + 1e-9)
    # separate normalization loses nothing here: hidden >= width makes V an orthonormal frame
    m_norm = block.conv.lipschitz_bound()
    assert s == pytest.approx(m_norm, rel=1e-6)


def test_certificate_tracks_a_product_larger_than_one():
    """``V`` scaled past the ball: the certificate says ``2 s^2 - 1`` and attacks see > 1."""
    block = _make_block(1).double().eval()
    v = block.expand.effective_weight()
    block.expand.effective_weight = lambda: 1.5 * v
    block._cache.clear()
    s = block.product_norm_upper()
    assert s == pytest.approx(1.5 * block.conv.lipschitz_bound(), rel=1e-6)
    assert block.lipschitz_bound() == pytest.approx(2 * s * s - 1, rel=1e-12)
    x = torch.randn(4, 4, 16, dtype=torch.float64)
    with torch.no_grad():
        block.expand.bias.zero_()
    est = check_attack(block, x, "function", n_steps=60)
    assert est > 1.05


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_chain_equals_the_blocks_applied_one_by_one(dim, mode):
    torch.manual_seed(3)
    blocks = [_make_block(dim, seed=i).double() for i in range(3)]
    chain = FactoredConvexPotentialChain(*blocks)
    getattr(chain, mode)()
    weights = [block.chain_weights() for block in blocks]
    x = torch.randn(2, 4, *GRIDS[dim], dtype=torch.float64, requires_grad=True)
    y = factored_chain(x, weights, MODES[dim])
    ref = _naive(x, weights, MODES[dim])
    torch.testing.assert_close(y, ref, rtol=0.0, atol=1e-12)
    g, g_ref = torch.autograd.grad(y.square().sum(), x), torch.autograd.grad(ref.square().sum(), x)
    torch.testing.assert_close(g[0], g_ref[0], rtol=0.0, atol=1e-10)
    if mode == "eval":
        torch.testing.assert_close(chain(x), ref, rtol=0.0, atol=1e-12)
        plain = chain.export()
        torch.testing.assert_close(plain(x), ref, rtol=0.0, atol=1e-12)


def test_chain_is_certified():
    def make():
        torch.manual_seed(0)
        blocks = (FactoredConvexPotentialBlock(4, (3,), hidden=6) for _ in range(2))
        return perturb(FactoredConvexPotentialChain(*blocks), scale=1.0)

    check_all(make, torch.randn(3, 4, 12), norm="function")


@pytest.mark.parametrize("dim", [1, 2])
def test_lipfno_with_factored_blocks_is_certified(dim):
    kwargs = dict(in_channels=2, out_channels=1, modes=MODES[dim], width=4, depth=2, k=1.3)
    x = torch.randn(3, 2, *GRIDS[dim])

    def make():
        torch.manual_seed(0)
        return perturb(LipFNO(**kwargs, block="cpl-factored", hidden=10))

    check_all(make, x, norm="function")
    model = make().double().eval()
    blocks = [m for m in model.modules() if isinstance(m, FactoredConvexPotentialBlock)]
    assert [b.hidden for b in blocks] == [10, 10]
    assert model.lipschitz_bound() <= 1.3 * (1 + 1e-6)
    default = LipFNO(**kwargs, block="cpl-factored")
    hidden = [m.hidden for m in default.modules() if isinstance(m, FactoredConvexPotentialBlock)]
    assert hidden == [8, 8]  # 2 * width


def test_bad_arguments():
    with pytest.raises(ValueError, match="hidden"):
        FactoredConvexPotentialBlock(4, (3,), hidden=0)
    with pytest.raises(ValueError, match="normalization"):
        FactoredConvexPotentialBlock(4, (3,), normalization="nope")
    with pytest.raises(ValueError, match="at least one block"):
        FactoredConvexPotentialChain()
    with pytest.raises(ValueError, match="a chain needs them equal"):
        FactoredConvexPotentialChain(
            FactoredConvexPotentialBlock(4, (3,)), FactoredConvexPotentialBlock(6, (3,))
        )
    with pytest.raises(ValueError, match="applies to block='cpl' only"):
        LipFNO(1, 1, modes=(4,), width=4, block="cpl-factored", cpl_activation="softplus")


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_backward_equals_autograd_of_the_plain_operations(dim, bias):
    """Every parameter's and the input's gradient through the hand-written backward."""
    torch.manual_seed(4)
    blocks = [_make_block(dim, seed=i).double() for i in range(3)]
    if not bias:
        for block in blocks:
            block.expand.bias = None
    chain = FactoredConvexPotentialChain(*blocks).train()
    twin = copy.deepcopy(chain)  # same power-iteration state: the same training weights
    x = torch.randn(2, 4, *GRIDS[dim], dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    target = torch.randn_like(x)
    y = chain(x1)  # the fused node
    (y * target).sum().backward()
    weights = [block.chain_weights() for block in twin.layers]
    ref = _plain_chain(x2, weights, MODES[dim])
    (ref * target).sum().backward()
    torch.testing.assert_close(y, ref, rtol=0.0, atol=1e-12)
    torch.testing.assert_close(x1.grad, x2.grad, rtol=0.0, atol=1e-10)
    for (name, p1), p2 in zip(chain.named_parameters(), twin.parameters(), strict=True):
        assert p1.grad is not None and p2.grad is not None, name
        torch.testing.assert_close(p1.grad, p2.grad, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize(
    ("name", "width", "hidden", "depth", "modes", "k"),
    [
        ("LipFNO-fw-lr-cos", None, 2.0, None, None, 1.3),
        ("LipFNO-fw-m8-k3-h3-d2-lr-tr", None, 3.0, 2, 8, 3.0),
        ("LipFNO-fw-w12-h36-d3-lr-cos", 12, 3.0, 3, None, 1.3),
    ],
)
def test_bench_rows_build_factored_networks(tmp_path, name, width, hidden, depth, modes, k):
    from liponet.bench import MODEL_TRAINING, MODELS, PRESETS, load_task

    tiny = PRESETS["tiny"]
    data = load_task("advection_1d", tiny, None, tmp_path)
    model = MODELS[name](data, tiny)
    assert isinstance(model, LipFNO)
    blocks = [m for m in model.modules() if isinstance(m, FactoredConvexPotentialBlock)]
    width = tiny.width if width is None else width
    assert len(blocks) == (tiny.depth if depth is None else depth)
    assert all(b.width == width and b.hidden == round(hidden * width) for b in blocks)
    assert all(b.modes == ((modes,) if modes else model.modes) for b in blocks)
    assert model.eval().lipschitz_bound() <= k * (1 + 1e-5)
    assert MODEL_TRAINING[name]["lr"] == 1e-2


@pytest.mark.parametrize("dims", [1, 2])
def test_factored_lipfno_under_autocast_keeps_spectra_in_float32(monkeypatch, dims):
    """Under bf16 autocast the skip on a spectrum runs in float32 (residual's ``_mix_channels``).

    CUDA's ``view_as_complex`` refuses bfloat16 (torch 2.11); CPU accepts it, so the strict
    rule is imposed here as in test_residual's chain test.
    """
    strict = torch.view_as_complex

    def refuse_half(t):
        assert t.dtype in (torch.float32, torch.float64), f"a complex view of {t.dtype}"
        return strict(t)

    monkeypatch.setattr(torch, "view_as_complex", refuse_half)
    torch.manual_seed(0)
    model = LipFNO(1, 1, (3,) * dims, width=4, depth=2, block="cpl-factored").train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(torch.randn(2, 1, *(12,) * dims))
    y.float().sum().backward()
    assert torch.isfinite(y).all() and all(p.grad is not None for p in model.parameters())
