"""Runs that never lose work: run folders, checkpoint sequence under kills, Ctrl-C, resume rules."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trainfixtures import ENV, ROOT, WORKER
from trainfixtures import tiny_config as tiny

import liponet.train.checkpoint as checkpoint_module
from liponet.cli import main
from liponet.train import (
    RunFolder,
    RunFolderError,
    Trainer,
    TrainingInterrupted,
    build_dataset,
    config_from_dict,
    load_checkpoint,
)
from liponet.train.checkpoint import file_mode


def fit(cfg_dict, resume=None, callbacks=(), overwrite=False):
    cfg = config_from_dict(cfg_dict)
    data = build_dataset(cfg.data, cfg.seed)
    trainer = Trainer(cfg, data.train, data.val, callbacks=callbacks, progress=False)
    return trainer, trainer.fit(resume_from=resume, overwrite=overwrite)


def cli_args(cfg_dict):
    """CLI flags reproducing a tiny() config."""
    kw = cfg_dict["model"]["kwargs"]
    dk = cfg_dict["data"]["kwargs"]
    args = ["train", "--no-progress", "--model", "LipMLP", "--data", "toy-shift"]
    args += ["--epochs", str(cfg_dict["epochs"]), "--batch-size", str(cfg_dict["batch_size"])]
    args += ["--lr", str(cfg_dict["lr"]), "--device", "cpu", "--out", cfg_dict["out_dir"]]
    args += ["--set", "monitor=val_nrmse", "--seed", str(cfg_dict.get("seed", 0))]
    args += ["--set", "model.kwargs={" + ", ".join(f"{k}: {v}" for k, v in kw.items()) + "}"]
    args += ["--set", "data.kwargs={" + ", ".join(f"{k}: {v}" for k, v in dk.items()) + "}"]
    return args


def snapshot(folder):
    """Every file's bytes (nothing written or overwritten = same snapshot)."""
    folder = Path(folder)
    if not folder.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != ".lock"}


def same_weights(a, b):
    sa, sb = load_checkpoint(a).model_state, load_checkpoint(b).model_state
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], rtol=0, atol=0, msg=key)


def log(folder):
    return [json.loads(x) for x in (Path(folder) / "log.jsonl").read_text().splitlines()]


def one_line_error(capsys, message):
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------- folders


def test_run_id_in_every_log_line_and_checkpoint_and_consistent_modes(tmp_path):
    trainer, _ = fit(tiny(tmp_path / "run"))
    ids = {r["run_id"] for r in log(tmp_path / "run")}
    assert ids == {trainer.run_id} and len(trainer.run_id) == 12
    for name in ("last.pt", "best.pt"):
        assert load_checkpoint(tmp_path / "run" / name).extra["run_id"] == trainer.run_id
    modes = {name: (tmp_path / "run" / name).stat().st_mode & 0o777 for name in
             ("last.pt", "best.pt", "log.jsonl")}  # fmt: skip
    assert set(modes.values()) == {file_mode()}, modes


def test_concurrent_run_into_a_live_folder_is_refused(tmp_path, capsys):
    cfg = tiny(tmp_path / "run", epochs=5)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "c.json"), "--pause-step", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    ) as first:
        try:
            assert first.stdout.readline().strip() == "PAUSED", first.stderr.read()
            before = snapshot(tmp_path / "run")
            # a second run, fresh or even with --overwrite or --resume, while the first lives
            for extra in ([], ["--overwrite"]):
                assert main(cli_args(cfg) + extra) == 2
                one_line_error(capsys, "in use by another run (run id")
            assert snapshot(tmp_path / "run") == before
        finally:
            first.kill()
            first.wait(timeout=30)
    # the kernel dropped the dead run's lock: the folder can be taken over explicitly
    assert main([*cli_args(cfg), "--overwrite", "--set", "epochs=1"]) == 0


def test_folder_of_another_run_is_refused_unless_resume_or_overwrite(tmp_path, capsys):
    cfg = tiny(tmp_path / "run")
    first, _ = fit(cfg)
    before = snapshot(tmp_path / "run")
    # a later, different run (e.g. worse settings) must not touch the earlier run's files
    assert main(cli_args({**cfg, "lr": 5.0})) == 2
    one_line_error(capsys, f"holds run {first.run_id} (last.pt, best.pt, log.jsonl)")
    assert snapshot(tmp_path / "run") == before
    # the library refuses it too
    with pytest.raises(RunFolderError, match="holds run"):
        fit(cfg)
    assert snapshot(tmp_path / "run") == before
    # --overwrite: the old run's files are gone, the log holds only the new run
    assert main([*cli_args(cfg), "--overwrite"]) == 0
    capsys.readouterr()
    assert {r["run_id"] for r in log(tmp_path / "run")} != {first.run_id}
    assert [r["epoch"] for r in log(tmp_path / "run")] == [1, 2]


