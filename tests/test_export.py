"""Deployment paths: torch.export, torch.jit.trace and torch.compile on models and exports."""

from __future__ import annotations

import warnings

import pytest
import torch

from liponet.models import LipDeepONet, LipFNO


def _cases() -> list[tuple[str, torch.nn.Module, tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    fno1 = LipFNO(1, 1, (4,), width=8, depth=2, padding=0.25).eval()
    fno2 = LipFNO(2, 1, (3, 4), width=6, depth=2, normalization="orthogonal").eval()
    onet = LipDeepONet(8, ([0.0], [1.0]), n_basis=4, width=8, depth=2).eval()
    x1, x2 = torch.randn(2, 1, 16), torch.randn(2, 2, 8, 10)
    u, y = torch.randn(3, 1, 8), torch.rand(5, 1)
    fno2s = LipFNO(2, 1, (3, 3), width=4, depth=1, increment="spectral", shortcut_size=(8, 10))
    # LipFNO's defaults (cpl+clip) in 2-D with padding and in 3-D; the fused block with
    # "global" (the eval-forward benchmark's model) in 1-D
    fno2d = LipFNO(1, 1, (3, 3), width=6, depth=2, padding=0.125).eval()
    fno3 = LipFNO(1, 1, (2, 3, 2), width=4, depth=2).eval()
    fno1f = LipFNO(1, 1, (4,), width=8, depth=2, block="fourier", normalization="global").eval()
    x2d, x3 = torch.randn(2, 1, 9, 8), torch.randn(2, 1, 6, 7, 5)
    onet2 = LipDeepONet(6, ([0.0, 0.0], [1.0, 2.0]), 2, 2, n_basis=3, width=8, harmonics=2)
    u2, y2 = torch.randn(3, 2, 6), torch.rand(3, 4, 2) * torch.tensor([1.0, 2.0])
    return [
        ("LipFNO-1d", fno1, (x1,)),
        ("LipFNO-1d.export()", fno1.export(), (x1,)),
        ("LipFNO-2d", fno2, (x2,)),
        ("LipFNO-2d.export()", fno2.export(), (x2,)),
        ("LipFNO-2d-spectral-shortcut", fno2s.eval(), (x2,)),
        ("LipFNO-2d-spectral-shortcut.export()", fno2s.export(), (x2,)),
        ("LipDeepONet", onet, (u, y)),
        ("LipDeepONet.export()", onet.export(), (u, y)),
        ("LipFNO-2d-defaults-padded", fno2d, (x2d,)),
        ("LipFNO-2d-defaults-padded.export()", fno2d.export(), (x2d,)),
        ("LipFNO-3d-defaults", fno3, (x3,)),
        ("LipFNO-3d-defaults.export()", fno3.export(), (x3,)),
        ("LipFNO-1d-fourier-global", fno1f, (x1,)),
        ("LipFNO-1d-fourier-global.export()", fno1f.export(), (x1,)),
        ("LipDeepONet-2d-harmonics-batched-points", onet2.eval(), (u2, y2)),
        ("LipDeepONet-2d-harmonics-batched-points.export()", onet2.export(), (u2, y2)),
    ]


CASES = [name for name, _, _ in _cases()]


def _case(name: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    return next((m, x) for n, m, x in _cases() if n == name)


@pytest.mark.parametrize("name", CASES)
def test_torch_export_equals_eager(name):
    model, inputs = _case(name)
    with torch.no_grad():
        expected = model(*inputs)
        program = torch.export.export(model, inputs)
        torch.testing.assert_close(program.module()(*inputs), expected, rtol=0, atol=1e-6)
    if "FNO" in name:  # the Fourier transforms are registered ops in the graph
        targets = {n.target for n in program.graph.nodes}
        assert torch.ops.liponet.kept_rfftn.default in targets
        assert torch.ops.liponet.kept_irfftn.default in targets


@pytest.mark.parametrize("name", CASES)
def test_jit_trace_equals_eager(name):
    model, inputs = _case(name)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks turn traced sizes into constants: the trace is for these input shapes.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates jit.trace
        traced = torch.jit.trace(model, inputs)
        torch.testing.assert_close(traced(*inputs), model(*inputs), rtol=0, atol=1e-6)


def test_exported_lipfno_gradients_match_eager():
    model, (x,) = _case("LipFNO-2d")
    program = torch.export.export(model, (x,)).module()
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    model(xa).square().sum().backward()
    program(xb).square().sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-6)


def test_export_follows_data_writes_made_before_it():
    model, (x,) = _case("LipFNO-1d")
    model(x)  # eval weights cached
    other = LipFNO(1, 1, (4,), width=8, depth=2, padding=0.25).eval()
    for p, q in zip(model.parameters(), other.parameters(), strict=True):
        p.data.copy_(q.data)
    with torch.no_grad():
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), other(x), rtol=0, atol=1e-6)


# torch.compile's own imports warn about torch.jit deprecations (torch 2.13), and inductor
# warns that it leaves complex ops (the kept-mode contraction) to eager kernels.
COMPILE_WARNINGS = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex"),
]


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
@COMPILE_WARNINGS[0]
@COMPILE_WARNINGS[1]
def test_torch_compile_equals_eager(name):
    model, inputs = _case(name)
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(*inputs), model(*inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@COMPILE_WARNINGS[0]
@COMPILE_WARNINGS[1]
# dynamo's tracer reads .grad of intermediate tensors while it traces (its warning, not ours)
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
# torch's dynamo instantiates the autograd.Function classes it traces (the custom training
# nodes: liponet only calls .apply), and Function.__init__ warns about that (torch 2.13 here)
@pytest.mark.filterwarnings("ignore:<class 'torch.autograd.function.Function'> should not be")
def test_torch_compile_training_step_matches_eager():
    torch.manual_seed(1)
    model = LipFNO(1, 1, (4,), width=8, depth=2).train()
    twin = LipFNO(1, 1, (4,), width=8, depth=2).train()
    twin.load_state_dict(model.state_dict())
    compiled = torch.compile(twin)
    x = torch.randn(2, 1, 16)
    model(x).square().mean().backward()
    compiled(x).square().mean().backward()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert q.grad is not None
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6)


# torch's archive writer warns when constants share storage (the complex views of the weights)
@pytest.mark.filterwarnings("ignore:No complete tensor found in the group")
@pytest.mark.parametrize("name", ["LipFNO-2d", "LipFNO-2d.export()"])
def test_saved_program_loads_and_equals_eager(name, tmp_path):
    model, inputs = _case(name)
    with torch.no_grad():
        torch.export.save(torch.export.export(model, inputs), tmp_path / "model.pt2")
        loaded = torch.export.load(tmp_path / "model.pt2").module()
        torch.testing.assert_close(loaded(*inputs), model(*inputs), rtol=0, atol=1e-6)
