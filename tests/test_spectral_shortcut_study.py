"""``benchmarks/spectral_shortcut.py``: its per-mode measures on known maps and the quick run."""

import csv

import pytest
import torch
from trainfixtures import ROOT, benchmark_module, run_script

from liponet.bench import PRESETS, load_task, with_overrides
from liponet.layers import SpectralShortcut

SCRIPT = ROOT / "benchmarks" / "spectral_shortcut.py"


@pytest.fixture(scope="module")
def study():
    with benchmark_module("spectral_shortcut") as module:
        yield module


@pytest.fixture(scope="module")
def data(study, tmp_path_factory):
    preset = with_overrides(PRESETS["tiny"], steps=20)
    return load_task(study.TASK, preset, None, tmp_path_factory.mktemp("adv"), 0)


def test_spectra_of_known_linear_steps(study, data):
    # the last frame unchanged: effective multiplier 1 at every mode
    same = study.spectra(lambda x: x[:, -1:], data)
    torch.testing.assert_close(same["model"], torch.ones_like(same["model"]), rtol=0, atol=1e-6)
    # the data's own per-mode ratio applied to the last frame: phase error 0, amplitude 1
    exact = same["exact"]

    def step(x):
        xk = torch.fft.rfft(x[:, -1:].double(), norm="ortho") * exact
        return torch.fft.irfft(xk, n=x.shape[-1], norm="ortho").to(x.dtype)

    s = study.spectra(step, data)
    phase, amp = study._phase_amp(s["model"], s["exact"])
    assert float(phase.abs().max()) < 1e-5 and float((amp - 1).abs().max()) < 1e-5
    assert study._rms(phase, s["energy"]) < 1e-5
    # the exact shift is not the identity: the identity's phase error is what the data move
    id_phase, _ = study._phase_amp(same["model"], same["exact"])
    assert study._rms(id_phase, same["energy"]) > 1e-2
    assert float(s["energy"].sum()) == pytest.approx(1.0)


def test_shortcut_on_the_data_is_the_last_frame_at_init(study, data):
    s = study.spectra(lambda x: x[:, -1:], data)
    shortcut = SpectralShortcut(data.in_channels, 1, data.spatial[-1]).eval()
    stored = shortcut.eval_multipliers().to(torch.complex128)[:, 0]
    on_data = (stored * s["frames"]).sum(-1)
    torch.testing.assert_close(on_data, torch.ones_like(on_data), rtol=0, atol=1e-5)


def test_quick_run_writes_the_results(tmp_path):
    done = run_script(SCRIPT, "--quick", "--out", str(tmp_path), "--work-dir", str(tmp_path),
                      "--models", "LipFNO-sc-inc0.3-d2", "LipFNO-inc0.3-d2")  # fmt: skip
    assert done.returncode == 0, done.stderr
    with (tmp_path / "spectral_shortcut.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["LipFNO-sc-inc0.3-d2", "LipFNO-inc0.3-d2"]
    assert rows[0]["phase_S"] and not rows[1]["phase_S"]
    assert float(rows[0]["lipschitz_certified"]) <= 1.3
    text = (tmp_path / "spectral_shortcut.md").read_text()
    assert "LipFNO-sc-inc0.3-d2: nRMSE" in text and (tmp_path / "spectral_shortcut.png").is_file()


def test_lstsq_row_beats_the_last_frame(study, data):
    row = study.lstsq_row(data)
    assert 0 < row["lipschitz_certified"] <= 1.0 and row["train_s"] == 0.0
    # the tiny preset's step is a sub-cell shift on 16 cells (aliased): S fits it 4x better
    # than u_last (0.139 against 0.595 one-step error)
    s_fit = study.spectra(row["_f"], data)
    s_last = study.spectra(lambda x: x[:, -1:], data)
    assert s_fit["one_step"] < 0.3 * s_last["one_step"]
    measured = study.run(study.LSTSQ_ONLY, data, None, 0)
    assert measured["nrmse"] == pytest.approx(row["nrmse"], rel=1e-6)
    assert measured["rms_phase_S"] == pytest.approx(measured["rms_phase"], rel=1e-3)


def test_init_rows_before_training(study, data, tmp_path):
    preset = with_overrides(PRESETS["tiny"], steps=20)
    gated = study.init_row("LipFNO-sc-kres-d2-lsfz-g", data, preset, 0)
    free = study.init_row("LipFNO-sc-kres-d2-lsfz", data, preset, 0)
    identity = study.init_row("LipFNO-sc-inc-d2", data, preset, 0)
    assert gated["f_over_y"] == 0 and gated["step_error"] == pytest.approx(gated["S_error"])
    assert free["f_over_y"] > 0 and free["S_error"] == pytest.approx(gated["S_error"])
    assert identity["S_error"] > gated["S_error"]  # u_last against the fitted S
    study.write_init([gated, free], tmp_path)
    assert "LipFNO-sc-kres-d2-lsfz-g" in (tmp_path / "spectral_shortcut_init.md").read_text()
