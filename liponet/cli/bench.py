"""``liponet bench``: train and score every model family on PDEBench tasks, with certificates."""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time

import torch

from . import UsageError

HELP = "PDEBench-style benchmark with certified bounds (presets tiny, small, full)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Preset, task/model selection, data and output folders."""
    from ..bench import MODELS, PRESETS, TASKS

    parser.add_argument("--preset", choices=tuple(PRESETS), default="small")
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK", default=None, help=f"subset of {', '.join(TASKS)}"
    )
    parser.add_argument(
        "--models", nargs="+", metavar="MODEL", default=None, help=f"subset of {', '.join(MODELS)}"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with PDEBench's downloaded files (used unchanged); default: generate data",
    )
    parser.add_argument(
        "--work-dir", default=None, help="where generated files go (default: a temporary folder)"
    )
    parser.add_argument("--out", default="benchmarks/results", help="results folder")
    parser.add_argument("--steps", type=int, default=None, help="override the training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace) -> int:
    """Run the preset, print one line per row, write markdown + CSV + PNG."""
    from ..bench import MODELS, PRESETS, TASKS, run_bench, with_overrides, write_results

    for name, chosen, known in (("--tasks", args.tasks, TASKS), ("--models", args.models, MODELS)):
        for item in chosen or ():
            if item not in known:
                raise UsageError(f"{name}: unknown {item!r}; available: {', '.join(known)}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    preset = with_overrides(PRESETS[args.preset], steps=args.steps)
    start = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - start:7.1f} s] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="liponet-bench-") as tmp:
        rows = run_bench(
            preset,
            tasks=args.tasks,
            models=args.models,
            data_dir=args.data_dir,
            work_dir=args.work_dir or tmp,
            seed=args.seed,
            progress=progress,
        )
    total = time.monotonic() - start
    settings = {
        "preset": preset.name,
        "steps": preset.steps if preset.epochs is None else f"{preset.epochs} epochs",
        "batch": preset.batch,
        "lr": preset.lr,
        "width": preset.width,
        "modes": preset.modes,
        "depth": preset.depth,
        "samples": "file" if args.data_dir else preset.n_samples,
        "data": args.data_dir or "generated",
        "seed": args.seed,
        "torch threads": torch.get_num_threads(),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "total wall time": f"{total:.0f} s",
    }
    for path in write_results(rows, args.out, preset, settings):
        print(path)
    return 0
