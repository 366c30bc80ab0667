"""README figures against the committed results files (issue 12, item 8).

Two checks, both used by ``tests/test_readme.py``:

* **Tables, cell by cell.** A README table generated from a results CSV (the benchmark summary:
  :func:`liponet.bench.summary_table`) must equal the table regenerated from the committed CSV,
  cell by cell: a swapped or stale number names its row and column.
* **Figures in prose, per section.** Every decimal figure (``0.093``, ``1.75x``, ``6e-3``) in
  a README section (outside code) must be backed by one of the committed results files that
  section cites by path (``benchmarks/results/NAME.md`` or ``.csv``, also in a subfolder
  such as ``benchmarks/results/RUN/NAME.md``; a ``benchmarks/results/fno_*.md`` pattern cites
  every match): some number there rounds to it at
  the precision it is printed with (``0.92`` is backed by ``0.918``). Settings quoted in prose
  must be in the results file's settings line too.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Section markers of the README (``<!-- section: NAME -->``).
SECTION = re.compile(r"<!-- section: ([\w-]+) -->")
#: A results file cited by path (glob patterns and subfolders allowed).
CITED = re.compile(r"benchmarks/results/([\w*.{},/-]+?\.(?:md|csv))")
#: A decimal figure: digits with a decimal point or an exponent (integers are counts/settings).
FIGURE = re.compile(r"(?<![\w.])(\d+\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)(?![\w.]*\d)")


def sections(readme: str) -> dict[str, str]:
    """Text of each marked section, up to the next marker or level-2/3 heading."""
    out = {}
    marks = list(SECTION.finditer(readme))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(readme)
        text = readme[mark.end() : end]
        stop = re.search(r"\n###? ", text)
        out[mark.group(1)] = text[: stop.start()] if stop else text
    return out


def cited_files(text: str, root: Path = ROOT) -> list[Path]:
    """Committed results files a section cites (``{md,csv}`` and ``*`` patterns expanded)."""
    files: list[Path] = []
    for name in CITED.findall(text):
        for variant in _braces(name):
            files += sorted((root / "benchmarks" / "results").glob(variant))
    return list(dict.fromkeys(files))


def _braces(name: str) -> list[str]:
    match = re.search(r"\{([^}]*)\}", name)
    if not match:
        return [name]
    return [
        v
        for part in match.group(1).split(",")
        for v in _braces(name[: match.start()] + part + name[match.end() :])
    ]


def _tokens(text: str) -> set[str]:
    return set(FIGURE.findall(text))


#: Any number in a results file.
NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:e[-+]?\d+)?)(?![\w.]*\d)")


def _backed(figure: str, values: list[float]) -> bool:
    """Whether some result rounds to ``figure`` at the precision it is printed with."""
    f = float(figure)
    mantissa = figure.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    exponent = int(figure.lower().split("e")[1]) if "e" in figure.lower() else 0
    half = 0.5 * 10.0 ** (exponent - decimals)
    return any(abs(v - f) <= half * (1 + 1e-9) for v in values)


def unbacked_figures(readme: str, root: Path = ROOT) -> list[str]:
    """``"section: figure in 'context'"`` for every figure no cited results file contains."""
    problems = []
    for name, text in sections(readme).items():
        prose = re.sub(r"```.*?```", "", text, flags=re.S)  # code blocks hold no results
        prose = "\n".join(line for line in prose.splitlines() if not line.startswith("|"))
        prose = re.sub(r"`[^`]*`", "", prose)  # nor inline code (settings, names)
        figures = _tokens(prose)
        if not figures:
            continue
        values: list[float] = []
        for path in cited_files(text, root):
            values += [float(v) for v in NUMBER.findall(path.read_text())]
        for figure in sorted(f for f in figures if not _backed(f, values)):
            if (name, figure) in SETTINGS:
                continue
            at = prose.find(figure)
            context = prose[max(0, at - 40) : at + 40].replace("\n", " ")
            problems.append(f"{name}: {figure} in '...{context}...'")
    return problems


def table_after(readme: str, anchor: str) -> list[str]:
    """The first markdown table after ``anchor`` (its lines)."""
    start = readme.index(anchor)
    lines = readme[start:].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_mismatches(readme_table: list[str], expected: list[str]) -> list[str]:
    """Cell-by-cell differences, each naming its row (first cell) and column (header)."""
    if len(readme_table) != len(expected):
        return [f"README table has {len(readme_table)} lines, the results give {len(expected)}"]
    header = _cells(expected[0])
    problems = []
    for got, want in zip(readme_table, expected, strict=True):
        g, w = _cells(got), _cells(want)
        if len(g) != len(w):
            problems.append(f"row {w[0]!r}: {len(g)} cells, the results give {len(w)}")
            continue
        for col, (a, b) in enumerate(zip(g, w, strict=True)):
            if a != b:
                where = f"row {w[0]!r}, column {header[col]!r}"
                problems.append(f"{where}: README {a!r}, results {b!r}")
    return problems


#: Figures in README prose that are not measurements (section, figure) -> why.
SETTINGS: dict[tuple[str, str], str] = {
    ("models", "1.1289"): "GELU's largest slope, a property of the function",
    ("data", "0.1"): "the default val_fraction, a setting",
    ("train", "0.1"): "the demo's beta, a setting",
    ("train", "1.25"): "the demo's final time, a setting",
}
