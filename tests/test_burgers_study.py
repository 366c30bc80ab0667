"""``benchmarks/burgers_study.py --quick`` end to end: rows, certificates, ratios, tables."""

import csv
import math

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "burgers_study.py"
#: Relative room for the float32 rounding that every certificate includes (measured: 3e-7).
ROUNDING = 1e-5


def _run(*args: str):
    return run_script(SCRIPT, *args, timeout=300)


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_study_rows_and_tables_rebuild(tmp_path):
    configs = ("cpl k=1", "cpl hidden=2w k=1.3", "cpl inc k=0.5")
    proc = _run("--quick", "--out", str(tmp_path), "--configs", *configs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "burgers_study.csv").open() as fh:
        rows = {r["config"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"FNO", *configs}  # FNO, the reference, always runs first
    assert all(r["status"] == "ok" and math.isfinite(float(r["nrmse"])) for r in rows.values())
    fno = rows["FNO"]
    for r in rows.values():
        assert float(r["nrmse_ratio"]) == pytest.approx(float(r["nrmse"]) / float(fno["nrmse"]))
        assert float(r["step_ratio"]) == pytest.approx(
            float(r["s_per_step"]) / float(fno["s_per_step"])
        )
        assert 0 < float(r["one_step_test"]) and 0 < float(r["one_step_train"])
    # each LipFNO row's certificate respects its budget (u_last + f: 1 + k)
    assert float(rows["cpl k=1"]["lipschitz_certified"]) <= 1.0 * (1 + ROUNDING)
    assert float(rows["cpl hidden=2w k=1.3"]["lipschitz_certified"]) <= 1.3 * (1 + ROUNDING)
    assert float(rows["cpl inc k=0.5"]["lipschitz_certified"]) <= 1.5 * (1 + ROUNDING)
    assert float(fno["lipschitz_certified"]) > 1.0  # the unconstrained twin's product bound
    table = (tmp_path / "burgers_study.md").read_text()
    assert "| advection_1d | 4 | cpl hidden=2w k=1.3 | 0 |" in table
    (tmp_path / "burgers_study.md").unlink()
    rebuilt = _run("--quick", "--from-csv", "--out", str(tmp_path))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "burgers_study.md").read_text() == table
