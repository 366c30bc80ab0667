"""``liponet certify``: guaranteed error bounds of a trained operator on PDEBench data.

Calibration pairs come from DATA's calibration split (the first half of PDEBench's test split:
no part in training or in choosing the checkpoint), queries from ``--query FILE`` (or the rest of
DATA's test split); the truth of the queries is read too, so the table shows each bound next to
the observed error. ``L_G`` is certified only when the file states a discretization for which
liponet has a theorem about the discrete map (:func:`liponet.certify.generator_lipschitz`);
otherwise it is estimated from the calibration pairs and the plain bound says "estimated".
"""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import UsageError

HELP = "certified error bounds of a trained operator checkpoint on PDEBench data"

#: Frames and strides of the pairs when neither the flags nor the checkpoint name them.
FRAME_DEFAULTS = {"t_in": 0, "t_out": -1, "reduced_resolution": 1, "reduced_resolution_t": 1}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Positional CHECKPOINT and DATA; options for queries, L_G, norm, plot."""
    parser.add_argument("checkpoint", help="a liponet checkpoint (model config + weights)")
    parser.add_argument("data", help="PDEBench HDF5 file: calibration pairs (its calib split)")
    parser.add_argument("--query", help="PDEBench HDF5 file of queries (default: DATA)")
    parser.add_argument(
        "--calib-split",
        default="calib",
        choices=("calib", "train", "val", "test"),
        help="calib (default): the first half of the test split, held out from training and "
        "checkpoint selection; the statistical bound needs it",
    )
    parser.add_argument(
        "--query-split",
        default="test",
        choices=("train", "val", "test"),
        help="test (default; its second half when the calibration uses the first)",
    )
    for flag, what in (
        ("--t-in", "input frame (after the stride)"),
        ("--t-out", "target frame (after the stride)"),
        ("--reduced-resolution", "spatial stride"),
        ("--reduced-resolution-t", "time stride"),
    ):
        key = flag[2:].replace("-", "_")
        parser.add_argument(
            flag,
            type=int,
            default=None,
            help=f"{what}; default: the checkpoint's training data (data.kwargs.{key}), else "
            f"{FRAME_DEFAULTS[key]}",
        )
    parser.add_argument("--max-calib", type=int, default=None, help="cap on calibration pairs")
    parser.add_argument("--max-query", type=int, default=None, help="cap on queries")
    parser.add_argument(
        "--pde",
        help="L_G of the continuous operator (advection, heat, diffusion_reaction), used as an "
        "estimate for the grid data; default: the file's discretization theorem, else a data "
        "estimate",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of --pde's constant (e.g. rho=1 t=0.5); repeatable",
    )
    parser.add_argument("--safety", type=float, default=1.1, help="factor on an estimated L_G")
    parser.add_argument("--norm", default="function", choices=("function", "sup"))
    parser.add_argument("--alpha", type=float, default=0.1, help="conformal miscoverage level")
    parser.add_argument("--rows", type=int, default=20, help="table rows to print (0: all)")
    parser.add_argument(
        "--plot",
        default=None,
        help="PNG of bound against observed error (default: CHECKPOINT's folder, "
        "<checkpoint name>.certify.png; '' = none)",
    )
    parser.add_argument("--device", default="cpu", help="where the model runs (cpu, cuda)")
    group = parser.add_argument_group(
        "symmetries and calibration at scale (function norm; see liponet.certify.symmetry)"
    )
    group.add_argument(
        "--symmetry",
        default="none",
        choices=("none", "shifts", "shifts+reflection"),
        help="also minimize over the group orbits of the calibration inputs (premise-checked: "
        "the model's architecture; the operator by --pde's theorem, else estimated)",
    )
    group.add_argument(
        "--calib-family",
        help="generate a calibration set of this registered family (streamed; see "
        "--calib-samples, --calib-param)",
    )
    group.add_argument("--calib-samples", type=int, default=100_000, help="generated pairs")
    group.add_argument(
        "--calib-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of --calib-family (e.g. beta=0.1, t_final=1.25); repeatable; it "
        "must define the same operator as DATA's frames",
    )
    group.add_argument("--calib-nx", type=int, help="grid of --calib-family (default: DATA's)")
    group.add_argument(
        "--calib-nt", type=int, default=2, help="frames of --calib-family (input 0, target last)"
    )
    group.add_argument("--calib-seed", type=int, default=1, help="seed of --calib-family")
    group.add_argument(
        "--calib-files",
        nargs="+",
        metavar="FILE",
        help="read a calibration set from these PDEBench files (their --calib-split; 'calib' "
        "reads their train split: a certified bound needs no held-out data), streamed",
    )
    group.add_argument(
        "--multi-pair",
        type=int,
        default=0,
        metavar="K",
        help="also the multi-pair bound over the K nearest (moved) calibration pairs per query "
        "(liponet.certify.multi_pair_error_bound: needs L_G and the operator's symmetry, not "
        "the model's; 0: off)",
    )
    group.add_argument(
        "--approximate",
        action="store_true",
        help="approximate nearest-neighbour search of the calibration set (still certified)",
    )


def _params(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise UsageError(f"--param expects KEY=NUMBER, got {item!r}")
    return out


#: What each calibration split is, for the summary.
def _resolve_frames(args: argparse.Namespace, config: dict[str, Any]) -> str:
    """Fill the pair flags left out from the checkpoint's training data; say whence.

    A checkpoint trained with ``liponet train --data pdebench`` (step task) on frames
    ``t_in -> t_out`` certifies that map, not the file's first-to-last one: certifying other
    frames would bound the error of an operator the model never learned. One trained on the
    autoregressive task certifies its one-step map: windows of ``initial_step`` frames (as
    channels) to the next frame, with the training data's ``windows`` (``"all"``: every window
    of each trajectory) and strides; ``--t-in``/``--t-out`` do not apply to it.
    """
    data = config.get("data") or {}
    kwargs = data.get("kwargs") or {}
    pdebench = data.get("name") in ("pdebench", "pdebench-stream")
    args.task = kwargs.get("task", "step") if pdebench else "step"
    if args.task not in ("step", "autoregressive"):
        raise UsageError(
            f"{args.checkpoint}: the checkpoint learnt the {args.task!r} task; certify handles "
            "the step and autoregressive tasks"
        )
    args.initial_step = kwargs.get("initial_step")
    args.windows = kwargs.get("windows", "first")
    autoregressive = args.task == "autoregressive"
    if autoregressive and (args.t_in is not None or args.t_out is not None):
        raise UsageError(
            f"{args.checkpoint}: --t-in/--t-out select a step pair, but the checkpoint learnt the "
            "autoregressive task (a window of frames -> the next frame): leave them out"
        )
    whence = set()
    for key, default in FRAME_DEFAULTS.items():
        if getattr(args, key) is not None:
            whence.add("flags")
        elif pdebench and kwargs.get(key) is not None:
            setattr(args, key, int(kwargs[key]))
            whence.add("the checkpoint's training data")
        else:
            setattr(args, key, default)
            whence.add("defaults")
    strides = (
        f"strides {args.reduced_resolution} (space) {args.reduced_resolution_t} (time), from "
        f"{' + '.join(sorted(whence))}"
    )
    if autoregressive:
        window = (
            "one frame"
            if args.initial_step == 1
            else f"windows of {args.initial_step or 'the reader default number of'} frames"
        )
        return (
            f"{window} -> the next frame (autoregressive, {args.windows} window(s) of each "
            f"trajectory), {strides}"
        )
    return f"frame {args.t_in} -> {args.t_out}, {strides}"


CALIB_SPLITS = {
    "calib": "first half of the test split: held out from training and checkpoint selection",
    "train": "TRAINING split: the model fitted these, so its errors are smallest there",
    "val": "VALIDATION split: it may have chosen the checkpoint",
    "test": "test split",
}


def _load_pairs(
    path: str, split: str, args: argparse.Namespace, cap: int | None, half: int = 0
) -> tuple[Any, Tensor, Tensor]:
    """Pairs of ``split``; ``half`` 1 or 2 keeps the first or the second half of it."""
    from ..data import PDEBenchDataset

    if not Path(path).exists():
        raise FileNotFoundError(f"data file not found: {path}")
    task: dict[str, Any] = (
        {"task": "autoregressive", "initial_step": args.initial_step, "windows": args.windows}
        if args.task == "autoregressive"
        else {"task": "step", "t_in": args.t_in, "t_out": args.t_out}
    )
    ds = PDEBenchDataset(
        path,
        split=split,
        reduced_resolution=args.reduced_resolution,
        reduced_resolution_t=args.reduced_resolution_t,
        **task,
    )
    x, y = ds.to_tensors()
    if half:  # by trajectory: a trajectory's windows stay on one side
        per = len(ds._windows)
        cut = x.shape[0] // per // 2 * per
        if cut == 0:
            raise UsageError(
                f"{path}: the test split has {x.shape[0] // per} trajectory(ies); the calibration "
                "split takes half of them (use a larger file or --calib-split)"
            )
        x, y = (x[:cut], y[:cut]) if half == 1 else (x[cut:], y[cut:])
    if cap is not None:
        if cap < 1:
            raise UsageError(f"caps on samples must be >= 1, got {cap}")
        x, y = x[:cap], y[:cap]
    return ds, x.double(), y.double()


def _coords(grid: dict[str, Tensor]) -> Tensor:
    """Query points of a DeepONet: the file's spatial coordinates, ``(n_points, dim)``."""
    axes = [grid[k].double() for k in ("x", "y", "z") if k in grid]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], 1)


