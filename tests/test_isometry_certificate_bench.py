"""``benchmarks/isometry_certificate.py --quick``: both certificate paths agree, rows written."""

import csv

from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "isometry_certificate.py"


def test_quick_study_rows(tmp_path):
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the ways agreed every round
    with (tmp_path / "isometry_certificate.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    keys = {(r["normalization"], r["way"], r["part"]) for r in rows}
    parts = ("eval weights", "bound", "cold")
    assert keys == {
        (n, w, p) for n in ("cayley", "orthogonal") for w in ("full", "chunked") for p in parts
    }
    assert all(float(r["ms"]) > 0 for r in rows)
    assert all(float(r["ratio_to_full"]) == 1.0 for r in rows if r["way"] == "full")
    md = (tmp_path / "isometry_certificate.md").read_text()
    assert "Settings: quick run" in md and "| float32 bound / k - 1 |" in md
