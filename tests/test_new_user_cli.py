"""benchmarks/new_user_cli.py: the newcomer's command sequence runs and records its section."""

import csv
import importlib.util

import numpy as np
import pytest
from trainfixtures import ROOT, benchmark_module, run_script

SCRIPT = ROOT / "benchmarks" / "new_user_cli.py"


def _read(path):
    """The rows of a results CSV (read whole: no file left open)."""
    return csv.DictReader(path.read_text().splitlines())


@pytest.mark.slow  # 38 CLI subprocesses (about 190 s CPU, 4-10 min on 2 loaded cores)
def test_quick_run_writes_the_rows_and_replaces_its_section(tmp_path):
    (tmp_path / "new_user_checks.md").write_text("# kept\n")
    for _ in range(2):  # a rerun replaces the section instead of appending a second one
        done = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "new_user_checks.md").read_text()
    assert text.startswith("# kept\n") and text.count("<!-- new-user-cli: start -->") == 1
    assert text.count("<!-- new-user-ks: start -->") == 1
    assert text.count("<!-- new-user-kdv: start -->") == 1
    assert text.count("<!-- new-user-wave: start -->") == 1
    assert text.count("<!-- new-user-ns2d: start -->") == 1
    assert text.count("<!-- new-user-ac: start -->") == 1
    rows = list(_read(tmp_path / "new_user_cli.csv"))
    steps = {r["step"]: r for r in rows}
    assert steps["train LipFNO, no settings"]["rc"] == "2"
    assert "model.kwargs.modes" in steps["train LipFNO, no settings"]["said"]
    assert all(steps[s]["rc"] == "0" for s in ("generate", "train LipFNO", "train FNO",
                                               "certify LipFNO", "certify FNO"))  # fmt: skip
    assert "certified L 1" in steps["train LipFNO"]["figures"]
    longer = [r for step, r in steps.items() if step.endswith(" epochs")]
    assert len(longer) == 2 and all(r["rc"] == "0" and "val_nrmse" in r["figures"] for r in longer)
    assert "plain-pairwise: certified, coverage 1.00" in steps["certify LipFNO"]["figures"]
    ks = {r["step"]: r for r in _read(tmp_path / "new_user_cli_ks.csv")}
    assert ks["generate (no such family)"]["rc"] == "2"
    assert "binding Lipschitz constraint" in ks["train LipFNO defaults"]["said"]
    optional = {"generate (no such family)"}
    if importlib.util.find_spec("onnxscript") is None:  # the onnx extra
        optional.add("export LipFNO k=auto .onnx")
    assert all(r["rc"] == "0" for step, r in ks.items() if step not in optional)
    # certify takes the trained frames (0 -> 2), export the training grid (128)
    assert "pairs: frame 0 -> 2" in ks["certify LipFNO k=auto"]["figures"]
    assert ks["export LipFNO k=auto .pt2"]["figures"].startswith("grid 128, certified L")
    # the autoregressive KdV checkpoints are certified on their windows (one step)
    kdv = {r["step"]: r for r in _read(tmp_path / "new_user_cli_kdv.csv")}
    certified = [r for step, r in kdv.items() if step.startswith("certify ")]
    assert len(certified) == 7 and all(r["rc"] == "0" for r in certified)
    assert all("pairs: windows of 2 frames -> the next frame" in r["figures"] for r in certified)
    # the wave equation's one-step map has constant above 1: the defaults are told so
    wave = {r["step"]: r for r in _read(tmp_path / "new_user_cli_wave.csv")}
    assert "binding Lipschitz constraint" in wave["train LipFNO defaults"]["said"]
    assert all(r["rc"] == "0" for step, r in wave.items() if step.startswith(("train", "certify")))
    # 2-D Navier-Stokes in the group-per-sample layout: every run, the spectral shortcut's too
    ns = {r["step"]: r for r in _read(tmp_path / "new_user_cli_ns2d.csv")}
    ran = [r for step, r in ns.items() if step.startswith(("train", "certify"))]
    assert len(ran) == 18 and all(r["rc"] == "0" for r in ran)
    assert "certified L" in ns["train LipFNO rollout-fitted shortcut"]["figures"]
    certified = [r for s, r in ns.items() if s.startswith("certify ")]
    assert all("pairs: one frame -> the next frame" in r["figures"] for r in certified)
    # Allen-Cahn: the defaults are told the map expands; the unrolled runs train and certify
    ac = {r["step"]: r for r in _read(tmp_path / "new_user_cli_ac.csv")}
    assert "binding Lipschitz constraint" in ac["train LipFNO defaults"]["said"]
    ran = [r for step, r in ac.items() if step.startswith(("train", "certify"))]
    assert len(ran) == 12 and all(r["rc"] == "0" for r in ran)
    assert "--unroll 2" in ac["train FNO unroll 2"]["command"]
    assert "pairs: one frame -> the next frame" in ac["certify LipFNO k=auto unroll 2"]["figures"]


