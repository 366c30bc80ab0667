import re

import pytest
import torch

from liponet.cli import main
from liponet.data import generate
from liponet.train import build_dataset, config_from_dict, load_model


def test_demo_small_run_prints_metrics_and_covering_bounds(tmp_path, capsys):
    argv = [
        "demo",
        "--out",
        str(tmp_path),
        "--samples",
        "40",
        "--nx",
        "32",
        "--epochs",
        "1",
        "--width",
        "8",
        "--modes",
        "8",
        "--calib-samples",
        "3000",
        "--no-progress",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("nRMSE", "cRMSE", "bRMSE", "fRMSE low", "Max (true max over the set)"):
        assert name in out
    assert "label: certified" in out
    rows = re.findall(r"^\s+(\d+)\s+(\S+e[-+]\d+)\s+(\S+e[-+]\d+)\s+(\S+)$", out, re.M)
    assert len(rows) == 4  # 10% of 40 samples = PDEBench's test split
    for _, observed, bound, _ in rows:
        assert float(observed) <= float(bound)
    assert "coverage: 4/4" in out
    tighter = re.findall(r"^\s+(.+?)\s+(certified|estimated|statistical)\s+(\d+)/(\d+)", out, re.M)
    assert [label for _, label, _, _ in tighter[:3]] == ["certified", "estimated", "statistical"]
    assert tighter[0][2] == tighter[0][3] == "4"  # the certified row covers every test sample
    best = tighter[3:]  # at its best: plain (training, generated), shift-reduced, multi-pair
    assert [name.split(",")[0] for name, _, _, _ in best] == [
        "plain",
        "plain",
        "shift-reduced",
        "multi-pair shift-reduced",
    ]
    assert all(label == "certified" and a == b == "4" for _, label, a, b in best)
    assert "architecture verified: LipFNO commutes with cyclic shifts" in out
    ratios = [float(r) for r in re.findall(r"certified\s+4/4\s+([\d.]+)x", out)]
    assert ratios[-1] <= ratios[-2] <= ratios[-3]  # each lever tightens the bound
    assert "the model is evaluated at the query only" in out
    model, ckpt = load_model(tmp_path / "run" / "last.pt")
    assert ckpt.config["model"]["name"] == "LipFNO"
    assert model.lipschitz_bound() <= 1 + 1e-5


def test_demo_rejects_bad_sizes(capsys):
    assert main(["demo", "--samples", "5"]) == 2
    assert "--samples must be >= 20" in capsys.readouterr().err


def test_pdebench_dataset_in_the_trainer(tmp_path, capsys):
    path = generate("advection", tmp_path / "adv.hdf5", n_samples=30, nx=16, nt=3)
    kwargs = "{in_channels: 1, out_channels: 1, modes: [4], width: 4, depth: 1}"
    argv = [
        "train",
        "--data",
        "pdebench",
        "--data-path",
        str(path),
        "--model",
        "LipFNO",
        "--set",
        f"model.kwargs={kwargs}",
        "--set",
        "data.kwargs={task: step, t_out: -1}",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--no-progress",
        "--out",
        str(tmp_path / "run"),
        "--set",
        "monitor=val_nrmse",
    ]
    assert main(argv) == 0
    assert "epoch 1/1" in capsys.readouterr().out
    bundle = build_dataset(config_from_dict({"data": {"name": "pdebench", "path": str(path)}}).data)
    assert (len(bundle.train), len(bundle.val)) == (25, 2)  # 27 after the 10% test, 10% val
    with pytest.raises(ValueError, match="needs the HDF5 file"):
        build_dataset(config_from_dict({"data": {"name": "pdebench"}}).data)
    with pytest.raises(ValueError, match=r"data\.kwargs"):
        build_dataset(
            config_from_dict(
                {"data": {"name": "pdebench", "path": str(path), "kwargs": {"bogus": 1}}}
            ).data
        )


def test_streaming_dataset_in_the_trainer_resumes_exactly(tmp_path):
    from liponet.train import Trainer, load_checkpoint

    path = generate("advection", tmp_path / "adv.hdf5", n_samples=40, nx=16, nt=3)

    def cfg(out, epochs):
        return config_from_dict(
            {
                "model": {
                    "name": "LipFNO",
                    "kwargs": {
                        "in_channels": 1,
                        "out_channels": 1,
                        "modes": [4],
                        "width": 4,
                        "depth": 1,
                    },
                },
                "data": {
                    "name": "pdebench-stream",
                    "path": str(path),
                    "kwargs": {"task": "step", "block_size": 4, "buffer_size": 8},
                },
                "epochs": epochs,
                "batch_size": 8,
                "device": "cpu",
                "out_dir": str(out),
            }
        )

    def stop_after_first_epoch(event, record):
        if event == "epoch":
            raise KeyboardInterrupt

    def fit(c, resume=None, callbacks=()):
        data = build_dataset(c.data, c.seed)
        trainer = Trainer(c, data.train, data.val, progress=False, callbacks=callbacks)
        return trainer.fit(resume_from=resume)

    full = fit(cfg(tmp_path / "full", 2))
    assert full["step"] == 2 * 5  # 32 - 10% validation = 29 items -> 4 batches of 8 + 1 of 5
    with pytest.raises(KeyboardInterrupt):
        fit(cfg(tmp_path / "part", 2), callbacks=[stop_after_first_epoch])
    fit(cfg(tmp_path / "part", 2), resume=tmp_path / "part" / "last.pt")
    a = load_checkpoint(tmp_path / "full" / "last.pt").model_state
    b = load_checkpoint(tmp_path / "part" / "last.pt").model_state
    for key in a:
        assert torch.equal(a[key], b[key]), key
