"""``benchmarks/polar_warm_start.py --quick``: rows, the warm results' accuracy, the fallback."""

import csv

from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "polar_warm_start.py"


def test_quick_study_rows_accuracy_and_fallback(tmp_path):
    proc = run_script(SCRIPT, "--quick", "--out", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "polar_warm_start.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    whole = {r["method"]: r for r in rows if r["kind"] == "forward+backward"}
    assert set(whole) == {"eigh", "warm-dk", "warm-oa"}
    assert float(whole["eigh"]["ratio_to_eigh"]) == 1.0
    # a warm start one small step old is accepted everywhere and its gradient is close to the
    # eigh path's (warm-oa: the exact formula at refined factors; warm-dk: first order)
    assert all(float(r["accepted"]) == 1.0 for r in whole.values())
    assert float(whole["warm-oa"]["grad_rel_error"]) < 1e-4
    assert float(whole["warm-dk"]["grad_rel_error"]) < 1e-2
    acc = [r for r in rows if r["kind"] == "accuracy"]
    assert len(acc) == 8
    for r in acc:  # what is accepted is the polar factor to about the check's tolerance
        if float(r["accepted"]) > 0:
            assert float(r["max_error"]) < 1e-4, r
    # steps of 1e-3 per entry are too large for the first-order warm start: every multiplier is
    # rejected (and redone by eigh), which the study records as such
    dk = {float(r["lr"]): float(r["accepted"]) for r in acc if r["method"] == "warm-dk"}
    assert dk[1e-5] == 1.0 and dk[1e-3] == 0.0
    md = (tmp_path / "polar_warm_start.md").read_text()
    assert "Settings: quick run" in md and "| warm-dk |" in md