def _predict(model: Any, x: Tensor, coords: Tensor) -> Tensor:
    from ..certify import field_operator

    device = next(model.parameters(), torch.empty(0)).device
    pointwise = hasattr(model, "branch_coefficients")
    apply = field_operator(model, coords.to(device) if pointwise else None)
    with torch.no_grad():
        out = torch.cat([apply(chunk.to(device)).cpu() for chunk in x.split(256)])
    return out.reshape(x.shape[0], out.shape[1], *x.shape[2:]).double()


def _check_plot_path(plot: str) -> None:
    """Preflight: the plot's folder must exist or be creatable, and be writable."""
    import tempfile

    folder = Path(plot).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".liponet-probe-"):
            pass
    except OSError as err:
        raise UsageError(
            f"--plot {plot}: cannot write in {folder} ({err.strerror or type(err).__name__}); "
            "choose another path or --plot ''"
        ) from None


def run(args: argparse.Namespace) -> int:
    """Load, certify, print the table and summary, write the plot."""
    from ..certify import (
        conformal_error_bound,
        coverage_report,
        error_lipschitz_bound,
        estimate_true_lipschitz,
        float32_storage_noise,
        model_constant,
        observed_errors,
        operator_error_bound,
        true_lipschitz,
    )
    from ..layers import CertifiedModule
    from ..train import load_model

    if not Path(args.checkpoint).exists():
        raise FileNotFoundError(f"checkpoint not found: {args.checkpoint}")
    if args.plot is None:  # beside the checkpoint, not in whatever folder the user is in
        checkpoint = Path(args.checkpoint)
        args.plot = str(checkpoint.with_name(f"{checkpoint.stem}.certify.png"))
    if args.plot:
        _check_plot_path(args.plot)  # before any work, not after it
    model, ckpt = load_model(args.checkpoint, map_location=args.device)
    if not isinstance(model, CertifiedModule):
        raise UsageError(f"{args.checkpoint}: model {type(model).__name__} has no certificate")
    frames = _resolve_frames(args, ckpt.config)
    if ckpt.normalizer_state:
        raise UsageError(
            f"{args.checkpoint}: the model works on normalized data; certificates of normalized "
            "checkpoints are not supported yet (the constant would need the scales)"
        )
    model = model.double().eval()
    held_out = args.calib_split == "calib"
    calib_ds, calib_x, calib_y = _load_pairs(
        args.data, "test" if held_out else args.calib_split, args, args.max_calib, int(held_out)
    )
    query_path = args.query or args.data
    same_half = held_out and args.query is None and args.query_split == "test"
    _, query_x, query_y = _load_pairs(
        query_path, args.query_split, args, args.max_query, 2 if same_half else 0
    )
    if query_x.shape[1:] != calib_x.shape[1:]:
        raise UsageError(
            f"query fields {tuple(query_x.shape[1:])} and calibration fields "
            f"{tuple(calib_x.shape[1:])} differ in shape (same --reduced-resolution?)"
        )
    coords = _coords(calib_ds.grid)
    in_domain = getattr(model, "in_domain", None)
    if in_domain is not None and not bool(in_domain(coords).all()):
        raise UsageError(
            f"{args.data}: grid points lie outside the model's certified coordinate domain "
            f"(lo {getattr(model, 'domain_lo', '?')}, hi {getattr(model, 'domain_hi', '?')})"
        )
    calib_pred = _predict(model, calib_x, coords)
    query_pred = _predict(model, query_x, coords)
    if calib_pred.shape != calib_y.shape:
        raise UsageError(
            f"the model's outputs {tuple(calib_pred.shape[1:])} do not match the targets "
            f"{tuple(calib_y.shape[1:])} of {args.data}"
        )
    norm = args.norm
    attrs = _attributes(args.data)
    why = ""
    if args.pde:
        l_true = true_lipschitz(args.pde, norm, None, **_params(args.param))
    else:
        if args.param:
            raise UsageError("--param needs --pde")
        l_true, why = _discrete_constant(calib_ds, attrs, args, norm)
        if l_true is None:
            l_true = estimate_true_lipschitz(calib_x, calib_y, norm=norm, safety=args.safety)
    l_model = model_constant(model)
    noise = (
        float32_storage_noise(l_true.value, calib_x, calib_y, query_x, query_y)
        if l_true.label == "certified" and l_true.value > 0
        else 0.0
    )
    bound = operator_error_bound(
        query_x,
        calib_x,
        calib_targets=calib_y,
        calib_preds=calib_pred,
        lipschitz_model=l_model,
        lipschitz_true=l_true,
        norm=norm,
        input_noise=noise,
        data_discretization=attrs.get("discretization"),
    )
    observed = observed_errors(query_y, query_pred, norm)
    report = coverage_report(bound, observed)
    others = [conformal_error_bound(query_x, alpha=args.alpha, calib_targets=calib_y,
                                    calib_preds=calib_pred, norm=norm,
                                    held_out=held_out)]  # fmt: skip
    if norm == "function":
        others.append(error_lipschitz_bound(query_x, calib_x, calib_y, calib_pred))
    others += _at_scale(args, model, query_x, calib_x, calib_y, calib_pred, coords, l_true,
                        attrs.get("discretization"), noise)  # fmt: skip
    pairwise = _logistic_pairs(calib_ds, attrs, args, norm, l_true, l_model, query_x, calib_x,
                               calib_y, calib_pred, noise)  # fmt: skip
    if pairwise is not None:
        others.append(pairwise)
    if args.multi_pair:
        others.append(_multi_pair(args, query_x, query_pred, calib_x, calib_y, l_true,
                                  attrs.get("discretization"), noise))  # fmt: skip
    _print_table(bound, observed, args.rows)
    print()
    print(f"model: {ckpt.config['model']['name']}  L_model = {l_model.value:.4g} ({l_model.label})")
    print(f"true operator: L_G = {l_true.value:.4g} ({l_true.label}: {l_true.source})")
    if why and l_true.label != "certified":
        print(f"  no certified L_G for this data: {why}")
    print(
        f"calibration: {calib_x.shape[0]} pairs from {args.data} [{args.calib_split}: "
        f"{CALIB_SPLITS[args.calib_split]}]"
    )
    query_what = "second half of the test split" if same_half else f"{args.query_split} split"
    print(f"queries: {query_x.shape[0]} from {query_path} [{query_what}]")
    print(f"pairs: {frames}")
    for line in bound.premises:
        print(f"premise: {line}")
    for b in [bound, *others]:
        for note in b.notes:
            print(f"NOTE ({b.name}): {note}")
    for b, r in [(bound, report)] + [(o, coverage_report(o, observed)) for o in others]:
        print(
            f"{b.name} bound ({b.label}, {b.norm} norm): coverage {r.coverage:.4f} "
            f"({r.violations} violations), bound/observed median {r.tightness_median:.3g} "
            f"max {r.tightness_max:.3g}, bound median {r.bound_median:.3g}"
        )
    if args.plot:
        _plot(bound, observed, others, Path(args.plot))
        print(f"plot: {args.plot}")
    bad = [
        b for b in [bound, *others] if b.label == "certified" and bool(b.violations(observed).any())
    ]
    if bad:
        count = int(sum(int(b.violations(observed).sum()) for b in bad))
        print(f"WARNING: {count} certified bounds violated: a constant or premise is wrong")
        return 1
    return 0


