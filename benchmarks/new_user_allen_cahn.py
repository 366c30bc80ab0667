"""A PDE no issue names, tried as a new user would: Allen-Cahn through ``liponet train``.

``u_t = eps u_xx + u - u^3`` on the periodic unit interval (eps = 1e-3), small random initial
fields (amplitude ~0.1-0.3) that the reaction term grows towards +-1: an expanding, nonlinear
operator. Solved here with a semi-implicit spectral scheme (diffusion implicit, reaction
explicit, dt = 1e-3) and written as a PDEBench single-array HDF5 file (``tensor (N, t, x)``,
``x-coordinate``, ``t-coordinate``), exactly what a user with their own solver would do. Then
the CLI trains, with identical settings, the unconstrained ``FNO`` and ``LipFNO`` with its
defaults (and ``k=auto``, and the old default ``k=1``) on the step task ``u(0) -> u(t_out)``,
and the script reads each run's ``log.jsonl`` (validation nRMSE of the last epoch and the
certified constant).

Run from the repository root: ``python benchmarks/new_user_allen_cahn.py``.
Writes ``benchmarks/results/new_user_allen_cahn.{md,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np

RESULTS = Path("benchmarks/results")


def allen_cahn(n: int, nx: int, nt: int, t_final: float, eps: float, seed: int) -> np.ndarray:
    """``(n, nt, nx)`` float32 trajectories (frame 0 the initial field)."""
    rng = np.random.default_rng(seed)
    x = (np.arange(nx) + 0.5) / nx
    k = rng.integers(1, 5, size=(n, 3, 1))
    amp = rng.uniform(0.0, 0.1, size=(n, 3, 1))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 3, 1))
    u = (amp * np.sin(2 * np.pi * k * x + phase)).sum(1)  # (n, nx)
    dt = 1e-3
    steps = round(t_final / dt)
    every = steps // (nt - 1)
    freq = np.fft.rfftfreq(nx, d=1.0 / nx)
    implicit = 1.0 / (1.0 + dt * eps * (2 * np.pi * freq) ** 2)
    frames = [u.copy()]
    for s in range(1, steps + 1):
        u = np.fft.irfft((np.fft.rfft(u + dt * (u - u**3))) * implicit, n=nx)
        if s % every == 0:
            frames.append(u.copy())
    return np.stack(frames, 1).astype(np.float32)


def write_file(path: Path, data: np.ndarray, t_final: float) -> None:
    _, nt, nx = data.shape
    with h5py.File(path, "w") as f:
        f["tensor"] = data
        f["x-coordinate"] = ((np.arange(nx) + 0.5) / nx).astype(np.float32)
        f["t-coordinate"] = np.linspace(0.0, t_final, nt).astype(np.float32)


def train(path: Path, out: Path, model: str, kwargs: str, epochs: int) -> dict[str, float]:
    cmd = [
        sys.executable, "-m", "liponet", "train", "--data", "pdebench", "--data-path", str(path),
        "--model", model, "--epochs", str(epochs), "--batch-size", "32", "--lr", "3e-3",
        "--device", "cpu", "--out", str(out), "--no-progress",
        "--set", f"model.kwargs={kwargs}",
        "--set", "data.kwargs={task: step, t_in: 0, t_out: -1}",
        "--set", "monitor=val_nrmse",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    end = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise RuntimeError(f"{model} {kwargs}: {proc.stderr.strip().splitlines()[-1]}")
    last = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    warned = "binding Lipschitz constraint" in proc.stderr
    return {
        "val_nrmse": last["val_nrmse"],
        "lipschitz_certified": last.get("lipschitz_bound", math.nan),
        "warned": float(warned),
        "cpu_s": (end.ru_utime + end.ru_stime) - (start.ru_utime + start.ru_stime),
    }


BASE = "{in_channels: 1, out_channels: 1, modes: [16], width: 32"
RUNS = {
    "FNO": ("FNO", BASE + "}"),
    "LipFNO defaults, k=auto": ("LipFNO", BASE + ", k: auto}"),
    "LipFNO defaults (k=1)": ("LipFNO", BASE + "}"),
    "LipFNO old defaults (fourier, global, k=1)": (
        "LipFNO", BASE + ", block: fourier, normalization: global, k: 1.0}",
    ),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    t_final, nx = 2.0, 64
    data = allen_cahn(args.samples, nx, 4, t_final, 1e-3, seed=0)
    growth = np.linalg.norm(data[:, -1], axis=-1) / np.linalg.norm(data[:, 0], axis=-1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "1D_AllenCahn.hdf5"
        write_file(path, data, t_final)
        for name, (model, kwargs) in RUNS.items():
            res = train(path, Path(tmp) / name.replace(" ", "_"), model, kwargs, args.epochs)
            rows.append({"model": name, **res})
            print(name, res, flush=True)
    base = rows[0]["val_nrmse"]
    for row in rows:
        row["nrmse / FNO"] = row["val_nrmse"] / base
    cols = ["model", "val_nrmse", "nrmse / FNO", "lipschitz_certified", "warned", "cpu_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "new_user_allen_cahn.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "# Allen-Cahn through `liponet train`, as a new user would",
        "",
        f"Produced by `benchmarks/new_user_allen_cahn.py`: {args.samples} trajectories, {nx} "
        f"cells, u(0) -> u({t_final:g}) (outputs' norm x{np.median(growth):.1f} median, "
        f"x{growth.min():.1f}-{growth.max():.1f}), {args.epochs} epochs, batch 32, lr 3e-3, "
        "width 32, 16 modes, identical CLI settings for every model; validation nRMSE of the "
        "last epoch; `warned`: the CLI printed the binding-constraint warning.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in rows:
        cells = [row["model"]] + [f"{row[c]:.4g}" for c in cols[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    (RESULTS / "new_user_allen_cahn.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
