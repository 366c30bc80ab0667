"""Backward passes of the Cayley normalization: autograd against hand-written ones (issue 15).

``normalization="cayley"`` makes every multiplier the Cayley transform ``Q = (I + A)^{-1} (I -
A)`` of its skew part ``A = M - M^H`` (:func:`liponet.functional.cayley_unitary`), computed as
``Q = 2 Z - I`` with ``Z = inv(I + A)`` (one batched LU inverse) and differentiated by autograd
(the inverse's backward: ``-Z^H G Z^H``, two products). This asks whether a hand-written
backward is faster, on the multipliers of the 2-D and 3-D train-step configurations of
``benchmarks/performance.py`` (2-D: width 32, 12 x 12 modes, 265 independent multipliers and
the skip; 3-D: width 16, 6 x 6 x 6 modes, 666 and the skip; complex64, drawn as the layer
initializes them: an orthogonal skip ``W`` plus complex Gaussian ``R_k`` of standard deviation
``0.5 / sqrt(2 * width)`` per part). Each way is one forward and one backward with the same
upstream gradient, four calls (the four blocks of the model):

- ``autograd``: the library's path (:func:`liponet.functional.cayley_unitary`).
- ``custom-z``: the same forward, a hand-written backward from the saved ``Z``
  (``G_H = -2 Z^H G Z^H``, ``grad = G_H - G_H^H``).
- ``custom-lu``: ``torch.linalg.lu_factor`` of ``I + A`` and ``lu_solve`` for ``Q``; the
  backward reuses the factorization (``Y = (I + A)^{-H} G`` by one ``lu_solve``, ``G_A = -Y (I
  + Q)^H``, ``grad = G_A - G_A^H``).
- ``solve``: ``torch.linalg.solve(I + A, I - A)`` and autograd (which keeps the LU).
- ``polar-eigh``: the polar factor of ``"orthogonal"`` (:func:`liponet.functional.polar_eigh`),
  for scale.

Both hand-written backwards are checked against autograd (``gradcheck`` in float64) before
timing. Timings: median process CPU time over interleaved rounds, one thread.

Run from the repository root: ``.venv/bin/python benchmarks/cayley_backward.py`` (about half a
minute; ``--quick`` for a smoke run). Writes ``benchmarks/results/cayley_backward.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _plot import panel_row, pyplot
from fno_common import interleaved_ms, markdown_table, write_csv
from torch import Tensor

from liponet.functional import cayley_unitary, conj_t, polar_eigh

RESULTS = Path("benchmarks/results")
#: (configuration, width, multipliers per layer): the 2-D and 3-D train steps of
#: ``performance.py`` (independent multipliers of the kept modes, and the skip).
SIZES = [("2-D", 32, 266), ("3-D", 16, 667)]
LAYERS = 4


class _CustomZ(torch.autograd.Function):
    """``Q = 2 inv(I + A) - I``, backward from the saved inverse."""

    @staticmethod
    def forward(ctx: Any, m: Tensor) -> Tensor:
        eye = torch.eye(m.shape[-1], dtype=m.dtype)
        z = torch.linalg.inv(eye + (m - conj_t(m)))
        ctx.save_for_backward(z)
        return 2 * z - eye

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        zh = conj_t(z)
        g_h = -2 * (zh @ grad @ zh)
        return g_h - conj_t(g_h)


class _CustomLU(torch.autograd.Function):
    """``Q = lu_solve(I + A, I - A)``, backward by one more ``lu_solve`` with the same factors."""

    @staticmethod
    def forward(ctx: Any, m: Tensor) -> Tensor:
        eye = torch.eye(m.shape[-1], dtype=m.dtype)
        a = m - conj_t(m)
        lu, piv = torch.linalg.lu_factor(eye + a)
        q = torch.linalg.lu_solve(lu, piv, eye - a)
        ctx.save_for_backward(lu, piv, q)
        return q

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        lu, piv, q = ctx.saved_tensors
        # dQ = -(I + A)^{-1} dA (I + Q): G_A = -(I + A)^{-H} G (I + Q)^H
        eye = torch.eye(q.shape[-1], dtype=q.dtype)
        y = torch.linalg.lu_solve(lu, piv, grad, adjoint=True)
        g_a = -(y @ conj_t(eye + q))
        return g_a - conj_t(g_a)


def _solve(m: Tensor) -> Tensor:
    eye = torch.eye(m.shape[-1], dtype=m.dtype)
    a = m - conj_t(m)
    return torch.linalg.solve(eye + a, eye - a)


METHODS: dict[str, Callable[[Tensor], Tensor]] = {
    "autograd": cayley_unitary,
    "custom-z": _CustomZ.apply,
    "custom-lu": _CustomLU.apply,
    "solve": _solve,
    "polar-eigh": polar_eigh,
}


def multipliers(n: int, count: int, seed: int) -> Tensor:
    """``count`` complex64 ``n x n`` multipliers ``W + R_k`` as ``LipSpectralConv`` starts them."""
    gen = torch.Generator().manual_seed(seed)
    skip = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))[0]
    std = 0.5 / math.sqrt(2 * n)
    r = torch.complex(
        std * torch.randn(count, n, n, generator=gen), std * torch.randn(count, n, n, generator=gen)
    )
    return r + skip.to(torch.complex64)


def check_gradients() -> None:
    """The hand-written backwards against autograd's (float64 ``gradcheck``) and each other."""
    gen = torch.Generator().manual_seed(1)
    m = torch.randn(3, 5, 5, generator=gen, dtype=torch.complex128)
    for fn in (_CustomZ.apply, _CustomLU.apply):
        assert torch.autograd.gradcheck(fn, (m.clone().requires_grad_(),))
        torch.testing.assert_close(fn(m), cayley_unitary(m), rtol=0.0, atol=1e-12)


