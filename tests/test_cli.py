import subprocess
import sys

from liponet.cli import main


def test_info_prints_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch:" in out and "LipMLP" in out


def test_python_dash_m_and_unknown_command():
    proc = subprocess.run(
        [sys.executable, "-m", "liponet", "nope"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr
