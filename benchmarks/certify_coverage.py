"""`liponet certify` with default flags: split-conformal coverage on held-out queries.

Issue 12, item 7: a split-conformal bound is a guarantee only when its calibration data took no
part in training or in choosing the checkpoint. For each family and data seed: generate a
PDEBench-layout file, train a LipFNO with the trainer (checkpoint chosen on the validation split),
then run ``liponet certify CHECKPOINT DATA`` with default flags (calibration: the first half of
the test split; queries: the second half) and, for comparison, the old default
``--calib-split train``. Reported: the conformal bound's label and coverage of the held-out
queries against ``1 - alpha`` with its binomial noise, and the plain bound's label and coverage.

Run from the repository root: ``.venv/bin/python benchmarks/certify_coverage.py`` (about 10
minutes on one CPU thread; ``--quick`` for a smoke run). Writes
``benchmarks/results/certify_coverage.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from _plot import agg_pyplot

from liponet.cli import main as cli
from liponet.data import generate
from liponet.train import Trainer, build_dataset, config_from_dict

RESULTS = Path("benchmarks/results")
ALPHA = 0.1
#: Family -> generator parameters (PDEBench-like settings, 1-D, periodic).
FAMILIES: dict[str, dict[str, float]] = {
    "advection": {"beta": 0.1, "t_final": 1.0},
    "diffusion_reaction_1d": {"nu": 0.5, "rho": 1.0, "t_final": 1.0},
    "burgers": {"nu": 0.01, "t_final": 1.0},
}
LINE = re.compile(
    r"(?P<name>[\w.-]+) bound \((?P<label>\w+), function norm\): coverage (?P<coverage>[\d.]+) "
    r"\((?P<violations>\d+) violations\)"
)


def train(path: Path, out: Path, epochs: int, seed: int) -> Path:
    task = {"task": "step", "t_in": 0, "t_out": -1}
    kwargs = {"in_channels": 1, "out_channels": 1, "modes": [12], "width": 16, "depth": 2}
    config = config_from_dict(
        {
            "model": {"name": "LipFNO", "kwargs": kwargs},
            "data": {"name": "pdebench", "path": str(path), "kwargs": task},
            "epochs": epochs,
            "batch_size": 32,
            "lr": 3e-3,
            "seed": seed,
            "device": "cpu",
            "out_dir": str(out),
            "monitor": "val_nrmse",
        }
    )
    data = build_dataset(config.data, config.seed)
    Trainer(config, data.train, data.val, progress=False).fit()
    return out / "best.pt"


def certify(ckpt: Path, path: Path, *extra: str) -> dict[str, Any]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = cli(["certify", str(ckpt), str(path), "--plot", "", "--rows", "1", *extra])
    text = buffer.getvalue()
    if code not in (0, 1):
        raise RuntimeError(f"liponet certify exited {code}:\n{text}")
    bounds = {m["name"]: m.groupdict() for m in LINE.finditer(text)}
    queries = int(re.search(r"queries: (\d+) from", text).group(1))  # type: ignore[union-attr]
    calib = int(re.search(r"calibration: (\d+) pairs", text).group(1))  # type: ignore[union-attr]
    return {"bounds": bounds, "n_query": queries, "n_calib": calib, "text": text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    n_samples, nx, epochs = (240, 32, 1) if args.quick else (2000, 64, 4)
    rows: list[dict[str, Any]] = []
    start = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        for family, params in FAMILIES.items():
            for seed in range(args.seeds):
                folder = Path(tmp) / f"{family}-{seed}"
                path = generate(family, folder / "data.h5", n_samples=n_samples, nx=nx, nt=11,
                                seed=seed, **params)  # fmt: skip
                ckpt = train(path, folder / "run", epochs, seed)
                old = ("--calib-split", "train")
                for split, flags in (("calib (default)", ()), ("train (old default)", old)):
                    res = certify(ckpt, path, *flags)
                    conf, plain = res["bounds"]["conformal-0.1"], res["bounds"]["plain"]
                    rows.append(
                        {
                            "family": family,
                            "seed": seed,
                            "calibration": split,
                            "n_calib": res["n_calib"],
                            "n_query": res["n_query"],
                            "conformal_label": conf["label"],
                            "conformal_coverage": float(conf["coverage"]),
                            "plain_label": plain["label"],
                            "plain_coverage": float(plain["coverage"]),
                        }
                    )
                    print(rows[-1], flush=True)
    write(rows, args, n_samples, nx, epochs, time.process_time() - start)


def pooled(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Coverage pooled over seeds per family and calibration split, with binomial noise."""
    out = []
    keys = list(dict.fromkeys((r["family"], r["calibration"]) for r in rows))
    for family, split in keys:
        sel = [r for r in rows if r["family"] == family and r["calibration"] == split]
        n = sum(r["n_query"] for r in sel)
        covered = sum(round(r["conformal_coverage"] * r["n_query"]) for r in sel)
        sigma = math.sqrt(ALPHA * (1 - ALPHA) / n)
        n_cal = min(r["n_calib"] for r in sel)
        low, high = 1 - ALPHA - 2 * sigma, 1 - ALPHA + 1 / (n_cal + 1) + 2 * sigma
        coverage = covered / n
        out.append(
            {
                "family": family,
                "calibration": split,
                "label": "/".join(sorted({r["conformal_label"] for r in sel})),
                "queries": n,
                "coverage": coverage,
                "binomial_sigma": sigma,
                "expected_range": f"[{low:.3f}, {high:.3f}]",
                "within_noise": "yes" if low <= coverage <= high else "NO",
            }
        )
    return out