def timing_rows(name: str, width: int, count: int, rounds: int) -> list[dict]:
    layers = [multipliers(width, count, seed=i) for i in range(LAYERS)]
    grads = [multipliers(width, count, seed=100 + i) for i in range(LAYERS)]

    def run(fn: Callable[[Tensor], Tensor]) -> Callable[[], None]:
        def call() -> None:
            for w0, g in zip(layers, grads, strict=True):
                w = w0.clone().requires_grad_()
                q = fn(w)
                q.backward(g)

        return call

    ms = interleaved_ms({k: run(fn) for k, fn in METHODS.items()}, rounds)
    return [
        dict(
            config=name,
            width=width,
            multipliers=LAYERS * count,
            method=k,
            ms=v,
            ratio_to_autograd=v / ms["autograd"],
        )
        for k, v in ms.items()
    ]


def plot(rows: list[dict], path: Path) -> None:
    configs = list(dict.fromkeys(r["config"] for r in rows))
    with panel_row(path, len(configs), (4.5, 3.5)) as axes:
        for ax, config in zip(axes, configs, strict=True):
            sub = [r for r in rows if r["config"] == config]
            ax.bar([r["method"] for r in sub], [r["ms"] for r in sub], color="tab:blue")
            ax.set_ylabel("CPU ms, forward + backward")
            ax.set_title(f"{config}: {sub[0]['multipliers']} multipliers {sub[0]['width']}^2")
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes, rounds = ([("2-D", 8, 16)], 3) if args.quick else (SIZES, 12)
    start = time.perf_counter()
    check_gradients()
    rows = []
    for name, width, count in sizes:
        rows += timing_rows(name, width, count, rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "cayley_backward.csv", rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run: (configuration, width, multipliers per "
        f"layer) {sizes}, {LAYERS} layers, complex64, {rounds} interleaved rounds, 1 torch "
        f"thread; {platform.machine()}, torch {torch.__version__}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    cols = ["config", "width", "multipliers", "method", "ms", "ratio_to_autograd"]
    lines = [
        "# Backward passes of the Cayley normalization",
        "",
        f"Settings: {settings}",
        "",
        "`ms` = median CPU milliseconds per call (forward + backward of the normalization of "
        "every multiplier of the four layers), measured interleaved; `ratio_to_autograd` against "
        "the library's path. See the script's docstring for the methods.",
        "",
        markdown_table(rows, cols),
        "",
    ]
    (args.out / "cayley_backward.md").write_text("\n".join(lines))
    if pyplot() is not None:
        plot(rows, args.out / "cayley_backward.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
