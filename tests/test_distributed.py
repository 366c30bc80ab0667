"""torchrun on CPU (Gloo): 2 processes == 1 process with the same global batch; a failing rank."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from trainfixtures import ENV, ROOT, WORKER

from liponet.train import Trainer, build_dataset, config_from_dict, load_checkpoint

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch.distributed is not available"
)


def config(out_dir, **changes):
    grid = 8
    data = {
        "model": {
            "name": "LipMLP",
            "kwargs": {"in_features": grid, "out_features": grid, "width": 8, "depth": 2},
        },
        # 30 samples: 2 ranks x batch 3 = global batch 6 -> 5 steps per epoch; 7 validation
        # samples (uneven shards 4 + 3: the synchronized metrics must still be exact)
        "data": {"name": "toy-shift", "kwargs": {"n_train": 30, "n_val": 7, "grid": grid}},
        "epochs": 2,
        "batch_size": 6,
        "lr": 1e-2,
        "device": "cpu",
        "out_dir": str(out_dir),
        "dist_timeout_s": 60.0,
    }
    data.update(changes)
    return data


def test_torchrun_two_ranks_match_one_process(tmp_path):
    cfg = config(tmp_path / "ddp")
    (tmp_path / "c.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    proc = subprocess.run(
        [
            *TORCHRUN,
            "-m",
            "liponet",
            "train",
            "--no-progress",
            "--config",
            str(tmp_path / "c.yaml"),
        ],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = config_from_dict(config(tmp_path / "single"))
    data = build_dataset(single.data, single.seed)
    Trainer(single, data.train, data.val, progress=False).fit()

    a = load_checkpoint(tmp_path / "ddp" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "single" / "last.pt").model_state
    # Same samples per step; only the order of floating-point sums differs (two half-batch means
    # averaged by the all-reduce vs one mean): float32 rounding, carried through 10 Adam steps.
    # Measured: max |difference| 2.4e-7; tolerance 2e-6 absolute + 1e-5 relative.
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=2e-6, msg=key)
    log_ddp = [json.loads(x) for x in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    log_one = [json.loads(x) for x in (tmp_path / "single" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_ddp] == [r["step"] for r in log_one] == [5, 10]
    for r_ddp, r_one in zip(log_ddp, log_one, strict=True):
        # the certified bound is computed on every rank and identical (gathered in float64)
        ranks = r_ddp["lipschitz_bound_ranks"]
        assert len(ranks) == 2 and ranks[0] == ranks[1] == r_ddp["lipschitz_bound"]
        # validation metrics synchronized over the uneven shards equal the 1-process values
        for key in ("val_loss", "val_rmse", "val_nrmse", "val_max", "val_crmse", "train_loss"):
            assert r_ddp[key] == pytest.approx(r_one[key], rel=1e-4), key


def test_a_failing_rank_stops_the_launch_promptly(tmp_path):
    cfg = config(tmp_path / "fail", epochs=50)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    start = time.monotonic()
    proc = subprocess.run(
        [*TORCHRUN, str(WORKER), str(tmp_path / "c.json"), "--fail-rank", "1", "--fail-step", "3"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    assert "rank 1 fails on purpose" in proc.stderr
    # well below the 60 s collective timeout: the dead peer is noticed at once
    assert elapsed < 45, f"launch took {elapsed:.1f} s"


def _descendants(pid):
    """Child processes, recursively (Linux /proc): torchrun's workers are not in its group."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [d for c in map(int, children) for d in (*_descendants(c), c)]


@pytest.mark.slow  # three torchrun launches (about 1 min on 2 loaded cores)
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_two_rank_run_killed_mid_epoch_resumes_with_the_same_log_and_weights(tmp_path):
    """The resumed epoch's train loss counts both ranks' samples before the kill."""
    ref = config(tmp_path / "ref", save_every_steps=2, epochs=2)
    killed = config(tmp_path / "killed", save_every_steps=2, epochs=2)
    for name, cfg in (("ref", ref), ("killed", killed)):
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    done = subprocess.run(
        [*TORCHRUN, str(WORKER), str(tmp_path / "ref.json")],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    with subprocess.Popen(
        [*TORCHRUN, str(WORKER), str(tmp_path / "killed.json"), "--pause-step", "9"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
    ) as proc:  # fmt: skip
        try:
            assert "PAUSED" in proc.stdout.readline(), proc.stderr.read()
        finally:
            for pid in [*_descendants(proc.pid), proc.pid]:  # both ranks, then torchrun
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # no cleanup, as a power cut
            proc.wait(timeout=30)
    last = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert (last.epoch, last.extra["step_in_epoch"]) == (1, 3)  # saved at global step 8
    resumed = subprocess.run(
        [*TORCHRUN, str(WORKER), str(tmp_path / "killed.json"), "--resume",
         str(tmp_path / "killed" / "last.pt")],
        capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = load_checkpoint(tmp_path / "ref" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "killed" / "last.pt").model_state
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    logs = [
        [json.loads(x) for x in (tmp_path / n / "log.jsonl").read_text().splitlines()]
        for n in ("ref", "killed")
    ]
    keys = ("epoch", "step", "train_loss", "train_samples", "val_loss")
    assert [{k: r[k] for k in keys} for r in logs[1]] == [{k: r[k] for k in keys} for r in logs[0]]
