"""ONNX deployment: the real-arithmetic Fourier layers, ONNX graphs run by onnxruntime, .pt2 files.

Tolerance of the file-vs-eager comparisons: ``max |deployed - eager| <= 1e-5 * max |eager|``.
Both are float32; the ONNX graph computes the kept-mode transforms as matrix products (sums over
the grid in another order than the FFT) and runtimes may fuse products differently, so they
agree to float32 rounding grown over a few layers: measured <= 7e-7 relative on these models
(1-D to 3-D, depth 2), 1e-5 leaves a 14x margin and still fails on any real difference (a wrong
mode, sign or scale changes outputs by O(1) relative).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from liponet.certify import estimate_lipschitz, jacobian_lipschitz
from liponet.export import (
    DFTSpectralMultiplier,
    check_deployment,
    deployment_inputs,
    export_onnx,
    export_program,
    onnx_ready,
)
from liponet.layers import NORMALIZATIONS, LipSpectralConv, SpectralMultiplier
from liponet.models import FNO, DeepONet, LipDeepONet, LipFNO, LipLocalDeepONet, LipMLP

REL = 1e-5


def _close(got: torch.Tensor, expected: torch.Tensor, rel: float = REL) -> None:
    err = float((got - expected).abs().max())
    assert err <= rel * float(expected.abs().max()), (err, float(expected.abs().max()))


# ----------------------------------------------------------------- the DFT layer (no onnx needed)


@pytest.mark.parametrize(
    ("modes", "sizes"), [((4,), (16,)), ((4,), (7,)), ((3, 4), (8, 10)), ((2, 3, 2), (5, 6, 4))]
)
def test_dft_multiplier_is_the_same_linear_map(modes, sizes):
    """Dense float64 Jacobians equal: the certificate of the FFT layer is the DFT layer's."""
    torch.manual_seed(0)
    conv = LipSpectralConv(3, 2, modes, skip=True, bias=False).eval()
    plain = conv.export()
    kept = torch.view_as_complex(plain.kept).to(torch.complex128)
    skip = plain.skip.double()
    fft = SpectralMultiplier(kept, skip, None, modes)
    dft = DFTSpectralMultiplier(kept, skip, None, modes, sizes)
    x = torch.randn(1, 3, *sizes, dtype=torch.float64)
    jac_fft = torch.autograd.functional.jacobian(fft, x).reshape(2 * x[0, 0].numel(), -1)
    jac_dft = torch.autograd.functional.jacobian(dft, x).reshape(2 * x[0, 0].numel(), -1)
    torch.testing.assert_close(jac_dft, jac_fft, rtol=0, atol=1e-12)
    # same grid on both sides: the function norm's constant is the Euclidean 2-norm
    norm = float(torch.linalg.matrix_norm(jac_dft, ord=2))
    bound = conv.lipschitz_bound()
    assert norm <= bound * (1 + 1e-6)
    if all(n > 2 * m - 1 for n, m in zip(sizes, modes, strict=True)):
        assert norm >= bound * (1 - 1e-4)  # tight: some frequency is unkept (the skip alone)


def test_dft_multiplier_refuses_another_grid():
    plain = LipSpectralConv(2, 2, (3,)).eval().export()
    dft = DFTSpectralMultiplier.from_multiplier(plain, (16,))
    with pytest.raises(ValueError, match=r"built for \(batch, 2, 16\)"):
        dft(torch.randn(1, 2, 17))
    with pytest.raises(ValueError, match="too small for modes"):
        DFTSpectralMultiplier.from_multiplier(plain, (4,))


def _fno_cases() -> list[tuple[str, torch.nn.Module, tuple[int, ...]]]:
    torch.manual_seed(0)
    cases = []
    for normalization in NORMALIZATIONS:
        for block in ("cpl", "fourier"):
            cases.append(
                (
                    f"1d-{normalization}-{block}",
                    LipFNO(
                        1,
                        1,
                        (4,),
                        width=8,
                        depth=2,
                        padding=0.25,
                        block=block,
                        normalization=normalization,
                    ),
                    (16,),
                )
            )
            cases.append(
                (
                    f"2d-{normalization}-{block}",
                    LipFNO(
                        2, 1, (3, 4), width=6, depth=2, block=block, normalization=normalization
                    ),
                    (8, 10),
                )
            )
    cases.append(("FNO-twin-1d", FNO(1, 1, (4,), width=8, depth=2), (32,)))
    cases.append(("FNO-twin-2d", FNO(1, 2, (3, 3), width=6, depth=2), (9, 8)))
    return cases


