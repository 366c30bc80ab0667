import json
import math
import signal
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset
from trainfixtures import ENV, ROOT, WORKER, tiny_config

from liponet.cli import main
from liponet.train import (
    ConfigError,
    NonFiniteLossError,
    Trainer,
    apply_overrides,
    build_dataset,
    config_from_dict,
    load_checkpoint,
    load_model,
)


def run_in_process(cfg_dict, resume=None, callbacks=()):
    cfg = config_from_dict(cfg_dict)
    data = build_dataset(cfg.data, cfg.seed)
    trainer = Trainer(cfg, data.train, data.val, callbacks=callbacks, progress=False)
    record = trainer.fit(resume_from=resume)
    return trainer, record


def state(path):
    return load_checkpoint(path).model_state


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs: must be >= 1, got 0"),
        ({"lr": -1.0}, "lr: must be a finite positive number"),
        ({"epochs": "two"}, "epochs: expected an integer, got 'two'"),
        ({"bf16": "yes"}, "bf16: expected true or false"),
        ({"optimizer": "lbfgs"}, "optimizer: unknown value 'lbfgs'; valid: adam, adamw, sgd"),
        ({"model": {"name": "fn0"}}, "model.name: unknown value 'fn0'; valid: .*LipMLP"),
        ({"data": {"name": "nope"}}, "data.name: unknown value 'nope'; valid: .*toy-shift"),
        ({"monitor": "acc"}, "monitor: unknown value 'acc'; valid: val_loss, val_rmse"),
        ({"epoch": 3}, "unknown config key 'epoch'; valid: model, data, epochs"),
        ({"model": {"nme": "x"}}, "unknown config key 'model.nme'; valid: model.name"),
        ({"model": 3}, "model: expected a table"),
    ],
)
def test_bad_config_values_are_one_line_errors(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        config_from_dict(change)
    assert "\n" not in str(info.value)


def test_overrides_parse_values():
    data = apply_overrides({}, ["lr=1e-3", "bf16=false", "model.kwargs.modes=[4, 4]", "out_dir=x"])
    assert data == {
        "lr": 1e-3,
        "bf16": False,
        "model": {"kwargs": {"modes": [4, 4]}},
        "out_dir": "x",
    }
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["lr"])


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = [\n")
    cases = [
        (["train", "--model", "fno"], "unknown value 'fno'; valid:"),
        (
            ["train", "--data", "nope"],
            "data.name: unknown value 'nope'; valid: pdebench, pdebench-stream, toy-reaction, "
            "toy-shift, well",
        ),
        (["train", "--set", "batch_size=0"], "batch_size: must be >= 1"),
        (["train", "--config", str(bad)], "bad.toml"),
        (["train", "--config", str(tmp_path / "none.yaml")], "does not exist"),
        (
            [
                "train",
                "--resume",
                str(tmp_path / "none.pt"),
                "--set",
                "model.kwargs={in_features: 32, out_features: 32}",  # toy-shift's grid
                "--out",
                str(tmp_path / "o"),
            ],
            "none.pt does not exist",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_cli_trains_from_yaml_and_toml(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", epochs=1)
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert (
        main(["train", "--config", str(tmp_path / "c.yaml"), "--no-progress", "--set", "epochs=2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "L_certified" in out
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert ckpt.config["model"]["name"] == "LipMLP" and not model.training
    toml = tmp_path / "c.toml"
    toml.write_text(
        'epochs = 1\nout_dir = "%s"\n[model]\nname = "MLP"\n[model.kwargs]\n'
        "in_features = 8\nout_features = 8\nwidth = 4\n[data.kwargs]\ngrid = 8\n"
        "n_train = 4\nn_val = 2\n" % (tmp_path / "run2")
    )
    assert main(["train", "--config", str(toml), "--no-progress", "--device", "cpu"]) == 0


# ----------------------------------------------------------------------------- trainer


def test_log_checkpoints_and_certified_bound(tmp_path):
    trainer, record = run_in_process(tiny_config(tmp_path))
    assert record["epoch"] == 2 and record["step"] == 12  # 24 samples / batch 4, two epochs
    assert 0 < record["lipschitz_bound"] <= 1 + 1e-5
    assert record["lipschitz_bound"] == trainer.model.lipschitz_bound()
    for key in ("val_rmse", "val_nrmse", "val_max", "val_frmse_low", "train_loss", "lr"):
        assert math.isfinite(record[key]), key
    records = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    best_epoch = min(records, key=lambda r: r["val_nrmse"])["epoch"]
    assert load_checkpoint(tmp_path / "best.pt").epoch == best_epoch
    assert load_checkpoint(tmp_path / "last.pt").epoch == 2
    assert records[1]["lr"] < records[0]["lr"]  # cosine schedule stepped per epoch


def test_training_is_deterministic(tmp_path):
    run_in_process(tiny_config(tmp_path / "a"))
    run_in_process(tiny_config(tmp_path / "b"))
    a, b = state(tmp_path / "a" / "last.pt"), state(tmp_path / "b" / "last.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_nan_loss_stops_with_epoch_and_step(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path))
    x = torch.randn(8, 1, 8)
    y = x.clone()
    y[5] = float("nan")  # the second batch of 4 contains a NaN target (order is shuffled)
    data = TensorDataset(x, y)
    trainer = Trainer(cfg, data, TensorDataset(x[:2], x[:2]), progress=False)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d .*loss nan"):
        trainer.fit()


def test_resume_from_epoch_end_matches_uninterrupted(tmp_path):
    run_in_process(tiny_config(tmp_path / "full", epochs=3))
    with pytest.raises(KeyboardInterrupt):
        run_in_process(tiny_config(tmp_path / "part", epochs=3), callbacks=[_stop_after_epoch(1)])
    assert load_checkpoint(tmp_path / "part" / "last.pt").epoch == 1
    _, record = run_in_process(
        tiny_config(tmp_path / "part", epochs=3), resume=tmp_path / "part" / "last.pt"
    )
    assert record["epoch"] == 3
    a, b = state(tmp_path / "full" / "last.pt"), state(tmp_path / "part" / "last.pt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def _stop_after_epoch(n):
    def callback(event, record):
        if event == "epoch" and record["epoch"] == n:
            raise KeyboardInterrupt

    return callback


def test_sigkill_mid_epoch_then_resume_gives_identical_weights(tmp_path):
    # 24 samples, batch 4 -> 6 steps per epoch; mid-epoch checkpoints every 2 steps.
    ref = tiny_config(tmp_path / "ref", epochs=3, save_every_steps=2)
    run_in_process(ref)
    killed = tiny_config(tmp_path / "killed", epochs=3, save_every_steps=2)
    (tmp_path / "killed.json").write_text(json.dumps(killed))
    with subprocess.Popen(
        [sys.executable, str(WORKER), str(tmp_path / "killed.json"), "--pause-step", "9"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=ROOT,
    ) as proc:
        try:
            line = proc.stdout.readline()
            assert line.strip() == "PAUSED", proc.stderr.read()
            proc.send_signal(signal.SIGKILL)  # killed in epoch 2 after step 9 (last save: step 8)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            proc.kill()
    last = load_checkpoint(tmp_path / "killed" / "last.pt")
    assert (last.epoch, last.extra["step_in_epoch"], last.extra["global_step"]) == (1, 2, 8)
    _, record = run_in_process(killed, resume=tmp_path / "killed" / "last.pt")
    assert record["step"] == 18
    a, b = state(tmp_path / "ref" / "last.pt"), state(tmp_path / "killed" / "last.pt")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    ref_log = (tmp_path / "ref" / "log.jsonl").read_text().splitlines()
    new_log = (tmp_path / "killed" / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["train_loss"] for x in new_log] == [
        json.loads(x)["train_loss"] for x in ref_log
    ]
