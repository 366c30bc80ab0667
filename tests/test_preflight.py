"""Preflight: user errors found before any work, as one line, exit code 2, nothing written.

Covers the issue's items 4-6: lying metadata, an unreadable data file, a read-only or full
``--out``, a NaN weight, ``certify --plot`` into a read-only folder, an absurd ``--lr``, a model
whose input size does not match the grid, and a checkpoint whose config claims a model its
weights are not (refused before the claimed model is allocated).
"""

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import liponet.models
import liponet.train.runfolder as runfolder_module
from liponet.cli import main
from liponet.data import PDEBenchDataset, SizeMismatchError, generate
from liponet.models import build_model
from liponet.train import Trainer, build_dataset, config_from_dict, save_checkpoint
from liponet.train.checkpoint import CheckpointError, check_state_shapes
from liponet.train.config import ConfigError

FNO = {"in_channels": 1, "out_channels": 1, "modes": [4], "width": 4, "depth": 1}


@pytest.fixture(scope="module")
def adv(tmp_path_factory):
    return generate(
        "advection", tmp_path_factory.mktemp("d") / "adv.hdf5", n_samples=30, nx=16, nt=3
    )


def train_args(data, out, *extra):
    return ["train", "--no-progress", "--model", "LipFNO", "--data", "pdebench",
            "--data-path", str(data), "--epochs", "1", "--batch-size", "4", "--device", "cpu",
            "--out", str(out), "--set", "model.kwargs={in_channels: 1, out_channels: 1, "
            "modes: [4], width: 4, depth: 1}", *extra]  # fmt: skip


