"""Cold certificates against the code before, and the floor no cold call can go below (issue 15).

Issue 15's certification case (``benchmarks/performance.py``'s ``CERTIFY_CONFIG``: a 4-block
width-64 LipFNO with 16 x 16 modes, grid 64^2, batch 8), for LipFNO's defaults
(convex-potential blocks, ``clip``) and the fused block with the ``global`` normalization:

1. **Side by side.** The whole ``liponet`` package as of git revision ``--before`` (extracted
   into a temporary folder and imported under another name) against this checkout, in one
   process. A driver model trains (Adam); after each round's steps both certified twins load
   its weights (each keeps its own remembered state, as in training) and certify: cold after
   1 step, cold after 8 more steps, and a fresh model's first call with the same weights
   (nothing remembered), alternating which side goes first. Every spectral layer's certificate
   is asserted equal bit for bit in every round, and so are its eval weights (the eval outputs
   follow from them); the model's bound also composes the lift and projection layers, whose
   certificate changed on purpose after af8a242 (a Cholesky level test, ~1e-6 looser).
2. **The floor.** What a cold call with every multiplier in contention cannot avoid with
   these tests: one Gram product (``liponet.functional._GramTest``, the real-part products)
   and one Cholesky factorization (at a level every multiplier passes) per multiplier of
   every layer, timed alone on the same weights: the global normalization's contenders (all
   ``K + 1``) and clip's rows (one of each conjugate pair, and the skip). A cold call needs at
   least this much once drift bounds no longer exclude multipliers (global after many steps,
   a first call) and always for clip (each multiplier's own bound). Reported against the
   median train step.

Reported: median process CPU time of each side over the rounds, their ratio, the run's median
train step and the costs in train steps. Run from the repository root:
``.venv/bin/python benchmarks/certify_floor.py`` (about four minutes; ``--quick`` for a smoke
run). Writes ``benchmarks/results/certify_floor.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _plot import pyplot
from fno_common import write_csv, write_report
from performance import CERTIFY_CONFIG, CERTIFY_MODELS, _field, train_step

import liponet.models
from liponet.functional import _GramTest, _PartRows
from liponet.layers.fourier import LipSpectralConv

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def load_before(rev: str) -> Any:
    """``liponet.models`` as of git revision ``rev``: the package extracted, imported apart."""
    folder = Path(tempfile.mkdtemp())
    archive = folder / "before.tar"
    subprocess.run(["git", "archive", "-o", str(archive), rev, "liponet"], check=True, cwd=ROOT)
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    (folder / "liponet").rename(folder / "liponet_before")
    sys.path.insert(0, str(folder))
    return importlib.import_module("liponet_before.models")


def _eval_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """The eval weights of every constrained spectral layer, in order."""
    out = []
    for m in model.modules():
        if hasattr(m, "effective_weights") and getattr(m, "k", None) is not None:
            r, w = m.effective_weights()
            out += [r] if w is None else [r, w]
    return out


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    c = time.process_time()
    out = fn()
    return time.process_time() - c, out


def _floor_one(conv: LipSpectralConv) -> float:
    """CPU seconds of one Gram product and one passing Cholesky test per multiplier of ``conv``."""
    with torch.no_grad():
        o, i = conv.out_channels, conv.in_channels
        w = None if conv.skip is None else conv.skip.detach()
        r = conv._symmetric_spectral(conv.weight.detach()).reshape(-1, o, i)
        if conv.normalization == "clip":  # one of each conjugate pair, and the skip
            rows = conv._pair_rows()[0]
        else:  # every multiplier, and the skip
            rows = torch.arange(r.shape[0] + 1)
        if w is None:
            rows = rows[rows < r.shape[0]]
        level2 = (conv._exact_norms(r, w, rows).max() * 1.01).square().expand(len(rows)).clone()
        c = time.process_time()
        write = conv._gram_parts_writer(r, w, rows)
        test = _GramTest(_PartRows(write, (len(rows), 2 * o, i), r.real.dtype, r.device))
        bound = test.run(None, level2, need_factor=False)[0]
        t = time.process_time() - c
    if not bool(torch.isfinite(bound).all()):
        raise AssertionError("a floor test failed: the level is not above every norm")
    return t


def floor_ms(model: torch.nn.Module) -> float:
    """CPU ms of one Gram product and one passing Cholesky test per multiplier, every layer."""
    convs = [m for m in model.modules() if isinstance(m, LipSpectralConv) and m.k is not None]
    return 1e3 * sum(_floor_one(conv) for conv in convs)


def _spectral_bounds(model: torch.nn.Module) -> list[float]:
    """Each certified spectral layer's own ``lipschitz_bound()`` (either package's class)."""
    return [
        m.lipschitz_bound()
        for m in model.modules()
        if type(m).__name__ == "LipSpectralConv" and getattr(m, "k", None) is not None
    ]


def _check_equal(name: str, key: str, twins: dict[str, torch.nn.Module]) -> None:
    """The spectral layers' certificates of both sides, equal bit for bit.

    What this script compares is the spectral layers' certification; the model's bound also
    composes the lift and projection layers, whose certificate changed on purpose after
    af8a242 (a float64 Cholesky level test instead of a second SVD, at most ~1e-6 looser).
    """
    bounds = {side: _spectral_bounds(m) for side, m in twins.items()}
    if bounds["before"] != bounds["after"]:
        raise AssertionError(f"{name} {key}: the spectral certificates differ: {bounds}")


def measure(rounds: int, before: Any) -> list[dict]:
    cfg = CERTIFY_CONFIG
    torch.manual_seed(0)
    x, y = _field(cfg, 2)
    sides = {"before": before.LipFNO, "after": liponet.models.LipFNO}
    rows = []
    for name, kw in CERTIFY_MODELS.items():

        def make(side: str, kw: dict = kw) -> torch.nn.Module:
            return sides[side](1, 1, cfg["modes"], width=cfg["width"], depth=4, **kw)

        driver = make("after")
        step = train_step(driver, x, y)
        step()
        twins = {side: make(side) for side in sides}
        for m in twins.values():
            m.load_state_dict(driver.state_dict())
            m.eval()
            m.lipschitz_bound()
        cpu: dict[tuple[str, str], list[float]] = {}
        steps: list[float] = []
        floors: list[float] = []
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(sides)[::-1]
            for key, n_steps in (("cold after 1 step", 1), ("cold after 8 steps", 8)):
                driver.train()
                for _ in range(n_steps):
                    steps.append(_timed(step)[0])
                for side in order:
                    twins[side].load_state_dict(driver.state_dict())
                    twins[side].eval()
                    t, _ = _timed(twins[side].lipschitz_bound)
                    cpu.setdefault((key, side), []).append(t)
                _check_equal(name, key, twins)
            fresh = {side: make(side) for side in sides}
            for side in order:
                fresh[side].load_state_dict(driver.state_dict())
                fresh[side].eval()
                t, _ = _timed(fresh[side].lipschitz_bound)
                cpu.setdefault(("first call", side), []).append(t)
            _check_equal(name, "first call", fresh)
            for pair in (twins, fresh):
                a, b = _eval_weights(pair["before"]), _eval_weights(pair["after"])
                if len(a) != len(b) or not all(map(torch.equal, a, b)):
                    raise AssertionError(f"{name}: the eval weights differ")
            floors.append(floor_ms(fresh["after"]))
        step_ms = 1e3 * statistics.median(steps)
        for key in ("cold after 1 step", "cold after 8 steps", "first call"):
            ms = {side: 1e3 * statistics.median(cpu[(key, side)]) for side in sides}
            rows.append(
                {
                    "model": name,
                    "call": key,
                    "before_ms": ms["before"],
                    "after_ms": ms["after"],
                    "ratio": ms["after"] / ms["before"],
                    "step_ms": step_ms,
                    "before_steps": ms["before"] / step_ms,
                    "after_steps": ms["after"] / step_ms,
                    "equal": True,
                }
            )
            print(rows[-1], flush=True)
        floor = statistics.median(floors)
        rows.append(
            {
                "model": name,
                "call": "floor: one Gram product + one Cholesky test per multiplier",
                "before_ms": float("nan"),
                "after_ms": floor,
                "ratio": float("nan"),
                "step_ms": step_ms,
                "before_steps": float("nan"),
                "after_steps": floor / step_ms,
                "equal": True,
            }
        )
        print(rows[-1], flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7.2, 3.4), dpi=90)
    labels = [
        f"{r['model'].replace('LipFNO ', '')}\n{r['call'].split(':')[0].replace('cold ', '')}"
        for r in rows
    ]
    xs = range(len(rows))
    ax.bar([v - 0.2 for v in xs], [r["before_steps"] for r in rows], 0.4, label="before")
    ax.bar([v + 0.2 for v in xs], [r["after_steps"] for r in rows], 0.4, label="after")
    ax.axhline(0.2, color="black", lw=0.8, ls="--", label="issue 15: 0.2 steps")
    ax.set_xticks(list(xs), labels, fontsize=6)
    ax.set_ylabel("lipschitz_bound() / train step")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, 2 rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--before", default="af8a242", help="git revision of the code before")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 2 if args.quick else 10
    start = time.perf_counter()
    load0 = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = measure(rounds, load_before(args.before))
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "certify_floor.csv", rows)
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    settings = (
        f"{'quick' if args.quick else 'default'} run: before = liponet/ at {args.before}, "
        f"{rounds} alternating rounds per model, 1 torch thread, process CPU time; "
        f"{platform.machine()}, torch {torch.__version__}; load average at the start {load0}, "
        f"at the end {load}; {time.perf_counter() - start:.0f} s"
    )
    write_report(
        args.out,
        "certify_floor",
        "Cold certificates against the code before, and their floor",
        settings,
        (
            "`before_ms`/`after_ms` = median CPU milliseconds of `lipschitz_bound()` on twins with "
            "the same weights and histories (before: the package at the revision above; after: "
            "this checkout), `ratio` = after / before, `step_ms` the run's median train step, "
            "`*_steps` = ms / step_ms. `equal`: every spectral layer's certificate and eval "
            "weights are equal bit for bit in every round (asserted). The floor row: "
            "one Gram product and one passing Cholesky test per multiplier of every layer, timed "
            "alone on a fresh model's weights (median over the rounds). See the script's "
            "docstring."
        ),
        rows,
        plot,
    )


if __name__ == "__main__":
    main()
