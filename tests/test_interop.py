"""neuraloperator FNO -> liponet FNO twin: identical outputs, certified bounds, refusals."""

import neuralop.models as neuralop_models  # the baseline extra, installed by the dev extra
import pytest
import torch
from certcheck import check_all, perturb
from torch import nn

from liponet.interop import UnsupportedNeuralopError, from_neuralop, naive_bound, to_neuralop
from liponet.layers import FourierBlock
from liponet.models import FNO

SIZES = {1: (23,), 2: (14, 11), 3: (8, 10, 7)}  # leading sizes even (see test_odd_leading)
MODES = {1: (8,), 2: (6, 5), 3: (3, 4, 4)}  # even and odd leading modes


def make(dims=1, seed=0, cls=None, **options):
    torch.manual_seed(seed)
    cls = cls or neuralop_models.FNO
    kwargs = dict(n_modes=MODES[dims], in_channels=2, out_channels=3, hidden_channels=6, n_layers=3)
    kwargs.update(options)
    model = cls(**kwargs)
    perturb(model, scale=0.2, seed=seed)  # gates, biases and skips away from their init
    return model.eval()


CONFIGS = {
    "default": {},
    "tucker": {"cls": "TFNO"},
    "cp": {"factorization": "CP", "rank": 0.5},
    "identity-skips": {"fno_skip": "identity", "channel_mlp_skip": "identity"},
    "gated-skip": {"fno_skip": "soft-gating", "channel_mlp_skip": "linear"},
    "no-skips": {"fno_skip": None, "channel_mlp_skip": None},
    "no-channel-mlp": {"use_channel_mlp": False},
    "padding-no-grid": {"domain_padding": 0.25, "positional_embedding": None},
    "linear-lift-relu": {"lifting_channel_ratio": 0, "non_linearity": torch.nn.functional.relu},
}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_twin_has_identical_outputs(dims, config):
    options = dict(CONFIGS[config])
    if options.get("cls") == "TFNO":
        options["cls"] = neuralop_models.TFNO
    theirs = make(dims, **options)
    twin = from_neuralop(theirs)
    assert isinstance(twin, FNO) and not twin.training
    assert twin.modes == tuple(n // 2 + 1 for n in MODES[dims])
    gen = torch.Generator().manual_seed(1)
    for scale in (1, 2):  # two resolutions: the twin is resolution-independent like theirs
        grid = tuple(n * scale for n in SIZES[dims])
        x = torch.randn(3, 2, *grid, generator=gen)
        with torch.no_grad():
            want, got = theirs(x), twin(x)
        err = float((got - want).abs().max() / want.abs().max())
        assert err < 2e-6, err
    # the export computes the same function with plain modules
    torch.testing.assert_close(twin.export()(x), got, rtol=0, atol=1e-5)


def test_certificate_against_exact_jacobians_and_attacks():
    # every property check of liponet's certified modules, on a float64 twin
    x = torch.randn(3, 2, 16, generator=torch.Generator().manual_seed(0))
    check_all(lambda: from_neuralop(make(1, n_layers=2, domain_padding=0.2)), x, norm="function")
    x2 = torch.randn(2, 2, 9, 8, generator=torch.Generator().manual_seed(0))
    check_all(lambda: from_neuralop(make(2, n_layers=2)), x2, norm="function")


def test_naive_bound_is_above_the_fused_certificate():
    twin = from_neuralop(make(2))
    assert naive_bound(twin) > twin.lipschitz_bound() > 0


def test_round_trip_back_to_neuraloperator():
    x = torch.randn(4, 2, 12, 10, generator=torch.Generator().manual_seed(2))

    def tuned(theirs):
        twin = from_neuralop(theirs).train()
        opt = torch.optim.SGD(twin.parameters(), lr=1e-2)
        twin(x).square().mean().backward()
        opt.step()  # fine-tune the twin a little
        return twin.eval()

    # odd leading modes, free skips: every twin weight has a place
    theirs = make(2, n_modes=(5, 6), channel_mlp_skip="linear")
    twin = tuned(theirs)
    back = to_neuralop(twin, theirs).eval()
    with torch.no_grad():
        torch.testing.assert_close(back(x), twin(x), rtol=0, atol=1e-5)
        assert float((back(x) - theirs(x)).abs().max()) > 1e-4  # the new weights went back
    # without training the default soft-gating skips go back into the template itself
    gated = make(2, n_modes=(5, 6))
    untouched = to_neuralop(from_neuralop(gated), gated).eval()
    assert untouched._init_kwargs == gated._init_kwargs
    with torch.no_grad():
        torch.testing.assert_close(untouched(x), gated(x), rtol=0, atol=1e-5)


def _changed(back, theirs):
    return {k: v for k, v in back._init_kwargs.items() if theirs._init_kwargs.get(k, "?") != v}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_twin_goes_back_with_the_smallest_changes(dims, config):
    options = dict(CONFIGS[config])
    if options.get("cls") == "TFNO":
        options["cls"] = neuralop_models.TFNO
    theirs = make(dims, **options)
    x = torch.randn(2, 2, *SIZES[dims], generator=torch.Generator().manual_seed(4))
    twin = from_neuralop(theirs)
    back = to_neuralop(twin, theirs).eval()
    dense = "factorization" in options or options.get("cls") is neuralop_models.TFNO
    assert ("factorization" in _changed(back, theirs)) == dense
    assert back.factorization is None or not dense
    with torch.no_grad():
        torch.testing.assert_close(back(x), twin(x), rtol=0, atol=2e-6 * float(twin(x).abs().max()))
    # trained: skips leave their kind (soft-gating and identity become full matrices)
    tuned = from_neuralop(theirs).train()
    torch.optim.SGD(tuned.parameters(), lr=1e-2).zero_grad()
    tuned(x).square().mean().backward()
    torch.optim.SGD(tuned.parameters(), lr=1e-2).step()
    tuned.eval()
    back = to_neuralop(tuned, theirs).eval()
    assert type(back.fno_blocks.fno_skips[0]).__name__ == "Flattened1dConv"
    if theirs.fno_blocks.use_channel_mlp and theirs.fno_blocks.channel_mlp_skips is not None:
        assert type(back.fno_blocks.channel_mlp_skips[0]).__name__ == "Flattened1dConv"
    with torch.no_grad():
        want = tuned(x)
        assert float((back(x) - want).abs().max() / want.abs().max()) < 2e-6
        assert float((back(x) - theirs(x)).abs().max()) > 1e-4  # the new weights went back


def test_trained_weights_at_an_absent_frequency_raise_even_leading_modes():
    theirs = make(2)  # n_modes (6, 5): frequency +3 of the leading axis has no place
    twin = from_neuralop(theirs)
    with torch.no_grad():
        for block in [m for m in twin.modules() if isinstance(m, FourierBlock)]:
            block.conv.weight[-1, 1:].add_(0.1)  # +n/2 off the k_d = 0 slice
    back = to_neuralop(twin, theirs).eval()
    assert _changed(back, theirs)["n_modes"] == (7, 5)
    x = torch.randn(2, 2, 12, 10, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(back(x), twin(x), rtol=0, atol=1e-5)
    # weights at +n/2 only on the k_d = 0 slice have a place: written doubled at -n/2
    twin = from_neuralop(theirs)
    with torch.no_grad():
        for block in [m for m in twin.modules() if isinstance(m, FourierBlock)]:
            block.conv.weight[-1, 0].add_(0.1)
    back = to_neuralop(twin, theirs).eval()
    assert "n_modes" not in _changed(back, theirs)
    with torch.no_grad():
        torch.testing.assert_close(back(x), twin(x), rtol=0, atol=1e-5)


def test_to_neuralop_refuses_other_models():
    with pytest.raises(TypeError, match="expects a model from from_neuralop or constrain, got"):
        to_neuralop(nn.Linear(2, 2), make(1))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"norm": "group_norm"}, "norm='GroupNorm'"),
        ({"preactivation": True}, "preactivation=True"),
        ({"stabilizer": "tanh"}, "stabilizer='tanh'"),
        ({"resolution_scaling_factor": 2}, "resolution_scaling_factor="),
        ({"separable": True}, "separable=True"),
        ({"complex_data": True}, "complex_data=True"),
        ({"fno_block_precision": "mixed"}, "fno_block_precision='mixed'"),
        ({"non_linearity": torch.nn.functional.silu}, "non_linearity=.*GELU and ReLU"),
        ({"max_n_modes": (12,)}, r"max_n_modes=\(12,\).*must equal n_modes"),
    ],
)
def test_unsupported_options_are_refused_by_name(options, message):
    with pytest.raises(UnsupportedNeuralopError, match=message):
        from_neuralop(make(1, **options))


