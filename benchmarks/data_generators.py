"""Generator throughput: our batched torch solvers vs py-pde solving the same samples one at a time.

For each family, ours runs ``generate`` (N samples in one batch, written to an HDF5 file on /tmp
and deleted); py-pde solves the first K of the same initial conditions one at a time with its
explicit adaptive stepper at its default error tolerance (numba-compiled), storing the same
frames. The py-pde ``PDE`` object and grid are built once per family and reused for every sample
(building them per sample recompiles the right-hand side and doubled py-pde's cost in an earlier
version of this script). py-pde's one-off numba compilation is excluded (a warm-up solve of
sample 0 first, whose time, compilation included, is reported separately). Times are process CPU
seconds (robust to other jobs on a shared machine), both tools on one thread. A hand-tuned
fixed step would make py-pde faster than its adaptive default; this compares the tools as a
user runs them. The relative max
gap of the final frames is reported too, as a sanity check that both solve the same problem.

Run: .venv/bin/python benchmarks/data_generators.py
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from _plot import agg_pyplot

from liponet.data import generate

RESULTS = Path(__file__).parent / "results"

CASES = {
    "burgers": dict(
        params=dict(nu=0.1, t_final=2.0),
        rhs=lambda p: f"-u * d_dx(u) + {p['nu'] / math.pi} * laplace(u)",
    ),
    "diffusion_reaction_1d": dict(
        params=dict(nu=0.5, rho=1.0, t_final=1.0),
        rhs=lambda p: f"{p['nu']} * laplace(u) + {p['rho']} * u * (1 - u)",
    ),
}


def pypde_equation(rhs: str, nx: int) -> tuple[object, object]:
    """py-pde's grid and PDE object, built once and reused for every sample."""
    import pde

    return pde.CartesianGrid([[0, 1]], [nx], periodic=True), pde.PDE({"u": rhs})


def pypde_solve(equation: tuple[object, object], u0: np.ndarray, t_final: float, nt: int):
    import pde

    grid, eq = equation
    storage = pde.MemoryStorage()
    eq.solve(  # type: ignore[attr-defined]
        pde.ScalarField(grid, u0),
        t_range=t_final,
        dt=1e-5,
        solver="explicit",
        adaptive=True,
        tracker=[storage.tracker(t_final / (nt - 1))],
    )
    return np.stack([f.data for f in storage])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=64)
    parser.add_argument("--pypde-samples", type=int, default=4)
    parser.add_argument("--nx", type=int, default=128)
    parser.add_argument("--nt", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for family, case in CASES.items():
            p = case["params"]
            path = Path(tmp) / f"{family}.h5"
            t = time.process_time()
            generate(
                family,
                path,
                n_samples=args.n_samples,
                nx=args.nx,
                nt=args.nt,
                batch_size=args.n_samples,
                **p,
            )
            ours_s = time.process_time() - t
            with h5py.File(path) as f:
                data = f["tensor"][: args.pypde_samples].astype(np.float64)
            equation = pypde_equation(case["rhs"](p), args.nx)
            t = time.process_time()
            pypde_solve(equation, data[0, 0], p["t_final"], args.nt)
            compile_s = time.process_time() - t
            t = time.process_time()
            gaps = []
            for i in range(args.pypde_samples):
                ref = pypde_solve(equation, data[i, 0], p["t_final"], args.nt)
                gaps.append(np.abs(ref[-1] - data[i, -1]).max() / np.abs(data[i, -1]).max())
            pypde_s = time.process_time() - t
            ours_rate = args.n_samples / ours_s
            pypde_rate = args.pypde_samples / pypde_s
            rows.append(
                dict(
                    family=family,
                    params=" ".join(f"{k}={v}" for k, v in p.items()),
                    ours_samples_per_s=round(ours_rate, 2),
                    pypde_samples_per_s=round(pypde_rate, 2),
                    speedup=round(ours_rate / pypde_rate, 2),
                    pypde_compile_s=round(compile_s, 1),
                    max_rel_gap_final_frame=f"{max(gaps):.1e}",
                )
            )
            print(rows[-1])

    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "data_generators.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    settings = (
        f"nx={args.nx}, nt={args.nt} frames, ours: {args.n_samples} samples in one batch "
        f"(float64 on CPU, written to HDF5), py-pde: first {args.pypde_samples} of the same "
        "samples one at a time (py-pde's explicit adaptive stepper, default tolerance, numba; "
        "one PDE object per family, reused; the warm-up solve with compilation excluded); "
        "rates in samples per process CPU second; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"{os.cpu_count()} shared CPUs"
    )
    lines = [
        "# Generator throughput: batched torch solvers vs py-pde one sample at a time",
        "",
        f"Settings: {settings}.",
        "",
        "| family | parameters | ours (samples/CPU s) | py-pde (samples/CPU s) | speed-up | py-pde "
        "first solve incl. numba compile (CPU s) | max relative gap, final frame |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {r['family']} | {r['params']} | {r['ours_samples_per_s']} | "
            f"{r['pypde_samples_per_s']} | {r['speedup']} | {r['pypde_compile_s']} | "
            f"{r['max_rel_gap_final_frame']} |"
            for r in rows
        ],
        "",
        "The gap is between two different discretisations (ours: PDEBench's schemes; py-pde: "
        "central differences), not an error of either.",
        "",
        "Generated by `benchmarks/data_generators.py`.",
    ]
    (RESULTS / "data_generators.md").write_text("\n".join(lines) + "\n")

    plt = agg_pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.2))
    pos = np.arange(len(rows))
    ax.bar(pos - 0.2, [r["ours_samples_per_s"] for r in rows], 0.4, label="liponet (batched)")
    ax.bar(pos + 0.2, [r["pypde_samples_per_s"] for r in rows], 0.4, label="py-pde (one at a time)")
    ax.set_xticks(pos, [f"{r['family']}\nx{r['speedup']}" for r in rows])
    ax.set_ylabel("samples / s")
    ax.set_yscale("log")
    ax.set_title(f"Generator throughput (nx={args.nx}, nt={args.nt})")
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(RESULTS / "data_generators.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
