import math

import pytest
import torch

from liponet.cli import main
from liponet.data import generate
from liponet.models import build_model
from liponet.train import save_checkpoint

FNO_KWARGS = {"in_channels": 1, "out_channels": 1, "modes": [6], "width": 4, "depth": 2}
DEEPONET_KWARGS = {"n_sensors": 32, "domain": [[0.0], [1.0]], "n_basis": 4, "width": 8, "depth": 1}


@pytest.fixture(scope="module")
def advection_file(tmp_path_factory):
    # beta * t_final = 0.25 = 8 cells of 32: the grid operator is exactly a circular shift
    path = tmp_path_factory.mktemp("data") / "adv.hdf5"
    return generate("advection", path, n_samples=40, nx=32, nt=3, beta=0.25, t_final=1.0)


def checkpoint(tmp_path, name, kwargs):
    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    return save_checkpoint(
        tmp_path / f"{name}.pt", model, config={"model": {"name": name, "kwargs": kwargs}}
    )


@pytest.mark.parametrize(
    ("name", "kwargs"), [("LipFNO", FNO_KWARGS), ("LipDeepONet", DEEPONET_KWARGS)]
)
def test_certify_prints_table_summary_and_plot(tmp_path, capsys, advection_file, name, kwargs):
    ckpt = checkpoint(tmp_path, name, kwargs)
    plot = tmp_path / "bound.png"
    code = main(["certify", str(ckpt), str(advection_file),
                 "--plot", str(plot), "--rows", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    # the file's discretization (exact samples, 8 whole cells) gives a certified L_G
    assert "L_G = 1 (certified: exact samples shifted by 8 whole cells" in out
    assert "plain bound (certified, function norm): coverage 1.0000 (0 violations)" in out
    assert "conformal-0.1 bound (statistical" in out and "error-lipschitz bound (estimated" in out
    assert "[calib: first half of the test split" in out and "second half of the test split" in out
    assert "premise: model:" in out and "eval-mode weights" in out
    assert out.count(" yes ") == 2 and plot.stat().st_size > 0


def test_certify_continuous_theorem_is_not_a_certificate_for_grid_data(
    tmp_path, capsys, advection_file
):
    ckpt = checkpoint(tmp_path, "LipFNO", FNO_KWARGS)
    code = main(["certify", str(ckpt), str(advection_file), "--pde", "advection", "--plot", ""])
    out = capsys.readouterr().out
    assert code == 0
    assert "plain bound (estimated" in out and "theorem about the continuous operator" in out


def test_certify_without_theory_labels_the_bound_estimated(tmp_path, capsys):
    # a shift by 0.4 of a cell: the samples' map is no isometry, no theorem covers it
    fractional = generate(
        "advection", tmp_path / "frac.hdf5", n_samples=40, nx=32, nt=3, beta=0.025, t_final=1.0
    )
    ckpt = checkpoint(tmp_path, "LipFNO", FNO_KWARGS)
    code = main(["certify", str(ckpt), str(fractional), "--plot", "", "--norm", "sup"])
    out = capsys.readouterr().out
    assert code == 0
    assert "pointwise bound (estimated, sup norm)" in out
    assert "L_G" in out and "estimate: max ratio" in out
    assert "no certified L_G for this data: exact solution sampled at cell centres" in out


def test_certify_reports_violations_of_a_wrong_certified_constant(
    tmp_path, capsys, advection_file, monkeypatch
):
    import liponet.certify
    from liponet.certify import LipschitzConstant

    def wrong(attrs, *, frames, spatial_stride, norm):
        return LipschitzConstant(0.0, "certified", norm, norm, "a wrong theorem, on purpose"), ""

    monkeypatch.setattr(liponet.certify, "generator_lipschitz", wrong)
    ckpt = checkpoint(tmp_path, "LipFNO", dict(FNO_KWARGS, k=0.01))  # Ĝ ~ constant
    code = main(["certify", str(ckpt), str(advection_file), "--plot", ""])
    out = capsys.readouterr().out
    assert code == 1
    assert "certified bounds violated" in out and " NO " in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.pt", "DATA"], "checkpoint not found"),
        (["CKPT", "missing.h5"], "data file not found"),
        (["CKPT", "DATA", "--pde", "burgers"], "no theoretical constant for 'burgers'"),
        (["CKPT", "DATA", "--pde", "advection", "--param", "beta"], "--param expects KEY=NUMBER"),
        (["CKPT", "DATA", "--param", "rho=1"], "--param needs --pde"),
    ],
)
def test_certify_bad_input_exits_2_with_one_line(tmp_path, capsys, advection_file, argv, message):
    ckpt = checkpoint(tmp_path, "LipFNO", FNO_KWARGS)
    argv = [str(ckpt) if a == "CKPT" else str(advection_file) if a == "DATA" else a for a in argv]
    assert main(["certify", *argv, "--plot", ""]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_certify_reads_queries_from_another_file(tmp_path, capsys, advection_file):
    other = generate(
        "advection", tmp_path / "q.hdf5", n_samples=20, nx=32, nt=3, beta=0.25, t_final=1.0,
        seed=7,
    )  # fmt: skip
    ckpt = checkpoint(tmp_path, "LipFNO", FNO_KWARGS)
    argv = ["certify", str(ckpt), str(advection_file), "--query", str(other),
            "--query-split", "train", "--plot", ""]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"from {other} [train split]" in out and "coverage 1.0000" in out


def test_certify_refuses_grid_points_outside_the_deeponet_domain(tmp_path, capsys, advection_file):
    kwargs = dict(DEEPONET_KWARGS, domain=[[0.0], [0.5]])
    ckpt = checkpoint(tmp_path, "LipDeepONet", kwargs)
    assert main(["certify", str(ckpt), str(advection_file), "--plot", ""]) == 2
    assert "outside the model's certified coordinate domain" in capsys.readouterr().err


GRID_FREE = dict(FNO_KWARGS, grid=False)
CALIB = ["--calib-family", "advection", "--calib-samples", "3000", "--calib-param", "beta=0.25",
         "--calib-param", "t_final=1.0"]  # fmt: skip


def test_certify_shift_reduced_bound_on_the_data_calibration_set(tmp_path, capsys, advection_file):
    ckpt = checkpoint(tmp_path, "LipFNO", GRID_FREE)
    argv = ["certify", str(ckpt), str(advection_file), "--plot", "",
            "--symmetry", "shifts"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "shift-reduced bound (certified, function norm): coverage 1.0000 (0 violations)" in out


def test_certify_with_a_generated_calibration_set_and_shifts(tmp_path, capsys, advection_file):
    ckpt = checkpoint(tmp_path, "LipFNO", GRID_FREE)
    argv = ["certify", str(ckpt), str(advection_file), "--plot", "",
            "--symmetry", "shifts", *CALIB]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3,000 pairs generated (advection, seed 1)" in out
    assert "architecture verified" in out and "translations commute" in out
    medians = {}
    for name in ("plain", "shift-reduced"):
        line = next(x for x in out.splitlines() if x.startswith(f"{name} [3,000 pairs] bound"))
        assert "(certified, function norm): coverage 1.0000 (0 violations)" in line
        medians[name] = float(line.split("bound median ")[1])
    assert medians["shift-reduced"] < medians["plain"]


def test_certify_deeponet_reads_a_calibration_set_from_files(tmp_path, capsys, advection_file):
    ckpt = checkpoint(tmp_path, "LipDeepONet", DEEPONET_KWARGS)
    more = generate("advection", tmp_path / "more.hdf5", n_samples=60, nx=32, nt=3, beta=0.25,
                    t_final=1.0, seed=3)  # fmt: skip
    argv = ["certify", str(ckpt), str(advection_file), "--plot", "",
            "--calib-files", str(advection_file), str(more)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("plain [") and "bound (" in x)
    assert "(certified, function norm): coverage 1.0000" in line


@pytest.mark.parametrize(
    ("name", "kwargs"), [("LipFNO", FNO_KWARGS), ("LipDeepONet", DEEPONET_KWARGS)]
)
def test_certify_multi_pair_shift_reduced_for_models_the_orbit_bound_refuses(
    tmp_path, capsys, advection_file, name, kwargs
):
    """A LipFNO with coordinate channels and a DeepONet: the single-pair orbit bound is skipped
    (model premise), the multi-pair one needs only the operator's symmetry and covers."""
    ckpt = checkpoint(tmp_path, name, kwargs)
    argv = ["certify", str(ckpt), str(advection_file), "--plot", "", "--symmetry", "shifts",
            "--multi-pair", "8", *CALIB]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "single-pair cyclic shifts along spatial axis 0 bound skipped" in out
    assert "evaluated at the query only" in out
    line = next(x for x in out.splitlines() if x.startswith("multi-pair shift-reduced [3,000"))
    assert "(certified, function norm): coverage 1.0000 (0 violations)" in line
    plain = next(x for x in out.splitlines() if x.startswith("plain bound ("))
    assert float(line.split("bound median ")[1]) < float(plain.split("bound median ")[1])
    assert (
        main(["certify", str(ckpt), str(advection_file), "--plot", "", "--multi-pair", "-1"]) == 2
    )
    assert "--multi-pair must be >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "kwargs", "extra", "message"),
    [
        ("LipFNO", FNO_KWARGS, [], "appends coordinate channels (grid=True)"),
        ("LipDeepONet", DEEPONET_KWARGS, [], "not a part whose equivariance"),
        ("LipFNO", GRID_FREE, ["--symmetry", "shifts+reflection"], "the point reflection"),
        ("LipFNO", GRID_FREE, ["--norm", "sup"], "need --norm function"),
    ],
)
def test_certify_refuses_unverified_symmetries(
    tmp_path, capsys, advection_file, name, kwargs, extra, message
):
    ckpt = checkpoint(tmp_path, name, kwargs)
    argv = ["certify", str(ckpt), str(advection_file), "--plot", ""]
    flags = extra if "--symmetry" in extra else ["--symmetry", "shifts", *extra]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _trained(tmp_path, family, **params):
    from liponet.train import Trainer, build_dataset, config_from_dict

    data = generate(family, tmp_path / f"{family}.h5", n_samples=600, nx=32, nt=6, seed=3,
                    t_final=1.0, **params)  # fmt: skip
    kwargs = {"in_channels": 1, "out_channels": 1, "modes": [8], "width": 8, "depth": 2}
    config = config_from_dict(
        {
            "model": {"name": "LipFNO", "kwargs": kwargs},
            "data": {"name": "pdebench", "path": str(data), "kwargs": {"task": "step"}},
            "epochs": 3,
            "batch_size": 32,
            "lr": 3e-3,
            "seed": 0,
            "device": "cpu",
            "out_dir": str(tmp_path / family),
            "monitor": "val_nrmse",
        }
    )
    bundle = build_dataset(config.data, config.seed)
    Trainer(config, bundle.train, bundle.val, progress=False).fit()
    return tmp_path / family / "best.pt", data


def test_default_flags_calibrate_on_held_out_data_and_conformal_covers(tmp_path, capsys):
    # issue 12, item 7: calibration on training data broke the conformal guarantee; the default
    # now calibrates on held-out data (first half of the test split) and the queries (second
    # half) are covered at 1 - alpha up to binomial noise, pooled over two families
    import re

    covered = queries = 0
    for family, params in (("advection", {"beta": 0.1}), ("diffusion_reaction_1d", {})):
        ckpt, data = _trained(tmp_path, family, **params)
        assert main(["certify", str(ckpt), str(data), "--plot", ""]) in (0, 1)
        out = capsys.readouterr().out
        assert "[calib: first half of the test split: held out from training" in out
        line = re.search(r"conformal-0.1 bound \((\w+), function norm\): coverage ([\d.]+)", out)
        assert line is not None and line.group(1) == "statistical"
        n = int(re.search(r"queries: (\d+) from .* \[second half of the test split\]", out)[1])
        covered += round(float(line.group(2)) * n)
        queries += n
        # the logistic reaction's files get the certified per-pair L_G bound; it never fails
        pairwise = re.search(
            r"plain-pairwise bound \((\w+), function norm\): coverage ([\d.]+)", out
        )
        assert (pairwise is not None) == (family == "diffusion_reaction_1d")
        if pairwise is not None:
            assert pairwise.groups() == ("certified", "1.0000")
        # the old default: calibrated on the training split, the bound is not statistical
        assert main(["certify", str(ckpt), str(data), "--plot", "", "--calib-split", "train"]) in (
            0,
            1,
        )
        old = capsys.readouterr().out
        assert "conformal-0.1 bound (estimated" in old and "TRAINING split" in old
        assert "not declared held out" in old
    sigma = math.sqrt(0.1 * 0.9 / queries)
    assert queries == 60
    assert 0.9 - 3 * sigma <= covered / queries


def test_certify_default_plot_goes_beside_the_checkpoint(
    tmp_path, capsys, advection_file, monkeypatch
):
    """Without --plot the PNG is written next to the checkpoint, never into the current folder."""
    (tmp_path / "run").mkdir()
    ckpt = checkpoint(tmp_path / "run", "LipFNO", FNO_KWARGS)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code = main(["certify", str(ckpt), str(advection_file), "--rows", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    beside = tmp_path / "run" / "LipFNO.certify.png"
    assert beside.stat().st_size > 0 and f"plot: {beside}" in out
    assert list(elsewhere.iterdir()) == []


def test_certify_defaults_to_the_frames_the_checkpoint_was_trained_on(
    tmp_path, capsys, advection_file
):
    """A checkpoint trained on frames 0 -> 1 is certified on that map, not the file's 0 -> -1.

    (A newcomer's finding in new_user_checks.md: after ``--set data.kwargs={t_out: 2}`` the old
    defaults silently bounded the error of the first-to-last map, which the model never learned.)
    """
    torch.manual_seed(0)
    model = build_model("LipFNO", **FNO_KWARGS)
    data = {"name": "pdebench", "path": str(advection_file), "kwargs": {"t_out": 1}}
    config = {"model": {"name": "LipFNO", "kwargs": FNO_KWARGS}, "data": data}
    ckpt = save_checkpoint(tmp_path / "m.pt", model, config=config)
    runs = {}
    for name, flags in (("default", []), ("explicit", ["--t-in", "0", "--t-out", "1"]),
                        ("last", ["--t-out", "-1"])):  # fmt: skip
        assert main(["certify", str(ckpt), str(advection_file), "--plot", "", *flags]) == 0
        runs[name] = capsys.readouterr().out
    line = "pairs: frame 0 -> 1, strides 1 (space) 1 (time), from defaults + the checkpoint's"
    assert line in runs["default"]
    assert "pairs: frame 0 -> -1" in runs["last"] and "from defaults + flags" in runs["last"]

    def table(out):
        return out.split("\nmodel:")[0]

    assert table(runs["default"]) == table(runs["explicit"])
    assert table(runs["default"]) != table(runs["last"])


def test_certify_an_autoregressive_checkpoint_on_its_windows(tmp_path, capsys):
    """A checkpoint of the autoregressive task certifies its one-step map on windows.

    (A newcomer's finding: certify used to pair frame 0 with the last frame whatever the task,
    and an autoregressive LipFNO stopped with "input must have 2 channels".)
    """
    # 0.0625 per frame = 2 whole cells of 32: certified L_G = 1 for a window -> next frame
    path = generate(
        "advection", tmp_path / "a.hdf5", n_samples=40, nx=32, nt=5, beta=0.25, t_final=1.0
    )
    kwargs = {**FNO_KWARGS, "in_channels": 2}
    torch.manual_seed(0)
    model = build_model("LipFNO", **kwargs)
    task = {"task": "autoregressive", "initial_step": 2, "windows": "all"}
    config = {
        "model": {"name": "LipFNO", "kwargs": kwargs},
        "data": {"name": "pdebench", "path": str(path), "kwargs": task},
    }
    ckpt = str(save_checkpoint(tmp_path / "m.pt", model, config=config))
    assert main(["certify", ckpt, str(path), "--plot", ""]) == 0
    out = capsys.readouterr().out
    assert "pairs: windows of 2 frames -> the next frame (autoregressive, all window(s)" in out
    # 4 test trajectories: the first 2 calibrate, the other 2 query; 3 windows each
    assert "calibration: 6 pairs" in out and "queries: 6 from" in out
    assert "L_G = 1 (certified: exact samples shifted by 2 whole cells" in out
    assert "plain bound (certified, function norm): coverage 1.0000 (0 violations)" in out
    for flags, message in (
        (["--t-out", "1"], "--t-in/--t-out select a step pair"),
        (["--calib-family", "advection"], "stream step pairs"),
    ):
        assert main(["certify", ckpt, str(path), "--plot", "", *flags]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
