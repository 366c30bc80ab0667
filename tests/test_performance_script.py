"""``benchmarks/performance.py --parts`` (a rerun replaces only its parts' rows); cpl_speedup.py."""

import csv
import shutil

import pytest
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "performance.py"


def test_parts_rerun_replaces_only_its_rows(tmp_path):
    for suffix in ("csv", "md"):
        shutil.copy(ROOT / "benchmarks" / "results" / f"performance.{suffix}", tmp_path)
    with (tmp_path / "performance.csv").open() as fh:
        before = list(csv.DictReader(fh))
    proc = run_script(SCRIPT, "--quick", "--parts", "train-cpl", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "performance.csv").open() as fh:
        after = list(csv.DictReader(fh))
    part = "train step, LipFNO defaults"
    new = [r for r in after if r["part"] == part]
    # six sizes, each against the twin, the twin with depth 8, the chain's other path and (if
    # installed) neuraloperator
    assert len(new) in (18, 24)
    assert sum("one by one" in r["measure"] or "FFTs shared" in r["measure"] for r in new) == 6
    assert all(float(r["ratio"]) > 0 and r["samples"] == "2" for r in new)  # the quick sizes
    others = [r for r in after if r["part"] != part]
    assert others == [r for r in before if r["part"] != part]  # untouched, in their order
    md = (tmp_path / "performance.md").read_text()
    assert "Settings: default run" in md  # the full run's settings...
    assert "|| parts train-cpl rerun: quick run" in md  # ...and this rerun's
    # other parts' notes
    assert "|| parts train-nd rerun (`orthogonal` as the polar factor by eigh): " in md
    assert f"## {part}" in md


@pytest.mark.slow
def test_cpl_speedup_compares_two_trees_in_one_process(tmp_path):
    """``benchmarks/cpl_speedup.py`` loads an earlier commit beside this tree (needs git)."""
    script = ROOT / "benchmarks" / "cpl_speedup.py"
    proc = run_script(script, "--quick", "--against", "HEAD", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "cpl_speedup.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["size"] for r in rows] == [
        "medium 1-D, 12 modes",
        "medium 1-D, 64 modes",
        "medium 2-D",
    ]
    assert all(float(r["LipFNO_over_FNO_now"]) > 0 for r in rows)


@pytest.mark.slow
def test_medium_step_time_measures_every_medium_model_against_fno(tmp_path):
    """``benchmarks/medium_step_time.py --quick``: one row per task and model, FNO's ratio 1."""
    from liponet.bench import PRESETS

    script = ROOT / "benchmarks" / "medium_step_time.py"
    proc = run_script(script, "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "medium_step_time.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    tasks = PRESETS["medium"].tasks
    models = ["FNO", "LipFNO", "LipFNO-clip", "LipFNO-inc", "LipFNO-wide"]
    models += ["LipFNO-d2", "LipFNO-inc-d2"]
    assert [(r["task"], r["model"]) for r in rows] == [(t, m) for t in tasks for m in models]
    assert all(float(r["ms"]) > 0 for r in rows)
    assert all(float(r["ratio_to_FNO"]) == 1.0 for r in rows if r["model"] == "FNO")
    assert (tmp_path / "medium_step_time.png").stat().st_size > 0
