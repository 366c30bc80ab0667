"""How far ``clip``'s eval weights move when their scales divide by proven bounds (issue 15).

On layers above ``liponet.layers.fourier.SVD_ALL_WORK``, ``normalization="clip"`` scales each
eval multiplier by ``min(1, k' / u_k)`` with ``u_k`` a proven upper bound of its norm (the
first level of a fixed grid that a float32 Cholesky test proves,
``liponet.functional.grid_norm_upper``) instead of the exact-norm ``min(1, k / s_k)`` of a
float64 SVD (what every layer did before, and small layers still do). The previous proven
bound (a Cholesky test factorized in float64 at ``5e-4`` above an ``eigvalsh`` estimate, the
release before the grid) is compared too.
This script measures, on the certification case of ``benchmarks/performance.py`` (LipFNO
defaults: 4 convex-potential blocks, width 64, 16 x 16 modes, grid 64^2, batch 8; Adam, lr
1e-4, one training run), after 0, 8 and 64 steps:

* the ratio of the new scale to the exact-norm scale, over all multipliers of all blocks
  (min / median / max; 1 where neither clips);
* the relative difference of the eval outputs (function norm, the batch), new vs exact-norm
  and new vs the previous bound's;
* the certificates, and the largest exact norm of a scaled multiplier relative to ``k``.

Run from the repository root with one thread:
``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/clip_eval_scales.py`` (``--quick`` for a smoke
run). Writes ``benchmarks/results/clip_eval_scales.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from fno_common import markdown_table, write_csv
from performance import CERTIFY_CONFIG, _field, train_step

import liponet.layers.fourier as fourier
from liponet.functional import (
    NORM_GRID_BITS,
    SVD_RELATIVE_MARGIN,
    cholesky_norm_upper,
    chunks,
    spectral_norm_exact,
)
from liponet.models import LipFNO

RESULTS = Path("benchmarks/results")
STEPS = [0, 8, 64]
#: The previous release's clip bound: a float64-factorized Cholesky test this far above the
#: ``eigvalsh`` estimate of each norm (the SVD norm where it failed).
PREVIOUS_HEADROOM = 5e-4


def _previous_clip_scales(
    self: fourier.LipSpectralConv, r: torch.Tensor, w: torch.Tensor | None, k: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``LipSpectralConv._clip_scales`` of the release before the grid bounds (for comparison)."""
    n_rows = r.shape[0] + int(w is not None)
    if fourier._svd_all(r):
        sigma = self._exact_norms(r, w)
        return (k / sigma).clamp_max(1.0), sigma * (1.0 + SVD_RELATIVE_MARGIN)
    x, x_err = self._multipliers_in(r, w, torch.arange(n_rows))
    upper = torch.empty(n_rows, dtype=torch.float64)
    for i, j in chunks(n_rows, max(1, x[0].numel() // 8)):
        levels = torch.full((j - i,), float("inf"), dtype=torch.float64)
        upper[i:j] = cholesky_norm_upper(x[i:j], levels, PREVIOUS_HEADROOM, x_err, True)
    failed = (~torch.isfinite(upper)).nonzero().squeeze(1)
    if len(failed):
        upper[failed] = self._exact_norms(r, w, failed) * (1.0 + SVD_RELATIVE_MARGIN)
    return (k * (1.0 - fourier.CLIP_ROUNDING_ROOM) / upper).clamp_max(1.0), upper


def _convs(model: torch.nn.Module) -> list[fourier.LipSpectralConv]:
    return [m for m in model.modules() if isinstance(m, fourier.LipSpectralConv)]


def _function_norm(u: torch.Tensor) -> float:
    return float(u.pow(2).sum(1).mean().sqrt())


def measure(model: LipFNO, make: type[LipFNO] | object, x: torch.Tensor, steps: int) -> dict:
    """New vs exact-norm eval scales and outputs of the same weights."""
    model.eval()
    reference, previous = make(), make()  # type: ignore[operator]
    for other in (reference, previous):
        other.load_state_dict(model.state_dict())
        other.eval()
    saved = fourier.SVD_ALL_WORK
    ratios, ratios_prev, worst = [], [], 0.0
    with torch.no_grad():
        y_new = model(x)
        bound_new = model.lipschitz_bound()
        try:
            fourier.SVD_ALL_WORK = 1 << 62  # every layer "small": the exact-norm scales
            y_ref = reference(x)
            bound_ref = reference.lipschitz_bound()
            scales_ref = [c._eval_state()[1][3] for c in _convs(reference)]
        finally:
            fourier.SVD_ALL_WORK = saved
        new_scales = fourier.LipSpectralConv._clip_scales
        from_parts = fourier.LipSpectralConv._clips_from_parts
        try:
            fourier.LipSpectralConv._clip_scales = _previous_clip_scales  # type: ignore[method-assign]
            # the general path, the one that goes through _clip_scales
            fourier.LipSpectralConv._clips_from_parts = lambda *args: False  # type: ignore[method-assign]
            y_prev = previous(x)
            scales_prev = [c._eval_state()[1][3] for c in _convs(previous)]
        finally:
            fourier.LipSpectralConv._clip_scales = new_scales  # type: ignore[method-assign]
            fourier.LipSpectralConv._clips_from_parts = from_parts  # type: ignore[method-assign]
        for conv, ref, prev in zip(_convs(model), scales_ref, scales_prev, strict=True):
            ratios.append(conv._eval_state()[1][3] / ref)
            ratios_prev.append(conv._eval_state()[1][3] / prev)
            mk, w = conv.multipliers()
            top = max(float(spectral_norm_exact(mk).max()), float(spectral_norm_exact(w)))
            worst = max(worst, top / float(conv.k or 1.0))
    r, rp = torch.cat(ratios), torch.cat(ratios_prev)
    return {
        "steps": steps,
        "scale_ratio_min": float(r.min()),
        "scale_ratio_median": float(r.median()),
        "scale_ratio_max": float(r.max()),
        "scale_ratio_previous_min": float(rp.min()),
        "scale_ratio_previous_median": float(rp.median()),
        "scale_ratio_previous_max": float(rp.max()),
        "eval_output_rel_diff": _function_norm(y_new - y_ref) / _function_norm(y_ref),
        "eval_output_rel_diff_previous": _function_norm(y_new - y_prev) / _function_norm(y_prev),
        "previous_rel_diff": _function_norm(y_prev - y_ref) / _function_norm(y_ref),
        "largest_scaled_norm_over_k": worst,
        "certificate": bound_new,
        "certificate_exact_norm_clip": bound_ref,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, tiny sizes")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()
    out = args.out or RESULTS
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = dict(CERTIFY_CONFIG)
    steps = STEPS
    if args.quick:
        cfg.update(batch=2, n=16, width=8, modes=(3, 3))
        steps = [0, 2]
    start = time.perf_counter()
    x, y = _field(cfg, 2)

    def make() -> LipFNO:
        return LipFNO(1, 1, cfg["modes"], width=cfg["width"], depth=4)

    model = make()
    step = train_step(model, x, y)
    rows, done = [], 0
    for n in steps:
        model.train()
        for _ in range(n - done):
            step()
        done = n
        rows.append(measure(model, make, x, n))
    settings = (
        f"{'quick' if args.quick else 'default'} run; LipFNO defaults (cpl + clip), depth 4, "
        f"{cfg} (n = grid points per dimension); Adam lr 1e-4 on random fields; "
        f"CLIP_HEADROOM {fourier.CLIP_HEADROOM}, CLIP_ROUNDING_ROOM {fourier.CLIP_ROUNDING_ROOM}, "
        f"NORM_GRID_BITS {NORM_GRID_BITS}; "
        f"{platform.machine()}, torch {torch.__version__}; total "
        f"{time.perf_counter() - start:.0f} s"
    )
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "clip_eval_scales.csv", rows)
    columns = list(rows[0])
    text = [
        "# clip eval scales from proven bounds vs exact norms",
        "",
        f"Settings: {settings}",
        "",
        "`scale_ratio_*` = new eval scale / exact-norm scale over every multiplier of the four "
        "blocks (`scale_ratio_previous_*`: / the previous proven bound's scale, a float64 "
        f"Cholesky test {PREVIOUS_HEADROOM} above an eigvalsh estimate); `eval_output_rel_diff` "
        "= ||y_new - y_exact|| / ||y_exact|| (function norm) on the training batch "
        "(`_previous`: against the previous bound's outputs; `previous_rel_diff`: the previous "
        "bound's outputs against the exact-norm ones); `largest_scaled_norm_over_k` = the "
        "largest exact norm of a scaled eval multiplier over k (new scales).",
        "",
        markdown_table(rows, columns),
        "",
    ]
    (out / "clip_eval_scales.md").write_text("\n".join(text))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = [r["steps"] for r in rows]
    for key in ("scale_ratio_min", "scale_ratio_median", "scale_ratio_max"):
        ax.plot(xs, [r[key] for r in rows], "o-", label=key)
    ax.set_xlabel("Adam steps")
    ax.set_ylabel("new / exact-norm eval scale")
    ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "clip_eval_scales.png", dpi=90)
    plt.close(fig)
    print("\n".join(text))


if __name__ == "__main__":
    main()
