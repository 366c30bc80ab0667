"""Train-step time and peak memory of LipFNO vs our FNO vs neuraloperator's FNO, matched size.

Matched: kept Fourier modes (neuraloperator's ``n_modes = 2 (m - 1)`` keeps ``m`` rfft modes),
width, depth, linear lifting, two-layer projection (hidden ``2 * width``), linear skip, grid
input, no channel MLP. One training step = forward, MSE loss, backward, Adam step. All models
are timed in the same process, interleaved round by round (so machine load hits them alike),
with one torch thread; the table reports medians of CPU time (``time.process_time``, robust to
other jobs on a shared machine) and of wall time. Eval forward times use the cached eval weights.
Memory: the activations autograd saves for backward (per storage) and the parameter/optimizer
state.

Run from the repository root: ``.venv/bin/python benchmarks/fno_speed.py`` (about 2 minutes
on 2 cores). Writes ``benchmarks/results/fno_speed.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from _plot import agg_pyplot
from fno_common import RESULTS, build, markdown_table, neuralop_n_modes, write_csv

CONFIGS = {
    # PDEBench's 1-D FNO: modes 12, width 20, 4 layers, batch 50, 1024 / 4 = 256 points.
    "pdebench": dict(batch=50, nx=256, width=20, modes=(12,), depth=4),
    "wide": dict(batch=20, nx=256, width=32, modes=(16,), depth=4),
}
MODELS = {
    "LipFNO (global, maxmin)": ("LipFNO", {}),
    "LipFNO (global, relu)": ("LipFNO", {"activation": "relu"}),
    "LipFNO (clip)": ("LipFNO", {"normalization": "clip"}),
    "LipFNO (orthogonal)": ("LipFNO", {"normalization": "orthogonal"}),
    "FNO (ours, gelu)": ("FNO", {}),
    "neuraloperator FNO": ("neuralop", {}),
}
BASELINE = "neuraloperator FNO"


def _make(cfg: dict, model: str):
    name, kw = MODELS[model]
    return build(name, 1, 1, cfg["modes"], cfg["width"], cfg["depth"], **kw)


def _step(model, opt, x, y) -> None:
    loss = (model(x) - y).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def saved_activation_mib(cfg: dict, model: str) -> float:
    """Memory autograd keeps for backward in one training forward (the peak's main part).

    Storages saved for backward are counted once each (by storage), excluding parameters,
    buffers and the batch itself. Deterministic, unlike RSS on a shared machine.
    """
    torch.manual_seed(0)
    net = _make(cfg, model).train()
    x = torch.randn(cfg["batch"], 1, cfg["nx"])
    y = torch.randn(cfg["batch"], 1, cfg["nx"])
    owned = [*net.parameters(), *net.buffers(), x, y]
    exclude = {t.untyped_storage().data_ptr() for t in owned}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = (net(x) - y).pow(2).mean()
    loss.backward()
    return sum(seen.values()) / 2**20


def time_models(cfg: dict, models: list[str], rounds: int, warmup: int) -> dict[str, dict]:
    """Interleaved timing of training steps and eval forwards."""
    torch.manual_seed(0)
    nets = {m: _make(cfg, m) for m in models}
    opts = {m: torch.optim.Adam(n.parameters(), lr=1e-3) for m, n in nets.items()}
    x = torch.randn(cfg["batch"], 1, cfg["nx"])
    y = torch.randn(cfg["batch"], 1, cfg["nx"])
    cpu: dict[str, list[float]] = {m: [] for m in models}
    wall: dict[str, list[float]] = {m: [] for m in models}
    for r in range(rounds):
        for m in models:
            nets[m].train()
            c0, w0 = time.process_time(), time.perf_counter()
            _step(nets[m], opts[m], x, y)
            if r >= warmup:
                cpu[m].append(time.process_time() - c0)
                wall[m].append(time.perf_counter() - w0)
    evals: dict[str, list[float]] = {m: [] for m in models}
    with torch.no_grad():
        for m in models:
            nets[m].eval()
            nets[m](x)  # computes and caches the eval weights
        for _ in range(rounds):
            for m in models:
                c0 = time.process_time()
                nets[m](x)
                evals[m].append(time.process_time() - c0)
    return {
        m: dict(
            cpu_ms=1e3 * statistics.median(cpu[m]),
            wall_ms=1e3 * statistics.median(wall[m]),
            eval_ms=1e3 * statistics.median(evals[m]),
            params=sum(p.numel() * (2 if p.is_complex() else 1) for p in nets[m].parameters()),
        )
        for m in models
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="smoke run (few rounds)")
    args = parser.parse_args()
    rounds, warmup = (6, 2) if args.quick else (args.rounds, 5)
    torch.set_num_threads(1)
    models = [m for m in MODELS if MODELS[m][0] != "neuralop" or _make(CONFIGS["wide"], m)]
    if BASELINE not in models:
        raise SystemExit("neuraloperator is not installed: pip install 'liponet[baseline]'")
    rows = []
    for cfg_name, cfg in CONFIGS.items():
        print(f"timing config {cfg_name}: {cfg}", flush=True)
        timing = time_models(cfg, models, rounds, warmup)
        base = timing[BASELINE]
        for m in models:
            mem = saved_activation_mib(cfg, m)
            t = timing[m]
            rows.append(
                dict(
                    config=cfg_name,
                    model=m,
                    step_cpu_ms=t["cpu_ms"],
                    step_cpu_ratio=t["cpu_ms"] / base["cpu_ms"],
                    step_wall_ms=t["wall_ms"],
                    step_wall_ratio=t["wall_ms"] / base["wall_ms"],
                    eval_cpu_ms=t["eval_ms"],
                    eval_ratio=t["eval_ms"] / base["eval_ms"],
                    saved_mib=mem,
                    state_mib=4 * t["params"] * 4 / 2**20,
                    params_real=t["params"],
                )
            )
            print(rows[-1], flush=True)
    for r in rows:
        base_mem = next(
            b["saved_mib"] for b in rows if b["config"] == r["config"] and b["model"] == BASELINE
        )
        r["saved_ratio"] = r["saved_mib"] / base_mem
    write_csv(RESULTS / "fno_speed.csv", rows)
    cols = [
        "config", "model", "step_cpu_ms", "step_cpu_ratio", "step_wall_ratio", "eval_cpu_ms",
        "eval_ratio", "saved_mib", "saved_ratio", "state_mib", "params_real",
    ]  # fmt: skip
    settings = "; ".join(
        f"{k}: batch {c['batch']}, nx {c['nx']}, width {c['width']}, kept modes {c['modes']} "
        f"(neuraloperator n_modes={neuralop_n_modes(c['modes'])}), depth {c['depth']}"
        for k, c in CONFIGS.items()
    )
    text = [
        "# FNO train-step time and memory (LipFNO vs FNO vs neuraloperator)",
        "",
        f"Settings: {settings}. {rounds} interleaved rounds ({warmup} warm-up), medians; 1 torch "
        f"thread; torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"shared 2-core machine. Ratios are against neuraloperator's FNO in the same run.",
        "",
        markdown_table(rows, cols),
        "",
        "CPU time is per process (robust to other jobs); wall ratios are noisier. Memory:",
        "`saved_mib` = activations autograd keeps for backward in one training forward (counted",
        "per storage, parameters and batch excluded), the part of peak training memory that",
        "scales with batch and grid; `state_mib` = parameters + gradients + Adam moments",
        "(4 float32 copies of the real parameter count, identical across matched models).",
        "Peak RSS was tried first and dropped: on this shared machine it mostly measured",
        "lazily loaded libraries, not the models.",
    ]
    (RESULTS / "fno_speed.md").write_text("\n".join(text) + "\n")
    _plot(rows)


def _plot(rows: list[dict]) -> None:
    plt = agg_pyplot()

    configs = list(CONFIGS)
    models = [r["model"] for r in rows if r["config"] == configs[0]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(configs)
    for j, cfg in enumerate(configs):
        sub = [r for r in rows if r["config"] == cfg]
        xs = [i + j * width for i in range(len(models))]
        axes[0].bar(xs, [r["step_cpu_ratio"] for r in sub], width, label=cfg)
        axes[1].bar(xs, [r["saved_ratio"] for r in sub], width, label=cfg)
    for ax, title in zip(
        axes,
        ["train-step CPU time / neuraloperator", "saved activations / neuraloperator"],
        strict=True,
    ):
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(models))])
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend(loc="best")
    axes[0].axhline(1.25, color="r", ls="--", lw=0.8)
    fig.tight_layout()
    fig.savefig(RESULTS / "fno_speed.png", dpi=120)


if __name__ == "__main__":
    main()
