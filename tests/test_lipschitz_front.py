"""``benchmarks/lipschitz_front.py --quick`` end to end: the front's rows and their certificates."""

import csv
import math

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "lipschitz_front.py"
#: Relative room for the float32 rounding that every certificate includes (measured: 3e-7).
ROUNDING = 1e-5


def _run(*args: str):
    return run_script(SCRIPT, *args, timeout=300)


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_front_rows_respect_their_budgets_and_tables_rebuild(tmp_path):
    proc = _run("--quick", "--out", str(tmp_path), "--bench-csv", str(tmp_path / "none.csv"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "lipschitz_front.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    variants = {r["variant"] for r in rows}
    assert variants == {"FNO", "LipFNO clip", "LipFNO inc"}
    assert all(r["status"] == "ok" and math.isfinite(float(r["nrmse"])) for r in rows)
    for r in rows:
        certified, k = float(r["lipschitz_certified"]), float(r["k"])
        if r["variant"] == "LipFNO clip":  # the budget is the model's constant
            assert k <= certified * (1 + ROUNDING) and certified <= k * (1 + ROUNDING)
        elif r["variant"] == "LipFNO inc":  # u_last + f with ||f|| <= k
            assert certified <= (1 + k) * (1 + ROUNDING)
    clip_ks = sorted(float(r["k"]) for r in rows if r["variant"] == "LipFNO clip")
    data_constant = float(rows[0]["L_data"])
    assert clip_ks[0] >= data_constant and clip_ks[0] <= data_constant + 1e-3  # starts at L_data
    table = (tmp_path / "lipschitz_front.md").read_text()
    (tmp_path / "lipschitz_front.md").unlink()
    rebuilt = _run("--quick", "--from-csv", "--out", str(tmp_path))  # same settings
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "lipschitz_front.md").read_text() == table