def test_best_pt_of_another_run_is_never_replaced(tmp_path, capsys):
    fit(tiny(tmp_path / "a", epochs=1))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path / "b", epochs=3), callbacks=[stop_after_epoch(1)])
    foreign = (tmp_path / "a" / "best.pt").read_bytes()
    (tmp_path / "b" / "best.pt").write_bytes(foreign)
    before = snapshot(tmp_path / "b")
    args = [*cli_args(tiny(tmp_path / "b", epochs=3)), "--resume", str(tmp_path / "b" / "last.pt")]
    assert main(args) == 2
    one_line_error(capsys, "holds files of different runs")
    assert snapshot(tmp_path / "b") == before


def test_tmp_files_are_removed_on_the_next_start(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path, epochs=2), callbacks=[stop_after_epoch(1)])
    for name in (".last.pt.abc123.tmp", ".best.pt.tmp", ".log.jsonl.x.tmp"):
        (tmp_path / name).write_bytes(b"junk")
    fit(tiny(tmp_path, epochs=2), resume=tmp_path / "last.pt")
    assert not list(tmp_path.glob(".*.tmp"))


def test_lock_is_released_after_fit_and_after_errors(tmp_path):
    fit(tiny(tmp_path, epochs=1))
    folder = RunFolder(tmp_path)
    folder.acquire(run_id="x")  # free again
    folder.release()
    with pytest.raises(RunFolderError):
        fit(tiny(tmp_path, epochs=1))
    folder.acquire(run_id="y")  # the refusal released it too
    folder.release()


def stop_after_epoch(n):
    def callback(event, record):
        if event == "epoch" and record["epoch"] == n:
            raise KeyboardInterrupt

    return callback


# ----------------------------------------------------------------------------- resume rules


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 8}, "the run used batch_size=4, now batch_size=8"),
        (
            {"data": {"name": "toy-shift", "kwargs": {"n_train": 20, "n_val": 6, "grid": 8}}},
            "the run used data=",
        ),
        ({"seed": 1}, "the run used seed=0, now seed=1"),
        ({"lr": 0.5}, "the run used lr=0.01, now lr=0.5"),
    ],
)
def test_resume_with_changed_settings_is_refused(tmp_path, capsys, change, message):
    cfg = tiny(tmp_path / "run", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, callbacks=[stop_after_epoch(1)])
    before = snapshot(tmp_path / "run")
    args = [*cli_args({**cfg, **change}), "--resume", str(tmp_path / "run" / "last.pt")]
    assert main(args) == 2
    one_line_error(capsys, message)
    assert snapshot(tmp_path / "run") == before


def test_resume_of_a_finished_run_is_refused_and_more_epochs_continue(tmp_path, capsys):
    cfg = tiny(tmp_path / "run", epochs=2)
    fit(cfg)
    before = snapshot(tmp_path / "run")
    resume = ["--resume", str(tmp_path / "run" / "last.pt")]
    assert main(cli_args(cfg) + resume) == 2
    one_line_error(capsys, "the run already finished (epoch 2 of epochs=2)")
    assert snapshot(tmp_path / "run") == before
    assert main(cli_args({**cfg, "epochs": 3}) + resume) == 0
    assert [r["epoch"] for r in log(tmp_path / "run")] == [1, 2, 3]


@pytest.mark.parametrize("scheduler", ["cosine", "step"])
def test_resumed_schedule_follows_the_new_number_of_epochs(tmp_path, scheduler):
    # The checkpoint's cosine schedule had the old run's length: resumed with more epochs, its
    # learning rate reached 0 at the old last epoch and climbed back (lr 0 in epoch 3 of 4).
    cfg = tiny(tmp_path / "run", epochs=2, scheduler=scheduler, step_size=1, gamma=0.5)
    fit(cfg)
    fit({**cfg, "epochs": 4}, resume=tmp_path / "run" / "last.pt")
    fit(tiny(tmp_path / "fresh", epochs=4, scheduler=scheduler, step_size=1, gamma=0.5))
    resumed = [r["lr"] for r in log(tmp_path / "run")]
    fresh = [r["lr"] for r in log(tmp_path / "fresh")]
    # from the resumed epoch on, the schedule of a run started with 4 epochs
    assert resumed[2:] == pytest.approx(fresh[2:], rel=1e-12)
    assert resumed[2] > resumed[3] > 0  # still decreasing, not yet at 0


