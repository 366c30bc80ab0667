"""Warm-started polar factors against the eigh path of ``normalization="orthogonal"`` (issue 15).

A LipFNO training step with ``normalization="orthogonal"`` spends most of its extra time (over
``"global"``) on the unitary polar factor of every multiplier, forward and backward
(:func:`liponet.functional.polar_eigh`: Gram product, one batched Hermitian ``eigh``, two
products; closed-form backward, four products). This study asks whether a warm start from the
previous step's eigenbasis ``X`` can replace the ``eigh`` at the same accuracy, on the
multipliers of the 2-D train-step configuration of ``benchmarks/performance.py`` (width 32,
12 x 12 modes: 265 independent multipliers plus the skip, complex64 32 x 32; drawn as the
layer initializes them: an orthogonal skip ``W`` plus complex Gaussian ``R_k`` of standard
deviation ``0.5 / sqrt(2 * width)`` per part). Three ways, each a forward and a backward with the
same upstream gradient:

- ``eigh``: the library's path (:func:`liponet.functional.polar_eigh`).
- ``warm-dk``: ``Z = W X``, ``S = Z^H Z`` (nearly diagonal), its inverse square root to first
  order around its diagonal (Daleckii-Krein: divided differences of ``x^(-1/2)``, no division by
  eigenvalue gaps), ``Q = Z T X^H``; the next basis rotated by a first-order Jacobi step
  (pairs with a correction above 0.05 left alone) and re-orthonormalized to fourth order;
  backward: the closed form at ``(Z T, sqrt(diag S), X)`` (an approximation of the polar
  factor's gradient, first order in the off-diagonal of ``S``).
- ``warm-oa``: two Ogita-Aishima refinement steps of ``X`` (the first assuming ``X`` unitary),
  then the eigh path's formulas with the refined factors.

A warm multiplier is accepted only if ``||Q^H Q - I||_F`` is at most 3 times the median departure
of the eigh path's own float32 result on the same multipliers (about ``1e-5`` at width 32), else
redone by ``eigh``; ``Q = W Y`` with ``Y`` Hermitian, so a small departure means ``Y`` is close
to ``(W^H W)^(-1/2)``, i.e. ``Q`` close to the polar factor. Timings: median process CPU time
over interleaved rounds, one thread, the warm basis one step old at step size ``1e-4``.
Accuracy: trajectories of 20 Adam-like steps (every real and imaginary part moved by ``+-lr``),
the basis carried from step to step: the fraction accepted and the largest ``||Q - polar(W)||_F``
of the accepted against a float64 SVD. Also the eigh path's parts (Gram, ``eigh``, one product,
one elementwise complex product) to show where its time goes. Both at width 32 (the 2-D train
step) and at width 64 (the certification model of ``performance.py``: 16 x 16 modes, 481
independent multipliers and the skip).

Run from the repository root: ``.venv/bin/python benchmarks/polar_warm_start.py`` (about a
minute; ``--quick`` for a smoke run). Writes ``benchmarks/results/polar_warm_start.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _plot import panel_row, pyplot
from fno_common import interleaved_ms, markdown_table, write_csv
from torch import Tensor

from liponet.functional import _polar_backward, conj_t, polar_eigh

RESULTS = Path("benchmarks/results")
#: (width, multipliers): the 2-D train step of ``performance.py`` (width 32, 12 x 12 modes: 265
#: independent multipliers and the skip) and its certification model (width 64, 16 x 16 modes).
SIZES = [(32, 266), (64, 482)]
#: A warm multiplier is accepted if its ``||Q^H Q - I||_F`` is at most this many times the
#: median departure of the eigh path's own float32 result on the same multipliers.
TOL_FACTOR = 3.0
#: Jacobi corrections of the warm-dk basis larger than this are skipped (near-equal eigenvalues).
FAR = 0.05


def multipliers(n: int, count: int, seed: int) -> Tensor:
    """``count`` complex64 ``n x n`` multipliers ``W + R_k`` as ``LipSpectralConv`` starts them."""
    gen = torch.Generator().manual_seed(seed)
    skip = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))[0]
    std = 0.5 / math.sqrt(2 * n)
    r = torch.complex(
        std * torch.randn(count, n, n, generator=gen), std * torch.randn(count, n, n, generator=gen)
    )
    return r + skip.to(torch.complex64)


def _real_scale(a: Tensor, r: Tensor) -> Tensor:
    """``a * r`` for complex ``a`` and real ``r`` of the same shape, without a complex copy."""
    return torch.view_as_complex(torch.view_as_real(a) * r.unsqueeze(-1))


def _departure(q: Tensor) -> Tensor:
    """``||Q^H Q - I||_F`` per matrix."""
    g = conj_t(q) @ q
    g.diagonal(dim1=-2, dim2=-1).sub_(1)
    return torch.view_as_real(g).square().sum((-3, -2, -1)).sqrt()


def _eigh_parts(w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(U, s, V)`` of ``w = U diag(s) V^H`` by ``eigh`` of the Gram."""
    lam, v = torch.linalg.eigh(conj_t(w) @ w)
    s = lam.sqrt()
    return w @ _real_scale(v, (1 / s).unsqueeze(-2).expand_as(v.real)), s, v


