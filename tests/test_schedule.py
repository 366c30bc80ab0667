"""Per-step learning-rate schedules: closed form, resume bit for bit, refused settings."""

import math

import pytest
import torch
from trainfixtures import fit_config as fit
from trainfixtures import tiny_config as tiny

from liponet.cli import main
from liponet.train import (
    ConfigError,
    Trainer,
    WarmupCosineLR,
    build_dataset,
    config_from_dict,
    load_checkpoint,
    warmup_cosine_lr,
)

STEPS_PER_EPOCH = 6  # tiny(): 24 training samples, batch 4


def rates(records):
    def callback(event, record):
        if event == "step":
            records.append((record["step"], record["lr"]))

    return callback


def weights(path):
    return load_checkpoint(path).model_state


def test_closed_form_by_hand():
    # half cosine from 1 to 0.1 over 4 steps after 2 warmup steps (0.5, 1)
    got = [warmup_cosine_lr(1.0, t, 6, 2, 0.1) for t in range(8)]
    mid = 0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2
    low = 0.1 + 0.9 * (1 + math.cos(3 * math.pi / 4)) / 2
    assert got == pytest.approx([0.5, 1.0, 1.0, mid, 0.55, low, 0.1, 0.1], rel=1e-15)


def test_per_step_trace_equals_the_closed_form(tmp_path):
    seen = []
    cfg = tiny(
        tmp_path / "run", epochs=3, schedule_unit="step", warmup_steps=4, lr_min=1e-3, lr=1e-2
    )
    _, record = fit(cfg, callbacks=[rates(seen)])
    total = 3 * STEPS_PER_EPOCH
    assert [s for s, _ in seen] == list(range(1, total + 1))
    expected = [warmup_cosine_lr(1e-2, t, total, 4, 1e-3) for t in range(total)]
    assert [lr for _, lr in seen] == expected  # exactly: the scheduler is the closed form
    assert expected[3] == 1e-2 and expected[0] == pytest.approx(2.5e-3)
    assert seen[-1][1] > 1e-3  # the last step still above the floor, which follows it
    assert record["lr"] == seen[-1][1]  # the epoch record: the rate of its last step
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    assert last.optimizer_state["param_groups"][0]["lr"] == pytest.approx(1e-3, rel=1e-15)


def test_per_epoch_default_is_unchanged(tmp_path):
    seen = []
    fit(tiny(tmp_path / "run", epochs=3), callbacks=[rates(seen)])
    by_epoch = [lr for _, lr in seen][::STEPS_PER_EPOCH]
    assert [lr for _, lr in seen] == [lr for lr in by_epoch for _ in range(STEPS_PER_EPOCH)]
    assert by_epoch == pytest.approx([1e-2 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)])
    cfg = config_from_dict(tiny(tmp_path / "x"))
    assert (cfg.schedule_unit, cfg.warmup_steps, cfg.lr_min) == ("epoch", 0, 0.0)


def _stop_at_step(n):
    def callback(event, record):
        if event == "step" and record["step"] == n:
            raise KeyboardInterrupt

    return callback