def _at_scale(
    args: argparse.Namespace,
    model: Any,
    query_x: Tensor,
    calib_x: Tensor,
    calib_y: Tensor,
    calib_pred: Tensor,
    coords: Tensor,
    l_true: Any,
    discretization: str | None,
    noise: float,
) -> list[Any]:
    """Bounds of ``--symmetry`` / ``--calib-family`` / ``--calib-files`` (empty if none).

    The true operator's symmetry theorem is ``--pde``'s, else the one for the file's stated
    discretization (``DISCRETIZATION_OPERATORS``), else none (the bound is then estimated).
    """
    from ..certify import field_operator
    from ..certify.calibration import streamed_error_bounds
    from ..certify.symmetry import (
        SymmetryPremiseError,
        check_model_symmetry,
        symmetric_error_bound,
    )

    streamed = bool(args.calib_family or args.calib_files)
    if args.symmetry == "none" and not streamed:
        if args.calib_param:
            raise UsageError("--calib-param needs --calib-family")
        return []
    if args.norm != "function":
        raise UsageError("--symmetry and calibration sets at scale need --norm function")
    if args.calib_family and args.calib_files:
        raise UsageError("give --calib-family or --calib-files, not both")
    group, operator = _group_and_operator(args, query_x, discretization)
    if group is not None and args.multi_pair:
        try:  # the multi-pair bound needs no model premise: skip only the single-pair orbit one
            check_model_symmetry(model, group)
        except SymmetryPremiseError as err:
            print(f"single-pair {group.describe()} bound skipped (the multi-pair one stays): {err}")
            group = None
    if not streamed:
        if group is None:
            return []
        return [
            symmetric_error_bound(query_x, calib_x, calib_targets=calib_y, calib_preds=calib_pred,
                                  model=model, lipschitz_true=l_true, group=group,
                                  operator=operator, data_discretization=discretization,
                                  input_noise=noise)
        ]  # fmt: skip
    pairs, source = _streamed_pairs(args, query_x)
    apply = None
    if hasattr(model, "branch_coefficients"):  # a DeepONet at DATA's grid points
        deeponet = field_operator(model, coords)

        def apply(a: Tensor) -> Tensor:
            return deeponet(a).reshape(a.shape[0], -1, *a.shape[2:])

    bounds = streamed_error_bounds(
        query_x,
        pairs,
        model,
        lipschitz_true=l_true,
        groups=[None] if group is None else [None, group],
        operator=operator,
        exact=not args.approximate,
        apply=apply,
        data_discretization=discretization,
        float32_storage=noise > 0,
    )
    print(f"calibration at scale: {source}; model evaluated on {bounds[0].n_evaluated:,}")
    for b in bounds:
        for line in b.premises:
            print(f"  {b.name} premise: {line}")
        b.name = f"{b.name} [{bounds[0].n_calib:,} pairs]"
    return list(bounds)


