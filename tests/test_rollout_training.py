"""``benchmarks/rollout_training.py``: the unrolled loss on known maps, and a quick run."""

import csv
import importlib.util
import sys

import pytest
import torch
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "rollout_training.py"


def _module():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        spec = importlib.util.spec_from_file_location("rollout_training", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return module


class _ShiftLast(torch.nn.Module):
    """Next frame = the window's last frame rolled by one cell (exact for ``_shift_traj``)."""

    def forward(self, window):
        return window[:, -1:].roll(1, -1)


def _shift_traj(frames=9, n=16):
    u0 = torch.randn(3, 1, n)
    return torch.stack([u0.roll(t, -1) for t in range(frames)], 1)  # (3, frames, 1, n)


def test_unrolled_loss_is_zero_for_the_exact_map_and_feeds_predictions_back():
    rt = _module()
    traj = _shift_traj()
    for unroll in (1, 2, 4):
        assert rt.unrolled_loss(_ShiftLast(), traj, 3, unroll).item() < 1e-6
    # a map that is exact on true frames but adds 10% each step: fed back, the k-th predicted
    # frame is 1.1^k times the true one, so the mean relative error over K frames is
    # mean(1.1^k - 1), not 0.1 (which it would be without feeding predictions back)
    scaled = lambda w: 1.1 * _ShiftLast()(w)  # noqa: E731
    for unroll in (1, 3):
        expected = sum(1.1 ** (j + 1) - 1 for j in range(unroll)) / unroll
        got = rt.unrolled_loss(scaled, traj, 3, unroll).item()
        assert abs(got - expected) < 1e-5, (unroll, got, expected)


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_run_writes_rows_for_every_model_and_unroll(tmp_path):
    proc = run_script(
        SCRIPT, "--quick", "--out", str(tmp_path), "--work-dir", str(tmp_path / "w"),
        "--unroll", "1", "2", timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "rollout_training_quick.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["training"]) for r in rows] == [
        ("FNO-lr3e-4", "one-step"), ("FNO-lr3e-4", "unroll-2"),
        ("LipFNO-d2", "one-step"), ("LipFNO-d2", "unroll-2"),
    ]  # fmt: skip
    lip = [r for r in rows if r["model"] == "LipFNO-d2"]
    assert all(float(r["lipschitz_certified"]) <= 1.0 + 1e-6 for r in lip)
    assert all(0 < float(r["rollout_nrmse"]) < 10 for r in rows)
    # --from-csv rebuilds the markdown from the CSV alone
    md = (tmp_path / "rollout_training_quick.md").read_text()
    (tmp_path / "rollout_training_quick.md").unlink()
    proc = run_script(
        SCRIPT, "--quick", "--out", str(tmp_path),
        "--from-csv", str(tmp_path / "rollout_training_quick.csv"), timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "rollout_training_quick.md").read_text() == md
