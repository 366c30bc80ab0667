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
    # Page faults are counted but not compared: one round of this small 1-D model is too short
    # to (CI runs measured 0 default / 1.5 tuned, then 64 tuned); the tuned allocator's
    # no-fault property is tested on its own in tests/test_allocator.py, and the results file
    # measures it over many rounds (the 2-D model: 1 against 3e5).
    for r in rows.values():
        assert float(r["faults_per_step"]) >= 0.0
    assert all(float(r["cert_ms"]) > 0 and float(r["peak_rss_mb"]) > 0 for r in rows.values())
    assert "glibc" in (tmp_path / "allocator.md").read_text()
    assert (tmp_path / "allocator.png").stat().st_size > 0
