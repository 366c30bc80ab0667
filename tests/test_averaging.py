"""Weight averaging (``TrainConfig.ema``): the average, its checkpoints, resume, certificate."""

import copy

import pytest
import torch
import yaml
from certcheck import check_all
from torch.utils.data import TensorDataset
from trainfixtures import tiny_config

from liponet.bench import MODEL_TRAINING, MODELS, PRESETS, train_config, training_preset
from liponet.cli import main
from liponet.train import (
    ConfigError,
    Trainer,
    build_dataset,
    config_from_dict,
    load_checkpoint,
    load_model,
)
from liponet.train.averaging import WeightAverage, ema_weight


def test_bad_decay_is_a_one_line_error():
    for bad in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ConfigError, match=r"ema: the averaging decay must be in \[0, 1\)"):
            config_from_dict({"ema": bad})
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(torch.nn.Linear(1, 1), 0.0)


def test_average_follows_the_recurrence_and_swaps_back_bitwise():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    avg = WeightAverage(model, decay=0.9)
    iterates = []
    for _ in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        avg.update()
        iterates.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert avg.updates == 30
    expected = _weighted_mean(iterates, 0.9)
    training = {n: p.detach().clone() for n, p in model.named_parameters()}
    with avg.applied() as held:
        for n, p in model.named_parameters():
            torch.testing.assert_close(p.detach().double(), expected[n], rtol=1e-5, atol=1e-6)
            assert torch.equal(held[n], training[n])
        with avg.applied() as again:  # reentrant
            assert again is held
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), training[n])  # bit for bit


def _weighted_mean(iterates, decay):
    """``sum_k d^(t-k) p_k / sum_k d^(t-k)``, computed directly in float64."""
    t = len(iterates)
    weights = [decay ** (t - 1 - k) for k in range(t)]
    return {
        n: sum(w * it[n].double() for w, it in zip(weights, iterates, strict=True)) / sum(weights)
        for n in iterates[0]
    }


def test_first_update_replaces_the_starting_weights():
    model = torch.nn.Linear(2, 2)
    avg = WeightAverage(model, decay=0.999)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    trained = model.weight.detach().clone()
    avg.update()
    with avg.applied():  # the average is the first iterate itself, not 0.999 of the start
        assert torch.equal(model.weight.detach(), trained)
    assert not torch.equal(start, trained)
    assert ema_weight(0.999, 0) == 1.0


