"""The ``liponet`` command: one subcommand per module of this package.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`UsageError`, ``ValueError``, ``FileNotFoundError``)
become one-line messages and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "UsageError", "main"]

#: Subcommand name -> module (relative to this package).
COMMANDS: dict[str, str] = {
    "info": ".info",
    "generate": ".generate",
    "certify": ".certify",
    "train": ".train",
    "demo": ".demo",
    "regress": ".regress",
    "bench": ".bench",
}


class UsageError(Exception):
    """A mistake of the user (bad flag, missing file): printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="liponet",
        description="Lipschitz neural operators with certified error bounds.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name, __name__)
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``liponet`` console script and of ``python -m liponet``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except (UsageError, ValueError, FileNotFoundError, KeyboardInterrupt) as err:
        if isinstance(err, KeyboardInterrupt):
            print("liponet: interrupted", file=sys.stderr)
            return 130
        print(f"liponet {args.command}: error: {err}", file=sys.stderr)
        return 2
