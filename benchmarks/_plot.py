"""Plotting shared by the benchmark scripts (matplotlib is optional: the ``plot`` extra).

A script imports it as ``from _plot import panel_row, pyplot`` (run from the repository root as
``python benchmarks/NAME.py``, the script's folder is on ``sys.path``); a script whose plot is
not optional takes ``plt = agg_pyplot()`` (an ``ImportError`` without matplotlib).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def agg_pyplot() -> Any:
    """:func:`pyplot`, required: ``ImportError`` (naming the ``plot`` extra) without matplotlib."""
    plt = pyplot()
    if plt is None:
        raise ImportError("this script's plot needs matplotlib (the plot extra)")
    return plt


@contextlib.contextmanager
def panel_row(path: Path, n: int, size: tuple[float, float], dpi: int = 90) -> Iterator[list[Any]]:
    """A row of ``n`` panels of ``size`` inches each, saved to ``path`` (tight layout) on exit.

    Call it after :func:`pyplot` returned a module; the figure is closed whatever happens.
    """
    plt = pyplot()
    if plt is None:
        raise RuntimeError("panel_row needs matplotlib (check pyplot() first)")
    fig, axes = plt.subplots(1, n, figsize=(size[0] * n, size[1]), squeeze=False)
    try:
        yield list(axes[0])
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