def test_wave_solution_is_exact_per_mode():
    with benchmark_module("new_user_cli") as cli:
        u = cli.wave_equation(3, 64, seed=0).astype(np.float64)
        q = cli.box_wavenumbers(64)
    assert u.shape == (3, cli.KS_FRAMES, 64)
    k = np.fft.rfft(u, axis=-1)
    # frames 1 apart: u_k(t + 1) + u_k(t - 1) = 2 cos(w) u_k(t), w = speed |q| (float32 storage)
    w = cli.WAVE_SPEED * q
    residual = k[:, 2:] + k[:, :-2] - 2 * np.cos(w) * k[:, 1:-1]
    assert np.abs(residual).max() <= 1e-6 * np.abs(k).max()
    assert np.abs(k[:, :, 0]).max() <= 1e-4  # zero mean stays zero
    x = np.concatenate([u[:, :-2], u[:, 1:-1]], -1)
    pair = np.linalg.norm(u[0, 2:] - u[1, 2:], axis=-1) / np.linalg.norm(x[0] - x[1], axis=-1)
    assert pair.max() > 1.0  # the map a 1-Lipschitz model cannot carry


def test_navier_stokes_solution_converges_in_time_and_keeps_zero_mean(monkeypatch):
    with benchmark_module("new_user_cli") as cli:
        w = cli.navier_stokes_2d(2, seed=3).astype(np.float64)
        monkeypatch.setattr(cli, "NS_DT", cli.NS_DT / 2)
        half = cli.navier_stokes_2d(2, seed=3).astype(np.float64)
        grid, frames = cli.NS_GRID, cli.KS_FRAMES
    assert w.shape == (2, frames, grid, grid)
    # the time step is not what the stored fields show: halving it moves them by < 1e-4
    assert np.abs(w - half).max() <= 1e-4 * np.abs(w).max()
    assert np.abs(w.mean((-2, -1))).max() <= 1e-5 * np.abs(w).max()  # no mean vorticity
    # the forcing pumps energy in: the last frame's RMS is well above the first's
    rms = np.sqrt((w**2).mean((-2, -1)))
    assert (rms[:, -1] > 2 * rms[:, 0]).all()
    # and the solver is not the identity or a pure decay: consecutive frames differ
    change = np.sqrt(((w[:, 1:] - w[:, :-1]) ** 2).mean((-2, -1))) / rms[:, :-1]
    assert (change > 0.01).all()


