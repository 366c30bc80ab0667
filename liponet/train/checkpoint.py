"""One-file checkpoints: atomic writes, loading that never runs code, refusal of foreign files.

A checkpoint is a ``torch.save`` of a dictionary of plain data and tensors only::

    {"format": "liponet-checkpoint", "version": 1, "liponet_version": "...",
     "config": {... "model": {"name": <registry name>, "kwargs": {...}} ...},
     "model": state_dict, "optimizer": state_dict | None, "scheduler": state_dict | None,
     "normalizer": dict | None, "epoch": int, "rng": {"torch", "numpy", "python", "cuda"},
     "extra": dict}

It is loaded with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers, so opening a checkpoint cannot execute code.
"""

from __future__ import annotations

import os
import pickle
import random
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "capture_rng_state",
    "check_finite_weights",
    "check_state_shapes",
    "load_checkpoint",
    "load_model",
    "restore_rng_state",
    "save_checkpoint",
]

#: Marker stored under ``"format"`` in every liponet checkpoint.
CHECKPOINT_FORMAT = "liponet-checkpoint"
#: Layout version; bumped when the dictionary changes incompatibly.
CHECKPOINT_VERSION = 1

_PLAIN = (str, int, float, bool, type(None), Tensor)
#: The ``state_dict`` key suffix of a module's extra state (``get_extra_state``).
_EXTRA_STATE = "_extra_state"


class CheckpointError(ValueError):
    """A file that is not a loadable liponet checkpoint (foreign, corrupt, or carrying code)."""


def write_phase(name: str, path: Path) -> None:
    """Called at each phase of a checkpoint write (``name``, the file concerned); does nothing.

    Phases: ``"tmp-open"`` (temporary file created, empty), ``"tmp-written"`` (complete, not
    yet renamed), ``"replaced"`` (renamed over the target), and the trainer's epoch-end
    phases (``"best-written"``, ``"log-written"``, ``"last-written"``). Fault-injection tests
    replace this function to kill the process at a chosen phase.
    """


