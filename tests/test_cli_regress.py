import csv

import pytest

from liponet.cli import main


def test_regress_quick_runs_end_to_end(tmp_path, capsys):
    png, table = tmp_path / "regress.png", tmp_path / "regress.csv"
    args = ["regress", "--quick", "--epochs", "40", "--plot", str(png), "--csv", str(table)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "L_f" in captured.out and "floor" in captured.out and "violations" in captured.out
    assert "epoch 40/40" in captured.err  # progress is visible while training
    assert png.stat().st_size > 1000
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 8
    for row in rows:
        for method in ("global", "cell", "envelope"):
            assert int(row[f"violations_{method}"]) == 0, row
            assert float(row["max_error"]) <= float(row[f"bound_{method}"])
        assert float(row["floor"]) <= float(row["bound_envelope"])
        assert row["label"] == "certified"
    names = {row["variant"].split(" (")[0] for row in rows}
    assert names >= {"LipMLP a", "LipMLP b", "LipMLP e", "MLP"}


@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--n-train", "1"], "n_train"),
        (["--nu", "-1"], "nu"),
        (["--k", "0"], "k must be"),
        (["--variants", "a1,zz"], "variants"),
        (["--epochs", "-3"], "epochs"),
        (["--threads", "0"], "threads"),
    ],
)
def test_regress_bad_flags_give_one_line_errors(flags, word, capsys):
    assert main(["regress", "--quick", *flags]) == 2
    err = capsys.readouterr().err
    assert word in err and "Traceback" not in err
