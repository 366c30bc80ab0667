"""``benchmarks/cayley_backward.py --quick``: hand-written backwards checked, rows written."""

import csv

from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "cayley_backward.py"


def test_quick_study_rows(tmp_path):
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "cayley_backward.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    methods = {r["method"]: r for r in rows}
    assert set(methods) == {"autograd", "custom-z", "custom-lu", "solve", "polar-eigh"}
    assert float(methods["autograd"]["ratio_to_autograd"]) == 1.0
    assert all(float(r["ms"]) > 0 for r in rows)
    md = (tmp_path / "cayley_backward.md").read_text()
    assert "Settings: quick run" in md and "| custom-lu |" in md
