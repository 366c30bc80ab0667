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
    code = main(["certify", str(ckpt), str(advection_file), "--pde", "advection",
                 "--plot", str(plot), "--rows", "3"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "plain bound (certified, function norm): coverage 1.0000 (0 violations)" in out
    assert "conformal-0.1 bound (statistical" in out and "error-lipschitz bound (estimated" in out
    assert out.count(" yes ") == 3 and "more (--rows 0 for all)" in out
    assert plot.stat().st_size > 0


def test_certify_without_theory_labels_the_bound_estimated(tmp_path, capsys, advection_file):
    ckpt = checkpoint(tmp_path, "LipFNO", FNO_KWARGS)
    code = main(["certify", str(ckpt), str(advection_file), "--plot", "", "--norm", "sup"])
    out = capsys.readouterr().out
    assert code == 0
    assert "pointwise bound (estimated, sup norm)" in out
    assert "L_G" in out and "estimate: max ratio" in out


def test_certify_reports_violations_of_a_wrong_certified_constant(
    tmp_path, capsys, advection_file, monkeypatch
):
    from liponet.certify import LipschitzConstant, operator

    def wrong(norm, out, **params):
        return LipschitzConstant(0.0, "certified", norm, out, "a wrong theorem, on purpose")

    monkeypatch.setitem(operator._TRUE_CONSTANTS, "wrong", wrong)
    ckpt = checkpoint(tmp_path, "LipFNO", dict(FNO_KWARGS, k=0.01))  # Ĝ ~ constant
    code = main(["certify", str(ckpt), str(advection_file), "--pde", "wrong", "--plot", ""])
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
            "--query-split", "train", "--pde", "advection", "--plot", ""]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"from {other} [train]" in out and "coverage 1.0000" in out


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
    argv = ["certify", str(ckpt), str(advection_file), "--pde", "advection", "--plot", "",
            "--symmetry", "shifts"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "shift-reduced bound (certified, function norm): coverage 1.0000 (0 violations)" in out


def test_certify_with_a_generated_calibration_set_and_shifts(tmp_path, capsys, advection_file):
    ckpt = checkpoint(tmp_path, "LipFNO", GRID_FREE)
    argv = ["certify", str(ckpt), str(advection_file), "--pde", "advection", "--plot", "",
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
    argv = ["certify", str(ckpt), str(advection_file), "--pde", "advection", "--plot", "",
            "--calib-files", str(advection_file), str(more)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("plain [") and "bound (" in x)
    assert "(certified, function norm): coverage 1.0000" in line


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
    argv = ["certify", str(ckpt), str(advection_file), "--pde", "advection", "--plot", ""]
    flags = extra if "--symmetry" in extra else ["--symmetry", "shifts", *extra]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
