"""``benchmarks/advection_study.py``: its diagnostics, exact-norm training and the quick run."""

import csv

import pytest
import torch
from trainfixtures import ROOT, benchmark_module, run_script

from liponet.layers import LipSpectralConv

SCRIPT = ROOT / "benchmarks" / "advection_study.py"
#: Relative room for the float32 rounding that every certificate includes.
ROUNDING = 1e-5


@pytest.fixture(scope="module")
def study():
    with benchmark_module("advection_study") as module:
        yield module


@pytest.fixture(scope="module")
def data(study, tmp_path_factory):
    from liponet.bench import load_task

    return load_task(study.TASK, study.quick_preset(), None, tmp_path_factory.mktemp("adv"), 0)


def test_diagnostics_measure_damping_of_a_known_map(study, data):
    # last frame times 0.9: each step keeps 0.9 of the (norm-preserving) shifted frame's norm,
    # so the one-step norm ratio is 0.9 * ||u_t|| / ||u_t+1|| and the rollout's is 0.9^frames
    f = lambda x: 0.9 * x[:, -1:]  # noqa: E731
    d = study.diagnostics(f, data)
    x, y = data.x_test, data.y_test
    expected = (0.9 * x[:, -1:].flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).mean()
    assert d["amp_one"] == pytest.approx(float(expected), rel=1e-5)
    traj = data.traj_test
    frames = traj.shape[1] - data.initial_step
    u0 = traj[:, data.initial_step - 1].flatten(1).norm(dim=1)
    last = traj[:, -1].flatten(1).norm(dim=1)
    assert d["amp_last"] == pytest.approx(float((0.9**frames * u0 / last).mean()), rel=1e-4)
    amps = [float(v) for v in d["amp_frames"].split()]
    assert len(amps) == frames and amps[-1] == pytest.approx(d["amp_last"], rel=1e-4)
    assert d["err_last"] > d["err_f1"] > 0


def test_exact_norm_configuration_trains_with_the_norms_eval_applies(study, data):
    preset = study.quick_preset()
    model = study.builder("d2-exact")(data, preset)
    convs = [m for m in model.modules() if isinstance(m, LipSpectralConv)]
    assert convs
    with torch.no_grad():
        for c in convs:  # spoil the power vectors: the hook must restore the exact ones
            c.u.copy_(torch.randn_like(c.u))
    model.train()
    model(data.x_train[:2])
    for c in convs:
        m = c._stacked(c._symmetric_spectral()).detach().to(torch.complex128)
        u = torch.view_as_complex(c.u).to(torch.complex128)
        top = torch.linalg.svdvals(m)[..., 0]
        est = torch.linalg.vector_norm(m @ u.unsqueeze(-1), dim=(-2, -1)) / u.norm(dim=-1)
        torch.testing.assert_close(est, top, rtol=1e-4, atol=1e-6)
    assert study.config_preset(preset, "d2-exact").lr == preset.lr
    assert study.config_preset(preset, "d2-exact-lr1e-2").lr == pytest.approx(1e-2)
    assert study.config_preset(preset, "d2-wd0").weight_decay == 0.0
    assert study.config_preset(preset, "d2-noise3e-3").input_noise == pytest.approx(3e-3)
    assert study.config_preset(preset, "d2").input_noise == 0.0


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_study_rows_certificates_and_tables_rebuild(tmp_path):
    configs = ("FNO-lr3e-4", "d2", "d2-k1.05")
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path), "--configs", *configs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "advection_study.csv").open() as fh:
        rows = {r["config"]: r for r in csv.DictReader(fh)}
    assert set(rows) == set(configs)
    assert float(rows["d2"]["lipschitz_certified"]) <= 1.0 * (1 + ROUNDING)
    assert float(rows["d2-k1.05"]["lipschitz_certified"]) <= 1.05 * (1 + ROUNDING)
    assert float(rows["FNO-lr3e-4"]["lr"]) == pytest.approx(3e-4)
    table = (tmp_path / "advection_study.md").read_text()
    assert "| d2-k1.05 | 1 |" in table
    (tmp_path / "advection_study.md").unlink()
    rebuilt = run_script(SCRIPT, "--quick", "--from-csv", "--out", str(tmp_path))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "advection_study.md").read_text() == table