def _group_and_operator(
    args: argparse.Namespace, query_x: Tensor, discretization: str | None
) -> tuple[Any, str | None]:
    """``--symmetry``'s group (``None``: none) and the true operator's symmetry-theorem name."""
    from ..certify import SymmetryGroup
    from ..certify.symmetry import DISCRETIZATION_OPERATORS, available_operator_symmetries

    group = None
    if args.symmetry != "none":
        dims = query_x.ndim - 2
        group = SymmetryGroup(tuple(range(dims)), reflection=args.symmetry.endswith("reflection"))
    operator = args.pde if args.pde in available_operator_symmetries() else None
    if args.pde is None:
        operator = DISCRETIZATION_OPERATORS.get(discretization or "")
    return group, operator


def _streamed_pairs(args: argparse.Namespace, query_x: Tensor) -> tuple[Any, str]:
    """The ``--calib-family`` / ``--calib-files`` stream and what it is."""
    from ..certify import file_pairs, generated_pairs

    if args.task != "step":
        raise UsageError(
            "--calib-family/--calib-files stream step pairs (one frame -> a later frame); the "
            "checkpoint learnt the autoregressive task (a window of frames -> the next frame)"
        )
    if args.calib_family:
        if args.calib_samples < 1:
            raise UsageError(f"--calib-samples must be >= 1, got {args.calib_samples}")
        nx = args.calib_nx if args.calib_nx is not None else query_x.shape[-1]
        params: dict[str, Any] = _params(args.calib_param)
        pairs = generated_pairs(args.calib_family, args.calib_samples, nx=nx, nt=args.calib_nt,
                                seed=args.calib_seed, **params)  # fmt: skip
        return pairs, (
            f"{args.calib_samples:,} pairs generated ({args.calib_family}, seed {args.calib_seed})"
        )
    split = args.calib_split if args.calib_split in ("train", "val", "test") else "train"
    pairs = file_pairs(args.calib_files, split=split, t_in=args.t_in,
                       t_out=args.t_out, reduced_resolution=args.reduced_resolution,
                       reduced_resolution_t=args.reduced_resolution_t)  # fmt: skip
    return pairs, f"pairs read from {', '.join(args.calib_files)} [{split}]"


