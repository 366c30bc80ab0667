"""``benchmarks/clip_eval_scales.py --quick``: runs and writes its three results files."""

import csv

from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "clip_eval_scales.py"


def test_clip_eval_scales_quick_run_writes_its_results(tmp_path):
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "clip_eval_scales.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["steps"] for r in rows] == ["0", "2"]
    # a small layer keeps the exact-norm scales: bitwise the same eval outputs
    assert all(float(r["eval_output_rel_diff"]) == 0.0 for r in rows)
    assert all(float(r["certificate"]) <= 1.0 for r in rows)
    assert (tmp_path / "clip_eval_scales.png").stat().st_size > 0
    assert "Settings: quick run" in (tmp_path / "clip_eval_scales.md").read_text()