def one_line(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def read_only_folder(tmp_path):
    """A folder this process cannot write in (root ignores permission bits: use sysfs)."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    folder = Path("/sys/kernel")
    if not folder.is_dir() or (os.access(folder, os.W_OK) and _can_create(folder)):
        pytest.skip("no read-only folder available to root here")
    return folder


def _can_create(folder):
    try:
        (folder / "liponet-probe").touch()
    except OSError:
        return False
    (folder / "liponet-probe").unlink()
    return True


def unreadable_file(tmp_path):
    """A file this process cannot read (root: a write-only sysfs attribute)."""
    if os.geteuid() != 0:
        file = tmp_path / "secret.hdf5"
        generate("advection", file, n_samples=10, nx=8, nt=3)
        file.chmod(0)
        return file
    for candidate in Path("/sys/devices").glob("pci*/*/rescan"):
        try:
            candidate.open("rb").close()
        except PermissionError:
            return candidate
    pytest.skip("no unreadable file available to root here")


def lying_file(path, chunked):
    with h5py.File(path, "w") as f:
        if chunked:
            ds = f.create_dataset("tensor", shape=(1000, 21, 64), dtype="f4", chunks=(1, 21, 64),
                                  compression="gzip")  # fmt: skip
            ds[:10] = 1.0
        else:
            f.create_dataset("tensor", shape=(10**7, 201, 1024), dtype="f4")
        nx, nt = f["tensor"].shape[2], f["tensor"].shape[1]
        f["x-coordinate"] = np.linspace(0, 1, nx, dtype="f4")
        f["t-coordinate"] = np.linspace(0, 1, nt + 1, dtype="f4")
    return path


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("chunked", [False, True])
def test_lying_metadata_is_refused_by_reader_train_and_certify(tmp_path, capsys, chunked):
    lie = lying_file(tmp_path / "lie.hdf5", chunked)
    assert lie.stat().st_size < 100_000
    with pytest.raises(SizeMismatchError, match=r"lie\.hdf5 \[key 'tensor'\]: declares shape"):
        PDEBenchDataset(lie)
    assert main(train_args(lie, tmp_path / "out")) == 2
    one_line(capsys, "lie.hdf5 [key 'tensor']", "declares shape", "fill values")
    assert not (tmp_path / "out").exists()
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("LipFNO", **FNO),
                           config={"model": {"name": "LipFNO", "kwargs": FNO}})  # fmt: skip
    assert main(["certify", str(ckpt), str(lie), "--plot", str(tmp_path / "p.png")]) == 2
    one_line(capsys, "lie.hdf5 [key 'tensor']", "declares shape")
    assert not (tmp_path / "p.png").exists()


def test_unreadable_data_file(tmp_path, capsys):
    file = unreadable_file(tmp_path)
    assert main(train_args(file, tmp_path / "out")) == 2
    one_line(capsys, str(file), "cannot be read")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- out folder


def test_read_only_out_folder(tmp_path, capsys, adv):
    folder = read_only_folder(tmp_path)
    for out in (folder, folder / "run"):
        assert main(train_args(adv, out)) == 2
        one_line(capsys, f"out_dir {out}", "choose a writable folder")
        assert not (folder / "run").exists() and not (folder / ".lock").exists()


def test_full_out_folder_is_found_before_training(tmp_path, capsys, adv, monkeypatch):
    import shutil

    real = shutil.disk_usage

    def nearly_full(path):
        return real(path)._replace(free=4096)

    monkeypatch.setattr(runfolder_module.shutil, "disk_usage", nearly_full)
    steps = []
    monkeypatch.setattr(
        "liponet.train.trainer.Trainer._train_step",
        lambda *a, **k: steps.append(1) or 0.0,
    )
    assert main(train_args(adv, tmp_path / "out")) == 2
    one_line(capsys, f"out_dir {tmp_path / 'out'}: 0.0 MiB free", "needs about")
    assert steps == [] and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize("extra", [[], ["--set", "grad_clip=0"]])
def test_absurd_learning_rate(tmp_path, capsys, adv, extra):
    assert main(train_args(adv, tmp_path / "out", "--lr", "1e30", *extra)) == 2
    one_line(capsys, "lr: 1e+30 is not a usable learning rate")
    assert not (tmp_path / "out").exists()


def test_model_input_size_must_match_the_grid(tmp_path, capsys, adv):
    args = ["train", "--no-progress", "--model", "LipMLP", "--data", "pdebench",
            "--data-path", str(adv), "--epochs", "1", "--batch-size", "4", "--device", "cpu",
            "--out", str(tmp_path / "out"),
            "--set", "model.kwargs={in_features: 32, out_features: 32}"]  # fmt: skip
    assert main(args) == 2  # the CLI compares the sizes with the data before building
    one_line(capsys, "model.kwargs.in_features: 32 contradicts the data", "shaped (1, 16)")
    assert not (tmp_path / "out").exists()
    # the Trainer's own check (one forward) for what reaches it: a library caller's config
    cfg = config_from_dict({
        "model": {"name": "LipMLP", "kwargs": {"in_features": 32, "out_features": 32}},
        "data": {"name": "pdebench", "path": str(adv)}, "epochs": 1, "batch_size": 4,
        "device": "cpu", "out_dir": str(tmp_path / "lib"),
    })  # fmt: skip
    data = build_dataset(cfg.data)
    with pytest.raises(ConfigError, match=r"does not accept the data's inputs, shaped \(1, 16\)"):
        Trainer(cfg, data.train, data.val, progress=False).fit()
    assert not (tmp_path / "lib").exists()


# ----------------------------------------------------------------------------- checkpoints


def test_nan_weight_is_refused_by_name(tmp_path, capsys, adv):
    model = build_model("LipFNO", **FNO)
    name = next(k for k, v in model.state_dict().items() if v.is_floating_point())
    with torch.no_grad():
        model.state_dict()[name].view(-1)[0] = float("nan")
    ckpt = save_checkpoint(tmp_path / "nan.pt", model,
                           config={"model": {"name": "LipFNO", "kwargs": FNO}})  # fmt: skip
    assert main(["certify", str(ckpt), str(adv), "--plot", str(tmp_path / "p.png")]) == 2
    one_line(capsys, "nan.pt", f"weight {name!r} has 1 NaN/inf value")
    assert not (tmp_path / "p.png").exists()


def test_checkpoint_claiming_a_huge_model_is_refused_before_allocating(tmp_path, capsys, adv,
                                                                       monkeypatch):  # fmt: skip
    small = {**FNO, "width": 8}
    huge = {**FNO, "width": 4096}
    ckpt = save_checkpoint(tmp_path / "claim.pt", build_model("LipFNO", **small),
                           config={"model": {"name": "LipFNO", "kwargs": huge}})  # fmt: skip
    assert ckpt.stat().st_size < 100_000
    devices = []
    real = liponet.models.build_model

    def spy(name, **kwargs):
        devices.append((kwargs.get("width"), str(torch.empty(0).device)))
        return real(name, **kwargs)

    monkeypatch.setattr(liponet.models, "build_model", spy)
    assert main(["certify", str(ckpt), str(adv), "--plot", ""]) == 2
    one_line(capsys, "claim.pt", "does not fit the weights", "the config implies")
    # only a shape-only (meta) model of the claimed size was ever built
    assert devices == [(4096, "meta")]


ONETS = {
    "LipDeepONet": {"n_sensors": 16, "domain": [[0.0], [1.0]], "harmonics": 2, "width": 8},
    "DeepONet": {"n_sensors": 16, "domain": [[0.0, 0.0], [1.0, 2.0]], "width": 8,
                 "output_scale": "auxiliary"},
    "LipLocalDeepONet": {"grid": [8, 8], "domain": [[0.0, 0.0], [1.0, 1.0]], "in_channels": 2,
                         "width": 8, "n_basis": 4},
    "LocalDeepONet": {"grid": [16], "domain": [[0.0], [1.0]], "width": 8, "n_basis": 4},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(ONETS))
def test_deeponets_get_the_meta_device_shape_check(tmp_path, name):
    # Their constructors used to read tensor values (the domain's box and ball) from buffers
    # created on the default device: on the meta device that raised, and the check was skipped.
    kwargs = ONETS[name]
    with torch.device("meta"):
        shell = build_model(name, **kwargs)
    assert {t.device.type for t in shell.state_dict().values()} == {"meta"}
    state = build_model(name, **kwargs).state_dict()
    assert check_state_shapes(name, kwargs, state, tmp_path / "m.pt")  # checked, not skipped
    wider = build_model(name, **{**kwargs, "width": 16}).state_dict()
    with pytest.raises(CheckpointError, match="does not fit the weights"):
        check_state_shapes(name, kwargs, wider, tmp_path / "m.pt")


def test_certify_plot_into_a_read_only_folder_fails_before_the_work(tmp_path, capsys, adv,
                                                                    monkeypatch):  # fmt: skip
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "m.pt", build_model("LipFNO", **FNO),
                           config={"model": {"name": "LipFNO", "kwargs": FNO}})  # fmt: skip
    loads = []
    monkeypatch.setattr("liponet.train.load_model", lambda *a, **k: loads.append(a))
    plot = read_only_folder(tmp_path) / "bound.png"
    assert main(["certify", str(ckpt), str(adv), "--plot", str(plot)]) == 2
    one_line(capsys, f"--plot {plot}: cannot write in")
    assert loads == []  # nothing loaded or computed


def test_group_file_with_an_unwritten_sample_is_refused(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        for i in range(6):
            group = f.create_group(f"{i:04d}")
            if i == 4:  # declared, never written: would read as zeros
                group.create_dataset("data", shape=(3, 8, 1), dtype="f4")
            else:
                group["data"] = np.ones((3, 8, 1), np.float32)
            group["grid/x"] = np.linspace(0, 1, 8, dtype="f4")
            group["grid/t"] = np.linspace(0, 1, 3, dtype="f4")
    with pytest.raises(SizeMismatchError, match=r"\[key '0004/data'\]: declares shape \(3, 8, 1\)"):
        PDEBenchDataset(path, split="train", val_fraction=0)