def write(
    rows: list[dict[str, Any]], args: Any, n_samples: int, nx: int, epochs: int, cpu_s: float
) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "certify_coverage.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = pooled(rows)

    def table(items: list[dict[str, Any]]) -> list[str]:
        cols = list(items[0])
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for r in items:
            cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values()]
            lines.append("| " + " | ".join(cells) + " |")
        return lines

    text = [
        "# `liponet certify` with default flags: conformal coverage on held-out queries",
        "",
        f"Generated by `benchmarks/certify_coverage.py` (torch {torch.__version__}, 1 thread, "
        f"{cpu_s:.0f} CPU s). Per family and data seed: {n_samples} generated samples, nx {nx}, "
        f"frame 0 -> frame 10 (t = 1); a LipFNO (width 16, depth 2, 12 modes) trained "
        f"{epochs} epochs (batch 32, lr 3e-3) on the training split, checkpoint chosen on the "
        "validation split; then `liponet certify CKPT DATA` with default flags: calibration = "
        "the first half of PDEBench's test split (disjoint from training and validation), "
        "queries = the second half; alpha = 0.1. For comparison the old default "
        "`--calib-split train` (queries: the whole test split).",
        "",
        "Split conformal promises coverage >= 1 - alpha on average over calibration sets and "
        "queries, and at most 1 - alpha + 1/(n_calib + 1). Expected range = that interval "
        "widened by 2 binomial standard deviations of the pooled query count.",
        "",
        "## Pooled over seeds",
        "",
        *table(summary),
        "",
        "## Per run",
        "",
        *table(rows),
        "",
    ]
    (RESULTS / "certify_coverage.md").write_text("\n".join(text))
    plot(summary)


def plot(summary: list[dict[str, Any]]) -> None:
    plt = agg_pyplot()

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [f"{r['family']}\n{r['calibration']}" for r in summary]
    values = [r["coverage"] for r in summary]
    errors = [2 * r["binomial_sigma"] for r in summary]
    colours = ["C0" if r["calibration"].startswith("calib") else "C3" for r in summary]
    ax.bar(range(len(values)), values, yerr=errors, color=colours, capsize=3)
    ax.axhline(1 - ALPHA, color="k", lw=0.8, label="1 - alpha")
    ax.set_xticks(range(len(values)), names, fontsize=6)
    ax.set_ylim(0.5, 1.02)
    ax.set_ylabel("conformal coverage of held-out queries")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "certify_coverage.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
