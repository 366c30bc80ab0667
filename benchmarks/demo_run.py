"""One default run of ``liponet demo``, timed: its output and its wall and CPU times.

Runs ``python -m liponet demo`` with default flags in a temporary folder (as ``time liponet
demo`` would), records the wall time, the CPU time of the child (user + sys) and the load
average before and after (the machine is shared: wall time depends on the load, CPU time much
less), and extracts the certified-bound summary lines. Writes
``benchmarks/results/demo_run.{md,csv}`` (the demo's full output in the markdown).

Run from the repository root: ``.venv/bin/python benchmarks/demo_run.py``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path("benchmarks/results")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("demo_args", nargs="*", help="extra demo flags (default: none)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "liponet", "demo", "--out", tmp, "--no-progress",
               *args.demo_args]  # fmt: skip
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    load_after = os.getloadavg()[0]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out = proc.stdout.replace(tmp, "<out>")
    rows = re.findall(
        r"^\s+((?:plain|shift-reduced|multi-pair)[^\n]*?pairs)\s+(certified|estimated)\s+(\d+)/(\d+)\s+"
        r"([\d.]+)x\s+([\d.]+)$",
        out,
        re.M,
    )
    summary = [
        {
            "bound": name.strip(),
            "label": label,
            "covered": int(a),
            "queries": int(b),
            "bound_over_observed": float(r),
            "bound_over_output": float(g),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "exit_code": proc.returncode,
        }
        for name, label, a, b, r, g in rows
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "demo_run.csv").open("w", newline="") as f:
        fields = list(summary[0]) if summary else ["exit_code"]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(summary or [{"exit_code": proc.returncode}])
    lines = [
        "# `liponet demo`, default flags, one timed run",
        "",
        f"`benchmarks/demo_run.py` {' '.join(args.demo_args)}: wall {wall:.1f} s, CPU (user + "
        f"sys) {cpu:.1f} s, exit code {proc.returncode}; load average {load_before:.1f} before, "
        f"{load_after:.1f} after (2-core machine shared with other jobs: the wall time grows "
        "with the load, the CPU time much less).",
        "",
        "| bound | label | coverage | bound / observed (median) | bound / ‖G(a)‖ (median) |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['bound']} | {s['label']} | {s['covered']}/{s['queries']} | "
            f"{s['bound_over_observed']:.1f} | {s['bound_over_output']:.2f} |"
        )
    lines += ["", "Full output:", "", "```", out.rstrip(), "```", ""]
    (args.out / "demo_run.md").write_text("\n".join(lines))
    print("\n".join(lines[: 10 + len(summary)]))
    if proc.returncode:
        print(proc.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
