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
    settings_before = (ROOT / "benchmarks" / "results" / "performance.md").read_text()
    settings_before = settings_before.split("\n")[2]
    kept = [n for n in settings_before.split(" || ")[1:] if not n.startswith("parts train-cpl")]
    assert kept and all(" || " + n in md for n in kept)  # the other parts' notes, unchanged
    assert f"## {part}" in md


@pytest.mark.slow
def test_cpl_speedup_compares_two_trees_in_one_process(tmp_path):
    """``benchmarks/cpl_speedup.py`` loads an earlier commit beside this tree (needs git)."""
    script = ROOT / "benchmarks" / "cpl_speedup.py"
    proc = run_script(
        script, "--quick", "--against", "HEAD", "--out", str(tmp_path),
        "--bench-models", "LipFNO-w12-h36-d3",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "cpl_speedup.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["size"] for r in rows] == [
        "medium 1-D, 12 modes",
        "medium 1-D, 64 modes",
        "medium 2-D",
        "burgers_1d LipFNO-w12-h36-d3",
    ]
    assert all(float(r["LipFNO_over_FNO_now"]) > 0 for r in rows)
    bad = run_script(script, "--quick", "--against", "HEAD", "--bench-models", "nope")
    assert bad.returncode == 2 and "nope" in bad.stderr


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


def test_medium_step_time_one_task_keeps_the_other_tasks_rows(tmp_path):
    """``--tasks burgers_1d --models LipFNO-wide-d2``: Burgers re-measured with the extra model,
    every other task's rows carried over from the CSV unchanged."""
    script = ROOT / "benchmarks" / "medium_step_time.py"
    before = ROOT / "benchmarks" / "results" / "medium_step_time.csv"
    shutil.copy(before, tmp_path)
    with before.open() as fh:
        old = list(csv.DictReader(fh))
    proc = run_script(
        script, "--quick", "--tasks", "burgers_1d", "--models", "LipFNO-wide-d2",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "medium_step_time.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    others = [r for r in rows if r["task"] != "burgers_1d"]
    assert others == [r for r in old if r["task"] != "burgers_1d"]
    burgers = {r["model"]: r for r in rows if r["task"] == "burgers_1d"}
    assert "LipFNO-wide-d2" in burgers and burgers["FNO"]["ratio_to_FNO"] == "1.0"
    assert "This run measured burgers_1d" in (tmp_path / "medium_step_time.md").read_text()
    bad = run_script(script, "--quick", "--models", "nope", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "nope" in bad.stderr and not (tmp_path / "x").exists()


def test_medium_step_time_csv_models_remeasures_every_earlier_model(tmp_path):
    """``--csv-models``: each task re-measured with every model of its earlier rows."""
    script = ROOT / "benchmarks" / "medium_step_time.py"
    shutil.copy(ROOT / "benchmarks" / "results" / "medium_step_time.csv", tmp_path)
    with (tmp_path / "medium_step_time.csv").open() as fh:
        old = list(csv.DictReader(fh))
    proc = run_script(
        script, "--quick", "--tasks", "diffusion_reaction_1d", "--csv-models",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "medium_step_time.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    task = [r for r in rows if r["task"] == "diffusion_reaction_1d"]
    earlier = [r["model"] for r in old if r["task"] == "diffusion_reaction_1d"]
    assert earlier and {r["model"] for r in task} == set(earlier)  # VARIANTS were among them
    assert all(r not in old for r in task)  # measured now (the quick sizes), not copied
    assert [r for r in rows if r["task"] != "diffusion_reaction_1d"] == [
        r for r in old if r["task"] != "diffusion_reaction_1d"
    ]


@pytest.mark.slow
def test_medium_step_time_lists_each_models_own_kept_modes(tmp_path):
    """``--models LipFNO-m8``: its row says 8 kept modes, the preset's models say the preset's."""
    script = ROOT / "benchmarks" / "medium_step_time.py"
    proc = run_script(
        script, "--quick", "--tasks", "darcy_2d", "--models", "LipFNO-m8", "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "medium_step_time.csv").open() as fh:
        modes = {r["model"]: r["modes"] for r in csv.DictReader(fh)}
    assert modes["LipFNO-m8"] == "8" and modes["FNO"] == modes["LipFNO"] == "4"  # --quick: 4


def test_certify_rounds_report_median_and_max_after_1_and_8_steps(tmp_path):
    """``--parts certify-nd``: both models' cold (1 and 8 steps), cached, first call, med/max."""
    for suffix in ("csv", "md"):
        shutil.copy(ROOT / "benchmarks" / "results" / f"performance.{suffix}", tmp_path)
    proc = run_script(SCRIPT, "--quick", "--parts", "certify-nd", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "performance.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["part"] == "certification 2-D"]
    names = [r["measure"] for r in rows]
    for model in ("LipFNO global", "LipFNO defaults (cpl+clip)"):
        for key in ("cold after 1 step", "cold after 8 steps", "cached", "first call"):
            for stat in ("median", "max"):
                assert f"{model} lipschitz_bound() {key} ({stat} of 3) / train step" in names
    assert "LipFNO orthogonal lipschitz_bound() cold / train step" in names
    assert all(float(r["ratio"]) > 0 and r["samples"] == "2" for r in rows)  # the quick sizes
    by = {r["measure"]: float(r["ms"]) for r in rows}
    for model in ("LipFNO global", "LipFNO defaults (cpl+clip)"):
        for key in ("cold after 1 step", "cached"):
            median = by[f"{model} lipschitz_bound() {key} (median of 3) / train step"]
            assert median <= by[f"{model} lipschitz_bound() {key} (max of 3) / train step"]


def test_loader_section_quotes_the_streaming_figures_from_data_loader(tmp_path):
    """The loader rows time ``to_tensors``; the streaming claim's figures come from its source."""
    proc = run_script(SCRIPT, "--quick", "--parts", "loader", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    md = (tmp_path / "performance.md").read_text()
    section = md.split("## loader", 1)[1].split("\n## ", 1)[0]
    assert "quoted from `data_loader.csv`" in section
    with (ROOT / "benchmarks" / "results" / "data_loader.csv").open() as fh:
        rows = [
            r for r in csv.DictReader(fh) if r["selection"] == "full trajectories, batches of 32"
        ]
    assert rows
    for r in rows:
        assert f"{r['sample_KB']} KB {r['storage']}: {float(r['cpu_ratio']):.3g}x" in section


@pytest.mark.slow
def test_eval_parts_time_every_side_with_and_without_the_weight_check(tmp_path):
    for suffix in ("csv", "md"):
        shutil.copy(ROOT / "benchmarks" / "results" / f"performance.{suffix}", tmp_path)
    proc = run_script(SCRIPT, "--quick", "--parts", "eval-nd,inference", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "performance.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    evals = [r["measure"] for r in rows if r["part"] == "eval forward"]
    assert evals == [
        f"{d}-D {m}"
        for d in (1, 2, 3)
        for m in (
            "LipFNO eval / FNO twin",
            "LipFNO.export() / FNO twin",
            "LipFNO eval, check skipped / FNO twin",
            "FNO twin, check skipped / FNO twin",
        )
    ]
    inference = [r for r in rows if r["part"] == "inference"]
    assert len(inference) == 8 and all(float(r["ratio"]) > 0 for r in inference)
    assert {r["measure"] for r in inference} >= {
        "LipDeepONet eval, check skipped / DeepONet twin",
        "LipDeepONet.export() / DeepONet twin (GELU)",
    }
