"""``liponet generate``: write a PDEBench-layout HDF5 file with a batched solver."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from . import UsageError

HELP = (
    "generate a PDEBench-layout HDF5 file (advection, burgers, darcy, ...) or a Well-layout "
    "dataset folder (well_advection)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FAMILY PATH and the size, seed, device and PDE parameters."""
    parser.add_argument("family", metavar="FAMILY", help="a generator family name")
    parser.add_argument(
        "path",
        metavar="PATH",
        help="HDF5 file to write (atomically); for well_* families the dataset folder",
    )
    parser.add_argument("--n-samples", type=int, required=True, help="number of samples")
    parser.add_argument("--nx", type=int, default=None, help="cells per axis (default PDEBench's)")
    parser.add_argument(
        "--nt", type=int, default=None, help="frames incl. t=0 (default PDEBench's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="torch device of the solver")
    parser.add_argument("--batch-size", type=int, default=256, help="samples solved together")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="K=V",
        help="PDE parameter, e.g. --param nu=0.01 (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _params(items: list[str]) -> dict[str, float]:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            params[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--param expects KEY=NUMBER, got {item!r}") from None
    return params


def run(args: argparse.Namespace) -> int:
    """Generate, showing progress on stderr, then print the path on stdout."""
    from ..data import generate, generate_well
    from ..data.generators.well_advection import WELL_FAMILIES

    if args.family in WELL_FAMILIES:
        sizes: dict[str, Any] = {"nx": args.nx, "nt": args.nt}
        kwargs = {k: v for k, v in sizes.items() if v is not None} | _params(args.param)
        root = generate_well(args.path, n_samples=args.n_samples, seed=args.seed, **kwargs)
        print(root)
        return 0
    start = time.monotonic()

    def progress(done: int, total: int) -> None:
        if args.quiet:
            return
        elapsed = time.monotonic() - start
        print(
            f"\rgenerate {args.family}: {done}/{total} frames, {elapsed:.1f} s",
            end="\n" if done == total else "",
            file=sys.stderr,
            flush=True,
        )

    path = generate(
        args.family,
        args.path,
        n_samples=args.n_samples,
        nx=args.nx,
        nt=args.nt,
        seed=args.seed,
        device=args.device,
        progress=progress,
        batch_size=args.batch_size,
        **_params(args.param),
    )
    print(path)
    return 0
