"""Train step of LipFNO's defaults and of the FNO twin: this tree against an earlier commit.

The convex-potential training step was made cheaper without changing the function (blocks that
share FFTs, the clip normalization as one autograd node, mode mixing as one batched GEMM). This
script measures what that bought, side by side in one process: the earlier commit's ``liponet``
is extracted with ``git archive`` into a temporary folder, imported under the name
``liponet_before`` (its registered ops renamed ``liponet_before::*`` so both trees load), and
one Adam step of each model (forward, relative-MSE loss, backward, step) is timed in
interleaved rounds, one torch thread, median process CPU time. Sizes: the ``medium`` bench's
(``liponet.bench.PRESETS["medium"]``: 1-D 128 cells, 10 input frames, width 20, 12 and 64
modes; 2-D Darcy 32 x 32, 12 x 12 modes, padding 1/8; batch 32, depth 4).

``--bench-models NAME ...`` adds rows for ``liponet bench`` networks (each tree's
``liponet.bench.MODELS[NAME]`` built for ``--task``'s ``medium`` shapes, e.g. Burgers'
``LipFNO-w12-h36-d3``), timed the same way beside both trees' bench FNO.

Run from the repository root: ``.venv/bin/python benchmarks/cpl_speedup.py --against REV``
(a few CPU minutes; ``--quick`` for a smoke run). Writes
``benchmarks/results/cpl_speedup.{md,csv,png}`` (``--out`` another folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from _plot import panel_row
from fno_common import interleaved_ms, write_csv, write_report
from torch import nn

import liponet.bench
import liponet.models
from liponet.bench import PRESETS, relative_mse

RESULTS = Path("benchmarks/results")
CONFIGS = {
    "medium 1-D, 12 modes": dict(cin=10, n=(128,), modes=(12,), pad=0.0),
    "medium 1-D, 64 modes": dict(cin=10, n=(128,), modes=(64,), pad=0.0),
    "medium 2-D": dict(cin=1, n=(32, 32), modes=(12, 12), pad=0.125),
}


def load_before(rev: str, folder: Path) -> ModuleType:
    """``liponet`` at commit ``rev`` as ``liponet_before`` (with ``.models`` and ``.bench``)."""
    archive = subprocess.run(
        ["git", "archive", rev, "liponet"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    package = folder / "liponet_before"
    (folder / "liponet").rename(package)
    for path in package.rglob("*.py"):  # register its custom ops under another namespace
        text = path.read_text()
        if "liponet::" in text:
            path.write_text(text.replace("liponet::", "liponet_before::"))
    spec = importlib.util.spec_from_file_location(
        "liponet_before", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["liponet_before"] = module
    spec.loader.exec_module(module)
    importlib.import_module("liponet_before.models")  # the subpackages, as attributes
    importlib.import_module("liponet_before.bench")
    return module


def train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """One Adam step on ``(x, y)``."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        loss = relative_mse(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _row(label: str, ms: dict[str, float], lip: str, fno: str) -> dict:
    """One row: ``lip`` and ``fno`` of both trees (keys ``"NAME before"``, ``"NAME now"``)."""
    return {
        "size": label,
        "LipFNO_before_ms": ms[f"{lip} before"],
        "LipFNO_now_ms": ms[f"{lip} now"],
        "FNO_before_ms": ms[f"{fno} before"],
        "FNO_now_ms": ms[f"{fno} now"],
        "LipFNO_now_over_before": ms[f"{lip} now"] / ms[f"{lip} before"],
        "FNO_now_over_before": ms[f"{fno} now"] / ms[f"{fno} before"],
        "LipFNO_over_FNO_before": ms[f"{lip} before"] / ms[f"{fno} before"],
        "LipFNO_over_FNO_now": ms[f"{lip} now"] / ms[f"{fno} now"],
    }


def measure_bench(
    before: ModuleType, names: list[str], task: str, rounds: int, quick: bool
) -> list[dict]:
    """Rows of ``liponet bench`` networks (each tree's builder) beside each tree's bench FNO."""
    from medium_step_time import task_data

    preset = PRESETS["medium"]
    if quick:
        preset = dataclasses.replace(preset, nx={task: 32}, width=8, modes=4, batch=4)
    data = task_data(task, preset, torch.Generator().manual_seed(0))
    x, y = data.x_train[: preset.batch], data.y_train[: preset.batch]
    models = {}
    for tree, bench in (("before", before.bench), ("now", liponet.bench)):
        for name in ("FNO", *names):
            torch.manual_seed(0)
            models[f"{name} {tree}"] = bench.MODELS[name](data, preset)
    ms = interleaved_ms({k: train_step(m, x, y) for k, m in models.items()}, rounds)
    return [_row(f"{task} {name}", ms, name, "FNO") for name in names]


def measure(before: ModuleType, rounds: int, batch: int, width: int) -> list[dict]:
    rows = []
    for label, cfg in CONFIGS.items():
        torch.manual_seed(0)
        x = torch.randn(batch, cfg["cin"], *cfg["n"])
        y = torch.randn(batch, 1, *cfg["n"])
        models = {}
        for tree, mod in (("before", before.models), ("now", liponet.models)):
            for name in ("LipFNO", "FNO"):
                cls = getattr(mod, name)
                models[f"{name} {tree}"] = cls(
                    cfg["cin"], 1, cfg["modes"], width=width, depth=4, padding=cfg["pad"]
                )
        fns = {k: train_step(m, x, y) for k, m in models.items()}
        ms = interleaved_ms(fns, rounds)
        rows.append(_row(label, ms, "LipFNO", "FNO"))
    return rows


def plot(rows: list[dict], path: Path) -> None:
    with panel_row(path, 1, (6, 3.5)) as (ax,):
        xs = range(len(rows))
        ax.bar([i - 0.2 for i in xs], [r["LipFNO_over_FNO_before"] for r in rows], 0.4,
               label="before")  # fmt: skip
        ax.bar([i + 0.2 for i in xs], [r["LipFNO_over_FNO_now"] for r in rows], 0.4, label="now")
        ax.axhline(1.3, color="grey", lw=0.8, ls="--", label="target 1.3")
        ax.set_xticks(list(xs), [r["size"] for r in rows], fontsize=7)
        ax.set_ylabel("LipFNO defaults / FNO twin (CPU time per step)")
        ax.legend(loc="best", fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the earlier commit (git revision)")
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--bench-models", nargs="+", default=[], help="liponet bench networks to add (rows)"
    )
    parser.add_argument("--task", default="burgers_1d", help="the medium task of --bench-models")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 12)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds, batch, width = (3, 2, 8) if args.quick else (12, 32, 20)
    rounds = args.rounds or rounds
    unknown = [m for m in args.bench_models if m not in liponet.bench.MODELS]
    if unknown or args.task not in PRESETS["medium"].tasks:
        parser.error(
            f"unknown bench model {unknown} or task {args.task!r}; models: "
            f"{list(liponet.bench.MODELS)}, tasks: {PRESETS['medium'].tasks}"
        )
    if args.quick:
        for cfg in CONFIGS.values():
            cfg.update(n=tuple(16 for _ in cfg["n"]), modes=tuple(3 for _ in cfg["modes"]))
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.against], capture_output=True, text=True, check=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(rev, Path(tmp))
        start, load_start = time.perf_counter(), os.getloadavg()[0]
        rows = measure(before, rounds, batch, width)
        if args.bench_models:
            rows += measure_bench(before, args.bench_models, args.task, rounds, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "cpl_speedup.csv", rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run: before = commit {rev}, now = this tree "
        f"(HEAD {head} plus uncommitted changes, if any); {rounds} interleaved rounds, 1 torch "
        f"thread, batch {batch}, width {width}, depth 4, LipFNO and FNO defaults; "
        f"{time.perf_counter() - start:.0f} s; the machine's 1-minute load average "
        f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    )
    if args.bench_models:
        settings += (
            f". Rows `{args.task} NAME`: `liponet bench` networks ({', '.join(args.bench_models)}; "
            f"each tree's `liponet.bench.MODELS` at the `medium` preset's {args.task} shapes"
            f"{' (quick sizes)' if args.quick else ''}) against each tree's bench FNO, same step"
        )
    write_report(
        args.out,
        "cpl_speedup",
        "Convex-potential train step: this tree against an earlier commit",
        settings,
        (
            "Median CPU milliseconds per Adam step (`*_ms`), each model measured interleaved "
            "with the others in one process; `LipFNO_over_FNO_*` is the train-time ratio of "
            "LipFNO's defaults"
            ' (`block="cpl"`, `normalization="clip"`) to the FNO twin within each tree '
            "(issue 13's target: <= 1.3)."
        ),
        rows,
        plot,
    )


if __name__ == "__main__":
    main()