def test_refuses_other_objects():
    with pytest.raises(TypeError, match=r"expects a neuralop\.models\.FNO, got Linear"):
        from_neuralop(nn.Linear(2, 2))


def test_odd_leading_sizes_break_neuraloperators_translation_equivariance():
    # neuraloperator 2.0's SpectralConv undoes its fftshift with a second fftshift, which for an
    # odd number of points on a leading axis moves the output spectrum by one frequency: there
    # its layer is no Fourier multiplier (not translation-equivariant) and the twin, which is,
    # matches it only on even leading sizes. Shown on one layer without skips or MLPs.
    theirs = make(2, n_layers=1, use_channel_mlp=False, fno_skip=None, positional_embedding=None)
    twin = from_neuralop(theirs)
    x = torch.randn(2, 2, 13, 10, generator=torch.Generator().manual_seed(3))
    shifted = torch.roll(x, 1, dims=2)
    with torch.no_grad():
        twin_gap = (twin(shifted) - torch.roll(twin(x), 1, dims=2)).abs().max()
        theirs_gap = (theirs(shifted) - torch.roll(theirs(x), 1, dims=2)).abs().max()
        mismatch = (twin(x) - theirs(x)).abs().max() / theirs(x).abs().max()
    assert float(twin_gap) < 1e-5 < float(theirs_gap)
    assert float(mismatch) > 1e-2
    even = torch.randn(2, 2, 14, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(twin(even), theirs(even), rtol=0, atol=1e-5)


def test_neuraloperator_is_imported_lazily():
    import subprocess
    import sys

    code = (
        "import sys, liponet, liponet.interop, liponet.models, liponet.data; "
        "assert 'neuralop' not in sys.modules, 'imported at import time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
