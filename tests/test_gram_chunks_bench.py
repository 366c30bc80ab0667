"""``benchmarks/gram_chunks.py --quick``: both sides certify, equal bounds, rows written."""

import csv

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "gram_chunks.py"


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_study_rows(tmp_path):
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "gram_chunks.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["cold after"]) for r in rows] == [
        ("LipFNO defaults (cpl+clip)", "1 step"),
        ("LipFNO defaults (cpl+clip)", "8 steps"),
        ("LipFNO global", "1 step"),
        ("LipFNO global", "8 steps"),
    ]
    assert all(r["bounds_equal"] == "True" and r["eval_outputs_equal"] == "True" for r in rows)
    assert all(float(r["before_ms"]) > 0 and float(r["after_ms"]) > 0 for r in rows)
    md = (tmp_path / "gram_chunks.md").read_text()
    assert "Settings: quick run" in md
