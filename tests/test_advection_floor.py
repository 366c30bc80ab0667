"""``benchmarks/advection_floor.py``: its trajectories, the smooth draw's exact step, quick run."""

import pytest
from trainfixtures import ROOT, benchmark_module, run_script

from liponet.layers import SpectralShortcut

SCRIPT = ROOT / "benchmarks" / "advection_floor.py"


def test_draws_are_exact_shifts_and_smooth_sines_have_a_linear_step():
    with benchmark_module("advection_floor") as study:
        smooth, series = study.trajectories("smooth", 24, seed=0)
        assert smooth.shape == (24, study.FRAMES, 1, study.NX // study.STRIDE)
        assert not bool(series.absolute.any() or series.windowed.any())
        # smooth periodic sines of at most 8 periods: a per-mode phase is the exact step
        x, y = study.windows(smooth)
        step = SpectralShortcut(study.WINDOW, 1, x.shape[-1], s=1.0).fit_(x, y)
        assert study.score(step, smooth)["rollout_nrmse"] < 1e-5
        # the pdebench draw jumps at the wrap (its sines are not 1-periodic): no exact step
        jumpy, _ = study.trajectories("jump only", 24, seed=0)
        x, y = study.windows(jumpy)
        step = SpectralShortcut(study.WINDOW, 1, x.shape[-1], s=1.0).fit_(x, y)
        assert study.score(step, jumpy)["rollout_nrmse"] > 1e-4


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_run_writes_the_results(tmp_path):
    done = run_script(SCRIPT, "--quick", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "advection_floor.md").read_text()
    assert "| pdebench | rollout | auto |" in text and "abs(u)" in text
    rebuilt = run_script(SCRIPT, "--from-csv", "--out", str(tmp_path))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (tmp_path / "advection_floor.md").read_text() == text
