"""Inference cost of the deployment paths: eager model, export(), torch.export, ONNX in onnxruntime.

For each model and batch size, one forward of each path is timed in interleaved rounds, one
thread everywhere (torch and onnxruntime's intra- and inter-op pools), median process CPU time
per call (calls repeated within a round to ~10 ms so the clock's resolution does not matter).
Paths: ``eager`` (the model in eval mode, cached eval weights), ``export()`` (plain modules,
FFT), ``pt2`` (``liponet.export.export_program``'s module, FFT as registered ops),
``dft-torch`` (``liponet.export.onnx_ready``: the ONNX graph's real-arithmetic Fourier layers
run by torch) and ``onnxruntime`` (``liponet.export.export_onnx``'s graph, ORT's CPU provider,
default graph optimizations). ``max_rel_error`` is ``max |onnxruntime - eager| / max |eager|``
on the timed inputs.

Run from the repository root: ``.venv/bin/python benchmarks/export_inference.py`` (a few CPU
minutes; ``--quick`` for a smoke run). Writes ``benchmarks/results/export_inference.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
from _plot import panel_row
from fno_common import markdown_table, write_csv
from torch import nn

from liponet.export import deployment_inputs, export_onnx, export_program, onnx_ready
from liponet.models import LipDeepONet, LipFNO, LipMLP

RESULTS = Path("benchmarks/results")
PATHS = ("eager", "export()", "pt2", "dft-torch", "onnxruntime")


def configs(quick: bool) -> list[tuple[str, Callable[[], nn.Module], tuple[int, ...] | None, int]]:
    """``(label, model factory, grid, batch)``; LipFNO with its defaults (cpl blocks, clip)."""
    if quick:
        return [
            ("LipFNO 1-D quick", lambda: LipFNO(1, 1, (4,), width=8, depth=2), (32,), 4),
            ("LipMLP quick", lambda: LipMLP(2, 1, width=8, depth=2), None, 16),
        ]
    fno1 = lambda: LipFNO(1, 1, (16,), width=32, depth=4)  # noqa: E731
    fno1_wide = lambda: LipFNO(1, 1, (64,), width=32, depth=4)  # noqa: E731
    fno2 = lambda: LipFNO(1, 1, (12, 12), width=32, depth=4)  # noqa: E731
    onet = lambda: LipDeepONet(128, ([0.0], [1.0]), n_basis=32, width=64, depth=3)  # noqa: E731
    mlp = lambda: LipMLP(2, 1, width=64, depth=3)  # noqa: E731
    return [
        ("LipFNO 1-D, 256 points, 16 modes", fno1, (256,), 1),
        ("LipFNO 1-D, 256 points, 16 modes", fno1, (256,), 16),
        ("LipFNO 1-D, 256 points, 64 modes", fno1_wide, (256,), 16),
        ("LipFNO 2-D, 64x64, 12x12 modes", fno2, (64, 64), 1),
        ("LipFNO 2-D, 64x64, 12x12 modes", fno2, (64, 64), 16),
        ("LipDeepONet, 128 sensors, 128 points", onet, None, 16),
        ("LipMLP 2 -> 1, width 64", mlp, None, 1024),
    ]


def session(program, threads: int = 1) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(
        program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def measure_one(label: str, model: nn.Module, grid, batch: int, rounds: int) -> dict:
    """One row: every path on the same inputs, interleaved."""
    inputs = deployment_inputs(model, grid=grid, batch=max(batch, 2), points=128)
    example = tuple(t[:batch] if i == 0 else t for i, t in enumerate(inputs.tensors))
    sess = session(export_onnx(model, inputs))
    feeds = {n: t.numpy() for n, t in zip(inputs.names, example, strict=True)}
    plain, program = model.export().eval(), export_program(model, inputs).module()
    ready = onnx_ready(model, *inputs.tensors)
    fns: dict[str, Callable[[], object]] = {
        "eager": lambda: model(*example),
        "export()": lambda: plain(*example),
        "pt2": lambda: program(*example),
        "dft-torch": lambda: ready(*example),
        "onnxruntime": lambda: sess.run(None, feeds),
    }
    with torch.no_grad():
        expected = model(*example)
        got = torch.from_numpy(sess.run(None, feeds)[0])
        rel = float((got - expected).abs().max() / expected.abs().max())
        reps = {}
        for name, fn in fns.items():  # warm-up, and calls per timed sample (~10 ms)
            fn()
            start = time.process_time()
            fn()
            reps[name] = max(1, round(0.01 / max(time.process_time() - start, 1e-6)))
        cpu: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                start = time.process_time()
                for _ in range(reps[name]):
                    fn()
                cpu[name].append((time.process_time() - start) / reps[name])
    ms = {name: 1e3 * statistics.median(v) for name, v in cpu.items()}
    row: dict = {"model": label, "batch": batch}
    row.update({f"{name}_ms": ms[name] for name in PATHS})
    row["onnxruntime_over_eager"] = ms["onnxruntime"] / ms["eager"]
    row["onnxruntime_over_export"] = ms["onnxruntime"] / ms["export()"]
    row["dft_torch_over_export"] = ms["dft-torch"] / ms["export()"]
    row["max_rel_error"] = rel
    return row


def measure(quick: bool, rounds: int) -> list[dict]:
    rows = []
    for label, make, grid, batch in configs(quick):
        torch.manual_seed(0)
        row = measure_one(label, make().eval(), grid, batch, rounds)
        rows.append(row)
        print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return rows


def short(label: str) -> str:
    """The size part of a row label, e.g. "64x64, 12x12 modes"."""
    return label.split(", ", 1)[1] if ", " in label else ""


def plot(rows: list[dict], path: Path) -> None:
    with panel_row(path, 1, (8.5, 4.0)) as (ax,):
        xs = range(len(rows))
        for offset, (key, name) in zip(
            (-0.25, 0.0, 0.25),
            (("export()_ms", "export()"), ("pt2_ms", "pt2"), ("onnxruntime_ms", "onnxruntime")),
            strict=True,
        ):
            ax.bar(
                [i + offset for i in xs], [r[key] / r["eager_ms"] for r in rows], 0.25, label=name
            )
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        labels = [
            f"{r['model'].split(',')[0]}\n{short(r['model'])}\nbatch {r['batch']}" for r in rows
        ]
        ax.set_xticks(list(xs), labels, fontsize=6)
        ax.set_ylabel("CPU time per forward / eager")
        ax.legend(loc="best", fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument(
        "--plot-only", action="store_true", help="redraw the PNG from the committed CSV"
    )
    args = parser.parse_args()
    if args.plot_only:
        with (args.out / "export_inference.csv").open() as fh:
            rows = [
                {k: float(v) if k.endswith("_ms") else v for k, v in r.items()}
                for r in csv.DictReader(fh)
            ]
        plot(rows, args.out / "export_inference.png")
        return
    torch.set_num_threads(1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    start = time.perf_counter()
    rounds = 3 if args.quick else args.rounds
    rows = measure(args.quick, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "export_inference.csv", rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run at HEAD {head} (plus uncommitted changes, if "
        f"any); torch {torch.__version__}, onnxruntime {ort.__version__}; {rounds} interleaved "
        f"rounds, 1 thread (torch and onnxruntime), median process CPU time per forward; "
        f"{time.perf_counter() - start:.0f} s"
    )
    lines = [
        "# Inference: eager, export(), torch.export, ONNX in onnxruntime",
        "",
        f"Settings: {settings}",
        "",
        "Median CPU milliseconds per forward (`*_ms`) of each deployment path, interleaved in one "
        "process. LipFNO with its defaults (convex-potential blocks, `clip`), eval mode. "
        "`dft-torch` is the ONNX graph's module (`onnx_ready`: kept-mode DFTs as products with "
        "cosine/sine bases, no complex tensors) run by torch; `onnxruntime` the exported graph. "
        "`max_rel_error`: max |onnxruntime - eager| / max |eager| on the timed inputs.",
        "",
        markdown_table(rows, list(rows[0])),
        "",
    ]
    (args.out / "export_inference.md").write_text("\n".join(lines))
    plot(rows, args.out / "export_inference.png")


if __name__ == "__main__":
    main()
