"""``benchmarks/allocator.py`` on its smallest model: both settings measured, rows written."""

import csv
import os

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "allocator.py"


@pytest.mark.skipif(
    not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"), reason="glibc only"
)
def test_one_round_of_the_1d_lipfno(tmp_path):
    proc = run_script(
        SCRIPT, "--rounds", "1", "--models", "LipFNO defaults 1-D", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "allocator.csv").open() as fh:
        rows = {r["setting"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"glibc default", "tuned"}
    assert float(rows["glibc default"]["step_vs_default"]) == 1.0
    ratio = float(rows["tuned"]["step_ms"]) / float(rows["glibc default"]["step_ms"])
    assert abs(float(rows["tuned"]["step_vs_default"]) - ratio) < 1e-3 * ratio
    # the tuned process takes (next to) no page faults per step (the 2-D model's results: 1
    # against 3e5 by default); this small 1-D model may take none by default either, so the
    # default's count is not compared (a loaded run measured 0 default against 1.5 tuned)
    assert 0.0 <= float(rows["tuned"]["faults_per_step"]) < 10.0
    assert float(rows["glibc default"]["faults_per_step"]) >= 0.0
    assert all(float(r["cert_ms"]) > 0 and float(r["peak_rss_mb"]) > 0 for r in rows.values())
    assert "glibc" in (tmp_path / "allocator.md").read_text()
    assert (tmp_path / "allocator.png").stat().st_size > 0
