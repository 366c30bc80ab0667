"""CPU train steps with glibc's default allocator against ``liponet.train.tune_cpu_allocator``.

The allocator is a process-wide setting, so each measurement runs in its own process (a
worker: this script with ``--worker``), the two settings alternating round by round (``--rounds``,
default 3), one torch thread each. A worker builds its model, takes 2 warm-up Adam steps, then
times ``STEPS`` steps (median CPU milliseconds, minor page faults per step) and, for LipFNOs,
``CERTS`` times one step followed by a cold ``lipschitz_bound()`` in eval mode (median CPU ms).
Peak resident memory is the worker's ``ru_maxrss``.

Models (one torch thread, batch and grid as in ``performance.py``): the certification model of
``performance.py`` (2-D, 64², width 64, 16×16 modes, depth 4) as LipFNO's defaults
(convex-potential blocks, ``clip``) and with the fused block and ``global``; neuraloperator's FNO
matched to it (``fno_common.neuralop_n_modes``); the 1-D model of the N-d parts (256 points,
width 32, 12 modes) as LipFNO's defaults and neuraloperator's FNO; the 2-D model of the N-d
parts (64², width 32, 12×12 modes, the fused block) with ``orthogonal`` and ``cayley`` and
neuraloperator's FNO.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/allocator.py`` (about 6 minutes); results
in ``benchmarks/results/allocator.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from _plot import agg_pyplot

RESULTS = Path(__file__).resolve().parent / "results"
STEPS, CERTS = 6, 3
CERT_2D = {"dim": 2, "batch": 8, "n": 64, "modes": (16, 16), "width": 64}
ND_1D = {"dim": 1, "batch": 16, "n": 256, "modes": (12,), "width": 32}
ND_2D = {"dim": 2, "batch": 8, "n": 64, "modes": (12, 12), "width": 32}
FUSED = {"block": "fourier"}
MODELS = {
    "LipFNO defaults 2-D": ("lip", CERT_2D, {}),
    "LipFNO global 2-D": ("lip", CERT_2D, {"block": "fourier", "normalization": "global"}),
    "neuralop FNO 2-D": ("neuralop", CERT_2D, {}),
    "LipFNO defaults 1-D": ("lip", ND_1D, {}),
    "neuralop FNO 1-D": ("neuralop", ND_1D, {}),
    "LipFNO orthogonal 2-D w32": ("lip", ND_2D, {**FUSED, "normalization": "orthogonal"}),
    "LipFNO cayley 2-D w32": ("lip", ND_2D, {**FUSED, "normalization": "cayley"}),
    "neuralop FNO 2-D w32": ("neuralop", ND_2D, {}),
}
SETTINGS = ("glibc default", "tuned")


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def worker(name: str, tuned: bool) -> dict:
    """Measure one model in this process (the allocator tuned first where asked)."""
    if tuned:
        from liponet.train import tune_cpu_allocator

        if not tune_cpu_allocator():
            raise SystemExit("tune_cpu_allocator() did not apply here (not glibc?)")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    kind, cfg, kw = MODELS[name]
    if kind == "lip":
        from liponet.models import LipFNO

        model = LipFNO(1, 1, cfg["modes"], width=cfg["width"], depth=4, **kw)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from fno_common import neuralop_n_modes
        from neuralop.models import FNO as NeuralopFNO

        model = NeuralopFNO(
            n_modes=neuralop_n_modes(cfg["modes"]),
            in_channels=1,
            out_channels=1,
            hidden_channels=cfg["width"],
            n_layers=4,
        )
    shape = (cfg["batch"], 1, *([cfg["n"]] * cfg["dim"]))
    x, y = torch.randn(shape), torch.randn(shape)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> None:
        model.train()
        loss = (model(x) - y).square().mean() / y.square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    times, faults = [], []
    for _ in range(STEPS):
        f, t = _faults(), time.process_time()
        step()
        times.append(time.process_time() - t)
        faults.append(_faults() - f)
    out = {
        "model": name,
        "setting": SETTINGS[tuned],
        "step_ms": 1e3 * statistics.median(times),
        "faults_per_step": statistics.median(faults),
    }
    if kind == "lip":
        model.eval()
        model.lipschitz_bound()
        certs = []
        for _ in range(CERTS):
            step()
            model.eval()
            t = time.process_time()
            model.lipschitz_bound()
            certs.append(time.process_time() - t)
        out["cert_ms"] = 1e3 * statistics.median(certs)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def run_worker(name: str, tuned: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.update(OMP_NUM_THREADS="1", LIPONET_TUNE_ALLOCATOR="1")
    cmd = [sys.executable, __file__, "--worker", name] + (["--tuned"] if tuned else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for name in MODELS:
        for setting in SETTINGS:
            mine = [r for r in runs if r["model"] == name and r["setting"] == setting]
            row = {"model": name, "setting": setting, "rounds": len(mine)}
            for key in ("step_ms", "faults_per_step", "cert_ms", "peak_rss_mb"):
                if key in mine[0]:
                    row[key] = statistics.median(r[key] for r in mine)
            rows.append(row)
    by = {(r["model"], r["setting"]): r for r in rows}
    for r in rows:
        plain = by[(r["model"], SETTINGS[0])]
        r["step_vs_default"] = r["step_ms"] / plain["step_ms"]
        cfg = MODELS[r["model"]][1]
        same = [n for n, (kind, c, _) in MODELS.items() if kind == "neuralop" and c is cfg]
        base = same[0] if same else ""
        if (base, r["setting"]) in by:
            r["step_vs_neuralop"] = r["step_ms"] / by[(base, r["setting"])]["step_ms"]
        if "cert_ms" in r:
            r["cert_over_step"] = r["cert_ms"] / r["step_ms"]
    return rows


COLUMNS = (
    "model",
    "setting",
    "rounds",
    "step_ms",
    "step_vs_default",
    "step_vs_neuralop",
    "faults_per_step",
    "cert_ms",
    "cert_over_step",
    "peak_rss_mb",
)


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write(rows: list[dict], settings: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "allocator.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})
    lines = [
        "# CPU train steps: glibc's default allocator vs `tune_cpu_allocator()`",
        "",
        f"Settings: {settings}",
        "",
        "Each row: medians over the rounds (each round one fresh process per model and setting, "
        "the settings alternating) of the median of "
        f"{STEPS} Adam steps (CPU ms, minor page faults per step) and of {CERTS} cold "
        "`lipschitz_bound()` calls, each right after a step (LipFNOs). `step_vs_default`: the "
        "step against the same model with glibc's default; `step_vs_neuralop`: against "
        "neuraloperator's FNO in the same setting; `cert_over_step`: the cold certificate in "
        "train steps of the same setting; `peak_rss_mb`: the process's peak resident memory.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in COLUMNS) + " |" for r in rows]
    lines += ["", "Generated by `benchmarks/allocator.py`."]
    (RESULTS / "allocator.md").write_text("\n".join(lines) + "\n")
    plt = agg_pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(MODELS)
    for i, setting in enumerate(SETTINGS):
        vals = [next(r for r in rows if r["model"] == n and r["setting"] == setting) for n in names]
        pos = [j + 0.4 * i for j in range(len(names))]
        axes[0].bar(pos, [v["step_ms"] for v in vals], width=0.4, label=setting)
        axes[1].bar(pos, [v["faults_per_step"] / 1e3 for v in vals], width=0.4, label=setting)
    titles = ("train step, CPU ms", "minor page faults per step (thousands)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xticks([j + 0.2 for j in range(len(names))], names, rotation=20, fontsize=7)
        ax.set_title(title)
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "allocator.png", dpi=90)
    plt.close(fig)


def main() -> None:
    global MODELS, RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", choices=list(MODELS), help=argparse.SUPPRESS)
    parser.add_argument("--tuned", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.tuned)))
        return
    RESULTS = args.out or RESULTS
    chosen = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; available: {list(MODELS)}")
    MODELS = {m: MODELS[m] for m in chosen}
    start = time.perf_counter()
    load = os.getloadavg()[0]
    runs = []
    for rnd in range(args.rounds):
        order = (False, True) if rnd % 2 == 0 else (True, False)
        for name in MODELS:
            for tuned in order:
                runs.append(run_worker(name, tuned))
                print(json.dumps(runs[-1]), flush=True)
    settings = (
        f"{args.rounds} rounds, {STEPS} timed steps and {CERTS} cold certificates per process, "
        f"1 torch thread, torch {torch.__version__}, {os.confstr('CS_GNU_LIBC_VERSION')}; "
        f"load average {load:.2f} at the start; total {time.perf_counter() - start:.0f} s"
    )
    write(summarize(runs), settings)


if __name__ == "__main__":
    main()
