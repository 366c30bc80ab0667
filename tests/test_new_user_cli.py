"""benchmarks/new_user_cli.py: the newcomer's command sequence runs and records its section."""

import csv
import importlib.util

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "new_user_cli.py"


@pytest.mark.slow  # 26 CLI subprocesses (about 130 s CPU, 3-8 min on 2 loaded cores)
def test_quick_run_writes_the_rows_and_replaces_its_section(tmp_path):
    (tmp_path / "new_user_checks.md").write_text("# kept\n")
    for _ in range(2):  # a rerun replaces the section instead of appending a second one
        done = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    text = (tmp_path / "new_user_checks.md").read_text()
    assert text.startswith("# kept\n") and text.count("<!-- new-user-cli: start -->") == 1
    assert text.count("<!-- new-user-ks: start -->") == 1
    assert text.count("<!-- new-user-kdv: start -->") == 1
    rows = list(csv.DictReader((tmp_path / "new_user_cli.csv").open()))
    steps = {r["step"]: r for r in rows}
    assert steps["train LipFNO, no settings"]["rc"] == "2"
    assert "model.kwargs.modes" in steps["train LipFNO, no settings"]["said"]
    assert all(steps[s]["rc"] == "0" for s in ("generate", "train LipFNO", "train FNO",
                                               "certify LipFNO", "certify FNO"))  # fmt: skip
    assert "certified L 1" in steps["train LipFNO"]["figures"]
    longer = [r for step, r in steps.items() if step.endswith(" epochs")]
    assert len(longer) == 2 and all(r["rc"] == "0" and "val_nrmse" in r["figures"] for r in longer)
    assert "plain-pairwise: certified, coverage 1.00" in steps["certify LipFNO"]["figures"]
    ks = {r["step"]: r for r in csv.DictReader((tmp_path / "new_user_cli_ks.csv").open())}
    assert ks["generate (no such family)"]["rc"] == "2"
    assert "binding Lipschitz constraint" in ks["train LipFNO defaults"]["said"]
    optional = {"generate (no such family)"}
    if importlib.util.find_spec("onnxscript") is None:  # the onnx extra
        optional.add("export LipFNO k=auto .onnx")
    assert all(r["rc"] == "0" for step, r in ks.items() if step not in optional)
    # certify takes the trained frames (0 -> 2), export the training grid (128)
    assert "pairs: frame 0 -> 2" in ks["certify LipFNO k=auto"]["figures"]
    assert ks["export LipFNO k=auto .pt2"]["figures"].startswith("grid 128, certified L")
    # the autoregressive KdV checkpoints are certified on their windows (one step)
    kdv = {r["step"]: r for r in csv.DictReader((tmp_path / "new_user_cli_kdv.csv").open())}
    certified = [r for step, r in kdv.items() if step.startswith("certify ")]
    assert len(certified) == 5 and all(r["rc"] == "0" for r in certified)
    assert all("pairs: windows of 2 frames -> the next frame" in r["figures"] for r in certified)