def file_mode() -> int:
    """The mode a plain ``open`` would give a new file (``0o666`` minus the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (renames) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass
class Checkpoint:
    """The content of a checkpoint file.

    Attributes
    ----------
    path
        The file it was read from.
    config
        The run configuration (plain data); ``config["model"]`` is ``{"name", "kwargs"}``.
    model_state
        The model's ``state_dict``.
    optimizer_state, scheduler_state
        Their ``state_dict`` s, or ``None``.
    normalizer_state
        Normalization statistics (plain data and tensors), or ``None``.
    epoch
        The epoch counter stored by the writer (liponet's trainer: completed epochs).
    rng_state
        Random generator states (see :func:`capture_rng_state`).
    extra
        Anything else the writer stored (plain data).
    version
        The checkpoint layout version.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.models import LipMLP
    >>> config = {"model": {"name": "LipMLP", "kwargs": {"in_features": 2, "out_features": 1}}}
    >>> path = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "m.pt", LipMLP(2, 1),
    ...                        config=config, epoch=3)
    >>> _, ckpt = load_model(path)
    >>> isinstance(ckpt, Checkpoint), ckpt.epoch, ckpt.config["model"]["name"]
    (True, 3, 'LipMLP')
    """

    path: Path
    config: dict[str, Any]
    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None = None
    scheduler_state: dict[str, Any] | None = None
    normalizer_state: dict[str, Any] | None = None
    epoch: int = 0
    rng_state: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = CHECKPOINT_VERSION


def _check_plain(obj: Any, where: str) -> None:
    """Raise TypeError unless ``obj`` is plain data (what ``weights_only`` loading accepts)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where}: keys must be str or int, got {type(key).__name__}")
            _check_plain(value, f"{where}.{key}")
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _check_plain(value, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(
            f"{where}: a checkpoint holds only plain data and tensors, got {type(obj).__name__}"
        )


def capture_rng_state() -> dict[str, Any]:
    """The states of torch's, numpy's, Python's and (if present) every CUDA device's generator."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`capture_rng_state` (missing parts are skipped)."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "numpy" in state:
        np_state = state["numpy"]
        np.random.set_state(  # noqa: NPY002 (the legacy global generator is what we restore)
            (
                np_state["kind"],
                np_state["keys"].numpy().astype(np.uint32),
                np_state["pos"],
                np_state["has_gauss"],
                np_state["cached_gaussian"],
            )
        )
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = [s.cpu() for s in state["cuda"]]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    config: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    normalizer_state: dict[str, Any] | None = None,
    epoch: int = 0,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same folder, then ``os.replace``).

    Parameters
    ----------
    path
        Destination file (its folder is created). An existing file is replaced only once the new
        one is complete, so a crash never leaves a half-written checkpoint.
    model
        The model (a DDP wrapper is unwrapped); its ``state_dict`` is stored.
    config
        Plain data; ``config["model"]`` must be ``{"name": <registry name>, "kwargs": {...}}`` for
        :func:`load_model` to rebuild the model.
    optimizer, scheduler
        Stored through their ``state_dict``.
    normalizer_state
        Normalization statistics (plain data and tensors).
    epoch
        Epoch counter to store.
    extra
        Any other plain data (e.g. the trainer's position inside an epoch).

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    TypeError
        If ``config``, ``normalizer_state`` or ``extra`` holds something other than plain data and
        tensors (it could not be loaded without unpickling code).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.models import LipMLP
    >>> model = LipMLP(2, 1, width=4, depth=2)
    >>> config = {"model": {"name": "LipMLP", "kwargs": {"in_features": 2, "out_features": 1,
    ...                                                "width": 4, "depth": 2}}}
    >>> path = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "m.pt", model, config=config)
    >>> loaded, ckpt = load_model(path)
    >>> type(loaded).__name__, ckpt.epoch
    ('LipMLP', 0)
    """
    module = model.module if isinstance(model, DistributedDataParallel) else model
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "liponet_version": __version__,
        "config": config,
        "model": module.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "normalizer": normalizer_state,
        "epoch": int(epoch),
        "rng": capture_rng_state(),
        "extra": dict(extra or {}),
    }
    for key in ("config", "normalizer", "extra", "scheduler"):
        _check_plain(payload[key], key)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), file_mode())  # as a plain open would (mkstemp: 0600)
            write_phase("tmp-open", Path(tmp_name))
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        write_phase("tmp-written", Path(tmp_name))
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    write_phase("replaced", target)
    return target


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> Checkpoint:
    """Read a checkpoint without running code (``torch.load(weights_only=True)``).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    CheckpointError
        If the file is not a torch file, holds pickled objects other than tensors and plain data
        (e.g. a callable), lacks liponet's format marker, or has another layout version.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.models import LipMLP
    >>> from liponet.train import save_checkpoint, load_model
    >>> config = {"model": {"name": "LipMLP", "kwargs": {"in_features": 2, "out_features": 1}}}
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.pt"
    >>> _ = save_checkpoint(path, LipMLP(2, 1), config=config, epoch=3)
    >>> model, ckpt = load_model(path)
    >>> ckpt.epoch, type(model).__name__, model.training
    (3, 'LipMLP', False)
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"checkpoint {file} does not exist")
    if not zipfile.is_zipfile(file):  # torch.save (and so every liponet checkpoint) writes a zip
        raise CheckpointError(
            f"{file}: not a torch checkpoint (expected the zip archive torch.save writes)"
        )
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{file}: refused: it holds pickled objects other than tensors and plain data "
            f"(liponet checkpoints never do; loading it could run code): {first_line}"
        ) from None
    except Exception as err:  # torch.load raises many types on corrupt or legacy files
        raise CheckpointError(
            f"{file}: not a readable torch checkpoint ({type(err).__name__}: "
            f"{str(err).strip().splitlines()[0] if str(err).strip() else 'no detail'})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{file}: not a liponet checkpoint (no {CHECKPOINT_FORMAT!r} format marker)"
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{file}: checkpoint layout version {payload.get('version')!r} is not supported "
            f"(this liponet reads version {CHECKPOINT_VERSION})"
        )
    missing = [key for key in ("config", "model") if not isinstance(payload.get(key), dict)]
    if missing:
        raise CheckpointError(f"{file}: checkpoint lacks {', '.join(missing)}")
    return Checkpoint(
        path=file,
        config=payload["config"],
        model_state=payload["model"],
        optimizer_state=payload.get("optimizer"),
        scheduler_state=payload.get("scheduler"),
        normalizer_state=payload.get("normalizer"),
        epoch=int(payload.get("epoch", 0)),
        rng_state=payload.get("rng") or {},
        extra=payload.get("extra") or {},
        version=payload["version"],
    )


def check_finite_weights(state: dict[str, Any], where: str | os.PathLike[str]) -> None:
    """Refuse a state dict holding NaN or infinite values, naming the first such entry.

    Raises
    ------
    CheckpointError
        ``"<where>: weight '<name>' has N NaN/inf values ..."``.
    """
    for name, tensor in state.items():
        if isinstance(tensor, Tensor) and (tensor.is_floating_point() or tensor.is_complex()):
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(
                    f"{where}: weight {name!r} has {bad} NaN/inf value(s) of "
                    f"{tensor.numel()}; the checkpoint is unusable (retrain or take an "
                    "earlier one)"
                )


def check_state_shapes(
    name: str, kwargs: dict[str, Any], state: dict[str, Tensor], where: str | os.PathLike[str]
) -> bool:
    """Check weights against the shapes their model config implies, allocating nothing.

    The model is built on PyTorch's ``meta`` device (shapes only).

    Returns ``False`` when the model cannot be built on the meta device (then nothing was
    checked and the caller builds it for real).

    Raises
    ------
    CheckpointError
        If a key is missing or unexpected, or a shape differs: the config claims a model the
        weights are not (e.g. a width of 4096 with the weights of width 8).
    ValueError
        If the config's arguments are invalid for the model (from the registry).
    """
    from ..models import build_model

    try:
        with torch.device("meta"):
            shell = build_model(name, **kwargs)
    except (RuntimeError, NotImplementedError):
        return False  # a constructor that computes with tensor values
    expected = shell.state_dict()
    # extra states a checkpoint may lack (its layers then start afresh: e.g. the warm polar
    # basis of an "orthogonal" layer, absent from checkpoints written before it was state)
    optional = {
        f"{name}.{_EXTRA_STATE}" if name else _EXTRA_STATE
        for name, module in shell.named_modules()
        if getattr(module, "state_optional", False)
    }
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        key = (missing or unexpected)[0]
        what = "missing from the weights" if missing else "not a weight of this model"
        raise CheckpointError(
            f"{where}: config model {name!r} {kwargs} does not fit the weights: {key!r} is "
            f"{what} ({len(missing)} missing, {len(unexpected)} unexpected)"
        )
    for key, tensor in expected.items():
        got = state[key]
        if not (isinstance(got, Tensor) and isinstance(tensor, Tensor)):
            continue  # a module's extra state
        if tuple(got.shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: config model {name!r} {kwargs} does not fit the weights: {key!r} "
                f"has shape {tuple(got.shape)}, the config implies {tuple(tensor.shape)}"
            )
    return True


def load_model(
    path: str | os.PathLike[str], map_location: Any = "cpu"
) -> tuple[nn.Module, Checkpoint]:
    """Rebuild a checkpoint's model from the registry, load its weights; return it in eval mode.

    Before any model memory is allocated, the weights are checked against the shapes the
    config implies (:func:`check_state_shapes`) and for NaN/inf (:func:`check_finite_weights`),
    so a small file claiming a huge model is refused without allocating it.

    Raises
    ------
    CheckpointError
        If the file is not a valid checkpoint, its config has no ``model: {name, kwargs}``, the
        weights do not fit the config's model, or a weight is NaN/inf (named).
    ValueError
        If the model name is not registered (the message lists the registered names).

    Examples
    --------
    >>> import tempfile, pathlib, torch
    >>> from liponet.models import LipMLP
    >>> model = LipMLP(2, 1, width=4, depth=2).eval()
    >>> config = {"model": {"name": "LipMLP", "kwargs": {"in_features": 2, "out_features": 1,
    ...                                                "width": 4, "depth": 2}}}
    >>> path = save_checkpoint(pathlib.Path(tempfile.mkdtemp()) / "m.pt", model, config=config)
    >>> loaded, ckpt = load_model(path)
    >>> x = torch.randn(3, 2)
    >>> torch.equal(loaded(x), model(x)), loaded.training
    (True, False)
    """
    from ..models import build_model

    ckpt = load_checkpoint(path, map_location=map_location)
    spec = ckpt.config.get("model")
    if not (isinstance(spec, dict) and isinstance(spec.get("name"), str)):
        raise CheckpointError(
            f"{ckpt.path}: config has no model entry {{'name': <registry name>, 'kwargs': {{...}}}}"
        )
    kwargs = dict(spec.get("kwargs") or {})
    check_finite_weights(ckpt.model_state, ckpt.path)
    try:
        check_state_shapes(spec["name"], kwargs, ckpt.model_state, ckpt.path)
        model = build_model(spec["name"], **kwargs)
    except CheckpointError:
        raise
    except ValueError as err:
        raise CheckpointError(f"{ckpt.path}: {err}") from None
    try:
        model.load_state_dict(ckpt.model_state)
    except (RuntimeError, ValueError) as err:  # ValueError: a malformed extra state
        raise CheckpointError(
            f"{ckpt.path}: weights do not fit model {spec['name']!r}: "
            f"{str(err).strip().splitlines()[0]}"
        ) from None
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    return model.eval(), ckpt
