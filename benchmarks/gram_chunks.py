"""Cold certificates with the Gram products chunk by chunk, against the code before (issue 15).

``liponet.functional._negated_gram`` (the Gram matrices of the Cholesky tests of
``grid_norm_upper`` and of the global normalization's contenders) computed its two batched
products for a whole batch (hundreds of multipliers: megabytes of temporaries, fresh pages on
every call); it now runs them chunk by chunk into two reused buffers that stay in cache. The
floats are the same, bit for bit (each matrix's product is the batched call's), so the bounds,
scales and eval outputs do not change: this script asserts that the certificates are equal
(every round) and so are the eval outputs (first round of each row).

Side by side in one process: ``lipschitz_bound()`` of issue 15's certification case
(``benchmarks/performance.py``'s ``CERTIFY_CONFIG``: a 4-block width-64 LipFNO with 16 x 16
modes, grid 64^2) for LipFNO's defaults (convex-potential blocks, clip) and the global
normalization, cold after 1 and after 8 Adam steps. Each round deep-copies the trained model
(weights and remembered vectors) and certifies one copy with the library's ``functional``
module as of ``--before`` (loaded from git, patched into ``liponet.layers.fourier``) and the
other with this checkout's, alternating which goes first. Reported: median process CPU time of
each side, their ratio, and the median train step of the run.

Run from the repository root: ``.venv/bin/python benchmarks/gram_chunks.py`` (about three
minutes; ``--quick`` for a smoke run). Writes ``benchmarks/results/gram_chunks.{md,csv,png}``.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _plot import pyplot
from fno_common import write_csv, write_report
from performance import CERTIFY_CONFIG, FUSED, _field, train_step

import liponet.functional as functional
import liponet.layers.fourier as fourier
from liponet.models import LipFNO

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = {"LipFNO defaults (cpl+clip)": {}, "LipFNO global": FUSED}


def load_before(rev: str) -> Any:
    """``liponet/functional.py`` as of git revision ``rev``, as a module of its own."""
    src = subprocess.run(
        ["git", "show", f"{rev}:liponet/functional.py"], check=True, capture_output=True, text=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "functional_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("functional_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _whole(x: Any) -> Any:
    """The whole tensor of parts that a ``functional._PartRows`` writes chunk by chunk."""
    if isinstance(x, functional._PartRows):
        return x.fill(0, x.shape[0], torch.empty(x.shape, dtype=x.dtype, device=x.device))
    return x


def _compatible(before: Any) -> dict[str, Any]:
    """``before``'s Gram tests called as this checkout's ``fourier`` calls them.

    ``fourier`` now hands them a ``functional._PartRows`` (the parts written as the products
    read them) where code before took the whole tensor of parts (written here first), and asks
    for bounds alone (``need_factor=False``, the same bounds).
    """
    if hasattr(before, "_PartRows"):
        return {}

    class GramTest(before._GramTest):  # type: ignore[name-defined,misc]
        def __init__(self, x: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(_whole(x), *args, **kwargs)

        def run(self, rows: Any, level2: Any, rhs: Any = None, need_factor: bool = True) -> Any:
            return super().run(rows, level2, rhs)

    return {"_GramTest": GramTest}


def sides(before: Any) -> dict[str, dict[str, Any]]:
    """The names ``fourier`` imported from ``functional``: this checkout's and ``before``'s."""
    names = [n for n in dir(fourier) if getattr(fourier, n) is getattr(functional, n, object())]
    mine = {n: getattr(before, n) for n in names if hasattr(before, n)}
    return {
        "before": {**mine, **_compatible(before)},
        "after": {n: getattr(fourier, n) for n in names},
    }


def measure(rounds: int, before: Any) -> list[dict]:
    patch = sides(before)
    cfg = CERTIFY_CONFIG
    torch.manual_seed(0)
    x, y = _field(cfg, 2)
    rows = []
    for name, kw in MODELS.items():
        model = LipFNO(1, 1, cfg["modes"], width=cfg["width"], depth=4, **kw)
        step = train_step(model, x, y)
        step()
        model.eval()
        model.lipschitz_bound()
        for gap in (1, 8):
            cpu: dict[str, list[float]] = {"before": [], "after": []}
            steps = []
            for r in range(rounds):
                model.train()
                for _ in range(gap):
                    c = time.process_time()
                    step()
                    steps.append(time.process_time() - c)
                model.eval()
                twins = {side: copy.deepcopy(model) for side in cpu}
                bounds = {}
                for side in ("before", "after") if r % 2 == 0 else ("after", "before"):
                    for n, v in patch[side].items():
                        setattr(fourier, n, v)
                    c = time.process_time()
                    bounds[side] = twins[side].lipschitz_bound()
                    cpu[side].append(time.process_time() - c)
                for n, v in patch["after"].items():
                    setattr(fourier, n, v)
                if not torch.equal(
                    torch.as_tensor(bounds["before"]), torch.as_tensor(bounds["after"])
                ):
                    raise AssertionError(f"{name}: the certificates differ: {bounds}")
                if r == 0:  # the eval outputs too (the eval weights come from the same scales)
                    with torch.no_grad():
                        if not torch.equal(twins["before"](x), twins["after"](x)):
                            raise AssertionError(f"{name}: the eval outputs differ")
                model.lipschitz_bound()  # the model remembers the certified state, as in training
            ms = {side: 1e3 * statistics.median(v) for side, v in cpu.items()}
            step_ms = 1e3 * statistics.median(steps)
            rows.append(
                {
                    "model": name,
                    "cold after": f"{gap} step{'s' if gap > 1 else ''}",
                    "before_ms": ms["before"],
                    "after_ms": ms["after"],
                    "ratio": ms["after"] / ms["before"],
                    "step_ms": step_ms,
                    "after_steps": ms["after"] / step_ms,
                    "bounds_equal": True,
                    "eval_outputs_equal": True,
                }
            )
            print(rows[-1], flush=True)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=90)
    labels = [f"{r['model'].replace('LipFNO ', '')}\n{r['cold after']}" for r in rows]
    ax.bar(labels, [r["ratio"] for r in rows], color="tab:blue")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_ylabel("cold lipschitz_bound(): after / before")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run, 2 rounds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--before", default="72455c0", help="git revision of the code before")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rounds = 2 if args.quick else 10
    start = time.perf_counter()
    rows = measure(rounds, load_before(args.before))
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "gram_chunks.csv", rows)
    load = " ".join(f"{v:.2f}" for v in __import__("os").getloadavg())
    settings = (
        f"{'quick' if args.quick else 'default'} run: before = liponet/functional.py at "
        f"{args.before}, {rounds} alternating rounds per row, 1 torch thread, process CPU time; "
        f"{platform.machine()}, torch {torch.__version__}; load average at the end {load}; "
        f"{time.perf_counter() - start:.0f} s"
    )
    write_report(
        args.out,
        "gram_chunks",
        "Cold certificates with the Gram products chunk by chunk",
        settings,
        (
            "`before_ms`/`after_ms` = median CPU milliseconds of a cold `lipschitz_bound()` on "
            "identical copies of the model (before: the Gram products for the whole batch at once; "
            "after: chunk by chunk), `ratio` = after / before, `step_ms` the run's median train "
            "step, `after_steps` = after_ms / step_ms. `bounds_equal`: the two certificates are "
            "equal bit for bit in every round, and so are the eval outputs of the two copies in "
            "the first round of each row (asserted). See the script's docstring."
        ),
        rows,
        plot,
    )


if __name__ == "__main__":
    main()
