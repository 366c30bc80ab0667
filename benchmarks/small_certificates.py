"""Cold certificates of small 1-D models: this tree against an earlier commit (issue 15).

``performance.py``'s 1-D certification case (part ``certify``): ``lipschitz_bound()`` right
after every Adam step of a LipFNO (fused Fourier blocks, ``"global"``, 12 modes, depth 4) and a
LipDeepONet (width twice the FNO's, depth 3, 32 basis functions), widths 16 / 32 / 64, grid 256,
batch 16. Side by side in one process: the earlier commit's ``liponet`` is extracted with
``git archive`` and imported as ``liponet_before`` (``cpl_speedup.load_before``); each model is
built in both trees from the same seed (the same weights, asserted), and every round runs one
Adam step then one certificate on each side, alternating which side goes first. Reported: the
median process CPU time of each side's certificate and train step, their ratios, whether the
eval outputs were equal bit for bit in every round, and the largest relative change of the
certificate (a float64 Cholesky level in place of a second SVD for large constrained dense
layers: a bound at most ``8`` float32 epsilons above the target instead of the SVD's number).

Run from the repository root: ``.venv/bin/python benchmarks/small_certificates.py --against
REV`` (about a minute; ``--quick`` for a smoke run). Writes
``benchmarks/results/small_certificates.{md,csv,png}`` (``--out`` another folder).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from _plot import panel_row, pyplot
from cpl_speedup import load_before
from fno_common import write_csv, write_report
from performance import train_step
from torch import nn

import liponet.certify
import liponet.models
from liponet.layers import LipLinear, LipSpectralConv

RESULTS = Path("benchmarks/results")
NX, BATCH, MODES = 256, 16, (12,)


def _models(tree: ModuleType, width: int, nx: int) -> dict[str, nn.Module]:
    models = {}
    torch.manual_seed(0)
    models["LipFNO"] = tree.models.LipFNO(
        1, 1, MODES, width=width, depth=4, block="fourier", normalization="global"
    )
    torch.manual_seed(0)
    models["LipDeepONet"] = tree.models.LipDeepONet(
        nx, ([0.0], [1.0]), n_basis=32, width=2 * width, depth=3
    )
    return models


def _multipliers128(conv: LipSpectralConv) -> torch.Tensor:
    """A spectral layer's multipliers ``W + R_k`` (and ``W``) in complex128 ``(K [+1], o, i)``."""
    with torch.no_grad():
        r = conv._symmetric_spectral(conv.weight.detach())
        rk = r.reshape(-1, conv.out_channels, conv.in_channels)
        return conv._multipliers64(rk, None if conv.skip is None else conv.skip.detach())


