"""benchmarks/new_user_cli.py: the newcomer's command sequence runs and records its section."""

import csv

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "new_user_cli.py"


@pytest.mark.slow  # six CLI subprocesses (about 30 s CPU, 1-2 min on 2 loaded cores)
def test_quick_run_writes_the_rows_and_replaces_its_section(tmp_path):
    (tmp_path / "new_user_checks.md").write_text("# kept\n")
    for _ in range(2):  # a rerun replaces the section instead of appending a second one
        done = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "new_user_checks.md").read_text()
    assert text.startswith("# kept\n") and text.count("<!-- new-user-cli: start -->") == 1
    rows = list(csv.DictReader((tmp_path / "new_user_cli.csv").open()))
    steps = {r["step"]: r for r in rows}
    assert steps["train LipFNO, no settings"]["rc"] == "2"
    assert "model.kwargs.modes" in steps["train LipFNO, no settings"]["said"]
    assert all(steps[s]["rc"] == "0" for s in ("generate", "train LipFNO", "train FNO",
                                               "certify LipFNO", "certify FNO"))  # fmt: skip
    assert "certified L 1" in steps["train LipFNO"]["figures"]