def test_resume_with_a_changed_data_file_is_refused(tmp_path, capsys):
    from liponet.data import generate

    path = generate("advection", tmp_path / "adv.hdf5", n_samples=30, nx=16, nt=3)
    cfg = {
        "model": {
            "name": "LipFNO",
            "kwargs": {"in_channels": 1, "out_channels": 1, "modes": [4], "width": 4, "depth": 1},
        },
        "data": {"name": "pdebench", "path": str(path), "kwargs": {"t_in": 0, "t_out": -1}},
        "epochs": 2,
        "batch_size": 4,
        "device": "cpu",
        "out_dir": str(tmp_path / "run"),
    }
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, callbacks=[stop_after_epoch(1)])
    generate("advection", path, n_samples=31, nx=16, nt=3)  # same name, other data
    with pytest.raises(ValueError, match=r"adv\.hdf5 changed since this checkpoint"):
        fit(cfg, resume=tmp_path / "run" / "last.pt")


# ----------------------------------------------------------------------------- kills


def _phase_trace(tmp_path, cfg):
    """The checkpoint-write phases of an uninterrupted run, in order."""
    calls = []
    original = checkpoint_module.write_phase
    checkpoint_module.write_phase = lambda name, path: calls.append((name, path.name))
    try:
        fit(cfg)
    finally:
        checkpoint_module.write_phase = original
    return calls


def _kill_and_resume(tmp_path, cfg, ref, kill_at):
    out = Path(cfg["out_dir"])
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "k.json").write_text(json.dumps(cfg))
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "k.json"), "--kill-at", str(kill_at)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 137 and "KILLED at" in proc.stdout, proc.stderr[-2000:]
    left = [p for p in out.iterdir() if p.suffix == ".pt"]
    for file in left:  # every checkpoint left is complete and loadable
        load_checkpoint(file)
    last = load_checkpoint(out / "last.pt") if (out / "last.pt").exists() else None
    if last is not None and last.epoch >= 1:  # an epoch completed: best.pt exists
        assert (out / "best.pt").exists()
    if last is None:  # nothing to resume from: the run starts again
        fit(cfg, overwrite=True)
    elif last.epoch < cfg["epochs"]:
        fit(cfg, resume=out / "last.pt")
    # else: killed after the final commit point; the run is complete as it stands
    assert not list(out.glob(".*.tmp")), proc.stdout
    same_weights(ref / "last.pt", out / "last.pt")
    same_weights(ref / "best.pt", out / "best.pt")
    assert load_checkpoint(out / "best.pt").epoch == load_checkpoint(ref / "best.pt").epoch
    keys = ("epoch", "step", "train_loss", "train_samples", "val_loss", "val_nrmse", "best")
    assert [{k: r[k] for k in keys} for r in log(out)] == [
        {k: r[k] for k in keys} for r in log(ref)
    ], proc.stdout


def _epoch_end_kill_points(tmp_path, everything):
    """SIGKILL-like exits (no cleanup) at phases of epoch 2's and 3's ends (both branches)."""
    cfg = tiny(tmp_path / "ref", epochs=3, lr=1.0)
    trace = _phase_trace(tmp_path, cfg)
    records = log(tmp_path / "ref")
    # epoch 2 improves on epoch 1 and epoch 3 does not: both sequences are exercised
    assert [r["best"] for r in records] == [True, True, False], records
    ends = [i for i, (name, _) in enumerate(trace, 1) if name == "last-written"]
    assert len(ends) == 3, trace
    epoch2 = list(range(ends[0] + 1, ends[1] + 1))  # 1-based call numbers
    epoch3 = list(range(ends[1] + 1, ends[2] + 1))
    names = [trace[i - 1][0] for i in epoch2]
    assert names == ["tmp-open", "tmp-written", "replaced", "best-written", "log-written",
                     "tmp-open", "tmp-written", "replaced", "last-written"], trace  # fmt: skip
    tail = ["best-written", "log-written", "tmp-open", "tmp-written", "replaced", "last-written"]
    assert [trace[i - 1][0] for i in epoch3] == tail
    points = epoch2 + epoch3
    if not everything:  # each distinct state a kill can leave, not the equivalent ones
        names = {i: trace[i - 1][0] for i in points}
        points = [i for i in epoch2[:-1] if names[i] not in ("replaced", "tmp-written")]
        points += [i for i in epoch3 if names[i] == "log-written"]
    for kill_at in points:
        _kill_and_resume(tmp_path / str(kill_at), tiny(tmp_path / f"k{kill_at}", epochs=3,
                         lr=1.0), tmp_path / "ref", kill_at)  # fmt: skip


