import os
import pickle
import random

import numpy as np
import pytest
import torch

from liponet.models import LipMLP
from liponet.train import CheckpointError, load_checkpoint, load_model, save_checkpoint
from liponet.train.checkpoint import capture_rng_state, restore_rng_state

CONFIG = {"model": {"name": "LipMLP", "kwargs": {"in_features": 3, "out_features": 2, "width": 8}}}


def _trained(tmp_path):
    torch.manual_seed(0)
    model = LipMLP(3, 2, width=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(2):
        loss = model(torch.randn(4, 3)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_round_trip_restores_everything(tmp_path):
    model, opt, sched = _trained(tmp_path)
    norm = {"mean": torch.tensor([1.0, 2.0]), "std": torch.tensor([3.0, 4.0])}
    path = save_checkpoint(
        tmp_path / "sub" / "c.pt",
        model,
        config=CONFIG,
        optimizer=opt,
        scheduler=sched,
        normalizer_state=norm,
        epoch=5,
        extra={"step": 7},
    )
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary left behind
    loaded, ckpt = load_model(path)
    assert ckpt.epoch == 5 and ckpt.extra == {"step": 7} and ckpt.config == CONFIG
    torch.testing.assert_close(ckpt.normalizer_state["std"], norm["std"])
    x = torch.randn(5, 3)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.lipschitz_bound() == model.lipschitz_bound()
    assert not loaded.training
    opt2 = torch.optim.Adam(loaded.parameters(), lr=1.0)
    opt2.load_state_dict(ckpt.optimizer_state)
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, step_size=1, gamma=0.5)
    sched2.load_state_dict(ckpt.scheduler_state)
    assert sched2.last_epoch == sched.last_epoch == 2


def test_rng_states_round_trip(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)  # noqa: NPY002
    random.seed(3)
    state = capture_rng_state()
    save_checkpoint(tmp_path / "c.pt", LipMLP(3, 2, width=8), config=CONFIG)
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    restore_rng_state(load_checkpoint(tmp_path / "c.pt").rng_state)
    got = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert state["numpy"]["keys"].dtype == torch.int64


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_callable_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    payload = {
        "format": "liponet-checkpoint",
        "version": 1,
        "config": CONFIG,
        "model": {},
        "hook": Evil(),
    }
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: refused"):
        load_checkpoint(path)
    torch.save(
        {"format": "liponet-checkpoint", "version": 1, "config": CONFIG, "model": {}, "fn": print},
        path,
    )
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"model": {}}, "format marker"),
        ([1, 2], "format marker"),
        ({"format": "liponet-checkpoint", "version": 99, "config": {}, "model": {}}, "version 99"),
        ({"format": "liponet-checkpoint", "version": 1, "model": {}}, "lacks config"),
    ],
)
def test_foreign_files_are_refused(tmp_path, payload, match):
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(tmp_path / "x.pt")


def test_not_a_torch_file_and_missing_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"hello")
    with pytest.raises(CheckpointError, match=r"junk.pt: not a torch checkpoint \(expected"):
        load_checkpoint(tmp_path / "junk.pt")
    (tmp_path / "junk.h5").write_text("garbage\n")  # text that the legacy unpickler chokes on
    with pytest.raises(CheckpointError, match=r"junk.h5: not a torch checkpoint"):
        load_checkpoint(tmp_path / "junk.h5")
    (tmp_path / "truncated.pt").write_bytes(b"PK\x03\x04" + b"\0" * 40)  # zip magic, no archive
    with pytest.raises(CheckpointError, match=r"truncated.pt: not a"):
        load_checkpoint(tmp_path / "truncated.pt")
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match=r"pickle.pt"):
        load_checkpoint(tmp_path / "pickle.pt")
    with pytest.raises(FileNotFoundError, match=r"nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_non_plain_config_is_rejected_at_save(tmp_path):
    with pytest.raises(TypeError, match=r"config.fn"):
        save_checkpoint(tmp_path / "c.pt", LipMLP(3, 2), config={**CONFIG, "fn": print})
    assert not list(tmp_path.iterdir())


def test_load_model_errors(tmp_path):
    save_checkpoint(tmp_path / "a.pt", LipMLP(3, 2, width=8), config={"x": 1})
    with pytest.raises(CheckpointError, match="no model entry"):
        load_model(tmp_path / "a.pt")
    save_checkpoint(
        tmp_path / "b.pt", LipMLP(3, 2, width=8), config={"model": {"name": "Nope", "kwargs": {}}}
    )
    with pytest.raises(ValueError, match=r"unknown model 'Nope'; available: .*LipMLP"):
        load_model(tmp_path / "b.pt")
    save_checkpoint(tmp_path / "c.pt", LipMLP(3, 2, width=16), config=CONFIG)
    with pytest.raises(CheckpointError, match=r"does not fit the weights: .* has shape \(16, 3\)"):
        load_model(tmp_path / "c.pt")


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.pt", LipMLP(3, 2, width=8), config=CONFIG, epoch=1)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, LipMLP(3, 2, width=8), config=CONFIG, epoch=2)
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]
