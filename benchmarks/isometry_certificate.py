"""Cold ``lipschitz_bound()`` of the norm-free normalizations: two certificate paths (issue 15).

``normalization="cayley"`` and ``"orthogonal"`` make every multiplier ``k`` times an isometry.
Right after an optimizer step the call computes the eval weights (float64 Cayley inverse, or
float32 polar factor by ``eigh`` and a float64 Newton-Schulz step) and then the certificate.
Two ways of the certificate, on the same models:

- ``gram``: the previous path (``cayley``'s now): the eval weights alone, then one float64 Gram
  product per multiplier (:func:`liponet.functional.isometry_norm_upper`), the eval weights
  formed into ``fl(R'_k + W')`` chunk by chunk, one multiplier of each conjugate pair on the
  ``k_d = 0`` slice (:meth:`LipSpectralConv._eval_isometry_bound`).
- ``polished`` (``orthogonal`` only; the library's path now): the certificate comes with the
  eval weights: the Newton-Schulz step never lifts a singular value above 1
  (:func:`liponet.functional.polished_isometry_bound`: the float32 rounding measured, no extra
  product), then each ``W' + R'_k`` against its polished multiplier in ``O(out in)``
  (:meth:`LipSpectralConv._polished_bound`). The eval weights are checked bitwise equal to the
  ``gram`` way's every round.

Model: issue 15's (``LipFNO(1, 1, (16, 16), width=64, depth=4, block="fourier")``, 2-D 64 x 64,
batch 8). Each round: one Adam step of the training model, then, in alternating order, each way
on a fresh copy of the weights (nothing cached): the cold call, split into the eval weights
(``effective_weights()`` of every layer; for ``polished`` the certificate's pass included) and
the bound. Also timed every round on the same weights (``polished`` rows, not part of the cold
call's split): the float32 polar factors (``polar_eigh`` of every multiplier) and their
batched ``eigh`` alone, the floor that remains. Reported: medians of process CPU time, one
thread, against the median train step; after the rounds, each way's certificate over ``k``
minus 1 and the exact (float64 SVD) largest norm over ``k`` minus 1, largest over the layers.
Two experiments (not the library's path) after the rounds: ``float32_cayley`` and
``mixed_polish`` (their docstrings).

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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from _plot import panel_row, pyplot
from fno_common import markdown_table, write_csv

from liponet.functional import (
    cayley_unitary,
    chunks,
    conj_t,
    isometry_norm_upper,
    polar_eigh,
    polish_isometry,
    spectral_norm_exact,
)
from liponet.layers import fourier
from liponet.layers.fourier import LipSpectralConv
from liponet.models import LipFNO

RESULTS = Path("benchmarks/results")
CONFIG = dict(batch=8, n=64, modes=(16, 16), width=64)
NORMALIZATIONS = ("cayley", "orthogonal")
#: The ways measured per normalization (``polished`` exists for ``orthogonal`` only).
WAYS = {"cayley": ("gram",), "orthogonal": ("gram", "polished")}
#: ``float32_cayley``'s figures on the cayley model after the rounds.
EXPERIMENT: dict[str, float] = {}
#: ``mixed_polish``'s figures on the orthogonal model after the rounds.
MIXED: dict[str, float] = {}
#: Each way's certificate and the exact norm over ``k``, minus 1 (after the rounds).
TIGHTNESS: list[dict] = []


@contextmanager
def _way(way: str) -> Iterator[None]:
    """``gram``: the library without :data:`~liponet.layers.fourier.POLISHED_EVAL` (before)."""
    saved = fourier.POLISHED_EVAL
    if way == "gram":
        fourier.POLISHED_EVAL = {}
    try:
        yield
    finally:
        fourier.POLISHED_EVAL = saved


def _bound(layer: LipSpectralConv, way: str) -> float:
    if way == "gram":
        r, w = layer.effective_weights()
        return layer._eval_isometry_bound(r, w)
    return layer.lipschitz_bound()


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Whether two eval weights (or two ``None``) are equal bit for bit."""
    if a is None or b is None:
        return a is None and b is None
    if a.is_complex():
        a, b = torch.view_as_real(a), torch.view_as_real(b)
    return a.dtype == b.dtype and torch.equal(a, b)


def _multipliers(layers: list[LipSpectralConv]) -> list[torch.Tensor]:
    out = []
    with torch.no_grad():
        for layer in layers:
            skip = None if layer.skip is None else layer.skip.detach()
            out.append(layer._stacked(layer._symmetric_spectral(layer.weight.detach()), skip))
    return out