def measure(before: ModuleType, widths: list[int], nx: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    ops = {"before": before.certify.field_operator, "now": liponet.certify.field_operator}
    for width in widths:
        x, y = torch.randn(BATCH, 1, nx), torch.randn(BATCH, 1, nx)
        trees = {"before": _models(before, width, nx), "now": _models(liponet, width, nx)}
        for name in ("LipFNO", "LipDeepONet"):
            sides = {t: trees[t][name] for t in trees}
            a, b = (m.state_dict() for m in sides.values())
            assert all(torch.equal(a[k], b[k]) for k in a), "the trees built different weights"
            steps = {t: train_step(m, x, y, op=ops[t]) for t, m in sides.items()}
            cpu: dict[str, list[float]] = {f"{t} {k}": [] for t in sides for k in ("step", "cert")}
            same, change, floor, svd_floor = True, 0.0, [], []
            for r in range(rounds + 2):
                bounds = {}
                for t in ("before", "now") if r % 2 == 0 else ("now", "before"):
                    c = time.process_time()
                    steps[t]()
                    s = time.process_time() - c
                    c = time.process_time()
                    bounds[t] = sides[t].lipschitz_bound()
                    cert = time.process_time() - c
                    if r >= 2:  # two warm-up rounds
                        cpu[f"{t} step"].append(s)
                        cpu[f"{t} cert"].append(cert)
                    if t == "now" and r >= 2 and name == "LipFNO":
                        # the floor of an SVD of every multiplier: each spectral layer's
                        # complex128 multipliers (formed untimed) through one batched SVD
                        convs = [m for m in sides[t].modules() if isinstance(m, LipSpectralConv)]
                        mults = [_multipliers128(m) for m in convs]
                        c = time.process_time()
                        for m128 in mults:
                            torch.linalg.svdvals(m128)
                        svd_floor.append(time.process_time() - c)
                    if t == "now" and r >= 2 and name == "LipDeepONet":
                        # the floor: the dense layers' eval weights alone (exact SVD norm of
                        # each weight, then Björck), recomputed from the same weights
                        dense = [m for m in sides[t].modules() if isinstance(m, LipLinear)]
                        c = time.process_time()
                        for m in dense:
                            m._compute_eval_weight(m.weight)
                        floor.append(time.process_time() - c)
                change = max(change, abs(bounds["now"] / bounds["before"] - 1.0))
                outs = {}
                for t, m in sides.items():
                    m.eval()
                    with torch.no_grad():
                        outs[t] = ops[t](m)(x)
                    m.train()
                same = same and torch.equal(outs["before"], outs["now"])
            ms = {k: 1e3 * statistics.median(v) for k, v in cpu.items()}
            rows.append(
                {
                    "model": name,
                    "width": width if name == "LipFNO" else 2 * width,
                    "before_cert_ms": ms["before cert"],
                    "now_cert_ms": ms["now cert"],
                    "now_over_before": ms["now cert"] / ms["before cert"],
                    "before_step_ms": ms["before step"],
                    "now_step_ms": ms["now step"],
                    "before_cert_over_step": ms["before cert"] / ms["before step"],
                    "now_cert_over_step": ms["now cert"] / ms["now step"],
                    # LipDeepONet: its dense layers' eval weights alone, in train steps
                    "now_eval_weights_over_step": (
                        statistics.median(floor) / statistics.median(cpu["now step"])
                        if floor
                        else float("nan")
                    ),
                    # LipFNO: an SVD of every spectral multiplier alone, in train steps
                    "now_svd_all_over_step": (
                        statistics.median(svd_floor) / statistics.median(cpu["now step"])
                        if svd_floor
                        else float("nan")
                    ),
                    "eval_outputs_equal": same,
                    "bound_max_rel_change": change,
                }
            )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    if pyplot() is None:
        return
    with panel_row(path, 1, (6, 3.5)) as (ax,):
        xs = range(len(rows))
        ax.bar([i - 0.2 for i in xs], [r["before_cert_over_step"] for r in rows], 0.4,
               label="before")  # fmt: skip
        ax.bar([i + 0.2 for i in xs], [r["now_cert_over_step"] for r in rows], 0.4, label="now")
        ax.axhline(0.2, color="grey", lw=0.8, ls="--", label="issue 15: 0.2")
        labels = [f"{r['model']}\nwidth {r['width']}" for r in rows]
        ax.set_xticks(list(xs), labels, fontsize=6)
        ax.set_ylabel("lipschitz_bound() / train step (CPU)")
        ax.legend(loc="best", fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="the earlier commit (git revision)")
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 16)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    widths, nx, rounds = ([4], 32, 2) if args.quick else ([16, 32, 64], NX, 16)
    rounds = args.rounds or rounds
    rev = subprocess.run(
        ["git", "rev-parse", "--short", args.against], capture_output=True, text=True, check=True
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(rev, Path(tmp))
        importlib.import_module("liponet_before.certify")  # the subpackage, as an attribute
        start, load_start = time.perf_counter(), os.getloadavg()[0]
        rows = measure(before, widths, nx, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "small_certificates.csv", rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run: before = commit {rev}, now = this tree "
        f"(HEAD {head} plus uncommitted changes, if any); {rounds} rounds (a step, then the "
        f"certificate, on each side, order alternating), 1 torch thread, grid {nx}, batch "
        f"{BATCH}, {MODES[0]} modes, depth 4 (LipDeepONet: depth 3, 32 basis functions); "
        f"{time.perf_counter() - start:.0f} s; the machine's 1-minute load average "
        f"{load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end"
    )
    write_report(
        args.out,
        "small_certificates",
        "Cold certificates of small 1-D models: this tree against an earlier commit",
        settings,
        (
            "Median CPU milliseconds of `lipschitz_bound()` right after an Adam step (`*_cert_ms`) "
            "and of the step (`*_step_ms`) on each side; `*_cert_over_step` is the certificate in "
            "train steps of its own tree (issue 15's target: <= 0.2); `eval_outputs_equal`: the "
            "eval outputs of both trees bit for bit in every round; `bound_max_rel_change`: the "
            "largest relative change of the certificate; `now_eval_weights_over_step` "
            "(LipDeepONet): its dense layers' eval weights alone (the exact SVD norm of each "
            "weight and Björck), recomputed after the certificate, in train steps: the floor; "
            "`now_svd_all_over_step` (LipFNO): one complex128 SVD of every spectral layer's "
            'multipliers alone (what the general path of small `"global"` layers computes), '
            "timed after the certificate, in train steps."
        ),
        rows,
        plot,
    )


if __name__ == "__main__":
    sys.exit(main())
