"""``performance.py --parts certify-nd --certify-nd-orthogonal-only``: only those rows replaced."""

import csv
import shutil

from trainfixtures import ROOT, run_script

SCRIPT = ROOT / "benchmarks" / "performance.py"


def test_orthogonal_only_certify_rerun_replaces_only_its_rows(tmp_path):
    for suffix in ("csv", "md"):
        shutil.copy(ROOT / "benchmarks" / "results" / f"performance.{suffix}", tmp_path)
    with (tmp_path / "performance.csv").open() as fh:
        before = list(csv.DictReader(fh))
    args = ["--quick", "--parts", "certify-nd", "--certify-nd-orthogonal-only"]
    proc = run_script(SCRIPT, *args, "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with (tmp_path / "performance.csv").open() as fh:
        after = list(csv.DictReader(fh))

    def orthogonal(r: dict) -> bool:
        return r["part"] == "certification 2-D" and r["measure"].startswith(
            ("LipFNO orthogonal", "LipFNO cayley")
        )

    assert [r for r in after if not orthogonal(r)] == [r for r in before if not orthogonal(r)]
    fresh = [r for r in after if orthogonal(r)]
    assert [r["measure"] for r in fresh] == [r["measure"] for r in before if orthogonal(r)]
    assert all(r["samples"] == "2" for r in fresh)  # the quick sizes: measured now
    assert [i for i, r in enumerate(after) if orthogonal(r)] == [
        i for i, r in enumerate(before) if orthogonal(r)
    ]  # in place
    md = (tmp_path / "performance.md").read_text()
    assert "parts certify-nd (orthogonal and cayley rows only) rerun: quick run" in md
