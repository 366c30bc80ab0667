"""``benchmarks/screen_farm.py``: its job grid, each job's training settings and the quick run."""

import csv

import pytest
from trainfixtures import ROOT, benchmark_module, run_script

from liponet.bench import PRESETS

SCRIPT = ROOT / "benchmarks" / "screen_farm.py"


@pytest.fixture(scope="module")
def farm():
    with benchmark_module("screen_farm") as module:
        yield module


def test_grid_covers_every_network_rate_and_recipe_once(farm):
    jobs = farm.jobs_for("darcy_2d", [0, 1])
    names = [(j["config"], j["seed"]) for j in jobs]
    assert len(names) == len(set(names))
    per_seed = sum(
        len(farm.RATES["darcy_2d"][family]) * len(farm.GRID_RECIPES["darcy_2d"])
        for family, _ in farm.NETWORKS["darcy_2d"].values()
    )
    assert len(jobs) == 2 * per_seed
    assert jobs[0]["family"] == "FNO" and jobs[0]["seed"] == 0  # the reference first


def test_job_settings_reach_the_training_preset(farm):
    job = next(
        j
        for j in farm.jobs_for("darcy_2d", [0])
        if j["network"] == "d3-k3" and j["recipe"] == "-cos-wd0" and j["lr"] == 2e-2
    )
    _, preset = farm.build_job(job, PRESETS["medium"])
    assert (preset.lr, preset.weight_decay, preset.schedule_unit, preset.depth) == (
        2e-2,
        0.0,
        "step",
        3,
    )
    epoch = dict(job, recipe="-epoch")
    _, preset = farm.build_job(epoch, PRESETS["medium"])
    assert (preset.weight_decay, preset.schedule_unit) == (PRESETS["medium"].weight_decay, "epoch")


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_run_writes_rows_and_ratios(tmp_path):
    out = tmp_path / "out"
    run_script(
        SCRIPT,
        "--grid",
        "darcy",
        "--quick",
        "--workers",
        "1",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(out),
    )
    with (out / "screen_farm.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and all(r["status"] == "ok" for r in rows)
    assert any(r["family"] == "FNO" for r in rows)
    text = (out / "screen_farm.md").read_text()
    assert "## darcy_2d (best FNO" in text and "| 1 |" in text
