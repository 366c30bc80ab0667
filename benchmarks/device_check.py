"""One-shot accelerator check: CUDA correctness of models and certificates, bf16 training, timings.

Meant for a session that gets a GPU for a few minutes: run it ONCE, commit what it writes.

1. Correctness (each prints one PASS/FAIL line; any FAIL makes the exit status 1): float32
   outputs of LipMLP, LipFNO (1-D, 2-D; default, ``orthogonal`` and ``cayley`` normalization) and
   LipDeepONet on the device vs the same weights on the CPU; ``lipschitz_bound()`` on the device
   vs the CPU (float64 SVD: relative 1e-6); exact Jacobian norms and a gradient-ascent attack on
   the device (tiny float64 LipFNO) against its certified bound; ``operator_error_bound`` on the
   device vs the CPU (relative 1e-9); the advection generator on the device vs the CPU.
2. Training through :class:`liponet.train.Trainer` on generated 1-D advection (bf16 autocast on
   CUDA, as the trainer does by default): loss finite and decreasing, certified bound <= k after
   training, checkpoint reload identical.
3. Timings (medians, ``torch.cuda.synchronize`` + ``perf_counter``): a training step of LipFNO,
   FNO and neuraloperator's FNO (when importable) at PDEBench's 1-D size, a wider size and the
   2-D / 3-D sizes of ``performance.py``, as ratios to LipFNO, with the fused block under each
   isometric normalization (``FUSED_VARIANTS``); ``lipschitz_bound()`` after a weight change;
   LipFNO fp32 vs bf16 step.
   Timings are informational, never PASS/FAIL.

Run from the repository root::

    python benchmarks/device_check.py --device cuda --out benchmarks/results

Expected time on one H200: about 1-2 minutes by default (well under the 8-minute budget),
under a minute with ``--quick``. ``--device cpu --quick`` runs the same code here in seconds
(sizes shrunk). Writes ``device_check_<device>.md``, ``device_check_<device>.csv`` (checks) and
``device_check_<device>_timings.csv`` to ``--out``. Exit status: 0 all checks passed, 1 a check
failed, 2 the device is unavailable.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from fno_common import build, markdown_table

from liponet.certify import estimate_lipschitz, jacobian_lipschitz, operator_error_bound
from liponet.data.generators import generate
from liponet.models import LipDeepONet, LipFNO, LipMLP
from liponet.train import Trainer, build_dataset, config_from_dict
from liponet.train.checkpoint import load_model
from liponet.train.distributed import DistContext

OUTPUT_RTOL = 1e-4  # float32 device vs CPU outputs: max abs diff <= OUTPUT_RTOL * max(1, max |y|)
BOUND_RTOL = 1e-6  # certified bound device vs CPU (float64 SVD of the same weights)
CERT_RTOL = 1e-6  # exact Jacobian norm / attack <= bound * (1 + CERT_RTOL)
ERROR_BOUND_RTOL = 1e-9  # operator_error_bound device vs CPU (float64)
GENERATOR_RTOL = 1e-4  # generated fields device vs CPU: max abs diff <= GENERATOR_RTOL * max |u|
TRAIN_K_RTOL = 1e-5  # trained model's bound <= k * (1 + TRAIN_K_RTOL)

TIMING_CONFIGS = {
    # PDEBench's 1-D FNO: modes 12, width 20, 4 layers, batch 50, 256 points
    "pdebench": dict(batch=50, nx=256, width=20, modes=(12,), depth=4),
    "wide": dict(batch=50, nx=1024, width=64, modes=(32,), depth=4),
    # the N-d train steps of benchmarks/performance.py (nx points per dimension)
    "2-D": dict(batch=8, nx=64, width=32, modes=(12, 12), depth=4),
    "3-D": dict(batch=4, nx=24, width=16, modes=(6, 6, 6), depth=4),
}
#: The fused block (``block="fourier"``) with each isometric normalization and ``global``, as in
#: ``performance.py``'s N-d rows: timed in every configuration besides LipFNO's defaults.
FUSED_VARIANTS = {
    f"LipFNO fused {n} fp32": ("LipFNO", False, {"block": "fourier", "normalization": n})
    for n in ("global", "orthogonal", "qr", "cayley")
}


class Report:
    """Collects PASS/FAIL lines and timing rows."""

    def __init__(self) -> None:
        self.checks: list[dict[str, Any]] = []
        self.timings: list[dict[str, Any]] = []
        self.timing_errors: list[str] = []

    def check(self, name: str, fn: Callable[[], tuple[bool, str]]) -> None:
        """Run one check; an exception is a FAIL carrying its message."""
        try:
            ok, detail = fn()
        except Exception as err:  # any error in a check is its failure
            ok, detail = False, f"{type(err).__name__}: {err}".splitlines()[0]
        status = "PASS" if ok else "FAIL"
        print(f"{status} {name}: {detail}", flush=True)
        self.checks.append(dict(check=name, status=status, detail=detail))

    @property
    def failed(self) -> int:
        return sum(c["status"] == "FAIL" for c in self.checks)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# ---------------------------------------------------------------- 1. correctness
def _model_cases(quick: bool) -> dict[str, tuple[Callable[[], torch.nn.Module], tuple]]:
    n = 32 if quick else 64
    y = torch.linspace(0, 1, n).reshape(-1, 1)
    return {
        "LipMLP": (lambda: LipMLP(16, 8, width=32, depth=3), (torch.randn(8, 16),)),
        "LipFNO 1-D": (
            lambda: LipFNO(1, 1, modes=(8,), width=16, depth=3),
            (torch.randn(4, 1, n),),
        ),
        "LipFNO 1-D orthogonal": (
            lambda: LipFNO(1, 1, modes=(8,), width=16, depth=3, normalization="orthogonal"),
            (torch.randn(4, 1, n),),
        ),
        "LipFNO 2-D": (
            lambda: LipFNO(1, 1, modes=(6, 6), width=8, depth=2),
            (torch.randn(2, 1, 24, 24),),
        ),
        "LipFNO 2-D orthogonal": (
            lambda: LipFNO(1, 1, modes=(6, 6), width=8, depth=2, normalization="orthogonal"),
            (torch.randn(2, 1, 24, 24),),
        ),
        "LipFNO 2-D cayley": (
            lambda: LipFNO(1, 1, modes=(6, 6), width=8, depth=2, normalization="cayley"),
            (torch.randn(2, 1, 24, 24),),
        ),
        "LipDeepONet": (
            lambda: LipDeepONet(n, domain=([0.0], [1.0]), n_basis=8, width=16, depth=2),
            (torch.rand(4, 1, n), y),
        ),
    }


def check_models(rep: Report, device: torch.device, quick: bool) -> None:
    for name, (make, inputs) in _model_cases(quick).items():
        torch.manual_seed(0)
        cpu_model = make()
        # a few training forwards move the power-iteration state off its initialization
        cpu_model.train()
        with torch.no_grad():
            for _ in range(2):
                cpu_model(*inputs)
        dev_model = copy.deepcopy(cpu_model).to(device).eval()
        cpu_model.eval()

        def outputs(cpu_model=cpu_model, dev_model=dev_model, inputs=inputs) -> tuple[bool, str]:
            with torch.no_grad():
                ref = cpu_model(*inputs)
                out = dev_model(*(t.to(device) for t in inputs)).cpu()
            diff = float((out - ref).abs().max())
            tol = OUTPUT_RTOL * max(1.0, float(ref.abs().max()))
            return diff <= tol, f"max abs diff {diff:.3e} <= {tol:.1e}"

        def bound(cpu_model=cpu_model, dev_model=dev_model) -> tuple[bool, str]:
            b_cpu, b_dev = cpu_model.lipschitz_bound(), dev_model.lipschitz_bound()
            rel = _rel(b_dev, b_cpu)
            return rel <= BOUND_RTOL, (
                f"device {b_dev:.10g} cpu {b_cpu:.10g} rel {rel:.2e} <= {BOUND_RTOL:.0e}"
            )

        rep.check(f"{name} float32 output", outputs)
        rep.check(f"{name} lipschitz_bound", bound)


def check_certificate(rep: Report, device: torch.device, quick: bool) -> None:
    torch.manual_seed(1)
    model = LipFNO(1, 1, modes=(4,), width=4, depth=2).double().to(device).eval()
    x = torch.randn(3 if quick else 6, 1, 16, dtype=torch.float64, device=device)
    bound = model.lipschitz_bound()

    def jacobian() -> tuple[bool, str]:
        local = float(jacobian_lipschitz(model, x, norm="function").max())
        return local <= bound * (1 + CERT_RTOL), f"exact Jacobian {local:.6g} <= bound {bound:.6g}"

    def attack() -> tuple[bool, str]:
        est = estimate_lipschitz(model, x, norm="function", n_steps=20 if quick else 100)
        return est <= bound * (1 + CERT_RTOL), f"attack {est:.6g} <= bound {bound:.6g}"

    rep.check("LipFNO float64 exact Jacobian on device", jacobian)
    rep.check("LipFNO float64 gradient-ascent attack on device", attack)


def check_error_bound(rep: Report, device: torch.device) -> None:
    gen = torch.Generator().manual_seed(2)
    calib = torch.randn(32, 1, 64, generator=gen, dtype=torch.float64)
    errors = torch.rand(32, generator=gen, dtype=torch.float64)
    query = torch.randn(16, 1, 64, generator=gen, dtype=torch.float64)

    def run() -> tuple[bool, str]:
        kw = dict(lipschitz_model=1.3, lipschitz_true=1.0)
        ref = operator_error_bound(query, calib, errors, **kw).bound
        out = operator_error_bound(query.to(device), calib.to(device), errors.to(device), **kw)
        rel = float(((out.bound.cpu() - ref).abs() / ref.abs()).max())
        return rel <= ERROR_BOUND_RTOL, f"max rel diff {rel:.2e} <= {ERROR_BOUND_RTOL:.0e}"

    rep.check("operator_error_bound device vs cpu", run)


def check_generator(rep: Report, device: torch.device, tmp: Path, quick: bool) -> None:
    size = dict(n_samples=8, nx=64, nt=11) if quick else dict(n_samples=32, nx=256, nt=41)

    def run() -> tuple[bool, str]:
        fields = []
        for dev in ("cpu", device):
            path = generate(
                "advection", tmp / f"gen_{torch.device(dev).type}.h5", seed=3, device=dev, **size
            )
            with h5py.File(path, "r") as f:
                fields.append(np.asarray(f["tensor"], dtype=np.float64))
        ref, out = fields
        diff = float(np.abs(out - ref).max())
        tol = GENERATOR_RTOL * float(np.abs(ref).max())
        return diff <= tol, f"advection {size}: max abs diff {diff:.3e} <= {tol:.1e}"

    rep.check("advection generator device vs cpu", run)


# ---------------------------------------------------------------- 2. training
def check_training(rep: Report, device: torch.device, tmp: Path, quick: bool) -> dict[str, Any]:
    n, nx, width, epochs, batch = (24, 64, 8, 20, 4) if quick else (400, 256, 20, 20, 20)
    data = generate("advection", tmp / "train.h5", n_samples=n, nx=nx, nt=11, seed=4, device=device)
    k = 1.0
    cfg = config_from_dict(
        {
            "model": {
                "name": "LipFNO",
                "kwargs": {
                    "in_channels": 1,
                    "out_channels": 1,
                    "modes": [8 if quick else 12],
                    "width": width,
                    "depth": 4,
                    "k": k,
                },
            },
            "data": {"name": "pdebench", "path": str(data), "kwargs": {"task": "step"}},
            "epochs": epochs,
            "batch_size": batch,
            "lr": 1e-2,
            "device": device.type,
            "bf16": True,
            "out_dir": str(tmp / "run"),
            "seed": 0,
        }
    )
    losses: list[float] = []

    def on_event(event: str, record: dict[str, Any]) -> None:
        if event == "step":
            losses.append(record["loss"])

    bundle = build_dataset(cfg.data)
    trainer = Trainer(
        cfg,
        bundle.train,
        bundle.val,
        ctx=DistContext(device=device),
        callbacks=[on_event],
        progress=False,
    )
    t0 = time.perf_counter()
    record = trainer.fit()
    seconds = time.perf_counter() - t0
    autocast = device.type == "cuda" and cfg.bf16
    info = dict(
        steps=len(losses),
        seconds=round(seconds, 2),
        bf16=autocast,
        n_samples=n,
        nx=nx,
        width=width,
        epochs=epochs,
        batch=batch,
        lr=cfg.lr,
    )

    def loss() -> tuple[bool, str]:
        m = max(1, len(losses) // 10)
        first, last = statistics.mean(losses[:m]), statistics.mean(losses[-m:])
        finite = all(math.isfinite(v) for v in losses)
        return finite and last < 0.5 * first, (
            f"{len(losses)} steps (bf16 autocast {autocast}), mean loss first {m} {first:.3e} "
            f"-> last {m} {last:.3e} (need finite and < half), {seconds:.1f} s"
        )

    def bound() -> tuple[bool, str]:
        b = record["lipschitz_bound"]
        return b <= k * (1 + TRAIN_K_RTOL), f"certified {b:.10g} <= {k} * (1 + {TRAIN_K_RTOL:.0e})"

    def reload() -> tuple[bool, str]:
        model, _ = load_model(Trainer.out_path(cfg) / "last.pt", map_location=device)
        x = bundle.val[0][0][None].to(device)
        trainer.model.eval()
        with torch.no_grad():
            diff = float((model(x) - trainer.model(x)).abs().max())
        b_new, b_old = model.lipschitz_bound(), trainer.model.lipschitz_bound()
        ok = diff == 0.0 and b_new == b_old
        return ok, f"max abs output diff {diff:.3e} (need 0), bound {b_new:.10g} vs {b_old:.10g}"

    rep.check("Trainer LipFNO advection loss", loss)
    rep.check("Trainer LipFNO certified bound after training", bound)
    rep.check("Trainer checkpoint reload", reload)
    return info


# ---------------------------------------------------------------- 3. timings
def _median_ms(fn: Callable[[], Any], device: torch.device, rounds: int, warmup: int) -> float:
    times = []
    for r in range(rounds + warmup):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if r >= warmup:
            times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _step_fn(model, x, y, bf16: bool) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    device = x.device

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = model(x)
        loss = (pred.float() - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timings(rep: Report, device: torch.device, quick: bool) -> None:
    rounds, warmup = (3, 1) if quick else (30, 5)
    configs = dict(TIMING_CONFIGS)
    if quick and device.type == "cpu":
        configs = {  # 1-D: 64 points, N-d: 8 per dimension, 3 modes each
            k: dict(c, batch=4, nx=64)
            if len(c["modes"]) == 1
            else dict(c, batch=2, nx=8, width=4, modes=(3,) * len(c["modes"]))
            for k, c in configs.items()
        }
    # autocast bf16 on the CPU is a different path; on CUDA it is what the trainer uses
    bf16_ok = device.type == "cuda"
    for cfg_name, c in configs.items():
        torch.manual_seed(0)
        shape = (c["batch"], 1, *([c["nx"]] * len(c["modes"])))
        x = torch.randn(shape, device=device)
        y = torch.randn(shape, device=device)
        variants: dict[str, tuple[str, bool, dict[str, Any]]] = {
            "LipFNO fp32": ("LipFNO", False, {}),
            "FNO fp32": ("FNO", False, {}),
            "neuraloperator FNO fp32": ("neuralop", False, {}),
            **FUSED_VARIANTS,
        }
        if bf16_ok:
            variants.update({"LipFNO bf16": ("LipFNO", True, {}), "FNO bf16": ("FNO", True, {})})
        ms: dict[str, float] = {}
        for label, (name, bf16, kw) in variants.items():
            model = build(name, 1, 1, c["modes"], c["width"], c["depth"], **kw)
            if model is None:
                print(f"skip {label}: neuraloperator not importable", flush=True)
                continue
            model = model.to(device).train()
            try:
                ms[label] = _median_ms(_step_fn(model, x, y, bf16), device, rounds, warmup)
            except Exception as err:  # timings are informational: note, go on
                msg = f"{type(err).__name__}: {err}".splitlines()[0]
                print(f"time {cfg_name} {label}: ERROR {msg}", flush=True)
                rep.timing_errors.append(f"{cfg_name} {label}: {msg}")
        lip = LipFNO(1, 1, c["modes"], width=c["width"], depth=c["depth"]).to(device).eval()

        def bound(lip=lip) -> float:
            with torch.no_grad():
                for p in lip.parameters():  # new bits: the caches compare the weights bitwise
                    p.mul_(1.0 + 2.0**-20)
            return lip.lipschitz_bound()

        ms["LipFNO lipschitz_bound()"] = _median_ms(bound, device, rounds, warmup)
        base = ms.get("LipFNO fp32", math.nan)
        for label, value in ms.items():
            row = dict(
                config=cfg_name,
                what=label,
                median_ms=value,
                ratio_to_lipfno_fp32=value / base,
                batch=c["batch"],
                nx=c["nx"],
                width=c["width"],
                modes=c["modes"][0],
                depth=c["depth"],
                rounds=rounds,
            )
            rep.timings.append(row)
            print(f"time {cfg_name} {label}: {value:.3f} ms ({value / base:.3f}x LipFNO fp32)")


# ---------------------------------------------------------------- output
def write(rep: Report, out: Path, device: torch.device, args, train_info, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    stem = f"device_check_{device.type}"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    with (out / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["check", "status", "detail"])
        writer.writeheader()
        writer.writerows(rep.checks)
    if rep.timings:
        with (out / f"{stem}_timings.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rep.timings[0]))
            writer.writeheader()
            writer.writerows(rep.timings)
    lines = [
        f"# Device check ({device.type})",
        "",
        f"Written by `benchmarks/device_check.py` ({' '.join(sys.argv[1:])}).",
        "",
        f"- device: {device} ({name or 'unknown'})",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"Python {platform.python_version()}",
        f"- quick: {args.quick}; total runtime {seconds:.1f} s",
        f"- training: {train_info}",
        f"- tolerances: outputs {OUTPUT_RTOL:g} x max(1, max abs y); bounds rel {BOUND_RTOL:g}; "
        f"certificates (1 + {CERT_RTOL:g}); operator_error_bound rel {ERROR_BOUND_RTOL:g}; "
        f"generator {GENERATOR_RTOL:g} x max abs u; trained bound k (1 + {TRAIN_K_RTOL:g})",
        f"- result: {len(rep.checks) - rep.failed} passed, {rep.failed} failed",
        "",
        "## Checks",
        "",
        markdown_table(rep.checks, ["check", "status", "detail"]),
        "",
    ]
    if rep.timings:
        lines += [
            "## Timings (medians; synchronize + perf_counter; informational)",
            "",
            markdown_table(
                rep.timings,
                [
                    "config",
                    "what",
                    "median_ms",
                    "ratio_to_lipfno_fp32",
                    "batch",
                    "nx",
                    "width",
                    "modes",
                    "depth",
                ],
            ),
            "",
            *(f"- timing error: {e}" for e in rep.timing_errors),
            "",
        ]
    (out / f"{stem}.md").write_text("\n".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    parser.add_argument("--no-timings", action="store_true", help="correctness checks only")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: CUDA is not available (try --device cpu)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    start = time.perf_counter()
    rep = Report()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        check_models(rep, device, args.quick)
        check_certificate(rep, device, args.quick)
        check_error_bound(rep, device)
        check_generator(rep, device, tmp, args.quick)
        train_info: dict[str, Any] = {}
        try:
            train_info = check_training(rep, device, tmp, args.quick)
        except Exception as err:  # a crash in training is a failed check
            rep.check("Trainer LipFNO advection run", lambda err=err: (False, repr(err)))
    if not args.no_timings:
        timings(rep, device, args.quick)
    seconds = time.perf_counter() - start
    write(rep, args.out, device, args, train_info, seconds)
    print(
        f"{len(rep.checks) - rep.failed} passed, {rep.failed} failed; {seconds:.1f} s; "
        f"results in {args.out}"
    )
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
