"""Shared pieces of the FNO benchmarks: matched model builders, neuraloperator baseline, output.

Imported by ``fno_speed.py`` and ``fno_accuracy.py`` (run from the repository root; Python puts
``benchmarks/`` on the path of a script it runs).
"""

from __future__ import annotations

import csv
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from liponet.models import FNO, LipFNO

RESULTS = Path("benchmarks/results")


def neuralop_n_modes(modes: Sequence[int]) -> tuple[int, ...]:
    """neuraloperator's ``n_modes`` keeping exactly liponet's kept modes.

    neuraloperator keeps ``n // 2 + 1`` rfft modes for ``n_modes[-1] = n`` (so ``2 (m - 1)``
    keeps ``m``), and ``n`` centred modes in each leading dimension (odd ``n = 2 m - 1`` gives
    liponet's symmetric ``|k| < m``).
    """
    return (*(2 * m - 1 for m in modes[:-1]), 2 * (modes[-1] - 1))


def neuralop_fno(
    in_channels: int, out_channels: int, modes: Sequence[int], width: int, depth: int
) -> nn.Module | None:
    """neuraloperator's FNO matched to ``LipFNO``: kept modes, width, depth, linear lifting, a
    two-layer projection with hidden ``2 * width``, linear skip, grid input; no channel MLP.
    ``None`` when neuraloperator is not installed (it is an optional extra)."""
    try:
        from neuralop.models import FNO as NeuralopFNO
    except ImportError:
        return None
    return NeuralopFNO(
        n_modes=neuralop_n_modes(modes),
        in_channels=in_channels,
        out_channels=out_channels,
        hidden_channels=width,
        n_layers=depth,
        lifting_channel_ratio=0,
        projection_channel_ratio=2,
        use_channel_mlp=False,
    )


def build(name: str, in_channels: int, out_channels: int, modes, width, depth, **kw: Any):
    """``"LipFNO"`` / ``"FNO"`` / ``"neuralop"`` at a matched size."""
    if name == "neuralop":
        return neuralop_fno(in_channels, out_channels, modes, width, depth)
    cls = {"LipFNO": LipFNO, "FNO": FNO}[name]
    return cls(in_channels, out_channels, modes, width=width, depth=depth, **kw)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows with the same keys as CSV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def append_row(path: Path, row: Any, columns: Sequence[str]) -> None:
    """Append one row of ``columns`` to a CSV (its header first if the file is new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        if new:
            writer.writeheader()
        writer.writerow({c: row[c] for c in columns})


def markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A markdown table of ``columns`` (floats shown with 4 significant digits)."""

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    out: Path,
    stem: str,
    title: str,
    settings: str,
    legend: str,
    rows: list[dict[str, Any]],
    plot: Callable[[list[dict[str, Any]], Path], object],
) -> None:
    """``out/stem.md`` (title, settings line, what the columns mean, the table), the plot as
    ``out/stem.png``, and each row printed: how a side-by-side script ends its run."""
    lines = [f"# {title}", "", f"Settings: {settings}", "", legend, ""]
    lines += [markdown_table(rows, list(rows[0])), ""]
    (out / f"{stem}.md").write_text("\n".join(lines))
    plot(rows, out / f"{stem}.png")
    for r in rows:
        print(r)


def interleaved_ms(
    fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 2
) -> dict[str, float]:
    """Median CPU milliseconds per call of each function, calls interleaved round by round.

    ``warmup`` rounds first (power-iteration vectors, allocator), not timed.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            start = time.process_time()
            fn()
            cpu[k].append(time.process_time() - start)
    return {k: 1e3 * statistics.median(v) for k, v in cpu.items()}
