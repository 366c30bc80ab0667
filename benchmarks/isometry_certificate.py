"""Cold ``lipschitz_bound()`` of the norm-free normalizations: two certificate paths (issue 15).

``normalization="cayley"`` and ``"orthogonal"`` make every multiplier ``k`` times an isometry;
their certificate bounds each eval multiplier ``W' + R'_k`` by one float64 Gram product
(:func:`liponet.functional.isometry_norm_upper`). Right after an optimizer step the call
computes the eval weights (float64 Cayley inverse, or float32 polar factor by ``eigh`` and a
float64 polishing step) and then that bound. Two ways of the bound, on the same models:

- ``full``: the previous path: every multiplier of :meth:`LipSpectralConv.multipliers` (one
  complex128 copy of all of them), joined with the skip by one more copy, then the Gram bounds.
- ``chunked``: the library's path now: the eval weights formed into ``fl(R'_k + W')`` chunk by
  chunk, one multiplier of each conjugate pair on the ``k_d = 0`` slice (the other is its exact
  conjugate: the same norm). The same float as ``full`` (checked every round).

Model: issue 15's (``LipFNO(1, 1, (16, 16), width=64, depth=4, block="fourier")``, 2-D 64 x 64,
batch 8). Each round: one Adam step of the training model, then, in alternating order, each way
on a fresh copy of the weights (nothing cached): the cold call, split into the eval weights
(``effective_weights()`` of every layer) and the bound. Reported: medians of process CPU time,
one thread, against the median train step.

Run from the repository root: ``.venv/bin/python benchmarks/isometry_certificate.py`` (about two
minutes; ``--quick`` for a smoke run). Writes ``benchmarks/results/isometry_certificate.{md,csv,
png}``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _plot import panel_row, pyplot
from fno_common import markdown_table, write_csv

from liponet.functional import cayley_unitary, isometry_norm_upper
from liponet.layers.fourier import LipSpectralConv
from liponet.models import LipFNO

RESULTS = Path("benchmarks/results")
CONFIG = dict(batch=8, n=64, modes=(16, 16), width=64)
NORMALIZATIONS = ("cayley", "orthogonal")
#: ``float32_cayley``'s figures on the cayley model after the rounds.
EXPERIMENT: dict[str, float] = {}


def _full_bound(layer: LipSpectralConv) -> float:
    """The previous certificate path of a norm-free layer (all multipliers in complex128)."""
    mk, w = layer.multipliers()
    return LipSpectralConv._isometry_bound(mk, w)


def _chunked_bound(layer: LipSpectralConv) -> float:
    r, w = layer.effective_weights()
    return layer._eval_isometry_bound(r, w)


WAYS: dict[str, Callable[[LipSpectralConv], float]] = {
    "full": _full_bound,
    "chunked": _chunked_bound,
}


def measure(normalization: str, cfg: dict, rounds: int) -> list[dict]:
    torch.manual_seed(0)

    def make() -> LipFNO:
        return LipFNO(
            1, 1, cfg["modes"], width=cfg["width"], depth=4, block="fourier",
            normalization=normalization,
        )  # fmt: skip

    model = make()
    x = torch.randn(cfg["batch"], 1, cfg["n"], cfg["n"])
    y = torch.randn(cfg["batch"], 1, cfg["n"], cfg["n"])
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        model.train()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()

    step()
    cpu: dict[str, list[float]] = {"step": []}
    for way in WAYS:
        cpu[f"{way} eval weights"], cpu[f"{way} bound"], cpu[f"{way} cold"] = [], [], []
    for i in range(rounds):
        c = time.process_time()
        step()
        cpu["step"].append(time.process_time() - c)
        bounds = {}
        order = list(WAYS) if i % 2 == 0 else list(reversed(WAYS))
        for way in order:
            fresh = make()
            fresh.load_state_dict(model.state_dict())
            fresh.eval()
            layers = [m for m in fresh.modules() if isinstance(m, LipSpectralConv)]
            c = time.process_time()
            for layer in layers:
                layer.effective_weights()
            t_eval = time.process_time() - c
            c = time.process_time()
            bounds[way] = max(WAYS[way](layer) for layer in layers)
            t_bound = time.process_time() - c
            cpu[f"{way} eval weights"].append(t_eval)
            cpu[f"{way} bound"].append(t_bound)
            cpu[f"{way} cold"].append(t_eval + t_bound)
        if len(set(bounds.values())) != 1:
            raise AssertionError(f"the ways disagree: {bounds}")
    step_ms = 1e3 * statistics.median(cpu["step"])
    if normalization == "cayley":
        EXPERIMENT.update(float32_cayley(model))
    rows = []
    for key, values in cpu.items():
        if key == "step":
            continue
        ms = 1e3 * statistics.median(values)
        way, part = key.split(" ", 1)
        rows.append(
            dict(
                normalization=normalization,
                way=way,
                part=part,
                ms=ms,
                step_ms=step_ms,
                train_steps=ms / step_ms,
                ratio_to_full=ms / (1e3 * statistics.median(cpu[f"full {part}"])),
            )
        )
    return rows


def float32_cayley(model: LipFNO) -> dict:
    """Experiment: ``cayley``'s eval weights from a float32 inverse (the training forward's).

    The certificate's bound (:func:`~liponet.functional.isometry_norm_upper`) of ``k`` times the
    float32 Cayley transform of every multiplier against that of the library's eval weights
    (float64 inverse, rounded once), largest over the layers, over ``k``, minus 1; and the largest
    entrywise difference of the two.
    """
    f32, f64 = "float32 bound / k - 1", "float64 bound / k - 1"
    out = {f32: -1.0, f64: -1.0, "largest difference": 0.0}
    with torch.no_grad():
        for layer in (m for m in model.modules() if isinstance(m, LipSpectralConv)):
            assert layer.k is not None
            skip = None if layer.skip is None else layer.skip.detach()
            m = layer._stacked(layer._symmetric_spectral(layer.weight.detach()), skip)
            k = layer._target()
            q32 = (k * cayley_unitary(m)).to(torch.complex128)
            q64 = (k * cayley_unitary(m.to(torch.complex128))).to(m.dtype).to(torch.complex128)
            for key, q in ((f32, q32), (f64, q64)):
                out[key] = max(out[key], float(isometry_norm_upper(q).max()) / layer.k - 1.0)
            out["largest difference"] = max(
                out["largest difference"], float((q32 - q64).abs().max())
            )
    return out


def plot(rows: list[dict], path: Path) -> None:
    with panel_row(path, len(NORMALIZATIONS), (4.5, 3.5)) as axes:
        for ax, normalization in zip(axes, NORMALIZATIONS, strict=True):
            sub = [r for r in rows if r["normalization"] == normalization]
            labels = [f"{r['way']}\n{r['part']}" for r in sub]
            ax.bar(labels, [r["train_steps"] for r in sub], color="tab:blue")
            ax.axhline(0.2, color="grey", lw=0.5)
            ax.set_ylabel("train steps")
            ax.set_title(f"{normalization}: cold lipschitz_bound()")
            ax.tick_params(axis="x", labelsize=6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = dict(CONFIG)
    rounds = 8
    if args.quick:
        cfg.update(batch=2, n=16, modes=(4, 4), width=8)
        rounds = 2
    start = time.perf_counter()
    rows = []
    for normalization in NORMALIZATIONS:
        rows += measure(normalization, cfg, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "isometry_certificate.csv", rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run: {cfg} (n = grid points per dimension), "
        f"depth 4, block fourier, {rounds} rounds (ways alternated), 1 torch thread; "
        f"{platform.machine()}, torch {torch.__version__}; load average at the end "
        f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {time.perf_counter() - start:.0f} s"
    )
    cols = ["normalization", "way", "part", "ms", "step_ms", "train_steps", "ratio_to_full"]
    lines = [
        "# Cold lipschitz_bound() of the norm-free normalizations",
        "",
        f"Settings: {settings}",
        "",
        "`ms` = median CPU milliseconds of the cold call right after an Adam step on a fresh copy "
        "of the weights (`eval weights`: every layer's `effective_weights()`, `bound`: the "
        "certificate from them, `cold`: both); `train_steps` against the median train step "
        "`step_ms`; `ratio_to_full` against the previous path. Both ways gave the same float "
        "every round. See the script's docstring.",
        "",
        markdown_table(rows, cols),
        "",
        "Experiment (not the library's path): `cayley`'s eval weights from a float32 inverse, the "
        "training forward's (`k * cayley_unitary(M)` in complex64), on the cayley model after "
        "the rounds, against the library's (float64 inverse, rounded once): the certificate's "
        "bound over `k` minus 1, largest over the layers, and the largest entrywise difference.",
        "",
        markdown_table([{k: v for k, v in EXPERIMENT.items()}], list(EXPERIMENT)),
        "",
    ]
    (args.out / "isometry_certificate.md").write_text("\n".join(lines))
    if pyplot() is not None:
        plot(rows, args.out / "isometry_certificate.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
