"""Unrolled training (``TrainConfig.unroll``): the loss, the K-frame windows, the Trainer."""

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from trainfixtures import fit_config as _fit
from trainfixtures import tiny_config

from liponet.cli import main
from liponet.data import PDEBenchDataset, PDEBenchStream
from liponet.data.errors import EmptySelectionError
from liponet.train import (
    ConfigError,
    Trainer,
    build_dataset,
    config_from_dict,
    load_checkpoint,
)
from liponet.train.config import SAMPLE_LOSSES
from liponet.train.unroll import curriculum_frames, one_step_view, unrolled_sample_loss

MSE = SAMPLE_LOSSES["mse"]
REL = SAMPLE_LOSSES["rel_l2"]


class _Stepper(torch.nn.Module):
    """A small window -> next frame map with weights: ``conv(window)``, 2 frames of 2 fields."""

    def __init__(self, frames=2, fields=2):
        super().__init__()
        self.conv = torch.nn.Conv1d(frames * fields, fields, 3, padding=1)

    def forward(self, w):
        return torch.tanh(self.conv(w))


def _manual_rollout(model, x, k, fields):
    frames, window = [], x
    for _ in range(k):
        frame = model(window)
        frames.append(frame)
        window = torch.cat([window[:, fields:], frame], 1)
    return frames


# -- the loss -------------------------------------------------------------------------------


