import h5py

from liponet.cli import main


def test_generate_command(tmp_path, capsys):
    out = tmp_path / "b.h5"
    code = main(
        [
            "generate",
            "burgers",
            str(out),
            "--n-samples",
            "3",
            "--nx",
            "16",
            "--nt",
            "4",
            "--seed",
            "1",
            "--param",
            "nu=0.1",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "generate burgers: 4/4 frames" in captured.err
    with h5py.File(out) as f:
        assert f["tensor"].shape == (3, 4, 16) and abs(f.attrs["Nu"] - 0.1) < 1e-12


def test_generate_command_errors(tmp_path, capsys):
    assert main(["generate", "burger", str(tmp_path / "x.h5"), "--n-samples", "2"]) == 2
    assert "unknown family 'burger'; available:" in capsys.readouterr().err
    assert (
        main(["generate", "burgers", str(tmp_path / "x.h5"), "--n-samples", "2", "--param", "nu"])
        == 2
    )
    assert "--param expects KEY=NUMBER" in capsys.readouterr().err
    assert main(["generate", "darcy", str(tmp_path / "x.h5"), "--n-samples", "2", "--nt", "3"]) == 2
    assert "steady" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()
