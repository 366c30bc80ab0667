"""``benchmarks/isometry_certificate.py --quick``: the ways' eval weights agree, rows written."""

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
    ways = {"cayley": ("gram",), "orthogonal": ("gram", "polished")}
    floor = {
        ("orthogonal", "polished", f"{p} (floor)") for p in ("float32 polar factors", "eigh alone")
    }
    assert keys == {(n, w, p) for n in ways for w in ways[n] for p in parts} | floor
    assert all(float(r["ms"]) > 0 for r in rows)
    assert all(float(r["ratio_to_gram"]) == 1.0 for r in rows if r["way"] == "gram")
    md = (tmp_path / "isometry_certificate.md").read_text()
    assert "Settings: quick run" in md and "| float32 bound / k - 1 |" in md
    assert "| bound / exact - 1 |" in md  # the tightness table (every bound above the norm)
    assert "| mixed / library | entries changed | largest change |" in md