def _lipfno_run(tmp_path, **changes):
    """A tiny 2-D LipFNO (convex-potential blocks, clip, k = 3) on smooth random fields."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 8, 8, generator=gen)
    y = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # a smooth, 1-Lipschitz target
    cfg = {
        "model": {
            "name": "LipFNO",
            "kwargs": {
                "in_channels": 1,
                "out_channels": 1,
                "modes": [3, 3],
                "width": 4,
                "depth": 2,
                "block": "cpl",
                "normalization": "clip",
                "k": 3.0,
            },
        },
        "epochs": 2,
        "batch_size": 4,
        "lr": 3e-2,
        "ema": 0.8,
        "device": "cpu",
        "out_dir": str(tmp_path),
        **changes,
    }
    config = config_from_dict(cfg)
    return Trainer(config, TensorDataset(x, y), TensorDataset(x[:6], y[:6]), progress=False)


def test_trained_model_is_the_average_and_its_certificate_holds(tmp_path):
    trainer = _lipfno_run(tmp_path)
    seen = []  # the training weights after every optimizer step
    trainer.callbacks.append(
        lambda event, record: (
            seen.append({n: p.detach().clone() for n, p in trainer.model.named_parameters()})
            if event == "step"
            else None
        )
    )
    record = trainer.fit()
    assert len(seen) == 12
    expected = _weighted_mean(seen, 0.8)
    model = trainer.model
    for n, p in model.named_parameters():  # the model ends on the average, not the last iterate
        torch.testing.assert_close(p.detach().double(), expected[n], rtol=1e-5, atol=1e-6)
    assert any(not torch.equal(seen[-1][n], p.detach()) for n, p in model.named_parameters())
    # the record certifies and validates the averaged model; the checkpoint holds it
    assert record["lipschitz_bound"] == model.lipschitz_bound()
    last = load_checkpoint(tmp_path / "last.pt")
    for n, p in model.named_parameters():
        assert torch.equal(last.model_state[n], p.detach())
        assert torch.equal(last.extra["ema_training_weights"][n], seen[-1][n])
    assert last.extra["ema_updates"] == 12
    # the averaged model's certificate: exact Jacobian norms and attacks stay below it
    model.eval()
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    check_all(lambda: copy.deepcopy(model), x, norm="function")


def _states(path):
    ckpt = load_checkpoint(path)
    return ckpt.model_state, ckpt.extra["ema_training_weights"], ckpt.extra["ema_updates"]


def _assert_same(a, b):
    for part_a, part_b in zip(a[:2], b[:2], strict=True):
        for key in part_a:
            torch.testing.assert_close(part_b[key], part_a[key], rtol=0, atol=0, msg=key)
    assert a[2] == b[2]


def _stop_at(event_name, n):
    def callback(event, record):
        if event == event_name and record["epoch" if event == "epoch" else "step"] == n:
            raise KeyboardInterrupt

    return callback


@pytest.mark.parametrize(
    ("where", "changes"),
    [(("epoch", 1), {}), (("step", 9), {"save_every_steps": 2})],  # step 8 = mid-epoch 2
)
def test_resume_with_ema_is_bit_identical(tmp_path, where, changes):
    full = tiny_config(tmp_path / "full", epochs=3, ema=0.7, **changes)
    cfg = config_from_dict(full)
    data = build_dataset(cfg.data, cfg.seed)
    Trainer(cfg, data.train, data.val, progress=False).fit()
    part = config_from_dict(tiny_config(tmp_path / "part", epochs=3, ema=0.7, **changes))
    with pytest.raises(KeyboardInterrupt):
        Trainer(part, data.train, data.val, progress=False, callbacks=[_stop_at(*where)]).fit()
    saved = load_checkpoint(tmp_path / "part" / "last.pt")
    expected = (1, 0) if where[0] == "epoch" else (1, 2)
    assert (saved.epoch, saved.extra["step_in_epoch"]) == expected
    Trainer(part, data.train, data.val, progress=False).fit(
        resume_from=tmp_path / "part" / "last.pt"
    )
    _assert_same(_states(tmp_path / "full" / "last.pt"), _states(tmp_path / "part" / "last.pt"))


def test_resume_refuses_another_decay(tmp_path):
    cfg = config_from_dict(tiny_config(tmp_path, epochs=1, ema=0.7))
    data = build_dataset(cfg.data, cfg.seed)
    Trainer(cfg, data.train, data.val, progress=False).fit()
    other = config_from_dict(tiny_config(tmp_path, epochs=2, ema=0.0))
    with pytest.raises(ValueError, match=r"the run used ema=0\.7, now ema=0\.0"):
        Trainer(other, data.train, data.val, progress=False).fit(resume_from=tmp_path / "last.pt")


def test_bench_ema_rows_train_their_network_with_averaging():
    for name in ("LipFNO-m8-lr-tr-ema", "FNO-lr2e-2-tr-ema"):
        assert MODEL_TRAINING[name]["ema"] > 0
        base = name.removesuffix("-ema")
        assert MODELS[name] is MODELS[base]
        assert {**MODEL_TRAINING[base], "ema": MODEL_TRAINING[name]["ema"]} == MODEL_TRAINING[name]

    class Data:  # what train_config reads
        x_train = torch.zeros(64, 1, 8, 8)

        class task:
            name = "darcy_2d"

    preset = training_preset(PRESETS["medium"], "LipFNO-m8-lr-tr-ema")
    assert (
        train_config(Data, preset, 0, "unused", "cpu").ema
        == MODEL_TRAINING["LipFNO-m8-lr-tr-ema"]["ema"]
    )
    assert train_config(Data, PRESETS["medium"], 0, "unused", "cpu").ema == 0.0


def test_cli_train_with_ema_deploys_the_average(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", epochs=2)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    argv = ["train", "--config", str(tmp_path / "c.yaml"), "--no-progress", "--set", "ema=0.9"]
    assert main(argv) == 0
    capsys.readouterr()
    model, ckpt = load_model(tmp_path / "run" / "last.pt")
    assert ckpt.config["ema"] == 0.9 and ckpt.extra["ema_updates"] == 12
    training = ckpt.extra["ema_training_weights"]
    for name, p in model.named_parameters():  # the loaded model is the average
        assert torch.equal(p.detach(), ckpt.model_state[name])
    assert any(not torch.equal(training[n], ckpt.model_state[n]) for n in training)
    assert main([*argv[:-1], "ema=1.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "ema: the averaging decay must be in [0, 1)" in err and len(err.splitlines()) == 1
