"""``liponet bench``: train and score every model family on PDEBench tasks, with certificates."""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from . import UsageError

HELP = "PDEBench-style benchmark with certified bounds (presets tiny, small, medium, full)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Preset, task/model/seed selection, data and output folders, incremental runs."""
    from ..bench import MODELS, PRESETS, TASKS

    parser.add_argument("--preset", choices=tuple(PRESETS), default="small")
    parser.add_argument(
        "--tasks", nargs="+", metavar="TASK", default=None, help=f"subset of {', '.join(TASKS)}"
    )
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        default=None,
        help=f"subset of {', '.join(MODELS)} (default: the preset's)",
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
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        help="training seeds, one row each (default: the preset's)",
    )
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument(
        "--append",
        action="store_true",
        help="append each row to OUT/bench_PRESET.csv as it finishes and skip the rows already "
        "there (resume; several processes may append to the same file); then rebuild the "
        "markdown and PNG from the whole CSV",
    )
    parser.add_argument(
        "--from-csv",
        action="store_true",
        help="train nothing: rebuild OUT/bench_PRESET.md and .png from OUT/bench_PRESET.csv",
    )
    parser.add_argument(
        "--note",
        default="",
        help="a paragraph for the markdown (e.g. how this run departs from the preset); "
        "--append and --from-csv without it keep the file's existing paragraph",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _settings(args: argparse.Namespace, preset_name: str) -> dict[str, object]:
    from ..bench import PRESETS, preset_settings, with_overrides

    preset = with_overrides(PRESETS[preset_name], steps=args.steps)
    return {
        **preset_settings(preset),
        **({"samples": "file"} if args.data_dir else {}),
        "data": args.data_dir or "generated",
        "data seed": args.seed,
        "torch threads": torch.get_num_threads(),
        "device": args.device,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }


def run(args: argparse.Namespace) -> int:
    """Run the preset, print one line per row, write markdown + CSV + PNG."""
    from ..bench import (
        MODELS,
        PRESETS,
        TASKS,
        append_row,
        done_keys,
        read_rows,
        run_bench,
        with_overrides,
        write_results,
    )

    for name, chosen, known in (("--tasks", args.tasks, TASKS), ("--models", args.models, MODELS)):
        for item in chosen or ():
            if item not in known:
                raise UsageError(f"{name}: unknown {item!r}; available: {', '.join(known)}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    if args.threads is not None:
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.append and args.from_csv:
        raise UsageError("--append and --from-csv exclude each other")
    preset = with_overrides(PRESETS[args.preset], steps=args.steps)
    csv_path = Path(args.out) / f"bench_{preset.name}.csv"
    if args.from_csv:
        if not csv_path.is_file():
            raise UsageError(f"--from-csv: {csv_path} does not exist (run the preset first)")
        for path in write_results(
            read_rows(csv_path),
            args.out,
            preset,
            _settings(args, preset.name),
            write_csv=False,
            note=args.note,
        ):
            print(path)
        return 0
    skip = done_keys(read_rows(csv_path)) if args.append and csv_path.is_file() else set()
    start = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - start:7.1f} s] {message}", file=sys.stderr, flush=True)

    def on_row(row: dict[str, object]) -> None:
        if args.append:
            append_row(csv_path, row)

    with tempfile.TemporaryDirectory(prefix="liponet-bench-") as tmp:
        rows = run_bench(
            preset,
            tasks=args.tasks,
            models=args.models,
            data_dir=args.data_dir,
            work_dir=args.work_dir or tmp,
            seed=args.seed,
            seeds=args.seeds,
            device=args.device,
            skip=skip,
            on_row=on_row,
            progress=progress,
        )
    settings = _settings(args, preset.name)
    if args.append:
        paths = write_results(
            read_rows(csv_path), args.out, preset, settings, write_csv=False, note=args.note
        )
        paths.insert(0, csv_path)
    else:
        settings["total wall time"] = f"{time.monotonic() - start:.0f} s"
        paths = write_results(rows, args.out, preset, settings, note=args.note)
    for path in paths:
        print(path)
    return 0