def _multi_pair(
    args: argparse.Namespace,
    query_x: Tensor,
    query_pred: Tensor,
    calib_x: Tensor,
    calib_y: Tensor,
    l_true: Any,
    discretization: str | None,
    noise: float,
) -> Any:
    """``--multi-pair K``: over the streamed calibration set if one is given, else DATA's."""
    from ..certify import multi_pair_error_bound

    if args.multi_pair < 1:
        raise UsageError(f"--multi-pair must be >= 1 (0: off), got {args.multi_pair}")
    if args.norm != "function":
        raise UsageError("--multi-pair needs --norm function")
    group, operator = _group_and_operator(args, query_x, discretization)
    if args.calib_family or args.calib_files:
        pairs, source = _streamed_pairs(args, query_x)
    else:
        pairs, source = [(calib_x, calib_y)], f"{calib_x.shape[0]} pairs of {args.data}"
    b = multi_pair_error_bound(
        query_x,
        query_pred,
        pairs,
        lipschitz_true=l_true,
        group=group,
        operator=operator,
        neighbours=args.multi_pair,
        data_discretization=discretization,
        float32_storage=noise > 0,
    )
    print(f"multi-pair bound: {source}, {args.multi_pair} nearest per query")
    for line in b.premises:
        print(f"  {b.name} premise: {line}")
    b.name = f"{b.name} [{b.n_calib:,} pairs, k={args.multi_pair}]"
    return b


