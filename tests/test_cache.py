"""Eval weights and certificates follow the weights, whatever writes them (issue 12, item 6)."""

from __future__ import annotations

import copy

import pytest
import torch

from liponet.layers import LipLinear, LipSpectralConv, SpectralShortcut
from liponet.layers.cache import WeightKeyedCache, same_bits
from liponet.models import LipDeepONet, LipFNO, LipMLP


def test_same_bits_is_exact():
    a = torch.randn(3, 4)
    assert same_bits(a, a.clone())
    b = a.clone()
    b[1, 2] = torch.nextafter(b[1, 2], torch.tensor(float("inf")))  # one ulp
    assert not same_bits(a, b)
    assert not same_bits(a, a.double())
    assert not same_bits(a, a.reshape(4, 3))
    z = torch.randn(2, 2, dtype=torch.complex64)
    assert same_bits(z, z.clone())
    assert not same_bits(z, z.conj().resolve_conj())
    assert same_bits(a.t(), a.t().contiguous())  # strides do not matter, values do


def test_cache_recomputes_only_on_change():
    w = torch.randn(5)
    cache = WeightKeyedCache()
    calls = []

    def compute(w: torch.Tensor) -> float:
        calls.append(1)
        return float(w.sum())

    assert cache.get("s", [w], compute) == pytest.approx(float(w.sum()))
    cache.get("s", [w], compute)
    assert len(calls) == 1 and cache.misses == 1
    w.data[0] += 1.0  # neither the version counter of `w` nor its pointer moves
    assert cache.get("s", [w], compute) == pytest.approx(float(w.sum()))
    assert len(calls) == 2


