import math

import pytest
import torch
from certcheck import check_all, check_attack, perturb

from liponet.layers import NORMALIZATIONS, ConvexPotentialBlock, LipSpectralConv
from liponet.layers.fourier import spectral_apply
from liponet.layers.residual import adjoint_weights

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
