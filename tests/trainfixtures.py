"""Shared pieces of the tests that run training or scripts: paths, environment, a tiny config."""

import contextlib
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "_train_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def tiny_config(out_dir: Any, **changes: Any) -> dict[str, Any]:
    """A LipMLP on the toy-shift data: 24 training samples, 2 epochs of batch 4."""
    grid = 8
    data: dict[str, Any] = {
        "model": {
            "name": "LipMLP",
            "kwargs": {"in_features": grid, "out_features": grid, "width": 8, "depth": 1},
        },
        "data": {"name": "toy-shift", "kwargs": {"n_train": 24, "n_val": 6, "grid": grid}},
        "epochs": 2,
        "batch_size": 4,
        "lr": 1e-2,
        "device": "cpu",
        "out_dir": str(out_dir),
        "monitor": "val_nrmse",
    }
    data.update(changes)
    return data


def fit_config(
    cfg_dict: dict[str, Any], resume: Any = None, callbacks: Any = ()
) -> tuple[Any, dict[str, Any]]:
    """Build the config's data and Trainer (no progress bar) and fit; ``(trainer, record)``."""
    from liponet.train import Trainer, build_dataset, config_from_dict

    cfg = config_from_dict(cfg_dict)
    data = build_dataset(cfg.data, cfg.seed)
    trainer = Trainer(cfg, data.train, data.val, callbacks=callbacks, progress=False)
    return trainer, trainer.fit(resume_from=resume)


def run_script(
    script: Path, *args: str, timeout: float = 600
) -> "subprocess.CompletedProcess[str]":
    """Run ``script`` (a benchmarks/ file) with this interpreter from the repository root."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=ENV,
    )


@contextlib.contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """``benchmarks/NAME.py`` imported as a module, its folder on ``sys.path`` while in use."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(ROOT / "benchmarks"))  # the script's own import path
    try:
        yield importlib.import_module(name)
    finally:
        mp.undo()