@pytest.mark.parametrize("name", [name for name, _, _ in _fno_cases()])
def test_onnx_ready_equals_eager_for_every_normalization(name):
    """The FFT-free module of every LipFNO variant (all normalizations, both block kinds)."""
    model, grid = next((m, g) for n, m, g in _fno_cases() if n == name)
    model.eval()
    x = torch.randn(3, model.in_channels, *grid)
    ready = onnx_ready(model, x)
    assert not any(isinstance(m, SpectralMultiplier) for m in ready.modules())
    assert not any(t.is_complex() for t in ready.state_dict().values())
    with torch.no_grad():
        _close(ready(x), model(x))


def test_onnx_ready_keeps_the_certificate_of_the_model():
    """Exact Jacobian norms and gradient-ascent pairs of the FFT-free module stay below the
    model's certified bound (it computes the model's function)."""
    torch.manual_seed(3)
    model = LipFNO(1, 1, (3,), width=4, depth=2, k=2.0, block="fourier").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(4, 1, 12)
    ready = onnx_ready(model, x)
    bound = model.lipschitz_bound()
    local = jacobian_lipschitz(ready, x, "function")
    assert float(local.max()) <= bound * (1 + 1e-6)
    attack = estimate_lipschitz(ready, x, "function", n_steps=20)
    assert attack <= bound * (1 + 1e-6)
    # the same attack on the eager model finds the same ratio: the same function
    assert attack == pytest.approx(estimate_lipschitz(model, x, "function", n_steps=20), rel=1e-3)


def test_onnx_ready_needs_inputs_reaching_every_fourier_layer():
    model = LipFNO(1, 1, (3,), width=4, depth=1).eval()
    with pytest.raises(ValueError, match="too small"):
        onnx_ready(model, torch.randn(1, 1, 4))


# ----------------------------------------------------------------- example inputs and layouts


def test_deployment_inputs_check_the_grid():
    fno = LipFNO(1, 1, (4, 4), width=4, depth=1)
    with pytest.raises(ValueError, match="needs grid"):
        deployment_inputs(fno)
    with pytest.raises(ValueError, match="2 size"):
        deployment_inputs(fno, grid=(16,))
    with pytest.raises(ValueError, match="too small for modes"):
        deployment_inputs(fno, grid=(16, 6))
    with pytest.raises(ValueError, match="Fourier models"):
        deployment_inputs(LipMLP(2, 1), grid=(16,))
    onet = deployment_inputs(LipDeepONet(8, ([0.0], [2.0]), n_basis=4, width=8, depth=2))
    assert onet.names == ("u", "coords") and onet.shapes() == [["batch", 1, 8], ["points", 1]]
    assert onet.extra["domain"] == [[0.0], [2.0]]
    aux = LipFNO(1, 1, (4,), width=4, depth=1, output_scale="auxiliary", radius=3.0)
    assert deployment_inputs(aux, grid=(16,)).extra == {"radius": 3.0}
    assert deployment_inputs(fno, grid=(16, 16)).extra == {}


def test_export_program_has_a_dynamic_batch():
    model = LipFNO(2, 1, (3, 4), width=6, depth=2, normalization="orthogonal").eval()
    program = export_program(model, deployment_inputs(model, grid=(8, 10)))
    examples = [deployment_inputs(model, grid=(8, 10), batch=b, seed=b) for b in (2, 5)]
    check = check_deployment(program.module(), model, examples)
    assert check["max_rel_error"] <= REL and check["batch_sizes"] == [2, 5]
    one = torch.randn(1, 2, 8, 10)
    with torch.no_grad():
        _close(program.module()(one), model(one))


# ----------------------------------------------------------------- ONNX graphs in onnxruntime


