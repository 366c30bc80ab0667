"""``benchmarks/device_check.py`` end to end on the CPU (the GPU run happens in a GPU session)."""

import csv
import pathlib

import pytest
import torch
from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "device_check.py"


def _run(*args: str):
    return run_script(SCRIPT, *args, timeout=180)


def test_cpu_quick_writes_results_and_passes(tmp_path: pathlib.Path) -> None:
    proc = _run("--device", "cpu", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("device_check_cpu.md", "device_check_cpu.csv", "device_check_cpu_timings.csv"):
        assert (tmp_path / name).is_file(), name
    with (tmp_path / "device_check_cpu.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 19 and {r["status"] for r in rows} == {"PASS"}
    names = {r["check"] for r in rows}
    assert {"LipFNO 2-D orthogonal lipschitz_bound", "Trainer checkpoint reload"} <= names
    printed = [line for line in proc.stdout.splitlines() if line.startswith(("PASS", "FAIL"))]
    assert len(printed) == len(rows)
    md = (tmp_path / "device_check_cpu.md").read_text()
    assert f"torch {torch.__version__}" in md and "0 failed" in md


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path: pathlib.Path) -> None:
    proc = _run("--device", "cuda", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "CUDA is not available" in proc.stderr
    assert not any(tmp_path.iterdir())
