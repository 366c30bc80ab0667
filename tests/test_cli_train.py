"""``liponet train`` takes the model's channel / feature sizes from the data it trains on."""

import pytest

from liponet.cli import main
from liponet.data import generate
from liponet.train import load_checkpoint


@pytest.fixture(scope="module")
def adv(tmp_path_factory):
    return generate(
        "advection", tmp_path_factory.mktemp("d") / "adv.hdf5", n_samples=30, nx=16, nt=5
    )


def args(data, out, model_kwargs):
    # autoregressive, 2 input frames: inputs (2, 16), targets (1, 16) per sample, so in and out
    # differ and a swapped axis or tensor would show
    return ["train", "--no-progress", "--model", "LipFNO", "--data", "pdebench",
            "--data-path", str(data), "--epochs", "1", "--batch-size", "4", "--device", "cpu",
            "--out", str(out), "--set", f"model.kwargs={model_kwargs}",
            "--set", "data.kwargs={task: autoregressive, initial_step: 2}"]  # fmt: skip


def test_channels_come_from_the_data(adv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(adv, out, "{modes: [4], width: 4, depth: 1}")) == 0, capsys.readouterr()
    kwargs = load_checkpoint(out / "last.pt").config["model"]["kwargs"]
    assert (kwargs["in_channels"], kwargs["out_channels"]) == (2, 1)
    # resuming infers the same sizes: the settings match the checkpoint's
    assert main([*args(adv, out, "{modes: [4], width: 4, depth: 1}"), "--epochs", "2",
                 "--resume", str(out / "last.pt")]) == 0  # fmt: skip
    assert load_checkpoint(out / "last.pt").epoch == 2


def test_sizes_that_agree_with_the_data_are_kept(adv, tmp_path, capsys):
    kw = "{in_channels: 2, out_channels: 1, modes: [4], width: 4, depth: 1}"
    assert main(args(adv, tmp_path / "run", kw)) == 0, capsys.readouterr()


@pytest.mark.parametrize(
    ("given", "needle"),
    [
        ("in_channels: 1", "model.kwargs.in_channels: 1 contradicts the data"),
        ("out_channels: 2", "model.kwargs.out_channels: 2 contradicts the data"),
    ],
)
def test_sizes_that_contradict_the_data_are_refused(adv, tmp_path, capsys, given, needle):
    out = tmp_path / "run"
    assert main(args(adv, out, f"{{{given}, modes: [4], width: 4, depth: 1}}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    data_value = "in_channels = 2" if "in_" in given else "out_channels = 1"
    assert needle in err and data_value in err and str(adv) in err, err
    assert not out.exists()  # nothing written


def test_mlp_features_come_from_the_grid(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--no-progress", "--model", "LipMLP", "--data", "toy-shift",
                 "--epochs", "1", "--out", str(out), "--set", "data.kwargs.grid=12",
                 "--set", "data.kwargs.n_train=8", "--set", "data.kwargs.n_val=4",
                 "--batch-size", "4"])  # fmt: skip
    assert code == 0, capsys.readouterr()
    kwargs = load_checkpoint(out / "last.pt").config["model"]["kwargs"]
    assert (kwargs["in_features"], kwargs["out_features"]) == (12, 12)


def test_a_missing_argument_the_data_do_not_determine_is_named(adv, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(adv, out, "{width: 4, depth: 1}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    # named with an example for the file's 16 cells, not as _FNOBase.__init__()'s argument
    assert "model.kwargs.modes: LipFNO needs it" in err and "modes=[9]" in err, err
    assert "_FNOBase" not in err and not out.exists()


def test_spectral_shortcut_size_comes_from_the_grid(adv, tmp_path, capsys):
    out = tmp_path / "run"
    kw = "{modes: [4], width: 4, depth: 1, increment: spectral}"
    assert main(args(adv, out, kw)) == 0, capsys.readouterr()
    kwargs = load_checkpoint(out / "last.pt").config["model"]["kwargs"]
    assert (kwargs["increment"], kwargs["shortcut_size"]) == ("spectral", 16)


def test_spectral_shortcut_runs_on_a_2d_grid_and_a_wrong_size_is_one_line(tmp_path, capsys):
    data = generate("advection_2d", tmp_path / "a2.h5", n_samples=12, nx=8, nt=3)
    base = ["train", "--no-progress", "--model", "LipFNO", "--data", "pdebench",
            "--data-path", str(data), "--epochs", "1", "--batch-size", "4", "--device", "cpu",
            "--set", "data.kwargs={task: autoregressive, initial_step: 1}",
            "--set", "shortcut_init=rollout"]  # fmt: skip
    kw = "model.kwargs={modes: [3, 3], width: 4, depth: 1, increment: spectral}"
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), "--set", kw]) == 0, capsys.readouterr()
    kwargs = load_checkpoint(out / "last.pt").config["model"]["kwargs"]
    assert kwargs["shortcut_size"] == [8, 8]  # the data's grid, one count per axis
    # a size that is not the data's dimension: refused in one line, nothing written
    bad = tmp_path / "bad"
    wrong = kw.replace("}", ", shortcut_size: 8}")
    assert main([*base, "--out", str(bad), "--set", wrong]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "one count >= 1 per spatial dimension" in err, err
    assert not bad.exists()
