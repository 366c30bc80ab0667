"""``liponet export``: a deployment file of a checkpoint (ONNX or torch.export) and its sidecar.

Writes ``--out`` (``.onnx`` for onnxruntime and other ONNX runtimes, or a ``torch.export``
``.pt2`` program) and ``--out`` + ``.json``: the certified Lipschitz bound with its norm, the
input and output layouts (free axes named), the weight and data normalization, and the largest
difference between the written file, run back, and the eager model on random inputs. Fourier
models need a grid (the file is for one grid): ``--grid``, else the grid of the
checkpoint's training data. Nothing is written unless every check passes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import UsageError

HELP = "write an ONNX or torch.export file of a checkpoint, with its certificate in a JSON sidecar"

#: Largest relative difference (max |file - eager| / max |eager|) accepted from the written file.
MAX_REL_ERROR = 1e-4

_SUFFIX = {"onnx": ".onnx", "pt2": ".pt2"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Positional CHECKPOINT; --out, --format, --grid, --opset, --overwrite."""
    parser.add_argument("checkpoint", help="a liponet checkpoint (model config + weights)")
    parser.add_argument(
        "--out", required=True, help="the file to write (.onnx or .pt2); the sidecar is OUT.json"
    )
    parser.add_argument(
        "--format",
        choices=tuple(_SUFFIX),
        default=None,
        help="onnx (onnxruntime; needs the onnx extra) or pt2 (torch.export.save); default: "
        "from the suffix of --out",
    )
    parser.add_argument(
        "--grid",
        default=None,
        metavar="N[,N...]",
        help="Fourier models (LipFNO, FNO): the grid the file is for, e.g. 128 or 64,64",
    )
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset version (default 18)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files")


def _grid(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        sizes = tuple(int(part) for part in text.replace("x", ",").split(","))
    except ValueError:
        sizes = ()
    if not sizes or any(n < 1 for n in sizes):
        raise UsageError(f"--grid {text!r}: expected grid sizes >= 1 such as 128 or 64,64")
    return sizes


def _targets(args: argparse.Namespace) -> tuple[str, Path, Path]:
    """``(format, file, sidecar)`` after checking --out and --format."""
    out = Path(args.out)
    fmt = args.format
    if fmt is None:
        fmt = next((f for f, suffix in _SUFFIX.items() if out.suffix == suffix), None)
        if fmt is None:
            raise UsageError(
                f"--out {out}: cannot tell the format from the suffix {out.suffix!r}; name a "
                ".onnx or .pt2 file, or give --format"
            )
    elif out.suffix != _SUFFIX[fmt]:
        raise UsageError(f"--out {out}: expected a {_SUFFIX[fmt]} file for --format {fmt}")
    sidecar = out.with_name(out.name + ".json")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist")
    for path in (out, sidecar):
        if path.is_dir():
            raise UsageError(f"--out {out}: {path} is a folder")
        if path.exists() and not args.overwrite:
            raise UsageError(f"{path} exists (pass --overwrite to replace it)")
    if args.opset < 17 and fmt == "onnx":
        raise UsageError(f"--opset {args.opset}: ONNX export needs opset >= 17")
    return fmt, out, sidecar


def _json_ready(obj: Any) -> Any:
    """Plain JSON data: tensors become nested lists, non-finite floats strings."""
    if isinstance(obj, Tensor):
        return _json_ready(obj.detach().cpu().tolist())
    if isinstance(obj, dict):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, float) and not (obj == obj and abs(obj) != float("inf")):
        return str(obj)
    return obj


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Silence the ONNX exporter's log lines about missing optional packages (torchvision)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _weight_normalization(model: torch.nn.Module) -> str | None:
    """The constrained Fourier layers' multiplier normalization (``None``: no such layer)."""
    from ..layers import LipSpectralConv

    names = sorted(
        {
            m.normalization
            for m in model.modules()
            if isinstance(m, LipSpectralConv) and m.k is not None
        }
    )
    return ", ".join(names) if names else None


def _onnx_runner(path: Path, names: tuple[str, ...]) -> Callable[..., Tensor] | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(*xs: Tensor) -> Tensor:
        feeds = {n: x.numpy() for n, x in zip(names, xs, strict=True)}
        return torch.from_numpy(session.run(None, feeds)[0])

    return run