def test_resume_mid_epoch_equals_an_uninterrupted_run_bitwise(tmp_path):
    schedule = {"schedule_unit": "step", "warmup_steps": 3, "lr_min": 1e-4}
    ref_rates, part_rates = [], []
    fit(
        tiny(tmp_path / "ref", epochs=3, save_every_steps=2, **schedule),
        callbacks=[rates(ref_rates)],
    )
    part = tiny(tmp_path / "part", epochs=3, save_every_steps=2, **schedule)
    with pytest.raises(KeyboardInterrupt):  # stopped after step 9; last.pt holds step 8
        fit(part, callbacks=[_stop_at_step(9)])
    saved = load_checkpoint(tmp_path / "part" / "last.pt")
    assert (saved.epoch, saved.extra["step_in_epoch"], saved.scheduler_state["last_epoch"]) == (
        1,
        2,
        8,
    )
    _, record = fit(part, resume=tmp_path / "part" / "last.pt", callbacks=[rates(part_rates)])
    assert record["step"] == 18
    assert part_rates == ref_rates[8:]  # steps 9..18, the same rates bit for bit
    a, b = weights(tmp_path / "ref" / "last.pt"), weights(tmp_path / "part" / "last.pt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_resumed_per_step_schedule_follows_the_new_number_of_epochs(tmp_path):
    schedule = {"schedule_unit": "step", "warmup_steps": 2}
    resumed, fresh = [], []
    fit(tiny(tmp_path / "run", epochs=2, **schedule))
    fit(
        tiny(tmp_path / "run", epochs=4, **schedule),
        resume=tmp_path / "run" / "last.pt",
        callbacks=[rates(resumed)],
    )
    fit(tiny(tmp_path / "fresh", epochs=4, **schedule), callbacks=[rates(fresh)])
    # from the resumed step on, the rates of a run started with 4 epochs (not the old floor 0)
    assert resumed == fresh[2 * STEPS_PER_EPOCH :]
    assert resumed[0][1] > resumed[-1][1] > 0


def test_checkpoint_without_schedule_keys_resumes_as_per_epoch(tmp_path):
    # a checkpoint written before schedule_unit existed ran per epoch: resumed as such, and a
    # per-step resume of it is refused
    fit(tiny(tmp_path / "run", epochs=1))
    path = tmp_path / "run" / "last.pt"
    payload = torch.load(path, weights_only=True)
    for key in ("schedule_unit", "warmup_steps", "lr_min"):
        del payload["config"][key]
    torch.save(payload, path)
    with pytest.raises(
        ValueError, match="the run used schedule_unit='epoch', now schedule_unit='step'"
    ):
        fit(tiny(tmp_path / "run", epochs=2, schedule_unit="step"), resume=path)
    _, record = fit(tiny(tmp_path / "run", epochs=2), resume=path)
    assert record["epoch"] == 2 and record["lr"] == pytest.approx(5e-3, rel=1e-12)  # per epoch


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schedule_unit": "batch"}, "schedule_unit: unknown value 'batch'; valid: epoch, step"),
        ({"warmup_steps": -1}, "warmup_steps: must be >= 0, got -1"),
        ({"warmup_steps": 5}, "warmup_steps: needs scheduler=cosine and schedule_unit=step"),
        (
            {"warmup_steps": 5, "schedule_unit": "step", "scheduler": "step"},
            "warmup_steps: needs scheduler=cosine",
        ),
        ({"lr_min": 0.1, "lr": 0.01}, r"lr_min: must be a finite number in \[0, lr=0.01\]"),
        ({"lr_min": -1e-3}, "lr_min: must be a finite number in"),
        ({"lr_min": float("nan")}, "lr_min: must be a finite number in"),
        ({"lr_min": 1e-5, "scheduler": "none"}, "lr_min: only a cosine schedule has a floor"),
    ],
)
def test_bad_schedule_values_are_one_line_errors(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(change)
    assert "\n" not in str(info.value)


def test_warmup_longer_than_the_run_is_refused(tmp_path):
    cfg = config_from_dict(tiny(tmp_path / "run", epochs=2, schedule_unit="step", warmup_steps=12))
    data = build_dataset(cfg.data, cfg.seed)
    with pytest.raises(ConfigError, match=r"warmup_steps: must be below the run's 12 optimizer"):
        Trainer(cfg, data.train, data.val, progress=False)
    with pytest.raises(ValueError, match="warmup_steps: must be in"):
        WarmupCosineLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), 3, 3)


def test_cli_schedule_flags(tmp_path, capsys):
    base = ["train", "--no-progress", "--model", "LipMLP", "--data", "toy-shift", "--device", "cpu"]
    base += ["--epochs", "2", "--batch-size", "4", "--set", "model.kwargs={width: 8, depth: 1}"]
    base += ["--set", "data.kwargs={n_train: 24, n_val: 6, grid: 8}"]
    bad = [
        (["--schedule-unit", "batch"], "schedule_unit: unknown value 'batch'; valid: epoch, step"),
        (["--warmup-steps", "abc"], "warmup_steps: expected an integer, got 'abc'"),
        (["--schedule-unit", "step", "--warmup-steps", "12"], "warmup_steps: must be below"),
        (["--lr-min", "1"], "lr_min: must be a finite number in"),
        (["--weight-decay", "-1"], "weight_decay: must be a finite number >= 0"),
    ]
    for i, (flags, message) in enumerate(bad):
        out = tmp_path / f"bad{i}"
        assert main([*base, "--out", str(out), *flags]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert not out.exists()
    out = tmp_path / "good"
    flags = ["--schedule-unit", "step", "--warmup-steps", "3", "--lr-min", "1e-4"]
    assert main([*base, "--out", str(out), "--weight-decay", "0", *flags]) == 0
    cfg = load_checkpoint(out / "last.pt").config
    assert (cfg["schedule_unit"], cfg["warmup_steps"], cfg["lr_min"], cfg["weight_decay"]) == (
        "step",
        3,
        1e-4,
        0.0,
    )