def _data_write(module: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy ``source``'s parameters into ``module`` the way EMA/SWA utilities do."""
    for p, q in zip(module.parameters(), source.parameters(), strict=True):
        p.data.copy_(q.data)


def _pairs() -> list[tuple[str, torch.nn.Module, torch.nn.Module, tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    x_field = torch.randn(3, 1, 32)
    return [
        ("LipLinear", LipLinear(6, 5), LipLinear(6, 5), (torch.randn(4, 6),)),
        (
            "LipSpectralConv",
            LipSpectralConv(3, 3, (4, 3), skip=True, normalization="orthogonal"),
            LipSpectralConv(3, 3, (4, 3), skip=True, normalization="orthogonal"),
            (torch.randn(2, 3, 12, 10),),
        ),
        (
            "LipFNO",
            LipFNO(1, 1, (5,), width=8, depth=2),
            LipFNO(1, 1, (5,), width=8, depth=2),
            (x_field,),
        ),
        (
            "LipDeepONet",
            LipDeepONet(8, ([0.0], [1.0]), n_basis=4, width=8, depth=2),
            LipDeepONet(8, ([0.0], [1.0]), n_basis=4, width=8, depth=2),
            (torch.randn(3, 1, 8), torch.rand(5, 1)),
        ),
        (
            "SpectralShortcut-2d",
            SpectralShortcut(2, 1, (8, 6)),
            _random_weights(SpectralShortcut(2, 1, (8, 6))),
            (torch.randn(2, 2, 8, 6),),
        ),
    ]


def _random_weights(module: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


@pytest.mark.parametrize("case", range(5))
def test_data_writes_reach_the_eval_forward_and_the_certificate(case):
    name, model, other, inputs = _pairs()[case]
    model.eval()
    other.eval()
    before = model(*inputs)
    bound_before = model.lipschitz_bound()
    versions = [(p._version, p.data_ptr()) for p in model.parameters()]
    _data_write(model, other)
    # The old cache key (version counter, storage pointer) sees no change: it served stale
    # weights (issue 12 item 6 measured a 0.46 max difference on LipFNO).
    assert versions == [(p._version, p.data_ptr()) for p in model.parameters()]
    fresh = copy.deepcopy(other)
    assert not torch.allclose(before, fresh(*inputs)), name  # the test can fail
    torch.testing.assert_close(model(*inputs), fresh(*inputs), rtol=0, atol=0)
    assert model.lipschitz_bound() == fresh.lipschitz_bound()
    exported = model.export()
    torch.testing.assert_close(exported(*inputs), fresh(*inputs), rtol=1e-6, atol=1e-6)
    assert bound_before > 0


def test_certificate_is_cached_until_weights_change():
    conv = LipSpectralConv(4, 4, (6, 5), skip=True).eval()
    conv.lipschitz_bound()
    misses = conv._cache.misses
    for _ in range(3):
        conv.lipschitz_bound()
        conv(torch.randn(1, 4, 12, 10))
    assert conv._cache.misses == misses
    with torch.no_grad():
        conv.skip.mul_(1.5)  # type: ignore[union-attr]
    conv.lipschitz_bound()
    assert conv._cache.misses > misses


def _fno(**kw):
    return LipFNO(**{"in_channels": 1, "out_channels": 1, "modes": (6,), "width": 8, **kw})


@pytest.mark.parametrize(
    "make",
    [
        lambda: (_fno(), torch.randn(4, 1, 32)),
        lambda: (_fno(normalization="global", block="fourier"), torch.randn(4, 1, 32)),
        lambda: (_fno(normalization="cayley", block="fourier"), torch.randn(4, 1, 32)),
        lambda: (
            _fno(in_channels=2, increment="spectral", shortcut_size=17),
            torch.randn(4, 2, 32),
        ),
        lambda: (LipMLP(2, 1, width=16), torch.randn(8, 2)),
    ],
    ids=["defaults", "global", "cayley", "spectral-shortcut", "mlp"],
)
def test_eval_weights_do_not_depend_on_the_callers_autocast(make):
    """A first eval forward under bf16 autocast caches the same eval weights as one without.

    (The first CUDA device check: after the Trainer's bf16 validation the model certified
    1.0036 against k = 1 and differed from its reloaded checkpoint by 1.5e-3.)
    """
    torch.manual_seed(0)
    model, x = make()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    twin = copy.deepcopy(model).eval()
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
    assert model.lipschitz_bound() == twin.lipschitz_bound()
    with torch.no_grad():
        assert torch.equal(model(x), twin(x))


# ------------------------------------------------------------ the eager fast check (issue 15)


def _count_full_checks(monkeypatch, cache: WeightKeyedCache) -> list[int]:
    calls: list[int] = []
    full = cache._get

    def counted(*args, **kwargs):
        calls.append(1)
        return full(*args, **kwargs)

    monkeypatch.setattr(cache, "_get", counted)
    return calls


def test_fast_check_serves_unchanged_weights_without_the_full_check(monkeypatch):
    w = torch.randn(4, 3)
    cache = WeightKeyedCache([w])
    compute = lambda w: w * 2  # noqa: E731
    first = cache.get("v", [w], compute)
    calls = _count_full_checks(monkeypatch, cache)
    assert cache.get("v", [w], compute) is first
    assert calls == [] and cache.misses == 1
    assert cache.get("other", [w], compute) is not first  # a new name: the full path
    assert calls == [1] and cache.misses == 2


@pytest.mark.parametrize("where", [0, -1])
def test_fast_check_sees_one_ulp_anywhere(where):
    w = torch.randn(64, 33)
    cache = WeightKeyedCache([w])
    cache.get("v", [w], lambda w: w.clone())
    flat = w.data.view(-1)
    flat[where] = torch.nextafter(flat[where], torch.tensor(float("inf")))  # first or last byte
    assert torch.equal(cache.get("v", [w], lambda w: w.clone()), w)
    assert cache.misses == 2


def test_fast_check_declines_what_it_cannot_compare(monkeypatch):
    """Views that are not plain memory (transposed, lazily conjugated) take the full check."""
    w = torch.randn(5, 3)
    z = torch.randn(3, 2, dtype=torch.complex64)
    cache = WeightKeyedCache([w.t(), z.conj()])
    compute = lambda a, b: float(a.sum()) + float(b.imag.sum())  # noqa: E731
    expected = cache.get("v", [w.t(), z.conj()], compute)
    calls = _count_full_checks(monkeypatch, cache)
    assert cache.get("v", [w.t(), z.conj()], compute) == expected
    assert calls == [1] and cache.misses == 1  # full check, same bits: no recomputation
    z.data[0, 0] += 1j
    assert cache.get("v", [w.t(), z.conj()], compute) != expected
    assert cache.misses == 2


def test_fast_check_compares_values_not_storage():
    w = torch.randn(6)
    cache = WeightKeyedCache([w])
    cache.get("v", [w], lambda w: float(w.sum()))
    same = w.clone()  # another tensor, the same bits: the cached value holds
    cache.get("v", [same], lambda w: float(w.sum()))
    assert cache.misses == 1
    other = w.clone()
    other[3] = -other[3]
    assert cache.get("v", [other], lambda w: float(w.sum())) == pytest.approx(float(other.sum()))
    assert cache.misses == 2


@pytest.mark.parametrize("name", ["LipFNO", "LipDeepONet"])
def test_eval_forward_is_bitwise_the_recomputed_one(name):
    """Served from the fast check or recomputed from scratch: the same bits."""
    _, model, _, inputs = next(p for p in _pairs() if p[0] == name)
    model.eval()
    with torch.no_grad():
        model(*inputs)
        served = model(*inputs)
        recomputed = copy.deepcopy(model)(*inputs)  # fresh caches
    assert torch.equal(served, recomputed)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex")
def test_compiled_eval_forward_follows_data_writes():
    """Under torch.compile the check runs outside the graph on every call."""
    torch.manual_seed(0)
    model = LipFNO(1, 1, (4,), width=8, depth=2).eval()
    other = LipFNO(1, 1, (4,), width=8, depth=2).eval()
    x = torch.randn(2, 1, 16)
    compiled = torch.compile(model)
    with torch.no_grad():
        before = compiled(x)
        _data_write(model, other)
        after = compiled(x)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, other(x), rtol=1e-5, atol=1e-6)


def test_fast_check_of_a_deep_copy_compares_with_its_own_copies():
    """A copied cache must not compare with the original's snapshot (which may move on)."""
    w = torch.randn(8)
    cache = WeightKeyedCache([w])
    cache.get("v", [w], lambda w: w.clone())
    w2 = w.clone()
    copied = copy.deepcopy(cache)
    new = torch.randn(8)
    w.data.copy_(new)
    cache.get("v", [w], lambda w: w.clone())  # the original's snapshot now holds `new`
    w2.data.copy_(new)  # the copy's weights become `new` too: its cached value is stale
    assert torch.equal(copied.get("v", [w2], lambda w: w.clone()), new)
