"""``liponet export``: the deployment file, its JSON sidecar, and refusals that write nothing."""

from __future__ import annotations

import json

import pytest
import torch

from liponet.cli import main
from liponet.models import LipDeepONet, LipFNO
from liponet.train import save_checkpoint

FNO_KWARGS = {
    "in_channels": 1,
    "out_channels": 1,
    "modes": [4, 3],
    "width": 6,
    "depth": 2,
    "normalization": "orthogonal",
}


@pytest.fixture
def fno_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = LipFNO(**FNO_KWARGS)
    config = {"model": {"name": "LipFNO", "kwargs": FNO_KWARGS}}
    path = save_checkpoint(tmp_path / "fno.pt", model, config=config, epoch=2)
    return path, model.eval()


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_pt2_file_and_sidecar(fno_checkpoint, tmp_path, capsys):
    path, model = fno_checkpoint
    out = tmp_path / "fno.pt2"
    assert main(["export", str(path), "--out", str(out), "--grid", "16,12"]) == 0
    assert "certified Lipschitz bound" in capsys.readouterr().out
    card = json.loads((tmp_path / "fno.pt2.json").read_text())
    assert card["format"] == "pt2" and card["model"] == "LipFNO"
    assert card["lipschitz_bound"] == model.lipschitz_bound()
    assert card["inputs"][0]["shape"] == ["batch", 1, 16, 12]
    assert card["normalization"]["weights"] == "orthogonal"
    assert card["checkpoint"]["epoch"] == 2
    assert card["check"]["max_rel_error"] <= 1e-5 and card["check"]["batch_sizes"] == [3, 5, 1]
    loaded = torch.export.load(out).module()
    x = torch.randn(4, 1, 16, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=1e-5, atol=1e-6)
    assert _files(tmp_path) == ["fno.pt", "fno.pt2", "fno.pt2.json"]  # no temporary left


def test_onnx_file_runs_in_onnxruntime(tmp_path, capsys):
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    kwargs = {"n_sensors": 8, "domain": [[0.0], [2.0]], "n_basis": 4, "width": 8, "depth": 2}
    model = LipDeepONet(**kwargs)
    path = save_checkpoint(
        tmp_path / "onet.pt", model, config={"model": {"name": "LipDeepONet", "kwargs": kwargs}}
    )
    out = tmp_path / "onet.onnx"
    assert main(["export", str(path), "--out", str(out)]) == 0
    card = json.loads((tmp_path / "onet.onnx.json").read_text())
    assert card["lipschitz_bound"] == model.eval().lipschitz_bound()
    assert card["domain"] == [[0.0], [2.0]]
    assert [i["shape"] for i in card["inputs"]] == [["batch", 1, 8], ["points", 1]]
    assert card["check"]["checked_with"] == "onnxruntime"
    session = ort.InferenceSession(str(out))
    u, y = torch.randn(3, 1, 8), 2 * torch.rand(11, 1)
    got = session.run(None, {"u": u.numpy(), "coords": y.numpy()})[0]
    with torch.no_grad():
        expected = model(u, y)
    assert float((torch.from_numpy(got) - expected).abs().max()) <= 1e-5 * float(
        expected.abs().max()
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "{d}/m.pt2"], "needs --grid"),
        (["--out", "{d}/m.pt2", "--grid", "16"], "must have 2 size"),
        (["--out", "{d}/m.pt2", "--grid", "6,12"], "too small for modes"),
        (["--out", "{d}/m.pt2", "--grid", "a,b"], "--grid 'a,b'"),
        (["--out", "{d}/m.bin", "--grid", "16,12"], "cannot tell the format"),
        (["--out", "{d}/m.pt2", "--format", "onnx", "--grid", "16,12"], "expected a .onnx file"),
        (["--out", "{d}/missing/m.pt2", "--grid", "16,12"], "does not exist"),
        (["--out", "{d}/fno.pt.pt2", "--grid", "16,12", "--checkpoint-missing"], "does not exist"),
    ],
)
def test_bad_arguments_one_line_exit_2_nothing_written(
    fno_checkpoint, tmp_path, capsys, args, message
):
    path, _ = fno_checkpoint
    args = [a.format(d=tmp_path) for a in args]
    if "--checkpoint-missing" in args:
        args.remove("--checkpoint-missing")
        path = tmp_path / "nope.pt"
    before = _files(tmp_path)
    assert main(["export", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("liponet export: error:") and message in err
    assert _files(tmp_path) == before


def test_existing_files_need_overwrite(fno_checkpoint, tmp_path, capsys):
    path, _ = fno_checkpoint
    (tmp_path / "m.pt2.json").write_text("{}")
    args = ["export", str(path), "--out", str(tmp_path / "m.pt2"), "--grid", "16,12"]
    assert main(args) == 2
    assert "m.pt2.json exists" in capsys.readouterr().err
    assert not (tmp_path / "m.pt2").exists()
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((tmp_path / "m.pt2.json").read_text())["format"] == "pt2"


def test_onnx_without_the_extra_is_a_usage_error(fno_checkpoint, tmp_path, capsys, monkeypatch):
    import liponet.export

    monkeypatch.setattr(liponet.export, "onnx_available", lambda: False)
    path, _ = fno_checkpoint
    args = ["export", str(path), "--out", str(tmp_path / "m.onnx"), "--grid", "16,12"]
    assert main(args) == 2
    assert "pip install 'liponet[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_fourier_grid_comes_from_the_training_data(tmp_path, capsys, monkeypatch):
    """Without --grid a Fourier checkpoint is exported for its training data's grid.

    (The old behaviour, found by a newcomer: exit 2 with the Python API's ``grid=`` message.)
    A checkpoint whose data cannot be read here gets one line naming --grid.
    """
    from liponet.data import generate

    data = generate("burgers", tmp_path / "b.h5", n_samples=30, nx=32, nt=3)
    kwargs = {"in_channels": 1, "out_channels": 1, "modes": [4], "width": 4, "depth": 1}
    torch.manual_seed(0)
    data_config = {"name": "pdebench", "path": data.name, "kwargs": {"reduced_resolution": 2}}
    config = {"model": {"name": "LipFNO", "kwargs": kwargs}, "data": data_config}
    path = save_checkpoint(tmp_path / "m.pt", LipFNO(**kwargs), config=config)
    monkeypatch.chdir(tmp_path)  # the run recorded the path relative to its folder
    assert main(["export", str(path), "--out", str(tmp_path / "m.pt2")]) == 0
    assert "for grid 16 (the training data's grid (pdebench b.h5))" in capsys.readouterr().out
    card = json.loads((tmp_path / "m.pt2.json").read_text())
    assert card["inputs"][0]["shape"] == ["batch", 1, 16]
    monkeypatch.chdir(tmp_path.parent)
    assert main(["export", str(path), "--out", str(tmp_path / "n.pt2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LipFNO needs --grid" in err and "b.h5 cannot be read" in err
    assert not (tmp_path / "n.pt2").exists()