def test_kill_at_each_distinct_phase_of_the_epoch_end_sequence(tmp_path):
    # inside the best.pt write, between best.pt and the log line, between the log line and
    # last.pt, inside the last.pt write; and the log/last.pt gap of a non-improving epoch
    # (5 kills; every phase of both epochs in the slow variant below)
    _epoch_end_kill_points(tmp_path, everything=False)


@pytest.mark.slow
def test_kill_at_every_phase_of_the_epoch_end_sequence(tmp_path):
    _epoch_end_kill_points(tmp_path, everything=True)


def test_kill_during_a_mid_epoch_write_and_in_the_first_epoch(tmp_path):
    cfg = tiny(tmp_path / "ref", epochs=2, save_every_steps=2)
    trace = _phase_trace(tmp_path, cfg)
    # the first write of all (a mid-epoch last.pt of epoch 1: no epoch completed yet), and
    # the mid-epoch write of epoch 2 cut short
    points = [1, next(i for i, c in enumerate(trace, 1) if c[0] == "last-written") + 1]
    for kill_at in points:
        out = tmp_path / f"k{kill_at}"
        _kill_and_resume(out.with_suffix(".d"), tiny(out, epochs=2, save_every_steps=2),
                         tmp_path / "ref", kill_at)  # fmt: skip


# ----------------------------------------------------------------------------- interrupts


def _raise_at(step, sig):
    def callback(event, record):
        if event == "step" and record["step"] == step:
            signal.raise_signal(sig)

    return callback


@pytest.mark.parametrize(("step", "sig"), [(3, signal.SIGINT), (8, signal.SIGTERM)])
def test_signal_saves_a_resumable_checkpoint(tmp_path, step, sig):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    fit(tiny(tmp_path / "ref", epochs=2))
    cfg = tiny(tmp_path / "int", epochs=2)
    with pytest.raises(TrainingInterrupted, match=f"interrupted by {sig.name}") as info:
        fit(cfg, callbacks=[_raise_at(step, sig)])
    assert info.value.signal_number == sig
    last = load_checkpoint(tmp_path / "int" / "last.pt")
    assert last.extra["global_step"] == step  # stopped at the next step boundary
    # the handlers in place before the run are restored (SIG_IGN under nohup, else the defaults)
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    fit(cfg, resume=tmp_path / "int" / "last.pt")
    same_weights(tmp_path / "ref" / "last.pt", tmp_path / "int" / "last.pt")
    assert [r["train_loss"] for r in log(tmp_path / "int")] == [
        r["train_loss"] for r in log(tmp_path / "ref")
    ]


def test_sigterm_to_the_cli_exits_143_with_a_resumable_checkpoint(tmp_path):
    cfg = tiny(tmp_path / "run", epochs=400)
    proc = subprocess.Popen(
        [sys.executable, "-m", "liponet", *cli_args(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    )
    try:
        assert "epoch 1/400" in proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM: resumable checkpoint" in err and "--resume" in err
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.epoch >= 1 and (tmp_path / "run" / "best.pt").exists()


def test_sigint_with_dataloader_workers_saves_a_resumable_checkpoint(tmp_path):
    fit(tiny(tmp_path / "ref", epochs=2, num_workers=2))
    cfg = tiny(tmp_path / "int", epochs=2, num_workers=2)
    with pytest.raises(TrainingInterrupted):
        fit(cfg, callbacks=[_raise_at(4, signal.SIGINT)])
    assert load_checkpoint(tmp_path / "int" / "last.pt").extra["global_step"] == 4
    fit(cfg, resume=tmp_path / "int" / "last.pt")
    same_weights(tmp_path / "ref" / "last.pt", tmp_path / "int" / "last.pt")


def test_trainer_without_a_run_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer, record = fit(tiny("", epochs=1))
    assert record["epoch"] == 1 and record["train_samples"] == 24
    assert list(tmp_path.iterdir()) == [] and trainer.folder is None