def _training_grid(data: dict[str, Any] | None) -> tuple[tuple[int, ...] | None, str]:
    """The spatial grid of one sample of a checkpoint's training data, and whence it came.

    Rebuilds the run's dataset from the checkpoint's ``data`` section (file datasets read the
    file at the path the run recorded, relative to the folder ``liponet export`` runs in).
    ``(None, why)`` when the checkpoint names no data or they cannot be read here.
    """
    from ..train import DataConfig, build_dataset

    if not data:
        return None, "the checkpoint names no training data"
    try:
        config = DataConfig(**data)
        x, _ = build_dataset(config).val[0]
    except (ValueError, TypeError, OSError, IndexError) as err:
        where = f" {data.get('path')}" if data.get("path") else ""
        return None, f"its training data{where} cannot be read here ({err})"
    what = f"{config.name} {config.path}" if config.path else config.name
    return tuple(int(n) for n in x.shape[1:]), f"the training data's grid ({what})"


def run(args: argparse.Namespace) -> int:
    """Check everything, write both files atomically, print one summary line."""
    from ..export import (
        check_deployment,
        deployment_card,
        deployment_inputs,
        export_onnx,
        export_program,
        onnx_available,
    )
    from ..models.fno import _FNOBase
    from ..train import load_model
    from ..train.checkpoint import file_mode

    fmt, out, sidecar = _targets(args)
    if fmt == "onnx" and not onnx_available():
        raise UsageError(
            "--format onnx needs the packages onnx and onnxscript: pip install 'liponet[onnx]'"
        )
    grid = _grid(args.grid)
    model, ckpt = load_model(args.checkpoint)
    how_grid = "--grid" if grid is not None else ""
    if grid is None and isinstance(model, _FNOBase):  # a Fourier model: one grid per file
        grid, how_grid = _training_grid(ckpt.config.get("data"))
        if grid is None:
            raise UsageError(
                f"{type(model).__name__} needs --grid (the grid the file is for, e.g. --grid "
                f"{','.join(['128'] * len(model.modes))}): {how_grid}"
            )
    inputs = deployment_inputs(model, grid=grid)
    # examples of the check: batch 1 (a slice), 3 and 5; other query points for DeepONet
    examples = [deployment_inputs(model, grid=grid, batch=b, points=9, seed=b) for b in (3, 5)]
    first = examples[0]
    examples.append(dataclasses.replace(first, tensors=(first.tensors[0][:1], *first.tensors[1:])))

    tmp_files: list[Path] = []
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=out.suffix, dir=out.parent)
        os.close(fd)
        tmp = Path(name)
        tmp_files.append(tmp)
        runner: Callable[..., Tensor] | None
        if fmt == "onnx":
            with _quiet_exporter_logs():
                program = export_onnx(model, inputs, opset=args.opset)
            program.save(str(tmp))
            runner = _onnx_runner(tmp, inputs.names)
            checked_with = "onnxruntime"
        else:
            with warnings.catch_warnings():  # torch's archive writer, on the complex views
                warnings.filterwarnings("ignore", "No complete tensor found in the group")
                torch.export.save(export_program(model, inputs), tmp)
            runner = torch.export.load(tmp).module()
            checked_with = "torch.export.load"
        check = None
        if runner is not None:
            check = check_deployment(runner, model, examples)
            check["checked_with"] = checked_with
            if not check["max_rel_error"] <= MAX_REL_ERROR:
                raise RuntimeError(
                    f"the written {fmt} file differs from the model by {check['max_rel_error']:.3g}"
                    f" relative (> {MAX_REL_ERROR}); nothing written"
                )
        card = deployment_card(model, inputs, fmt, out.name, check)
        spec = ckpt.config.get("model", {})
        card["checkpoint"] = {"path": str(ckpt.path), "epoch": ckpt.epoch, "model": spec}
        card["normalization"] = {
            "weights": _weight_normalization(model),
            "data": ckpt.normalizer_state,
        }
        fd, name = tempfile.mkstemp(prefix=f".{sidecar.name}.", suffix=".json", dir=out.parent)
        tmp_card = Path(name)
        tmp_files.append(tmp_card)
        with os.fdopen(fd, "w") as f:
            json.dump(_json_ready(card), f, indent=2, allow_nan=False)
            f.write("\n")
        for path in (tmp, tmp_card):  # mkstemp's files are private (0o600)
            os.chmod(path, file_mode())
        os.replace(tmp, out)
        os.replace(tmp_card, sidecar)
        tmp_files.clear()
    finally:
        for path in tmp_files:
            path.unlink(missing_ok=True)
    bound = card["lipschitz_bound"]
    checked = (
        "not run back (onnxruntime is not installed)"
        if check is None
        else f"{checked_with} vs eager max relative difference {check['max_rel_error']:.2g} "
        f"(batch {', '.join(map(str, check['batch_sizes']))})"
    )
    on_grid = f" for grid {'x'.join(map(str, grid))} ({how_grid})" if grid is not None else ""
    print(
        f"wrote {out} ({fmt}, {out.stat().st_size / 1024:.0f} KiB){on_grid} and {sidecar}: "
        f"certified Lipschitz bound {bound}; {checked}"
    )
    return 0
