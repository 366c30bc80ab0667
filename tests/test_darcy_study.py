"""``benchmarks/darcy_study.py --quick`` end to end: rows, certificates, ratios, tables."""

import csv
import importlib
import math
from types import SimpleNamespace

import pytest
from trainfixtures import ROOT, run_script

from liponet.bench import TASKS
from liponet.layers.fourier import PaddedDomain

SCRIPT = ROOT / "benchmarks" / "darcy_study.py"
#: Relative room for the float32 rounding that every certificate includes (measured: 3e-7).
ROUNDING = 1e-5


def _run(*args: str):
    return run_script(SCRIPT, *args, timeout=300)


def _rows(path):
    with path.open() as fh:
        return {r["config"]: r for r in csv.DictReader(fh)}


@pytest.mark.slow  # a benchmark script's smoke run (~10-30 s)
def test_quick_study_rows_ratios_and_tables_rebuild(tmp_path):
    configs = ("cpl k=1", "fourier k=3", "fourier padding=0 k=3", "fourier lr=1e-2 k=3")
    proc = _run("--quick", "--out", str(tmp_path), "--configs", *configs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = _rows(tmp_path / "darcy_study.csv")
    assert set(rows) == {"FNO", *configs}  # FNO, the reference, always runs first
    for r in rows.values():
        assert r["status"] == "ok" and r["task"] == "darcy_2d"
        assert math.isfinite(float(r["nrmse"]))
        assert 0 < float(r["one_step_test"]) and 0 < float(r["one_step_train"])
    assert float(rows["cpl k=1"]["lipschitz_certified"]) <= 1.0 * (1 + ROUNDING)
    for name in configs[1:]:
        assert float(rows[name]["lipschitz_certified"]) <= 3.0 * (1 + ROUNDING)
    # a second process without FNO: its ratios are rebuilt from the FNO row in the tables
    more = _run("--quick", "--no-fno", "--out", str(tmp_path), "--configs", "fourier k=1")
    assert more.returncode == 0, more.stdout + more.stderr
    fno, extra = rows["FNO"], _rows(tmp_path / "darcy_study.csv")["fourier k=1"]
    ratio = float(extra["nrmse"]) / float(fno["nrmse"])
    table = (tmp_path / "darcy_study.md").read_text()
    line = next(x for x in table.splitlines() if x.startswith("| 4 | fourier k=1 | 0 |"))
    assert line.split(" | ")[5] == f"{ratio:.3g}"
    (tmp_path / "darcy_study.md").unlink()
    rebuilt = _run("--quick", "--from-csv", "--out", str(tmp_path))
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert (tmp_path / "darcy_study.md").read_text() == table


def test_padding_and_lr_configurations_change_the_model_and_the_optimizer(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script's own import path
    study = importlib.import_module("darcy_study")
    preset = study.quick_preset()
    assert study.config_preset(preset, "fourier lr=1e-2 k=3").lr == pytest.approx(1e-2)
    assert study.config_preset(preset, "fourier k=3").lr == preset.lr
    assert study.config_preset(preset, "fourier wd=1e-3 k=3").weight_decay == pytest.approx(1e-3)
    assert study.config_preset(preset, "fourier k=3").weight_decay == preset.weight_decay
    data = SimpleNamespace(task=TASKS["darcy_2d"], in_channels=1, out_channels=1, spatial=(16, 16))
    pads = {}
    for name in ("FNO", "fourier k=3", "fourier padding=0 k=3", "fourier padding=0.25 k=3"):
        model = study.builder(name)(data, preset)
        pads[name] = [m.padding for m in model.modules() if isinstance(m, PaddedDomain)]
    assert pads == {
        "FNO": [0.125],  # the bench pads every FNO on a non-periodic task by 1/8
        "fourier k=3": [0.125],
        "fourier padding=0 k=3": [0.0],
        "fourier padding=0.25 k=3": [0.25],
    }
