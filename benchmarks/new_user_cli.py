"""New-user check through the command line: generate -> train -> certify on a new setting.

1-D diffusion-reaction (``u_t = nu u_xx + rho u (1 - u)``) with ``rho = 5, nu = 0.1`` (PDEBench's
presets use ``nu`` in 0.5-5 and ``rho`` in 1-10; this pair is a sharper front than any of them),
400 samples of 128 cells, exactly as a newcomer types it:

1. ``liponet generate diffusion_reaction_1d FILE --n-samples 400 --nx 128 --param rho=5
   --param nu=0.1``;
2. ``liponet train --data pdebench --data-path FILE --model LipFNO`` (no model settings: what
   does it ask for?), then with ``--set model.kwargs.modes=[16]`` (LipFNO defaults otherwise,
   the trainer's defaults: 10 epochs, batch 16, lr 1e-3) and ``--model FNO`` with the same
   settings;
3. ``liponet certify RUN/best.pt FILE`` for both (the default split: calibration on the first
   half of the test split, queries on the second).

Each command runs as a subprocess (one thread); the table keeps its exit code, the lines it
wrote on stderr that start with ``liponet`` (errors, warnings), process CPU seconds and the
figures it printed. Run from the repository root: ``.venv/bin/python benchmarks/new_user_cli.py``
(``--quick``: 60 samples, 2 epochs). Writes ``benchmarks/results/new_user_cli.csv`` and the
section between the ``new-user-cli`` markers of ``benchmarks/results/new_user_checks.md`` (run it
after ``new_user_checks.py``, which rewrites that file).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import liponet

RESULTS = Path("benchmarks/results")
START, END = "<!-- new-user-cli: start -->", "<!-- new-user-cli: end -->"


def cli(*args: str, cwd: Path) -> dict[str, Any]:
    """Run ``liponet ARGS`` in ``cwd``; exit code, stdout, the ``liponet`` stderr lines, CPU."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the liponet this script imports (a worktree's too), whatever the command's folder
    root = str(Path(liponet.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-m", "liponet", *args], capture_output=True, text=True, cwd=cwd, env=env
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("liponet")]
    return {"rc": proc.returncode, "out": proc.stdout, "said": " | ".join(lines), "cpu_s": cpu}


def last_record(run: Path) -> dict[str, Any]:
    """The last epoch's record of a run folder's log."""
    return json.loads((run / "log.jsonl").read_text().splitlines()[-1])


def bound_lines(text: str) -> dict[str, str]:
    """``certify``'s summary per bound: label, coverage and median bound/observed."""
    out = {}
    pattern = (
        r"^(\S[^\n(]*?) bound \((\w+), [^)]*\): coverage ([\d.]+)"
        r".*?bound/observed median (\S+)"
    )
    for name, label, coverage, median in re.findall(pattern, text, re.M):
        out[name.strip()] = f"{label}, coverage {float(coverage):.2f}, median bound/obs {median}"
    lg = re.search(r"^true operator: L_G = (\S+) \((\w+)", text, re.M)
    if lg:
        out["L_G"] = f"{lg.group(1)} ({lg.group(2)})"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    samples, epochs = (60, 2) if args.quick else (400, 10)
    start, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gen = ["generate", "diffusion_reaction_1d", "dr.h5", "--n-samples", str(samples),
               "--nx", "128", "--param", "rho=5", "--param", "nu=0.1", "--quiet"]  # fmt: skip
        r = cli(*gen, cwd=work)
        rows.append({"step": "generate", "command": "liponet " + " ".join(gen), **r})
        base = ["train", "--data", "pdebench", "--data-path", "dr.h5", "--no-progress",
                "--epochs", str(epochs)]  # fmt: skip
        bare = [*base, "--model", "LipFNO", "--out", "bare"]
        rows.append({"step": "train LipFNO, no settings", "command": "liponet " + " ".join(bare),
                     **cli(*bare, cwd=work)})  # fmt: skip
        records = {}
        for model in ("LipFNO", "FNO"):
            argv = [*base, "--model", model, "--set", "model.kwargs.modes=[16]", "--out", model]
            r = cli(*argv, cwd=work)
            records[model] = last_record(work / model) if r["rc"] == 0 else {}
            rec = records[model]
            r["figures"] = (
                f"val_nrmse {rec['val_nrmse']:.4g}, certified L {rec['lipschitz_bound']:.4g}"
                if rec
                else ""
            )
            rows.append({"step": f"train {model}", "command": "liponet " + " ".join(argv), **r})
        for model in ("LipFNO", "FNO"):
            argv = ["certify", f"{model}/best.pt", "dr.h5", "--plot", ""]
            r = cli(*argv, cwd=work)
            r["figures"] = "; ".join(f"{k}: {v}" for k, v in bound_lines(r["out"]).items())
            rows.append({"step": f"certify {model}", "command": "liponet " + " ".join(argv), **r})
    ratio = records["LipFNO"]["val_nrmse"] / records["FNO"]["val_nrmse"]
    wall = time.perf_counter() - start
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - cpu0
    write(rows, ratio, records, args.out, wall, cpu)


def write(rows: list[dict[str, Any]], ratio: float, records: dict[str, Any], out: Path,
          wall: float, cpu: float) -> None:  # fmt: skip
    keys = ["step", "command", "rc", "said", "figures", "cpu_s"]
    with (out / "new_user_cli.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in keys} | {"cpu_s": f"{row['cpu_s']:.3g}"})
    lines = [
        START,
        "## Through the command line: 1-D diffusion-reaction, rho = 5, nu = 0.1",
        "",
        f"Produced by `.venv/bin/python benchmarks/new_user_cli.py` (torch {torch.__version__}, "
        f"{platform.machine()}, 1 thread; wall {wall:.0f} s, CPU {cpu:.0f} s; rows also in "
        "`new_user_cli.csv`). A newcomer's commands, in order; `said`: the `liponet` lines on "
        "stderr.",
        "",
        "| step | exit | said | figures | cpu_s |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        said = row["said"].replace("|", "/")
        lines.append(
            f"| {row['step']} | {row['rc']} | {said} | {row.get('figures', '')} | "
            f"{row['cpu_s']:.3g} |"
        )
    lip, fno = records["LipFNO"], records["FNO"]
    lines += [
        "",
        f"LipFNO / FNO validation nRMSE: {lip['val_nrmse']:.4g} / {fno['val_nrmse']:.4g} = "
        f"**{ratio:.3g}x**, certified constants {lip['lipschitz_bound']:.4g} and "
        f"{fno['lipschitz_bound']:.4g}.",
        "",
        "What a newcomer hits (this sequence, first typed by hand; a fixed one names its fix):",
        "",
        "- `liponet train --model LipFNO` without settings used to fail on `in_channels`, "
        "`out_channels` and `modes` as `_FNOBase.__init__()` arguments; the channels now come "
        "from the data file and the one line names `model.kwargs.modes` with an example.",
        "- `liponet certify` used to write `certify.png` into the current folder unless "
        "`--plot ''`; it now writes `<checkpoint name>.certify.png` beside the checkpoint.",
        "- `L_G` is certified for the generator's discrete map (Strang logistic/FTCS), but "
        "`exp(rho t)` = e^5 makes the certified single-pair bound far above the observed error "
        "(the median ratio above); the estimated and statistical bounds are the usable ones "
        "here, labelled so.",
        END,
    ]
    md = out / "new_user_checks.md"
    text = md.read_text() if md.exists() else ""
    if START in text:
        text = text[: text.index(START)] + text[text.index(END) + len(END) :].lstrip("\n")
    md.write_text(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
