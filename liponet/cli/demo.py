"""``liponet demo``: the operator workflow end to end on an embedded default, in a few minutes.

Generate a small PDEBench-layout 1-D advection file, train a LipFNO on it, certify its Lipschitz
constant, and print PDEBench's metrics on the test split next to the certified per-sample error
bound and the observed error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HELP = "generate 1-D advection data, train a LipFNO, print metrics and certified error bounds"

#: The embedded default. beta * t_final = 0.125 is exactly 16 cells of a 128-cell grid, so the
#: target frame is an exact grid translation of the input frame: the data's own operator then has
#: Lipschitz constant exactly 1 (discrete L2 isometry), as the theory for advection says.
DEFAULTS: dict[str, Any] = {
    "samples": 600,
    "nx": 128,
    "nt": 26,
    "beta": 0.1,
    "t_final": 1.25,
    "epochs": 8,
    "width": 16,
    "depth": 2,
    "modes": 16,
    "batch_size": 32,
    "lr": 5e-3,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sizes of the demo (defaults: ~2-4 minutes on 2 CPU cores)."""
    parser.add_argument(
        "--out", type=Path, default=Path("liponet-demo"), help="folder for data and checkpoints"
    )
    parser.add_argument("--samples", type=int, default=DEFAULTS["samples"])
    parser.add_argument("--nx", type=int, default=DEFAULTS["nx"], help="grid cells")
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--width", type=int, default=DEFAULTS["width"])
    parser.add_argument("--depth", type=int, default=DEFAULTS["depth"])
    parser.add_argument("--modes", type=int, default=DEFAULTS["modes"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _say(text: str = "") -> None:
    print(text, flush=True)


def run(args: argparse.Namespace) -> int:
    """Generate, train, certify, report."""
    import torch
    from tqdm.auto import tqdm

    from ..certify import model_constant, operator_error_bound, true_lipschitz
    from ..certify.norms import field_norm
    from ..data import PDEBenchDataset, generate
    from ..metrics import pdebench_metrics
    from ..train import Trainer, build_dataset, config_from_dict, load_model
    from .train import format_record

    if args.samples < 20:
        raise ValueError(f"--samples must be >= 20 (train/val/test splits), got {args.samples}")
    if args.nx < 2 * args.modes or args.nx % 8:
        raise ValueError(f"--nx must be a multiple of 8 and >= 2 * modes, got {args.nx}")
    start = time.perf_counter()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    beta, t_final, nt = DEFAULTS["beta"], DEFAULTS["t_final"], DEFAULTS["nt"]
    shift_cells = beta * t_final * args.nx
    _say(
        f"liponet demo: 1-D advection u_t + {beta} u_x = 0 (periodic), operator u(0) -> "
        f"u({t_final}), {args.samples} samples x {args.nx} cells"
    )

    # 1. data ------------------------------------------------------------------------------
    path = out / f"1D_Advection_Sols_beta{beta}.hdf5"
    bar = tqdm(total=nt, desc="generate", file=sys.stderr, disable=args.no_progress, leave=False)

    def tick(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    generate(
        "advection",
        path,
        n_samples=args.samples,
        nx=args.nx,
        nt=nt,
        seed=args.seed,
        beta=beta,
        t_final=t_final,
        progress=tick,
    )
    bar.close()
    task: dict[str, Any] = {"task": "step", "t_in": 0, "t_out": -1}
    test = PDEBenchDataset(path, split="test", **task)
    _say(f"[1/3] data: {path} (PDEBench layout; shift {shift_cells:g} cells)")

    # 2. training ----------------------------------------------------------------------------
    config = config_from_dict(
        {
            "model": {
                "name": "LipFNO",
                "kwargs": {
                    "in_channels": 1,
                    "out_channels": 1,
                    "modes": [args.modes],
                    "width": args.width,
                    "depth": args.depth,
                    "grid": False,
                },
            },
            "data": {"name": "pdebench", "path": str(path), "kwargs": task},
            "epochs": args.epochs,
            "batch_size": DEFAULTS["batch_size"],
            "lr": DEFAULTS["lr"],
            "seed": args.seed,
            "device": args.device,
            "out_dir": str(out / "run"),
            "monitor": "val_nrmse",
        }
    )
    data = build_dataset(config.data, config.seed)
    train, val = data.train, data.val
    assert isinstance(train, PDEBenchDataset) and isinstance(val, PDEBenchDataset)
    _say(
        f"[2/3] training LipFNO (width {args.width}, depth {args.depth}, modes {args.modes}) on "
        f"{len(train)} samples, validating on {len(val)}; test split: {len(test)} "
        "(PDEBench's first 10%)"
    )

    def printer(event: str, record: dict[str, Any]) -> None:
        if event == "epoch":
            tqdm.write("      " + format_record(record, config.epochs), file=sys.stdout)

    Trainer(config, data.train, data.val, callbacks=[printer], progress=not args.no_progress).fit(
        overwrite=True  # the demo owns its run folder: a rerun replaces it
    )

    # 3. certification -------------------------------------------------------------------------
    model, _ = load_model(out / "run" / "best.pt")
    model = model.double()  # certify the function in float64 (bounds hold in exact arithmetic)
    calib_a, calib_u = train.to_tensors()
    test_a, test_u = test.to_tensors()
    with torch.no_grad():
        calib_pred = torch.cat([model(chunk.double()) for chunk in calib_a.split(256)])
        test_pred = torch.cat([model(chunk.double()) for chunk in test_a.split(256)])
    lipschitz = model_constant(model)  # type: ignore[arg-type]
    bound = operator_error_bound(
        test_a.double(),
        calib_a.double(),
        calib_targets=calib_u.double(),
        calib_preds=calib_pred,
        lipschitz_model=lipschitz,
        lipschitz_true=true_lipschitz("advection"),
    )
    observed = field_norm(test_pred - test_u.double(), "function")
    size = field_norm(test_u.double(), "function")
    metrics = pdebench_metrics(test_pred, test_u)

    _say(f"[3/3] certified Lipschitz constant of the trained LipFNO: L = {lipschitz.value:.6f}")
    _say(f"      (function norm; {lipschitz.source})")
    _say()
    _say(f"PDEBench metrics on the test split ({len(test)} samples, best checkpoint):")
    names = [
        ("RMSE", "rmse"),
        ("nRMSE", "nrmse"),
        ("cRMSE", "crmse"),
        ("bRMSE", "brmse"),
        ("fRMSE low", "frmse_low"),
        ("fRMSE mid", "frmse_mid"),
        ("fRMSE high", "frmse_high"),
        ("Max (true max over the set)", "max"),
        ("relative L2", "rel_l2"),
    ]
    for label, key in names:
        _say(f"  {label:<28} {float(metrics[key]):.4e}")
    _say()
    _say(
        "Certified error bound (label: "
        f"{bound.label}), per test input a, in the function norm ||u||^2 = mean_x u^2:"
    )
    _say("  ||G(a) - Ĝ(a)|| <= min_i [ ||G(a_i) - Ĝ(a_i)|| + (L_G + L) ||a - a_i|| ]")
    _say(
        f"  over the {calib_a.shape[0]} training pairs (a_i, G(a_i)); L_G = 1 "
        "(theory: periodic advection is a translation)."
    )
    _say(f"  {'test sample':>11} {'observed error':>15} {'certified bound':>16} {'||G(a)||':>10}")
    for i in range(min(8, len(test))):
        _say(
            f"  {i:>11} {float(observed[i]):>15.4e} {float(bound.bound[i]):>16.4e} "
            f"{float(size[i]):>10.4f}"
        )
    covered = int((observed <= bound.bound).sum())
    ratio = bound.bound / observed.clamp_min(1e-300)
    _say(
        f"  coverage: {covered}/{len(test)} test samples have observed error <= certified bound "
        "(100% is guaranteed: the bound is a theorem, not an estimate)"
    )
    _say(
        f"  median observed {float(observed.median()):.4e}, median bound "
        f"{float(bound.bound.median()):.4e} (median bound/observed {float(ratio.median()):.1f}x; "
        f"median bound/||G(a)|| {float((bound.bound / size).median()):.2f})"
    )
    if bound.distance is not None and bound.calib_error is not None:
        slope = 1.0 + lipschitz.value
        _say(
            f"  terms at the minimizing a_i (medians): calibration error e_i "
            f"{float(bound.calib_error.median()):.3e}, (L_G + L) ||a - a_i|| "
            f"{float((slope * bound.distance[:, 0]).median()):.3e} (median ||a|| "
            f"{float(field_norm(test_a.double(), 'function').median()):.3f}); the distance term "
            "shrinks as the calibration set gets denser around the queries"
        )
    _report_tighter(model, val, test_a, test_u, test_pred, observed, bound.bound)
    _say()
    _say(
        f"checkpoint: {out / 'run' / 'best.pt'}  log: {out / 'run' / 'log.jsonl'}  "
        f"({time.perf_counter() - start:.0f} s)"
    )
    return 0 if covered == len(test) else 1


def _report_tighter(
    model: Any,
    held_out: Any,
    test_a: Any,
    test_u: Any,
    test_pred: Any,
    observed: Any,
    certified: Any,
) -> None:
    """Print issue-7's tighter bounds next to the certified one, each with its label.

    Both use the validation split (never trained on) as calibration set: the error-Lipschitz
    bound (**estimated**: the error operator's constant is a maximum over calibration pairs, a
    lower bound of the true one) and split conformal at 90% (**statistical**: a marginal
    guarantee for queries exchangeable with the calibration set). Neither is a certificate.
    """
    import torch

    from ..certify import conformal_error_bound, error_lipschitz_bound

    val_a, val_u = held_out.to_tensors()
    with torch.no_grad():
        val_pred = torch.cat([model(chunk.double()) for chunk in val_a.split(256)])
    rows = [("plain (Lipschitz constants)", "certified", certified)]
    lip_e = error_lipschitz_bound(
        test_a.double(), val_a.double(), val_u.double(), val_pred, norm="function"
    )
    rows.append((f"error-operator Lipschitz ({len(val_a)} val pairs)", lip_e.label, lip_e.bound))
    conf = conformal_error_bound(
        test_a, alpha=0.1, calib_targets=val_u.double(), calib_preds=val_pred
    )
    rows.append(("split conformal, 90%", conf.label, conf.bound))
    _say()
    _say("Tighter bounds (labelled by what they rest on; only 'certified' is a guarantee):")
    _say(f"  {'bound':<40} {'label':<12} {'coverage':>9} {'median bound/observed':>22}")
    for name, label, values in rows:
        covered = int((observed <= values).sum())
        ratio = float((values / observed.clamp_min(1e-300)).median())
        _say(f"  {name:<40} {label:<12} {covered:>4}/{len(observed):<4} {ratio:>22.1f}x")