def warm_dk(w: Tensor, x: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """First-order inverse square root in the basis ``x``: ``(Q, U, s, ok, next basis)``."""
    z = w @ x
    s = conj_t(z) @ z
    d = s.diagonal(dim1=-2, dim2=-1).real  # (B, n)
    rd = d.rsqrt()
    sd = d * rd
    # divided differences of x^(-1/2): -1 / (sqrt(d_i d_j) (sqrt(d_i) + sqrt(d_j)))
    gam = -(rd.unsqueeze(-1) * rd.unsqueeze(-2)) / (sd.unsqueeze(-1) + sd.unsqueeze(-2))
    t = _real_scale(s, gam)  # diagonal: -d^(-1/2) / 2, so add 3/2 d^(-1/2)
    t.diagonal(dim1=-2, dim2=-1).add_(1.5 * rd)
    u = z @ t
    q = u @ conj_t(x)
    ok = _departure(q) <= tol
    diff = d.unsqueeze(-2) - d.unsqueeze(-1)  # [i, j] = d_j - d_i
    kr = torch.view_as_real(s) / diff.unsqueeze(-1)
    far = kr.square().sum(-1) <= FAR * FAR  # the diagonal (inf) is never far
    k = torch.view_as_complex(torch.where(far.unsqueeze(-1), kr, 0.0))
    eye = torch.eye(x.shape[-1], dtype=x.dtype)
    nxt = x @ ((eye + k) @ (eye + 0.5 * (k @ k)))  # (I + K)(I - K^H K)^(-1/2) to fourth order
    return q, u, sd, ok, nxt


def _oa_step(z: Tensor, x: Tensor, r: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One Ogita-Aishima step (``r = I - X^H X``, ``None`` for 0): ``X``, ``W X``, eigenvalues."""
    s = conj_t(z) @ z
    lam = s.diagonal(dim1=-2, dim2=-1).real
    if r is not None:
        lam = lam / (1 - r.diagonal(dim1=-2, dim2=-1).real)
    diff = lam.unsqueeze(-2) - lam.unsqueeze(-1)
    far = diff.abs() > 1e-6 * lam[:, -1:, None]
    inv = torch.where(far, diff, 1.0).reciprocal() * far
    num = s if r is None else s + _real_scale(r, lam.unsqueeze(-2).expand_as(r.real))
    e = _real_scale(num, inv)
    if r is not None:
        e = e + _real_scale(r, 0.5 * (~far))
    return torch.baddbmm(x, x, e), torch.baddbmm(z, z, e), lam


def warm_oa(w: Tensor, x: Tensor, tol: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Two Ogita-Aishima refinement steps from ``x``: ``(Q, U, s, ok, refined basis)``."""
    x1, z1, _ = _oa_step(w @ x, x, None)
    r = -(conj_t(x1) @ x1)
    r.diagonal(dim1=-2, dim2=-1).add_(1)
    x2, z2, lam = _oa_step(z1, x1, r)
    s = lam.sqrt()
    u = _real_scale(z2, (1 / s).unsqueeze(-2).expand_as(z2.real))
    q = u @ conj_t(x2)
    return q, u, s, _departure(q) <= tol, x2


WARM = {"warm-dk": warm_dk, "warm-oa": warm_oa}


class _WarmPolar(torch.autograd.Function):
    """Polar factor from a warm basis; rejected multipliers redone by eigh; closed-form backward."""

    @staticmethod
    def forward(ctx: Any, w: Tensor, x: Tensor, method: str, tol: float, out: dict) -> Tensor:
        q, u, s, ok, nxt = WARM[method](w, x, tol)
        v = x if method == "warm-dk" else nxt
        bad = (~ok).nonzero().squeeze(1)
        if bad.numel():
            u, s, v, q, nxt = u.clone(), s.clone(), v.clone(), q.clone(), nxt.clone()
            u[bad], s[bad], v[bad] = _eigh_parts(w[bad])
            q[bad] = u[bad] @ conj_t(v[bad])
            nxt[bad] = v[bad]
        out.update(next=nxt, accepted=float(ok.float().mean()))
        ctx.save_for_backward(u, s, conj_t(v))
        return q

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        u, s, vh = ctx.saved_tensors
        return _polar_backward(u, s, vh, grad), None, None, None, None


def warm_polar(w: Tensor, x: Tensor, method: str, tol: float) -> tuple[Tensor, dict]:
    """``(Q, {"next": basis for the next step, "accepted": fraction})``."""
    out: dict = {}
    return _WarmPolar.apply(w, x, method, tol, out), out


def sign_step(w: Tensor, lr: float, gen: torch.Generator) -> Tensor:
    """Every real and imaginary part moved by ``+-lr`` (an Adam step's size early in training)."""
    sign = torch.randint(0, 2, (*w.shape, 2), generator=gen).float() * 2 - 1
    return w + torch.view_as_complex(lr * sign)


def exact_polar(w: Tensor) -> Tensor:
    u, _, vh = torch.linalg.svd(w.to(torch.complex128))
    return u @ vh


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median CPU milliseconds per call, the calls interleaved round by round (one warm-up)."""
    return interleaved_ms(fns, rounds, warmup=1)


def tolerance(w: Tensor) -> float:
    """``TOL_FACTOR`` times the median departure of the eigh path's result on ``w``."""
    with torch.no_grad():
        return TOL_FACTOR * float(_departure(polar_eigh(w)).median())


def timing_rows(w0: Tensor, rounds: int, tol: float) -> list[dict]:
    gen = torch.Generator().manual_seed(1)
    x0 = torch.linalg.eigh(conj_t(w0) @ w0)[1]
    w = sign_step(w0, 1e-4, gen).requires_grad_()
    grad = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    accepted: dict[str, float] = {}

    def warm(method: str) -> Callable[[], None]:
        def run() -> None:
            q, out = warm_polar(w, x0, method, tol)
            q.backward(grad)
            accepted[method] = out["accepted"]

        return run

    wd = w.detach()
    g = conj_t(wd) @ wd
    r = torch.rand(wd.shape, generator=gen)
    fns: dict[str, Callable[[], object]] = {
        "eigh": lambda: polar_eigh(w).backward(grad),
        "warm-dk": warm("warm-dk"),
        "warm-oa": warm("warm-oa"),
        "eigh path: Gram product": lambda: conj_t(wd) @ wd,
        "eigh path: batched eigh": lambda: torch.linalg.eigh(g),
        "one complex batched product": lambda: wd @ wd,
        "one complex x real elementwise product": lambda: _real_scale(wd, r),
    }
    ms = interleaved(fns, rounds)
    grads = {}
    for name in ("eigh", *WARM):
        w.grad = None
        fns[name]()
        assert w.grad is not None
        grads[name] = w.grad.clone()
    grad_error = {
        name: float((grads[name] - grads["eigh"]).norm() / grads["eigh"].norm()) for name in grads
    }
    rows = []
    for name, value in ms.items():
        whole = name in ("eigh", *WARM)
        rows.append(
            {
                "width": w0.shape[-1],
                "multipliers": w0.shape[0],
                "tolerance": tol,
                "kind": "forward+backward" if whole else "part",
                "method": name,
                "lr": "",
                "ms": value,
                "ratio_to_eigh": value / ms["eigh"],
                "accepted": accepted.get(name, 1.0) if whole else "",
                "max_error": "",
                "grad_rel_error": grad_error.get(name, "") if whole else "",
            }
        )
    return rows


def accuracy_rows(w0: Tensor, lrs: list[float], steps: int, tol: float) -> list[dict]:
    rows = []
    x0 = torch.linalg.eigh(conj_t(w0) @ w0)[1]
    for method in WARM:
        for lr in lrs:
            gen = torch.Generator().manual_seed(2)
            w, x = w0, x0
            fractions: list[float] = []
            worst = 0.0
            for _ in range(steps):
                w = sign_step(w, lr, gen)
                with torch.no_grad():
                    q, _, _, ok, nxt = WARM[method](w, x, tol)
                    if bool(ok.any()):
                        err = torch.linalg.matrix_norm(
                            q[ok].to(torch.complex128) - exact_polar(w[ok])
                        )
                        worst = max(worst, float(err.max()))
                    fractions.append(float(ok.float().mean()))
                    x = nxt.clone()
                    if not bool(ok.all()):  # rejected: redone by eigh, its basis kept
                        x[~ok] = _eigh_parts(w[~ok])[2]
            rows.append(
                {
                    "width": w0.shape[-1],
                    "multipliers": w0.shape[0],
                    "tolerance": tol,
                    "kind": "accuracy",
                    "method": method,
                    "lr": lr,
                    "ms": "",
                    "ratio_to_eigh": "",
                    "accepted": statistics.mean(fractions),
                    "max_error": worst if max(fractions) > 0 else "",
                    "grad_rel_error": "",
                }
            )
    return rows


def plot(rows: list[dict], path: Path) -> None:
    whole = [r for r in rows if r["kind"] == "forward+backward"]
    acc = [r for r in rows if r["kind"] == "accuracy"]
    with panel_row(path, 2, (4.5, 3.2)) as (ax1, ax2):
        labels = [f"{r['method']}\nwidth {r['width']}" for r in whole]
        ax1.bar(labels, [r["ratio_to_eigh"] for r in whole])
        ax1.tick_params(axis="x", labelsize=6)
        ax1.set_ylabel("CPU time / eigh path (fwd + bwd)")
        for method in WARM:
            for width in sorted({r["width"] for r in acc}):
                pts = [
                    (r["lr"], r["accepted"])
                    for r in acc
                    if (r["method"], r["width"]) == (method, width)
                ]
                ax2.semilogx(*zip(*pts, strict=True), marker="o", label=f"{method}, width {width}")
        ax2.set_xlabel("step size per entry")
        ax2.set_ylabel("fraction accepted")
        ax2.legend(loc="best", fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sizes, rounds, steps = ([(8, 16)], 3, 3) if args.quick else (SIZES, 12, 20)
    lrs = [1e-5, 1e-4, 3e-4, 1e-3]
    start = time.perf_counter()
    rows = []
    for n, count in sizes:
        w0 = multipliers(n, count, seed=0)
        tol = tolerance(w0)
        rows += timing_rows(w0, rounds, tol) + accuracy_rows(w0, lrs, steps, tol)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "polar_warm_start.csv", rows)
    settings = (
        f"{'quick' if args.quick else 'default'} run: (width, multipliers) {sizes}, complex64, "
        f"{rounds} interleaved rounds, 1 torch thread, tolerance {TOL_FACTOR:g} x the eigh "
        f"path's median departure, {steps} steps per "
        f"trajectory; {platform.machine()}, torch {torch.__version__}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    cols = [
        "width",
        "tolerance",
        "kind",
        "method",
        "lr",
        "ms",
        "ratio_to_eigh",
        "accepted",
        "max_error",
        "grad_rel_error",
    ]
    lines = [
        "# Warm-started polar factors against the eigh path",
        "",
        f"Settings: {settings}",
        "",
        "`ms` = median CPU milliseconds per call (forward + backward of the polar factor of "
        "every multiplier, or one part of the eigh path), measured interleaved; `accepted` = "
        "fraction of multipliers whose warm result passed the check (the rest redone by "
        "eigh); `max_error` = largest `||Q - polar(W)||_F` of an accepted multiplier (float64 "
        "SVD reference) over the trajectory; `grad_rel_error` = relative Frobenius distance of the "
        "gradient from the eigh path's (basis one step old, step size 1e-4). See the script's "
        "docstring for the methods.",
        "",
        markdown_table(rows, cols),
        "",
    ]
    (args.out / "polar_warm_start.md").write_text("\n".join(lines))
    if pyplot() is not None:
        plot(rows, args.out / "polar_warm_start.png")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
