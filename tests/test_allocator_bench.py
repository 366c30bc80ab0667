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
    # the tuned process takes (next to) no page faults per step; the default one does
    assert float(rows["tuned"]["faults_per_step"]) < float(rows["glibc default"]["faults_per_step"])
    assert all(float(r["cert_ms"]) > 0 and float(r["peak_rss_mb"]) > 0 for r in rows.values())
    assert "glibc" in (tmp_path / "allocator.md").read_text()
    assert (tmp_path / "allocator.png").stat().st_size > 0