def test_one_frame_is_the_one_step_loss_with_the_same_gradient():
    torch.manual_seed(0)
    model = _Stepper()
    x, y = torch.randn(5, 4, 16), torch.randn(5, 2, 16)
    for gradient in ("all", "last"):
        got = unrolled_sample_loss(model, x, y, 1, REL, gradient=gradient)
        want = REL(model(x), y)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        g1 = torch.autograd.grad(got.sum(), list(model.parameters()))
        g2 = torch.autograd.grad(want.sum(), list(model.parameters()))
        for a, b in zip(g1, g2, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_all_is_the_mean_over_the_fed_back_frames_and_last_is_pushforward():
    torch.manual_seed(1)
    model = _Stepper()
    x = torch.randn(3, 4, 16)
    y = torch.randn(3, 3 * 2, 16)  # 3 target frames of 2 fields
    frames = _manual_rollout(model, x, 3, 2)
    want = torch.stack([MSE(f, y[:, 2 * i : 2 * i + 2]) for i, f in enumerate(frames)]).mean(0)
    got = unrolled_sample_loss(model, x, y, 3, MSE)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    g_all = torch.autograd.grad(got.sum(), list(model.parameters()))
    # the gradient goes through the fed-back frames: it differs from per-frame detached losses
    with torch.no_grad():
        inputs = [x, torch.cat([x[:, 2:], frames[0]], 1)]
        inputs.append(torch.cat([inputs[1][:, 2:], frames[1]], 1))
    detached = torch.stack(
        [MSE(model(w), y[:, 2 * i : 2 * i + 2]) for i, w in enumerate(inputs)]
    ).mean(0)
    g_detached = torch.autograd.grad(detached.sum(), list(model.parameters()))
    torch.testing.assert_close(detached, want, rtol=1e-6, atol=1e-7)  # same values
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(g_all, g_detached, strict=True))
    # pushforward: the last frame's loss from the model's own (detached) window
    last = unrolled_sample_loss(model, x, y, 3, MSE, gradient="last")
    torch.testing.assert_close(last, MSE(frames[2], y[:, 4:6]), rtol=1e-6, atol=1e-7)
    g_last = torch.autograd.grad(last.sum(), list(model.parameters()))
    want_last = MSE(model(inputs[2]), y[:, 4:6])
    g_want = torch.autograd.grad(want_last.sum(), list(model.parameters()))
    for a, b in zip(g_last, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_the_exact_map_has_zero_loss_and_a_wrong_one_grows_with_the_frames():
    u0 = torch.randn(4, 1, 16)
    traj = torch.cat([u0.roll(t, -1) for t in range(8)], 1)  # (4, 8 frames, 16)
    exact = lambda w: w[:, -1:].roll(1, -1)  # noqa: E731
    assert unrolled_sample_loss(exact, traj[:, :2], traj[:, 2:6], 4, MSE).max() == 0
    biased = lambda w: w[:, -1:].roll(1, -1) + 0.1  # noqa: E731
    one = unrolled_sample_loss(biased, traj[:, :2], traj[:, 2:6], 1, MSE, target_frames=4)
    four = unrolled_sample_loss(biased, traj[:, :2], traj[:, 2:6], 4, MSE)
    # frame i is off by 0.1 (i + 1): mean of 0.01 (1 + 4 + 9 + 16) / 4
    torch.testing.assert_close(one, torch.full((4,), 0.01), rtol=1e-5, atol=0)
    torch.testing.assert_close(four, torch.full((4,), 0.075), rtol=1e-5, atol=0)


def test_shape_errors_name_the_frames():
    model = _Stepper()
    x = torch.randn(2, 4, 8)
    with pytest.raises(ValueError, match="not 4 frames"):
        unrolled_sample_loss(model, x, torch.randn(2, 6, 8), 4, MSE)
    with pytest.raises(ValueError, match="outputs 2 channels per frame"):
        unrolled_sample_loss(model, x, torch.randn(2, 3, 8), 3, MSE)
    with pytest.raises(ValueError, match=r"frames must be in \[1, 2\]"):
        unrolled_sample_loss(model, x, torch.randn(2, 4, 8), 3, MSE,
                             target_frames=2)  # fmt: skip


def test_curriculum_grows_in_equal_shares():
    assert [curriculum_frames(2, 4, s) for s in range(6)] == [1, 1, 2, 2, 2, 2]
    assert [curriculum_frames(3, 3, s) for s in range(4)] == [1, 2, 3, 3]
    assert curriculum_frames(3, 0, 0) == 3


def test_one_step_view_takes_the_first_frame():
    data = TensorDataset(torch.zeros(3, 2, 8), torch.arange(3 * 4 * 8.0).view(3, 4, 8))
    _, y = one_step_view(data, 2)[1]
    torch.testing.assert_close(y, data[1][1][:2])
    assert one_step_view(data, 1) is data


# -- K-frame windows from files --------------------------------------------------------------


def _write(path, n=10, nt=9, nx=8):
    data = np.random.default_rng(0).standard_normal((n, nt, nx)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = data
        f["x-coordinate"] = np.linspace(0, 1, nx, dtype=np.float32)
        f["t-coordinate"] = (0.01 * np.arange(nt + 1)).astype(np.float32)
    return data


@pytest.mark.parametrize("k", [1, 2, 3])
def test_target_frames_windows_stop_at_the_trajectory_end(tmp_path, k):
    path = tmp_path / "f.h5"
    data = _write(path)
    kw = {"task": "autoregressive", "initial_step": 3, "val_fraction": 0.0}
    every = PDEBenchDataset(path, split="train", windows="all", target_frames=k, **kw)
    per = 9 - 3 - k + 1  # every start whose k targets lie inside the 9 frames
    assert len(every) == 9 * per and every.items_per_sample == per
    X, Y = every.to_tensors()
    assert X.shape == (9 * per, 3, 8) and Y.shape == (9 * per, k, 8)
    for item in (0, per - 1, per + 1, 9 * per - 1):  # first and last windows included
        sample, start = 1 + item // per, item % per
        x, y = every[item]
        np.testing.assert_array_equal(x.numpy(), data[sample, start : start + 3])
        np.testing.assert_array_equal(y.numpy(), data[sample, start + 3 : start + 3 + k])
        np.testing.assert_array_equal(X[item].numpy(), x.numpy())  # in-memory path
        np.testing.assert_array_equal(Y[item].numpy(), y.numpy())
    first = PDEBenchDataset(path, split="train", target_frames=k, **kw)
    x, y = first[0]
    np.testing.assert_array_equal(y.numpy(), data[1, 3 : 3 + k])
    _, Y1 = first.to_tensors()
    np.testing.assert_array_equal(Y1.numpy(), data[1:10, 3 : 3 + k])
    # the streaming path yields the same items (each exactly once)
    stream = PDEBenchStream(path, split="train", windows="all", target_frames=k, seed=0,
                            block_size=4, buffer_size=8, **kw)  # fmt: skip

    def key(a, b):
        return tuple(a.flatten().tolist()), tuple(b.flatten().tolist())

    got = sorted(key(a, b) for a, b in stream)
    want = sorted(key(a, b) for a, b in zip(X, Y, strict=True))
    assert got == want


def test_target_frames_errors(tmp_path):
    path = tmp_path / "f.h5"
    _write(path)
    with pytest.raises(EmptySelectionError, match="initial_step=3 and target_frames=7 need 10"):
        PDEBenchDataset(path, task="autoregressive", initial_step=3, target_frames=7)
    with pytest.raises(ValueError, match="target_frames must be an integer >= 1, got 0"):
        PDEBenchDataset(path, task="autoregressive", initial_step=3, target_frames=0)
    with pytest.raises(ValueError, match="only the autoregressive task"):
        PDEBenchDataset(path, task="step", target_frames=2)


# -- the Trainer -----------------------------------------------------------------------------


def _fno_config(out_dir, k=2, **changes):
    """FNO on toy-shift (1 input frame), ``k`` target frames; 24 windows, batch 4."""
    cfg = tiny_config(out_dir, **changes)
    cfg["model"] = {"name": "FNO", "kwargs": {"in_channels": 1, "out_channels": 1,
                                              "modes": [4], "width": 4, "depth": 1}}  # fmt: skip
    cfg["data"]["kwargs"]["target_frames"] = k
    cfg["unroll"] = k
    return cfg


def _losses(seen):
    def callback(event, record):
        if event == "step":
            seen.append(record["loss"])

    return callback


def test_trainer_unrolled_step_is_the_unrolled_loss(tmp_path):
    cfg = config_from_dict(_fno_config(tmp_path / "a", k=3, loss="rel_l2"))
    data = build_dataset(cfg.data, cfg.seed)
    trainer = Trainer(cfg, data.train, data.val, progress=False)
    x, y = data.train[:4]
    assert y.shape == (4, 3, 8)
    trainer.model.train()
    with torch.no_grad():
        frames = _manual_rollout(trainer.model, x, 3, 1)
        want = torch.stack([REL(f, y[:, i : i + 1]) for i, f in enumerate(frames)]).mean(0)
    got = trainer._train_step(x, y, len(x))
    assert got == pytest.approx(float(want.sum()), rel=1e-6)
    # validation rolls out as many frames as its targets hold (here 3): the rollout's error
    trainer.model.eval()
    with torch.no_grad():
        xv, yv = data.val[:6]
        pred = trainer._predict_frames(xv, yv)
        assert pred.shape == yv.shape
        torch.testing.assert_close(pred[:, :1], trainer.model(xv))


@pytest.mark.parametrize("changes", [{}, {"unroll_gradient": "last", "unroll_curriculum": 7}])
def test_unrolled_resume_mid_epoch_is_bitwise(tmp_path, changes):
    ref_losses, part_losses = [], []
    ref = _fno_config(tmp_path / "ref", k=2, epochs=3, save_every_steps=2, **changes)
    _fit(ref, callbacks=[_losses(ref_losses)])
    part = _fno_config(tmp_path / "part", k=2, epochs=3, save_every_steps=2, **changes)

    def stop(event, record):
        if event == "step" and record["step"] == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # last.pt holds step 8 (mid-epoch 2)
        _fit(part, callbacks=[stop])
    _, record = _fit(part, resume=tmp_path / "part" / "last.pt", callbacks=[_losses(part_losses)])
    assert record["step"] == 18 and part_losses == ref_losses[8:]
    a = load_checkpoint(tmp_path / "ref" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "part" / "last.pt").model_state
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=0, atol=0, msg=key)


def test_gradient_modes_and_curriculum_change_the_training(tmp_path):
    runs = {}
    for name, changes in {
        "all": {},
        "last": {"unroll_gradient": "last"},
        "curriculum": {"unroll_curriculum": 6},
        "one-step": {},
    }.items():
        cfg = _fno_config(tmp_path / name, k=1 if name == "one-step" else 2, epochs=1, **changes)
        seen = []
        _fit(cfg, callbacks=[_losses(seen)])
        runs[name] = seen
    assert runs["curriculum"][:3] == runs["one-step"][:3]  # 1 frame for steps 0-2 of 6
    assert runs["curriculum"][3] != runs["one-step"][3]
    assert runs["all"][0] != runs["last"][0] != runs["one-step"][0]


def test_resume_with_another_unroll_is_refused(tmp_path):
    cfg = _fno_config(tmp_path / "run", k=2, epochs=1)
    _fit(cfg)
    other = _fno_config(tmp_path / "run", k=2, epochs=2, unroll_gradient="last")
    with pytest.raises(ValueError, match="unroll_gradient='all', now unroll_gradient='last'"):
        _fit(other, resume=tmp_path / "run" / "last.pt")


def test_config_errors_name_the_key():
    base = {"model": {"name": "LipMLP"}}
    with pytest.raises(ConfigError, match="unroll: must be >= 1, got 0"):
        config_from_dict({**base, "unroll": 0})
    with pytest.raises(ConfigError, match="unroll_gradient: unknown value 'first'; valid: all"):
        config_from_dict({**base, "unroll": 2, "unroll_gradient": "first"})
    with pytest.raises(ConfigError, match="unroll_curriculum: grows the unrolled frames"):
        config_from_dict({**base, "unroll_curriculum": 10})
    with pytest.raises(ConfigError, match="unroll_curriculum: must be >= 0"):
        config_from_dict({**base, "unroll": 2, "unroll_curriculum": -1})
    with pytest.raises(ConfigError, match="unroll: expected an integer"):
        config_from_dict({**base, "unroll": 2.5})


def test_one_frame_targets_with_unroll_are_refused_with_the_remedy(tmp_path):
    cfg = _fno_config(tmp_path / "run", k=3)
    cfg["data"]["kwargs"]["target_frames"] = 1
    with pytest.raises(ConfigError, match=r"data.kwargs.target_frames=3; liponet train --unroll"):
        _fit(cfg)
    assert not (tmp_path / "run").exists()


def test_cli_unroll_sets_the_target_frames(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", "FNO", "--data", "toy-shift", "--epochs", "1",
                 "--unroll", "2", "--set", "model.kwargs.modes=[4]", "--set",
                 "model.kwargs.width=4", "--set", "data.kwargs.n_train=8", "--set",
                 "data.kwargs.n_val=4", "--set", "data.kwargs.grid=8", "--device", "cpu",
                 "--out", str(out), "--no-progress"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    saved = load_checkpoint(out / "last.pt").config
    assert saved["unroll"] == 2 and saved["data"]["kwargs"]["target_frames"] == 2
    assert saved["model"]["kwargs"]["out_channels"] == 1  # one frame, not the two targets'
    code = main(["train", "--model", "FNO", "--data", "toy-shift", "--unroll", "0",
                 "--out", str(tmp_path / "bad")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "unroll: must be >= 1, got 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