def test_runs_rerun_keeps_the_other_rows(tmp_path):
    # --runs: the rows of the runs made replace theirs; every other run's rows come from the CSV
    with benchmark_module("new_user_cli") as cli:
        runs = {"FNO": ("FNO", []), "LipFNO k=auto": ("LipFNO", []), "new": ("LipFNO", [])}
        old = [
            {"step": "own solver", "rc": 0, "cpu_s": 1.0},
            {"step": "train FNO", "rc": 0, "figures": "val_nrmse 0.5, certified L 7", "cpu_s": 2.0},
            {"step": "train LipFNO k=auto", "rc": 0, "figures": "val_nrmse 0.25, certified L 2",
             "cpu_s": 3.0},
            {"step": "certify FNO", "rc": 0, "figures": "plain: x", "cpu_s": 4.0},
        ]  # fmt: skip
        cli.write_steps_csv(old, tmp_path / "c.csv")
        made = [
            {"step": "own solver", "rc": 0, "cpu_s": 9.0},
            {"step": "train new", "rc": 0, "figures": "val_nrmse 0.125, certified L 3",
             "cpu_s": 5.0},
            {"step": "certify new", "rc": 0, "figures": "plain: y", "cpu_s": 6.0},
        ]  # fmt: skip
        records = {"new": {"val_nrmse": 0.125, "lipschitz_bound": 3.0}}
        rows, recs, kept = cli.merge_rows(made, records, runs, tmp_path / "c.csv")
    assert [r["step"] for r in rows] == ["own solver", "train FNO", "train LipFNO k=auto",
                                         "train new", "certify FNO", "certify new"]  # fmt: skip
    assert rows[0]["cpu_s"] == 9.0 and rows[1]["cpu_s"] == 2.0
    assert recs["FNO"] == {"val_nrmse": 0.5, "lipschitz_bound": 7.0}
    assert recs["new"] == records["new"] and kept == ["FNO", "LipFNO k=auto"]


def test_etdrk4_term_is_exact_for_a_linear_symbol():
    # with N(u) = 0 every mode evolves as exp(L t): the generic nonlinear term's path is exact
    with benchmark_module("new_user_cli") as cli:
        u0 = cli.sine_fields(2, 64, seed=1)
        lin = 1.0 - cli.AC_D * cli.box_wavenumbers(64) ** 2
        u = cli.etdrk4(u0, lin, cli.KS_T, cli.KS_FRAMES, term=np.zeros_like).astype(np.float64)
        t = np.linspace(0.0, cli.KS_T, cli.KS_FRAMES)[None, :, None]
    exact = np.fft.irfft(np.fft.rfft(u0)[:, None] * np.exp(lin * t), n=64)
    assert np.abs(u - exact).max() <= 1e-5 * np.abs(exact).max()


def test_allen_cahn_converges_in_time_separates_phases_and_expands(monkeypatch):
    with benchmark_module("new_user_cli") as cli:
        u = cli.allen_cahn(8, 128, seed=2).astype(np.float64)
        monkeypatch.setattr(cli, "KS_DT", cli.KS_DT / 2)
        half = cli.allen_cahn(8, 128, seed=2).astype(np.float64)
    assert u.shape == (8, 11, 128)
    assert np.abs(u - half).max() <= 1e-3 * np.abs(u).max()  # the step is not in the fields
    # the phases -1 and +1: the share of cells within 0.1 of one of them grows (0.10 at t = 0,
    # 0.59 at t = 10 for this seed), and the maximum principle pulls |u| from 2.4 below 1
    near = (np.abs(np.abs(u) - 1) < 0.1).mean((0, 2))
    assert near[-1] > 0.5 and near[-1] > 3 * near[0]
    assert np.abs(u[:, 0]).max() > 1.5 and np.abs(u[:, -1]).max() <= 1 + 1e-4
    # the one-step map expands some pairs (the long waves grow): k = 1 cannot carry it
    x, y = u[:, :-1].reshape(-1, 128), u[:, 1:].reshape(-1, 128)
    i, j = np.triu_indices(len(x), 1)
    ratio = np.linalg.norm(y[i] - y[j], axis=1) / np.linalg.norm(x[i] - x[j], axis=1)
    assert ratio.max() > 1.1