def _attributes(path: str) -> dict[str, Any]:
    """The data file's root attributes (``discretization`` and its parameters, if any)."""
    import h5py

    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


def _logistic_pairs(
    ds: Any,
    attrs: dict[str, Any],
    args: argparse.Namespace,
    norm: str,
    l_true: Any,
    l_model: Any,
    query_x: Tensor,
    calib_x: Tensor,
    calib_y: Tensor,
    calib_pred: Tensor,
    noise: float,
) -> Any:
    """The plain bound with a certified ``L_G`` per pair, where the file's scheme allows it.

    Files of the logistic reaction (``strang-logistic-ftcs``) whose class constant certified
    ``L_G`` here, in the function norm: :func:`liponet.certify.logistic_pair_bound`.
    """
    from ..certify import logistic_pair_bound

    if attrs.get("discretization") != "strang-logistic-ftcs" or args.pde or norm != "function":
        return None
    if l_true.label != "certified" or calib_x.shape[1] != 1:
        return None
    ids, window = ds._frame_ids, ds._windows[0]
    return logistic_pair_bound(
        query_x,
        calib_x,
        calib_y,
        calib_pred,
        l_model,
        attrs,
        frames=ids[window[-1]] - ids[window[-2]],
        spatial_stride=args.reduced_resolution,
        norm=norm,
        input_noise=noise,
    )


