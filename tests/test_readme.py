"""README and documentation figures are backed by the committed results files (issue 12, item 8).

The README keeps the commands and a tour; the reference lives in ``docs/`` (issue 16). Both are
checked as one text: every page, each ending its last section (``## `` ends a section).
"""

import csv
import re

from readme_figures import ROOT, table_after, table_mismatches, unbacked_figures

from liponet.bench import summary_table

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
BENCH_CSV = ROOT / "benchmarks" / "results" / "bench_small.csv"
SUMMARY = "**Summary, preset `small`**"


def documentation() -> str:
    """The README and every docs page, one after the other."""
    return "\n\n## \n".join(page.read_text() for page in PAGES)


def _summary_from_results() -> list[str]:
    with BENCH_CSV.open() as fh:
        return summary_table(list(csv.DictReader(fh)))


def test_benchmark_summary_matches_the_committed_results_cell_by_cell():
    readme = documentation()
    assert f"{SUMMARY} (from `benchmarks/results/bench_small.md`" in readme
    assert table_mismatches(table_after(readme, SUMMARY), _summary_from_results()) == []


def test_a_swapped_number_fails_the_table_check():
    table = table_after(documentation(), SUMMARY)
    row = next(i for i, line in enumerate(table) if line.startswith("| advection_1d |"))
    cells = table[row].split(" | ")
    cells[2], cells[3] = cells[3], cells[2]  # FNO's and LipFNO's numbers swapped
    swapped = [*table[:row], " | ".join(cells), *table[row + 1 :]]
    # the old check (every number of the row somewhere in bench_small.md) passes it ...
    text = (ROOT / "benchmarks" / "results" / "bench_small.md").read_text()
    assert all(n in text for n in re.findall(r"\d+\.\d+", swapped[row]))
    # ... the cell-by-cell check names both cells
    problems = table_mismatches(swapped, _summary_from_results())
    assert len(problems) == 2
    assert "row 'advection_1d', column 'FNO'" in problems[0]
    assert "column 'LipFNO'" in problems[1]


def test_readme_prose_figures_are_backed_by_the_results_their_section_cites():
    assert unbacked_figures(documentation()) == []


def test_an_unbacked_prose_figure_fails():
    readme = documentation()
    assert "(a 2.1 GB file) **1.078x**" in readme
    changed = readme.replace("(a 2.1 GB file) **1.078x**", "(a 2.1 GB file) **9.87x**")
    problems = unbacked_figures(changed)
    assert len(problems) == 1 and problems[0].startswith("data: 9.87 in")


def test_a_results_file_in_a_subfolder_backs_a_figure(tmp_path):
    sub = tmp_path / "benchmarks" / "results" / "run_b"
    sub.mkdir(parents=True)
    (sub / "step_time.md").write_text("| model | ratio |\n| LipFNO | 1.256 |\n")
    cite = "(`benchmarks/results/run_b/step_time.md`)"
    assert unbacked_figures(f"<!-- section: s -->\nA step costs 1.26x {cite}.\n", tmp_path) == []
    problems = unbacked_figures(f"<!-- section: s -->\nA step costs 1.62x {cite}.\n", tmp_path)
    assert len(problems) == 1 and problems[0].startswith("s: 1.62 in")
