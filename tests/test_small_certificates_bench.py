"""``benchmarks/small_certificates.py --quick``: both trees certify, eval outputs equal, rows."""

import csv

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "small_certificates.py"


@pytest.mark.slow  # two liponet trees loaded in a subprocess: several seconds
def test_quick_study_rows(tmp_path):
    proc = run_script(SCRIPT, "--against", "HEAD", "--quick", "--out", str(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "small_certificates.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["model"], r["width"]) for r in rows] == [("LipFNO", "4"), ("LipDeepONet", "8")]
    assert all(r["eval_outputs_equal"] == "True" for r in rows)
    assert all(float(r["before_cert_ms"]) > 0 and float(r["now_cert_ms"]) > 0 for r in rows)
    md = (tmp_path / "small_certificates.md").read_text()
    assert "Settings: quick run" in md