def _onnx_cases() -> list[tuple[str, torch.nn.Module, tuple[int, ...] | None]]:
    torch.manual_seed(0)
    return [
        ("LipFNO-1d", LipFNO(1, 1, (4,), width=8, depth=2, padding=0.25), (16,)),
        (
            "LipFNO-2d-orthogonal",
            LipFNO(2, 1, (3, 4), width=6, depth=2, normalization="orthogonal"),
            (8, 10),
        ),
        (
            "LipFNO-2d-fourier-groupsort",
            LipFNO(
                2,
                2,
                (3, 4),
                width=6,
                depth=2,
                block="fourier",
                activation="groupsort2",
                output_scale="vector",
            ),
            (9, 10),
        ),
        (
            "LipFNO-1d-auxiliary-increment",
            LipFNO(
                2, 1, (4,), width=8, depth=2, output_scale="auxiliary", radius=3.0, increment=True
            ),
            (20,),
        ),
        ("FNO", FNO(1, 1, (4,), width=8, depth=2), (32,)),
        (
            "LipDeepONet",
            LipDeepONet(8, ([0.0], [1.0]), n_basis=4, width=8, depth=2, harmonics=3),
            None,
        ),
        ("DeepONet", DeepONet(8, ([0.0], [1.0]), n_basis=4, width=8, depth=2), None),
        ("LipMLP", LipMLP(3, 2, width=8, depth=2), None),
        ("LipFNO-3d", LipFNO(1, 1, (2, 3, 2), width=4, depth=1), (6, 6, 5)),
        (
            "LipLocalDeepONet-2d",
            LipLocalDeepONet((6, 5), ([0.0, 0.0], [1.0, 1.0]), width=8, depth=2, n_basis=4),
            None,
        ),
    ]


def _session(program, names):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(program.model_proto.SerializeToString())

    def run(*xs: torch.Tensor) -> torch.Tensor:
        feeds = {n: x.numpy() for n, x in zip(names, xs, strict=True)}
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


def _export(model, grid):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    inputs = deployment_inputs(model, grid=grid)
    return export_onnx(model, inputs), inputs


#: Cases kept out of the default run (each ONNX export takes ~3 s of CPU).
SLOW_ONNX = {"LipFNO-1d-auxiliary-increment", "DeepONet", "LipFNO-3d", "LipLocalDeepONet-2d"}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_ONNX else [])
        for name, _, _ in _onnx_cases()
    ],
)
def test_onnx_graph_in_onnxruntime_equals_eager(name):
    model, grid = next((m, g) for n, m, g in _onnx_cases() if n == name)
    model.eval()
    program, inputs = _export(model, grid)
    graph = program.model_proto.graph
    assert [i.name for i in graph.input] == list(inputs.names)
    ops = {node.op_type for node in graph.node}
    assert not ops & {"DFT", "STFT"}, ops
    run = _session(program, inputs.names)
    # dynamic axes: batch sizes 1, 3, 7 (the graph was traced at 2); DeepONet also other points
    examples = [deployment_inputs(model, grid=grid, batch=b, seed=b) for b in (3, 7)]
    check = check_deployment(run, model, examples)
    assert check["max_rel_error"] <= REL, check
    one = tuple(t[:1] for t in examples[0].tensors)
    if len(one) == 2:  # DeepONet: also another number of query points
        one = (one[0], examples[0].tensors[1][:5])  # 5 query points instead of 16
    with torch.no_grad():
        _close(run(*one), model(*one))


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name, _, _ in _fno_cases()])
def test_onnx_graph_for_every_normalization(name):
    model, grid = next((m, g) for n, m, g in _fno_cases() if n == name)
    model.eval()
    program, inputs = _export(model, grid)
    run = _session(program, inputs.names)
    examples = [deployment_inputs(model, grid=grid, batch=b, seed=b) for b in (2, 5)]
    assert check_deployment(run, model, examples)["max_rel_error"] <= REL


def test_export_onnx_without_the_extra_names_it(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name)
    )
    model = LipMLP(2, 1, width=4, depth=1).eval()
    with pytest.raises(ImportError, match=r"onnxscript.*liponet\[onnx\]"):
        export_onnx(model, deployment_inputs(model))


@pytest.mark.slow
def test_inference_benchmark_quick_run(tmp_path):
    """``benchmarks/export_inference.py --quick`` writes its three files."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    pytest.importorskip("matplotlib")
    from trainfixtures import ROOT, run_script

    proc = run_script(
        ROOT / "benchmarks" / "export_inference.py", "--quick", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert {p.name for p in tmp_path.iterdir()} == {
        f"export_inference.{suffix}" for suffix in ("md", "csv", "png")
    }
    assert "| LipFNO 1-D quick | 4 |" in (tmp_path / "export_inference.md").read_text()
