"""Training vs eval normalization: the premise and ``benchmarks/train_eval_consistency.py``.

Training forwards of ``"clip"``/``"global"`` multipliers divide by power-iteration estimates,
eval forwards by exact float64 norms. The two differ only through the estimate: with the exact
top singular vectors as power vectors the training weights are the eval weights. The script
measures how far the estimates fall short during real training and what that costs.
"""

import csv
import math

import pytest
import torch
from trainfixtures import ROOT, run_script

from liponet.layers import ConvexPotentialBlock, LipSpectralConv

SCRIPT = ROOT / "benchmarks" / "train_eval_consistency.py"


def _exact_vectors(conv: LipSpectralConv) -> None:
    """Set the power vectors to the exact top right singular vectors (float64 SVD)."""
    with torch.no_grad():
        m = conv._stacked(conv._symmetric_spectral()).to(torch.complex128)
        vh = torch.linalg.svd(m)[2]  # (K [+1], in, in)
        conv.u.copy_(torch.view_as_real(vh[:, 0].conj().to(torch.complex64)))


def _grown(conv: LipSpectralConv, seed: int) -> LipSpectralConv:
    """Multipliers well above the target (every one clipped), spread norms."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in conv.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return conv


@pytest.mark.parametrize("normalization", ["clip", "global"])
@pytest.mark.parametrize("skip", [True, False])
def test_exact_power_vectors_make_training_weights_the_eval_weights(normalization, skip):
    conv = _grown(LipSpectralConv(5, 4, (6,), skip=skip, normalization=normalization), 1)
    x = torch.randn(3, 5, 32)
    conv.train()
    with torch.no_grad():
        random_out = conv(x)  # one power step from random vectors: estimates short
    _exact_vectors(conv)
    with torch.no_grad():
        train_out = conv(x)
    conv.eval()
    with torch.no_grad():
        eval_out = conv(x)
    torch.testing.assert_close(train_out, eval_out, rtol=2e-5, atol=2e-5)
    # the comparison can tell the estimate apart: short estimates give other (larger) outputs
    assert (random_out - eval_out).abs().max() > 1e-3


def test_exact_power_vectors_make_the_convex_potential_block_its_eval_self():
    block = ConvexPotentialBlock(4, (5,), normalization="clip")
    _grown(block.conv, 2)
    _exact_vectors(block.conv)
    x = torch.randn(2, 4, 24)
    with torch.no_grad():
        train_out = block.train()(x)
        eval_out = block.eval()(x)
    torch.testing.assert_close(train_out, eval_out, rtol=2e-5, atol=2e-5)


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_script_measures_estimates_and_both_modes(tmp_path):
    proc = run_script(
        SCRIPT,
        "--quick",
        "--out",
        str(tmp_path),
        "--work-dir",
        str(tmp_path / "data"),
        "--models",
        "LipFNO",
        "LipFNO-clip",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "train_eval_consistency.csv").open() as fh:
        rows = {r["model"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"LipFNO", "LipFNO-clip"}
    budget = {"LipFNO": 1.0, "LipFNO-clip": 3.0}
    for name, r in rows.items():
        lo, med = float(r["ratio_min"]), float(r["ratio_median"])
        # a power-iteration estimate ||M u|| (u a unit vector) never exceeds ||M||
        assert 0.5 < lo <= med <= 1.0 + 1e-6
        if int(r["n_clipped"]) > 0:  # a clipped multiplier with a short estimate stays above k
            assert float(r["train_norm_max"]) >= 1.0 - 1e-6
        for key in ("one_step_train", "one_step_eval", "nrmse_train", "nrmse_eval"):
            assert math.isfinite(float(r[key])) and float(r[key]) > 0
        ratio = float(r["nrmse_eval"]) / float(r["nrmse_train"])
        assert float(r["eval_over_train"]) == pytest.approx(ratio)
        assert float(r["certified_L"]) <= budget[name] * (1 + 1e-5)
    with (tmp_path / "train_eval_consistency_trace.csv").open() as fh:
        trace = list(csv.DictReader(fh))
    assert {t["model"] for t in trace} == set(rows)
    assert all(float(t["ratio_min"]) <= 1.0 + 1e-6 for t in trace)
    table = (tmp_path / "train_eval_consistency.md").read_text()
    assert "## Summary per model" in table
    (tmp_path / "train_eval_consistency.md").unlink()
    rebuilt = run_script(SCRIPT, "--quick", "--from-csv", "--out", str(tmp_path))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "train_eval_consistency.md").read_text() == table


def test_quick_exact_vector_training_applies_the_eval_normalization(tmp_path):
    proc = run_script(
        SCRIPT,
        "--quick",
        "--exact-vectors",
        "--out",
        str(tmp_path),
        "--work-dir",
        str(tmp_path / "data"),
        "--models",
        "LipFNO",
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "train_eval_consistency_exact.csv").open() as fh:
        (row,) = list(csv.DictReader(fh))
    # one power step from the exact vector of the weights one Adam step ago: nearly exact
    assert float(row["ratio_min"]) > 0.99
    assert float(row["eval_over_train"]) == pytest.approx(1.0, abs=1e-3)
    assert "Exact-norm training" in (tmp_path / "train_eval_consistency_exact.md").read_text()
