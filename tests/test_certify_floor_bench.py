"""``benchmarks/certify_floor.py --quick``: both sides certify alike, the floor rows written."""

import csv

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "certify_floor.py"


@pytest.mark.slow
def test_quick_run_rows(tmp_path):
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "certify_floor.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    calls = ["cold after 1 step", "cold after 8 steps", "first call"]
    floor = "floor: one Gram product + one Cholesky test per multiplier"
    assert [(r["model"], r["call"]) for r in rows] == [
        (model, call)
        for model in ("LipFNO global", "LipFNO defaults (cpl+clip)")
        for call in [*calls, floor]
    ]
    assert all(r["equal"] == "True" for r in rows)  # asserted by the script, every round
    assert all(float(r["after_ms"]) > 0 for r in rows)
    assert "Settings: quick run" in (tmp_path / "certify_floor.md").read_text()
