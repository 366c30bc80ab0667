"""The ``liponet`` command: one subcommand per module of this package.

Each subcommand module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. User errors (:class:`UsageError`, ``ValueError``, ``FileNotFoundError``)
become one-line messages and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

__all__ = ["COMMANDS", "UsageError", "main", "warnings_as_lines"]

#: Subcommand name -> module (relative to this package).
COMMANDS: dict[str, str] = {
    "info": ".info",
    "generate": ".generate",
    "certify": ".certify",
    "train": ".train",
    "demo": ".demo",
    "regress": ".regress",
    "bench": ".bench",
    "export": ".export",
}


class UsageError(Exception):
    """A mistake of the user (bad flag, missing file): printed as one line, exit code 2."""


@contextlib.contextmanager
def warnings_as_lines(
    *categories: type[Warning], emit: Callable[[str], object] | None = None
) -> Iterator[None]:
    """Show warnings of ``categories`` as one line ``liponet: warning: MESSAGE`` on stderr.

    The library warns with :func:`warnings.warn` (a caller decides what to do with it); a
    command shows it in its own one-line format instead of Python's (file, line number and
    source line), every time it is issued (never raised as an error, never swallowed by
    Python's once-per-location registry). Other warnings keep their handling. ``emit`` receives
    each line instead of stderr (e.g. a list's ``append``, to hold the lines until a command's
    checks have passed: a command that fails prints its one error line only).

    Examples
    --------
    >>> import contextlib, io, warnings
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err), warnings_as_lines(UserWarning):
    ...     warnings.warn("the data's constant exceeds the model's", UserWarning)
    >>> print(err.getvalue(), end="")
    liponet: warning: the data's constant exceeds the model's
    """
    with warnings.catch_warnings():
        for category in categories:
            warnings.simplefilter("always", category)
        previous = warnings.showwarning

        def show(
            message: Warning | str,
            category: type[Warning],
            filename: str,
            lineno: int,
            file: TextIO | None = None,
            line: str | None = None,
        ) -> None:
            if not issubclass(category, categories):
                previous(message, category, filename, lineno, file, line)
            elif emit is not None:
                emit(f"liponet: warning: {message}")
            else:
                print(f"liponet: warning: {message}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        yield


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
    # Freed CPU memory kept for reuse: CPU training steps without fresh pages (about half a
    # 2-D step otherwise; LIPONET_TUNE_ALLOCATOR=0 keeps glibc's defaults).
    from liponet.train.allocator import tune_cpu_allocator

    tune_cpu_allocator()
    try:
        return int(args._run(args))
    except (UsageError, ValueError, FileNotFoundError, KeyboardInterrupt) as err:
        if isinstance(err, KeyboardInterrupt):
            print("liponet: interrupted", file=sys.stderr)
            return 130
        print(f"liponet {args.command}: error: {err}", file=sys.stderr)
        return 2