def _polar_floor(layers: list[LipSpectralConv]) -> tuple[float, float]:
    """CPU seconds of the float32 polar factors of every multiplier, and of their ``eigh``."""
    mats = _multipliers(layers)
    c = time.process_time()
    with torch.no_grad():
        for m in mats:
            for i, j in chunks(len(m), m[0].numel()):
                polar_eigh(m[i:j])
    polar = time.process_time() - c
    grams = [[conj_t(m[i:j]) @ m[i:j] for i, j in chunks(len(m), m[0].numel())] for m in mats]
    c = time.process_time()
    for per_layer in grams:
        for g in per_layer:
            torch.linalg.eigh(g)
    return polar, time.process_time() - c


def measure(normalization: str, cfg: dict, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    ways = WAYS[normalization]

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
    for way in ways:
        cpu[f"{way} eval weights"], cpu[f"{way} bound"], cpu[f"{way} cold"] = [], [], []
    if "polished" in ways:
        cpu["polished float32 polar factors (floor)"], cpu["polished eigh alone (floor)"] = [], []
    for i in range(rounds):
        c = time.process_time()
        step()
        cpu["step"].append(time.process_time() - c)
        weights = {}
        order = list(ways) if i % 2 == 0 else list(reversed(ways))
        for way in order:
            fresh = make()
            fresh.load_state_dict(model.state_dict())
            fresh.eval()
            layers = [m for m in fresh.modules() if isinstance(m, LipSpectralConv)]
            with _way(way):
                c = time.process_time()
                weights[way] = [layer.effective_weights() for layer in layers]
                t_eval = time.process_time() - c
                c = time.process_time()
                max(_bound(layer, way) for layer in layers)
                t_bound = time.process_time() - c
            cpu[f"{way} eval weights"].append(t_eval)
            cpu[f"{way} bound"].append(t_bound)
            cpu[f"{way} cold"].append(t_eval + t_bound)
        if "polished" in ways:
            for a, b in zip(weights["gram"], weights["polished"], strict=True):
                if not all(_same(ta, tb) for ta, tb in zip(a, b, strict=True)):
                    raise AssertionError("the ways' eval weights differ")
            layers = [m for m in model.modules() if isinstance(m, LipSpectralConv)]
            polar, eigh = _polar_floor(layers)
            cpu["polished float32 polar factors (floor)"].append(polar)
            cpu["polished eigh alone (floor)"].append(eigh)
    step_ms = 1e3 * statistics.median(cpu["step"])
    if normalization == "cayley":
        EXPERIMENT.update(float32_cayley(model))
    if normalization == "orthogonal":
        MIXED.update(mixed_polish(model, max(2, rounds // 2)))
    TIGHTNESS.extend(tightness(model, normalization, ways))
    rows = []
    for key, values in cpu.items():
        if key == "step":
            continue
        ms = 1e3 * statistics.median(values)
        way, part = key.split(" ", 1)
        base = cpu.get(f"gram {part}")
        rows.append(
            dict(
                normalization=normalization,
                way=way,
                part=part,
                ms=ms,
                step_ms=step_ms,
                train_steps=ms / step_ms,
                ratio_to_gram=ms / (1e3 * statistics.median(base)) if base else float("nan"),
            )
        )
    return rows


def tightness(model: LipFNO, normalization: str, ways: tuple[str, ...]) -> list[dict]:
    """Each way's certificate and the exact largest norm (float64 SVD) over ``k``, minus 1."""
    out = []
    layers = [m for m in model.modules() if isinstance(m, LipSpectralConv)]
    for way in ways:
        worst = {"bound / k - 1": -1.0, "exact / k - 1": -1.0, "bound / exact - 1": 0.0}
        for layer in layers:
            assert layer.k is not None
            fresh = LipSpectralConv(
                layer.in_channels, layer.out_channels, layer.modes, k=layer.k,
                skip=layer.skip is not None, normalization=normalization,
            )  # fmt: skip
            fresh.load_state_dict(layer.state_dict())
            fresh.eval()
            with _way(way):
                bound = _bound(fresh, way)
            mk, w = fresh.multipliers()
            exact = float(spectral_norm_exact(mk).max())
            exact = exact if w is None else max(exact, float(spectral_norm_exact(w)))
            if exact > bound:
                raise AssertionError(f"{way}: the certificate {bound} is below the norm {exact}")
            worst["bound / k - 1"] = max(worst["bound / k - 1"], bound / layer.k - 1.0)
            worst["exact / k - 1"] = max(worst["exact / k - 1"], exact / layer.k - 1.0)
            worst["bound / exact - 1"] = max(worst["bound / exact - 1"], bound / exact - 1.0)
        out.append({"normalization": normalization, "way": way, **worst})
    return out


def mixed_polish(model: LipFNO, repeats: int) -> dict:
    """Experiment: ``orthogonal``'s float64 polish with its correction product in complex64.

    The library's step ``P = 1.5 X - 0.5 X (X^H X)`` (two complex128 products) against ``P' = X
    + X E / 2``, ``E = I - X^H X`` from the complex128 Gram, the product ``X E`` in complex64
    (one complex128 product saved): CPU time of both on every multiplier of every layer (the
    float32 polar factors given, alternating, medians of ``repeats``), and how many entries of
    the rounded ``k P'`` differ from the library's eval multipliers, and by how much at most.
    """
    layers = [m for m in model.modules() if isinstance(m, LipSpectralConv)]
    qs, ks = [], []
    with torch.no_grad():
        for m, layer in zip(_multipliers(layers), layers, strict=True):
            qs += [polar_eigh(m[i:j]) for i, j in chunks(len(m), m[0].numel())]
            ks += [layer._target()] * len(chunks(len(m), m[0].numel()))

    def library(q: torch.Tensor, k: float) -> torch.Tensor:
        return (k * polish_isometry(q.to(torch.complex128))).to(q.dtype)

    def mixed(q: torch.Tensor, k: float) -> torch.Tensor:
        x = q.to(torch.complex128)
        e = torch.eye(q.shape[-1], dtype=x.dtype) - conj_t(x) @ x
        return (k * (x + 0.5 * (q @ e.to(q.dtype)).to(x.dtype))).to(q.dtype)

    times: dict[str, list[float]] = {"library": [], "mixed": []}
    for i in range(repeats):
        for name in ("library", "mixed") if i % 2 == 0 else ("mixed", "library"):
            fn = library if name == "library" else mixed
            c = time.process_time()
            for q, k in zip(qs, ks, strict=True):
                fn(q, k)
            times[name].append(time.process_time() - c)
    changed, total, largest = 0, 0, 0.0
    for q, k in zip(qs, ks, strict=True):
        a, b = torch.view_as_real(library(q, k)), torch.view_as_real(mixed(q, k))
        changed += int((a != b).sum())
        total += a.numel()
        largest = max(largest, float((a - b).abs().max()))
    ms = {name: 1e3 * statistics.median(v) for name, v in times.items()}
    return {
        "library polish ms": ms["library"],
        "mixed polish ms": ms["mixed"],
        "mixed / library": ms["mixed"] / ms["library"],
        "entries changed": changed / total,
        "largest change": largest,
    }


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
            labels = [f"{r['way']}\n{r['part']}".replace(" (floor)", "") for r in sub]
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
    cols = ["normalization", "way", "part", "ms", "step_ms", "train_steps", "ratio_to_gram"]
    lines = [
        "# Cold lipschitz_bound() of the norm-free normalizations",
        "",
        f"Settings: {settings}",
        "",
        "`ms` = median CPU milliseconds of the cold call right after an Adam step on a fresh copy "
        "of the weights (`eval weights`: every layer's `effective_weights()`, for `polished` "
        "with the certificate's pass; `bound`: the certificate after them; `cold`: both); "
        "`train_steps` against the median train step `step_ms`; `ratio_to_gram` against the "
        "`gram` way. The `(floor)` rows: the float32 polar factors of every multiplier and "
        "their batched `eigh` alone, on the same weights. Both ways' eval weights were equal bit "
        "for bit every round. See the script's docstring.",
        "",
        markdown_table(rows, cols),
        "",
        "Tightness after the rounds (largest over the layers; every certificate above the exact "
        "float64 SVD norm of what the forward applies):",
        "",
        markdown_table(TIGHTNESS, list(TIGHTNESS[0])),
        "",
        "Experiment (not the library's path): `cayley`'s eval weights from a float32 inverse, the "
        "training forward's (`k * cayley_unitary(M)` in complex64), on the cayley model after "
        "the rounds, against the library's (float64 inverse, rounded once): the certificate's "
        "bound over `k` minus 1, largest over the layers, and the largest entrywise difference.",
        "",
        markdown_table([{k: v for k, v in EXPERIMENT.items()}], list(EXPERIMENT)),
        "",
        "Experiment (not the library's path): `orthogonal`'s float64 polish with the correction "
        "`X (I - X^H X) / 2` multiplied in complex64 (one complex128 product instead of two), on "
        "the orthogonal model after the rounds: CPU ms of both over every multiplier (the float32 "
        "polar factors given), the fraction of the rounded eval multipliers' real entries that "
        "change, and the largest change.",
        "",
        markdown_table([dict(MIXED)], list(MIXED)),
        "",
    ]
    (args.out / "isometry_certificate.md").write_text("\n".join(lines))
    if pyplot() is not None:
        plot(rows, args.out / "isometry_certificate.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
