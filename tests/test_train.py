import json
import math
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset
from trainfixtures import ENV, ROOT, WORKER, tiny_config

from liponet.cli import main
from liponet.train import (
    CheckpointError,
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


# ----------------------------------------------------------------------------- warm polar state


def _orthogonal_config(out_dir, **changes):
    """A tiny 1-D orthogonal LipFNO (warm polar factors by default) on toy-shift, lr 1e-3."""
    kwargs = {"in_channels": 1, "out_channels": 1, "modes": [3], "width": 4, "depth": 2}
    kwargs.update(block="fourier", normalization="orthogonal")
    model = {"name": "LipFNO", "kwargs": kwargs}
    return tiny_config(out_dir, model=model, lr=1e-3, epochs=2, save_every_steps=2, **changes)


def _cli(cfg):
    kw, dk = cfg["model"]["kwargs"], cfg["data"]["kwargs"]
    flow = lambda d: "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"  # noqa: E731
    return ["train", "--no-progress", "--model", "LipFNO", "--data", "toy-shift",
            "--epochs", str(cfg["epochs"]), "--batch-size", str(cfg["batch_size"]),
            "--lr", str(cfg["lr"]), "--device", "cpu", "--out", cfg["out_dir"],
            "--set", "monitor=val_nrmse", "--set", "save_every_steps=2",
            "--set", f"model.kwargs={flow(kw)}", "--set", f"data.kwargs={flow(dk)}"]  # fmt: skip


def _stop_at_step(n):
    def callback(event, record):
        if event == "step" and record["step"] == n:
            raise KeyboardInterrupt

    return callback


def _rewrite(path, change):
    """The checkpoint at ``path`` with ``change(model_state)`` applied (written in place)."""
    payload = torch.load(path, weights_only=True)
    change(payload["model"])
    torch.save(payload, path)


def test_orthogonal_lipfno_cli_resume_is_bitwise_with_the_warm_default(tmp_path, capsys):
    # the warm polar basis is model state: resumed mid-epoch through the CLI, the run is
    # bitwise the uninterrupted one; the same checkpoint without it (as written before the warm
    # default) still resumes, but starts exact and so is not
    ref, _ = run_in_process(_orthogonal_config(tmp_path / "ref"))
    warm = [c.warm_polar for c in ref.model.modules() if getattr(c, "warm_polar", None)]
    assert len(warm) == 2 and all(0 < w.warm_calls < w.calls for w in warm)
    with pytest.raises(KeyboardInterrupt):  # stopped after step 9; last.pt holds step 8
        run_in_process(_orthogonal_config(tmp_path / "part"), callbacks=[_stop_at_step(9)])
    shutil.copytree(tmp_path / "part", tmp_path / "old")
    saved = load_checkpoint(tmp_path / "part" / "last.pt")
    keys = [k for k in saved.model_state if k.endswith("warm_polar._extra_state")]
    assert len(keys) == 2 and all(saved.model_state[k]["v0"] is not None for k in keys)
    _rewrite(tmp_path / "old" / "last.pt", lambda s: [s.pop(k) for k in keys])
    for name in ("part", "old"):
        cfg = _orthogonal_config(tmp_path / name)
        code = main([*_cli(cfg), "--resume", str(tmp_path / name / "last.pt")])
        assert code == 0, capsys.readouterr().err
    a, b = state(tmp_path / "ref" / "last.pt"), state(tmp_path / "part" / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        if key in keys:  # the extra state: plain data and the basis
            assert {k: v for k, v in a[key].items() if k != "v0"} == {
                k: v for k, v in b[key].items() if k != "v0"
            }
            assert torch.equal(a[key]["v0"], b[key]["v0"]), key
        else:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)
    old = state(tmp_path / "old" / "last.pt")
    assert not torch.equal(_first_weight(old), _first_weight(a))
    model, _ = load_model(tmp_path / "old" / "last.pt")  # an old checkpoint loads
    assert model is not None


def _first_weight(state):
    return next(v for k, v in state.items() if k.endswith("conv.weight"))


def test_malformed_warm_state_in_a_checkpoint_is_refused(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run_in_process(_orthogonal_config(tmp_path / "run"), callbacks=[_stop_at_step(3)])
    path = tmp_path / "run" / "last.pt"

    def non_unitary(model_state):
        key = next(k for k in model_state if k.endswith("warm_polar._extra_state"))
        model_state[key]["v0"] = 2 * model_state[key]["v0"]

    _rewrite(path, non_unitary)
    with pytest.raises(CheckpointError, match=r"last\.pt: .*warm_polar\._extra_state.*unitary"):
        load_model(path)
    code = main([*_cli(_orthogonal_config(tmp_path / "run")), "--resume", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "last.pt" in err and "not unitary" in err, err