def _discrete_constant(
    ds: Any, attrs: dict[str, Any], args: argparse.Namespace, norm: str
) -> tuple[Any, str]:
    """The certified ``L_G`` of the file's discrete map between the chosen frames, if proved."""
    from ..certify import generator_lipschitz

    ids, window = ds._frame_ids, ds._windows[0]
    frames = ids[window[-1]] - ids[window[-2]]
    if frames < 1:
        return None, f"t_out is not after t_in ({frames} frames apart)"
    return generator_lipschitz(
        attrs, frames=frames, spatial_stride=args.reduced_resolution, norm=norm
    )


def _print_table(bound: Any, observed: Tensor, rows: int) -> None:
    n = bound.bound.numel() if rows == 0 else min(rows, bound.bound.numel())
    print(f"{'query':>6} {'bound':>11} {'observed':>11} {'ratio':>8} {'ok':>3} "
          f"{'nearest':>8} {'distance':>10} {'calib err':>10}")  # fmt: skip
    for i in range(n):
        b, o = float(bound.bound[i]), float(observed[i])
        ratio = b / o if o > 0 else math.inf
        print(
            f"{i:>6} {b:>11.4g} {o:>11.4g} {ratio:>8.3g} {'yes' if o <= b else 'NO':>3} "
            f"{int(bound.index[i]):>8} {float(bound.distance[i].sum()):>10.4g} "
            f"{float(bound.calib_error[i]):>10.4g}"
        )
    if n < bound.bound.numel():
        print(f"... {bound.bound.numel() - n} more (--rows 0 for all)")


def _plot(bound: Any, observed: Tensor, others: list[Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.5))
    obs = observed.cpu().numpy()
    ax.loglog(obs, bound.bound.cpu().numpy(), "o", ms=3, label=f"{bound.name} ({bound.label})")
    for other in others:
        ax.loglog(obs, other.bound.cpu().numpy(), ".", ms=3, label=f"{other.name} ({other.label})")
    lo = max(float(observed[observed > 0].min()) if bool((observed > 0).any()) else 1e-12, 1e-12)
    hi = max(float(bound.bound.max()), float(observed.max()))
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="bound = observed")
    ax.set_xlabel("observed error")
    ax.set_ylabel("bound")
    # bounds lie on or above the diagonal: the lower right is empty (and a fixed place never
    # warns, as loc="best" does when its search takes over a second on a loaded machine)
    ax.legend(fontsize=7, loc="lower right")
    with warnings.catch_warnings():  # a layout it cannot tighten is cosmetic, not a failed run
        warnings.filterwarnings("ignore", "Tight layout not applied", UserWarning)
        fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
