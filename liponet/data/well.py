"""The Well's HDF5 files (PolymathicAI, 2024), read unchanged through the PDEBench machinery.

The specification (The Well's ``docs/data_format.md``), as read here:

- root attributes ``n_spatial_dims`` and ``n_trajectories`` (``B``);
- ``dimensions/``: attribute ``spatial_dims`` (axis names, e.g. ``['x', 'y']``), one 1-D
  coordinate dataset per axis and ``time`` (``(T,)``, or ``(B, T)`` when ``sample_varying``);
- ``boundary_conditions/``: one group per condition, attributes ``associated_dims`` (axis
  names) and ``bc_type`` (``periodic``, ``wall`` or ``open``; any case);
- ``scalars/``: attribute ``field_names``; each scalar ``()``/``(1,)``, ``(B,)`` when
  ``sample_varying``, ``(T,)`` or ``(B, T)`` when ``time_varying``;
- ``t0_fields/``, ``t1_fields/``, ``t2_fields/`` (scalar, vector, tensor fields): attribute
  ``field_names``; each field has attributes ``time_varying``, ``sample_varying`` and
  ``dim_varying`` (one bool per axis) and the shape ``[B][, T], *axes that vary[, D[, D]]``
  (a tensor's trailing ``D, D`` may also be stored flat as ``D**2``).

Channel order (``WellDataset.channel_names``)
--------------------------------------------
A *frame* holds the time-varying fields, flattened: the ``t0_fields`` in ``field_names`` order,
then each ``t1_fields`` entry as ``D`` channels ``name_x, name_y, ...``, then each ``t2_fields``
entry as ``D**2`` channels ``name_xx, name_xy, ..., name_yy`` (row-major). The input ``x`` of an
item is its input frames stacked time-major (``channel = frame * n_fields + field``, as
PDEBench's autoregressive task), followed (``extra_inputs=True``) by the *extra inputs*: the
fields that do not vary in time (same flattening), then the scalars that do not vary in time
(one constant channel each), then the time-varying scalars at each input frame (frame-major).
The target ``y`` is the target frame's time-varying fields. Fields constant along some axes
(``dim_varying`` false) are broadcast over them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import einops
import h5py
import numpy as np
import torch
from torch import Tensor

from .errors import (
    EmptySelectionError,
    NonFiniteError,
    PDEBenchFileNotFoundError,
    WellFormatError,
)
from .layouts import Layout, Samples, open_h5
from .reader import (
    NONFINITE,
    WINDOWS,
    PDEBenchDataset,
    _choice,
    autoregressive_windows,
    finite_rows,
)
from .stream import PDEBenchStream

__all__ = [
    "BC_TYPES",
    "WellDataset",
    "WellField",
    "WellLayout",
    "WellScalar",
    "WellStream",
    "well_files",
]

#: The field groups, by tensor rank.
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
#: Boundary condition types of the specification.
BC_TYPES = ("periodic", "wall", "open")
#: Split name -> folder name (``"val"`` is accepted as PDEBench's name for ``valid``).
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "test": "test"}
HDF5_SUFFIXES = (".hdf5", ".h5", ".hdf")
TASKS = ("step", "autoregressive")


@dataclass(frozen=True)
class WellField:
    """One field of a ``t{rank}_fields`` group.

    Attributes
    ----------
    name, rank
        The dataset name and its tensor rank (0 scalar, 1 vector, 2 tensor field).
    time_varying, sample_varying, dim_varying
        The specification's attributes.
    channels
        Channel names, in channel order (``name``; ``name_x`` ...; ``name_xy`` ...).
    flat_tensor
        A rank-2 field stored with its trailing ``D, D`` flattened to ``D**2``.
    """

    name: str
    rank: int
    time_varying: bool
    sample_varying: bool
    dim_varying: tuple[bool, ...]
    channels: tuple[str, ...]
    flat_tensor: bool = False

    @property
    def key(self) -> str:
        """The dataset's path in the file."""
        return f"t{self.rank}_fields/{self.name}"


@dataclass(frozen=True)
class WellScalar:
    """One entry of ``scalars/`` (attributes as in the specification)."""

    name: str
    time_varying: bool
    sample_varying: bool

    @property
    def key(self) -> str:
        """The dataset's path in the file."""
        return f"scalars/{self.name}"


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_decode(v) for v in value]
    return value


def _attr(path: str, obj: h5py.HLObject, name: str, what: str) -> Any:
    if name not in obj.attrs:
        raise WellFormatError(path, f"missing attribute {name!r} ({what})", obj.name)
    return _decode(obj.attrs[name])


def _names(path: str, obj: h5py.HLObject, name: str, what: str) -> list[str]:
    value = _attr(path, obj, name, what)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise WellFormatError(
            path, f"attribute {name!r} is {value!r}, expected a list of strings", obj.name
        )
    return value


def _flag(path: str, obj: h5py.HLObject, name: str) -> bool:
    value = _attr(path, obj, name, "a boolean of the specification")
    if isinstance(value, bool | np.bool_ | int | np.integer) and value in (0, 1):
        return bool(value)
    raise WellFormatError(path, f"attribute {name!r} is {value!r}, expected a boolean", obj.name)


def _group(path: str, f: h5py.File, key: str) -> h5py.Group:
    obj = f.get(key)
    if not isinstance(obj, h5py.Group):
        found = "missing" if obj is None else "a dataset"
        raise WellFormatError(path, f"group {key!r} is {found}; The Well's files have it", key)
    return obj


def _member(path: str, group: h5py.Group, name: str) -> h5py.Dataset:
    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        found = "missing" if obj is None else "a group"
        raise WellFormatError(
            path,
            f"{name!r} is listed in field_names but the dataset is {found}",
            f"{group.name.lstrip('/')}/{name}",
        )
    return obj


@dataclass
class WellLayout(Layout):
    """One file of The Well: its axes, fields, scalars and boundary conditions.

    ``fields`` (of :class:`~liponet.data.layouts.Layout`) are the channel names of one frame
    (time-varying fields only); ``n_frames`` is ``T``; ``grid`` holds the coordinates and
    ``"t"`` (the first trajectory's times when they vary between trajectories).

    Attributes
    ----------
    dims
        Axis names (``dimensions.spatial_dims``).
    dynamic, constant
        Time-varying and time-invariant fields, in channel order.
    scalars
        The ``scalars/`` entries, in ``field_names`` order.
    boundary
        Boundary condition type per axis name (``"periodic"``, ``"wall"``, ``"open"``; several
        conditions on one axis joined with ``"+"``, e.g. ``"open+wall"``).
    grid_type
        The root attribute ``grid_type`` (``"cartesian"`` when absent); the axes of other grids
        (e.g. spherical) are read the same way, but their grid norm is not an L2 norm of the
        sphere's area measure.
    """

    dims: tuple[str, ...] = ()
    dynamic: tuple[WellField, ...] = ()
    constant: tuple[WellField, ...] = ()
    scalars: tuple[WellScalar, ...] = ()
    boundary: dict[str, str] = field(default_factory=dict)
    grid_type: str = "cartesian"

    kind: ClassVar[str] = "well"

    @classmethod
    def detect(cls, path: str | os.PathLike[str], f: h5py.File) -> WellLayout:
        """Validate ``f`` against the specification; :class:`WellFormatError` if it breaks it."""
        path = os.fspath(path)
        n_dims = _attr(path, f, "n_spatial_dims", "the number of spatial axes")
        n_traj = _attr(path, f, "n_trajectories", "the number of trajectories")
        for name, value in (("n_spatial_dims", n_dims), ("n_trajectories", n_traj)):
            if not isinstance(value, int | np.integer) or value < 1:
                raise WellFormatError(path, f"root attribute {name} is {value!r}, expected >= 1")
        if n_dims > 3:
            raise WellFormatError(path, f"n_spatial_dims is {n_dims}, expected 1, 2 or 3")
        n_dims, n_traj = int(n_dims), int(n_traj)
        dims_group = _group(path, f, "dimensions")
        dims = tuple(_names(path, dims_group, "spatial_dims", "the axis names"))
        if len(dims) != n_dims:
            raise WellFormatError(
                path,
                f"spatial_dims lists {len(dims)} axes {list(dims)}, expected n_spatial_dims = "
                f"{n_dims}",
                "dimensions",
            )
        grid: dict[str, np.ndarray] = {}
        for d in dims:
            coord = _member(path, dims_group, d)
            if coord.ndim != 1 or coord.shape[0] < 1:
                raise WellFormatError(
                    path, f"has shape {coord.shape}, expected a 1-D coordinate array", coord.name
                )
            grid[d] = np.asarray(coord[()], dtype=np.float32)
        shape = tuple(grid[d].shape[0] for d in dims)
        time = _member(path, dims_group, "time")
        time_sv = _flag(path, time, "sample_varying")
        if time.shape[:-1] != ((n_traj,) if time_sv else ()):
            expected = "(n_trajectories, T)" if time_sv else "(T,)"
            raise WellFormatError(
                path,
                f"has shape {time.shape}, expected {expected} (sample_varying={time_sv})",
                "dimensions/time",
            )
        n_steps = int(time.shape[-1])
        times = np.asarray(time[0] if time_sv else time[()], dtype=np.float32)
        grid["t"] = times

        boundary: dict[str, list[str]] = {}
        bcs = _group(path, f, "boundary_conditions")
        for name in sorted(bcs.keys()):
            bc = bcs[name]
            kind = str(_attr(path, bc, "bc_type", "periodic, wall or open")).lower()
            if kind not in BC_TYPES:
                raise WellFormatError(
                    path, f"bc_type is {kind!r}, expected one of {', '.join(BC_TYPES)}", bc.name
                )
            for d in _names(path, bc, "associated_dims", "the axes it applies to"):
                if d not in dims:
                    raise WellFormatError(
                        path, f"associated_dims names {d!r}, not an axis of {list(dims)}", bc.name
                    )
                if kind not in boundary.setdefault(d, []):
                    boundary[d].append(kind)

        dynamic: list[WellField] = []
        constant: list[WellField] = []
        for rank, key in enumerate(FIELD_GROUPS):
            group = _group(path, f, key)
            for name in _names(path, group, "field_names", "the fields of this group"):
                spec = _field(path, group, name, rank, dims, shape, n_traj, n_steps)
                (dynamic if spec.time_varying else constant).append(spec)
        if not dynamic:
            raise WellFormatError(
                path, "no time-varying field in t0_fields/t1_fields/t2_fields: nothing to predict"
            )
        scalars: list[WellScalar] = []
        if "scalars" in f:
            group = _group(path, f, "scalars")
            for name in _names(path, group, "field_names", "the scalars"):
                ds = _member(path, group, name)
                sv, tv = _flag(path, ds, "sample_varying"), _flag(path, ds, "time_varying")
                want = (n_traj,) * sv + (n_steps,) * tv
                if ds.shape != want and not (not sv and not tv and ds.shape in ((), (1,))):
                    raise WellFormatError(
                        path,
                        f"has shape {ds.shape}, expected {want or '() or (1,)'} "
                        f"(sample_varying={sv}, time_varying={tv})",
                        ds.name,
                    )
                scalars.append(WellScalar(name, tv, sv))
        channels = tuple(c for s in dynamic for c in s.channels)
        return cls(
            path,
            n_traj,
            n_steps,
            shape,
            channels,
            grid,
            dims=dims,
            dynamic=tuple(dynamic),
            constant=tuple(constant),
            scalars=tuple(scalars),
            boundary={d: "+".join(sorted(v)) for d, v in boundary.items()},
            grid_type=str(_decode(f.attrs.get("grid_type", "cartesian"))),
        )

    @property
    def periodic(self) -> tuple[bool, ...]:
        """Whether each axis is periodic (its only boundary condition is ``periodic``)."""
        return tuple(self.boundary.get(d) == "periodic" for d in self.dims)

    @property
    def constant_channels(self) -> tuple[str, ...]:
        """Channel names of the time-invariant fields."""
        return tuple(c for s in self.constant for c in s.channels)

    def signature(self) -> tuple[Any, ...]:
        """What every file of one dataset must share."""
        return (
            self.dims,
            self.spatial_shape,
            self.n_frames,
            self.dynamic,
            self.constant,
            self.scalars,
            self.grid_type,
        )

    def _field(
        self,
        f: h5py.File,
        spec: WellField,
        samples: Samples,
        frames: slice | None,
        n: int,
        space: tuple[slice, ...],
    ) -> np.ndarray:
        """``(n[, t], channels, *spatial)`` float32 of one field (broadcast where constant)."""
        sel: list[Any] = []
        if spec.sample_varying:
            sel.append(samples)
        if spec.time_varying:
            sel.append(frames)
        sel.extend(s for s, v in zip(space, spec.dim_varying, strict=True) if v)
        raw = np.asarray(f[spec.key][tuple(sel)], dtype=np.float32)
        if not spec.sample_varying:
            raw = np.broadcast_to(raw[None], (n, *raw.shape))
        lead = 2 if spec.time_varying else 1
        varying = raw.shape[lead : lead + sum(spec.dim_varying)]
        raw = raw.reshape(*raw.shape[:lead], *varying, len(spec.channels))
        raw = np.moveaxis(raw, -1, lead)  # (n[, t], channels, *varying axes)
        sizes = iter(varying)
        expand, full = [], []
        for size, s, v in zip(self.spatial_shape, space, spec.dim_varying, strict=True):
            m = next(sizes) if v else 1
            expand.append(m)
            full.append(m if v else len(range(size)[s]))
        raw = raw.reshape(*raw.shape[: lead + 1], *expand)
        return np.broadcast_to(raw, (*raw.shape[: lead + 1], *full))

    def read(
        self, f: h5py.File, samples: Samples, frames: slice, space: tuple[slice, ...]
    ) -> np.ndarray:
        """The time-varying fields: ``(n, t, channels, *spatial)`` float32 (see :class:`Layout`)."""
        n = len(range(self.n_samples)[samples]) if isinstance(samples, slice) else len(samples)
        parts = [self._field(f, s, samples, frames, n, space) for s in self.dynamic]
        return np.concatenate(parts, axis=2)

    def read_constant(self, f: h5py.File, samples: Samples, space: tuple[slice, ...]) -> np.ndarray:
        """The time-invariant fields: ``(n, channels, *spatial)`` float32."""
        n = len(range(self.n_samples)[samples]) if isinstance(samples, slice) else len(samples)
        spatial = tuple(
            len(range(size)[s]) for size, s in zip(self.spatial_shape, space, strict=True)
        )
        parts = [self._field(f, s, samples, None, n, space) for s in self.constant]
        if not parts:
            return np.zeros((n, 0, *spatial), dtype=np.float32)
        return np.concatenate(parts, axis=1)

    def read_scalars(
        self, f: h5py.File, samples: Samples, frames: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Time-invariant scalars ``(n, s0)``; time-varying ones at ``frames``, ``(n, t, s1)``."""
        rows = range(self.n_samples)[samples] if isinstance(samples, slice) else samples
        n = len(rows)
        fixed, varying = [], []
        for s in self.scalars:
            data = np.asarray(f[s.key][()], dtype=np.float32)
            if s.sample_varying:
                data = data[np.asarray(rows, dtype=np.int64)]
            else:
                data = np.broadcast_to(
                    data.reshape((1, -1) if s.time_varying else (1,)),
                    (n, self.n_frames) if s.time_varying else (n,),
                )
            if s.time_varying:
                varying.append(data[:, list(frames)])
            else:
                fixed.append(data.reshape(n))
        a = np.stack(fixed, 1) if fixed else np.zeros((n, 0), np.float32)
        b = np.stack(varying, 2) if varying else np.zeros((n, len(frames), 0), np.float32)
        return a.astype(np.float32), b.astype(np.float32)

    def sample_key(self, sample: int) -> str:
        """The datasets of the time-varying fields."""
        return "/".join(s.key for s in self.dynamic)

    def frame_sources(self) -> list[list[tuple[str, int]]] | None:
        """``None``: fields are read through h5py (see :meth:`Layout.frame_sources`)."""
        return None


def _field(
    path: str,
    group: h5py.Group,
    name: str,
    rank: int,
    dims: tuple[str, ...],
    shape: tuple[int, ...],
    n_traj: int,
    n_steps: int,
) -> WellField:
    ds = _member(path, group, name)
    tv, sv = _flag(path, ds, "time_varying"), _flag(path, ds, "sample_varying")
    raw = _attr(path, ds, "dim_varying", "one boolean per spatial axis")
    flags = raw if isinstance(raw, list) else [raw]
    if len(flags) != len(dims) or not all(v in (0, 1) for v in flags):
        raise WellFormatError(
            path, f"dim_varying is {raw!r}, expected {len(dims)} booleans (one per axis)", ds.name
        )
    dv = tuple(bool(v) for v in flags)
    d = len(dims)
    lead = (n_traj,) * sv + (n_steps,) * tv + tuple(n for n, v in zip(shape, dv, strict=True) if v)
    want = lead + (d,) * rank
    flat = rank == 2 and ds.shape == (*lead, d * d)
    if ds.shape != want and not flat:
        raise WellFormatError(
            path,
            f"has shape {ds.shape}, expected {want} = ([n_trajectories,] [T,] *axes with "
            f"dim_varying, {'D, ' * rank}) (sample_varying={sv}, time_varying={tv}, "
            f"dim_varying={list(dv)}, D={d})",
            ds.name,
        )
    if not np.issubdtype(ds.dtype, np.floating):
        raise WellFormatError(path, f"has dtype {ds.dtype}, expected float32", ds.name)
    if rank == 0:
        channels: tuple[str, ...] = (name,)
    elif rank == 1:
        channels = tuple(f"{name}_{a}" for a in dims)
    else:
        channels = tuple(f"{name}_{a}{b}" for a in dims for b in dims)
    return WellField(name, rank, tv, sv, dv, channels, flat)


def well_files(path: str | os.PathLike[str], split: str | None = None) -> list[pathlib.Path]:
    """The HDF5 files of a split: ``path`` is one file, or a dataset folder.

    A dataset folder holds ``train/``, ``valid/``, ``test/`` (or ``data/train/`` ... as The
    Well's download does); each split is every ``*.hdf5``/``*.h5`` file of its folder, sorted
    by name. ``split`` is ``"train"`` (default for folders), ``"valid"`` (or ``"val"``) or
    ``"test"``; a single file is read whole and takes no ``split``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import generate_well, well_files
    >>> root = generate_well(pathlib.Path(tempfile.mkdtemp()) / "adv", n_samples=10, nx=4, nt=3,
    ...                      files_per_split=2)
    >>> [p.name for p in well_files(root, "train")]
    ['well_advection_train_00.hdf5', 'well_advection_train_01.hdf5']
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise PDEBenchFileNotFoundError(
            path, "no such file or folder (expected a Well HDF5 file or a dataset folder)"
        )
    if path.is_file():
        if split is not None:
            raise ValueError(
                f"{path}: split={split!r} needs a dataset folder holding train/valid/test; "
                "a single file is read whole (pass split=None)"
            )
        return [path]
    split = "train" if split is None else split
    _choice("split", split, tuple(SPLIT_FOLDERS))
    folder_name = SPLIT_FOLDERS[split]
    folder = next(
        (p for p in (path / folder_name, path / "data" / folder_name) if p.is_dir()), None
    )
    if folder is None:
        raise WellFormatError(
            path,
            f"no {folder_name!r} folder for split {split!r} (expected {folder_name}/ or "
            f"data/{folder_name}/ holding the split's HDF5 files)",
        )
    files = sorted(p for p in folder.iterdir() if p.suffix in HDF5_SUFFIXES and p.is_file())
    if not files:
        raise WellFormatError(folder, "holds no .hdf5/.h5 file (expected the split's files)")
    return files


class WellDataset(PDEBenchDataset):
    """A dataset of The Well (a folder of splits, or one file) as ``(x, y)`` pairs.

    Items are ``(channels, *spatial)`` like :class:`~liponet.data.PDEBenchDataset`'s, with the
    channel order of :mod:`liponet.data.well` (``channel_names``, ``target_names``); 1-, 2- and
    3-D files; several files per split are read as one sequence of trajectories (file order,
    then trajectory order). Works with :class:`WellStream` (sharded, shuffled streaming) and
    :func:`~liponet.data.compute_stats` (statistics of the time-varying fields).

    Parameters
    ----------
    path
        A dataset folder with ``train/``, ``valid/``, ``test/`` (or ``data/train/`` ...), or one
        HDF5 file (read whole: ``split`` must be ``None``).
    split
        ``"train"`` (folders' default), ``"valid"`` (or ``"val"``) or ``"test"``.
    task
        ``"autoregressive"`` (default): ``initial_step`` frames -> the next frame;
        ``"step"``: frame ``t_in`` -> frame ``t_out``.
    t_in, t_out, initial_step, windows
        As :class:`~liponet.data.PDEBenchDataset` (defaults: one input frame, every window, as
        The Well's own loader).
    reduced_resolution, reduced_resolution_t
        Strides in space (all axes) and time.
    extra_inputs
        Append the time-invariant fields and the scalars to ``x`` (see the channel order).
    on_nonfinite
        ``"raise"`` or ``"skip"``, as :class:`~liponet.data.PDEBenchDataset`.

    Attributes
    ----------
    files
        The split's files.
    grid
        Coordinates by axis name (``dimensions.spatial_dims``, strided) and ``"t"``.
    boundary_conditions
        Boundary condition type per axis name (``"periodic"``, ``"wall"``, ``"open"``).
    periodic
        One bool per axis: ``padding=0`` suits an FNO on a periodic axis, zero padding
        (``LipFNO(padding=...)``) the others.
    grid_type
        The file's ``grid_type`` attribute (``"cartesian"`` when absent).
    channel_names, target_names
        Names of the channels of ``x`` and ``y``.
    n_extra
        Extra input channels (time-invariant fields and scalars) at the end of ``x``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import WellDataset, generate_well
    >>> root = generate_well(pathlib.Path(tempfile.mkdtemp()) / "adv", n_samples=6, nx=8, nt=5,
    ...                      dims=2)
    >>> ds = WellDataset(root, split="train")
    >>> len(ds), ds[0][0].shape, ds[0][1].shape
    (16, torch.Size([4, 8, 8]), torch.Size([1, 8, 8]))
    >>> ds.channel_names, ds.target_names, ds.periodic
    (('tracer', 'velocity_x', 'velocity_y', 'speed'), ('tracer',), (True, True))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        split: str | None = None,
        task: str = "autoregressive",
        t_in: int = 0,
        t_out: int = -1,
        initial_step: int = 1,
        windows: str = "all",
        reduced_resolution: int = 1,
        reduced_resolution_t: int = 1,
        extra_inputs: bool = True,
        on_nonfinite: str = "raise",
    ) -> None:
        _choice("task", task, TASKS)
        _choice("windows", windows, WINDOWS)
        _choice("on_nonfinite", on_nonfinite, NONFINITE)
        self.files = well_files(path, split)
        self.path = pathlib.Path(path)
        self.split: str = (
            split if split is not None else ("all" if self.path.is_file() else "train")
        )
        self.task, self.on_nonfinite = task, on_nonfinite
        self.extra_inputs = bool(extra_inputs)
        self._file = None
        self._pid = None
        self._handles: dict[int, h5py.File] = {}
        self._direct = None
        layouts = []
        for p in self.files:
            with open_h5(p) as f:
                layouts.append(WellLayout.detect(p, f))
        first = layouts[0]
        for lay, p in zip(layouts[1:], self.files[1:], strict=True):
            if lay.signature() != first.signature():
                raise WellFormatError(
                    p,
                    f"axes/fields/sizes differ from the split's first file {self.files[0].name} "
                    f"(expected {first.spatial_shape} points, {first.n_frames} steps, fields "
                    f"{list(first.fields)})",
                )
        self.layouts: list[WellLayout] = layouts
        self._starts = np.cumsum([0] + [lay.n_samples for lay in layouts])
        total = int(self._starts[-1])
        self.layout = dataclasses.replace(first, n_samples=total)
        for name, stride in (
            ("reduced_resolution", reduced_resolution),
            ("reduced_resolution_t", reduced_resolution_t),
        ):
            if not isinstance(stride, int | np.integer) or stride < 1:
                raise EmptySelectionError(
                    self.path, f"{name}={stride!r} leaves nothing; expected an integer >= 1"
                )
        self._frame_ids = range(first.n_frames)[::reduced_resolution_t]
        self._space = tuple(slice(None, None, reduced_resolution) for _ in first.spatial_shape)
        self.grid = {
            k: torch.as_tensor(v[:: (reduced_resolution_t if k == "t" else reduced_resolution)])
            for k, v in first.grid.items()
        }
        self.boundary_conditions = dict(first.boundary)
        self.periodic = first.periodic
        self.grid_type = first.grid_type
        self.indices: Sequence[int] = range(total)
        n_sel = len(self._frame_ids)
        n_fields = len(first.fields)
        if task == "autoregressive":
            self._windows = autoregressive_windows(self.path, initial_step, n_sel, windows)
            self.initial_step = initial_step
            frames_in = initial_step
        else:
            for name, t in (("t_in", t_in), ("t_out", t_out)):
                if not -n_sel <= t < n_sel:
                    raise EmptySelectionError(
                        self.path,
                        f"{name}={t} is out of range: the time stride leaves {n_sel} frames",
                    )
            self._windows = [[t_in % n_sel, t_out % n_sel]]
            frames_in = 1
        names = [
            f"{c}" if frames_in == 1 else f"{c}@{k}" for k in range(frames_in) for c in first.fields
        ]
        if self.extra_inputs:
            names += list(first.constant_channels)
            names += [s.name for s in first.scalars if not s.time_varying]
            tv = [s.name for s in first.scalars if s.time_varying]
            names += [
                f"{s}" if frames_in == 1 else f"{s}@{k}" for k in range(frames_in) for s in tv
            ]
        self.channel_names: tuple[str, ...] = tuple(names)
        self.target_names: tuple[str, ...] = first.fields
        self.in_channels = len(names)
        self.out_channels = n_fields
        self.n_extra = self.in_channels - frames_in * n_fields
        if on_nonfinite == "skip":
            self.indices = self._finite_indices()
            if len(self.indices) == 0:
                raise EmptySelectionError(
                    self.path, f"every sample of split {split!r} is non-finite"
                )

    # -- files -------------------------------------------------------------------------------
    def _h5_of(self, i: int) -> h5py.File:
        if self._pid != os.getpid():
            self._handles = {}
            self._pid = os.getpid()
        if i not in self._handles:
            self._handles[i] = open_h5(self.files[i])
        return self._handles[i]

    def close(self) -> None:
        """Close this process's file handles (they reopen on the next read)."""
        if self._pid == os.getpid():
            for f in self._handles.values():
                f.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        state["_pid"] = None
        return state

    def locate(self, sample: int) -> tuple[pathlib.Path, int]:
        """The file holding dataset sample ``sample`` and its trajectory index there."""
        i = int(np.searchsorted(self._starts, sample, side="right")) - 1
        return self.files[i], sample - int(self._starts[i])

    def _per_file(self, samples: range | Sequence[int]) -> list[tuple[int, Samples]]:
        rows = np.asarray(list(samples), dtype=np.int64)
        which = np.searchsorted(self._starts, rows, side="right") - 1
        out: list[tuple[int, Samples]] = []
        for i in np.unique(which).tolist():
            local = (rows[which == i] - self._starts[i]).tolist()
            if local and local[-1] - local[0] == len(local) - 1:
                out.append((i, slice(local[0], local[-1] + 1)))
            else:
                out.append((i, local))
        return out

    # -- reading -----------------------------------------------------------------------------
    def read_frames(self, samples: range | Sequence[int], positions: Sequence[int]) -> np.ndarray:
        """Time-varying fields at ``positions``: ``(n, len(positions), fields, *spatial)``."""
        ids = [self._frame_ids[p] for p in positions]
        lo, hi = min(ids), max(ids)
        step = self._frame_ids.step
        frames = slice(lo, hi + 1, step)
        take = [(t - lo) // step for t in ids]
        parts = []
        for i, sel in self._per_file(samples):
            block = self.layouts[i].read(self._h5_of(i), sel, frames, self._space)
            parts.append(block[:, take])
        return np.ascontiguousarray(np.concatenate(parts))

    def _read_extra_parts(
        self, samples: range | Sequence[int], positions: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Time-invariant extras ``(n, c0, *spatial)`` and time-varying scalars ``(n, t, s1)``.

        ``c0`` = time-invariant field channels, then one channel per time-invariant scalar
        (broadcast over the grid); the scalars that vary in time are taken at ``positions``.
        """
        ids = [self._frame_ids[p] for p in positions]
        static, varying = [], []
        for i, sel in self._per_file(samples):
            lay, f = self.layouts[i], self._h5_of(i)
            fields = lay.read_constant(f, sel, self._space)
            fixed, tv = lay.read_scalars(f, sel, ids)
            fixed = np.broadcast_to(
                fixed.reshape(*fixed.shape, *[1] * (fields.ndim - 2)),
                (*fixed.shape, *fields.shape[2:]),
            )
            static.append(np.concatenate([fields, fixed], axis=1))
            varying.append(tv)
        return np.concatenate(static), np.concatenate(varying)

    @staticmethod
    def _with_scalars(static: np.ndarray, tv: np.ndarray) -> np.ndarray:
        """``static`` followed by the time-varying scalars ``(n, t, s1)`` broadcast, frame-major."""
        n, spatial = static.shape[0], static.shape[2:]
        flat = tv.reshape(n, -1)
        flat = np.broadcast_to(
            flat.reshape(*flat.shape, *[1] * len(spatial)), (*flat.shape, *spatial)
        )
        return np.ascontiguousarray(np.concatenate([static, flat], axis=1), dtype=np.float32)

    def read_extras(self, samples: range | Sequence[int], positions: Sequence[int]) -> np.ndarray:
        """Extra inputs: ``(n, n_extra, *spatial)``, scalars broadcast over the grid.

        Time-varying scalars are taken at frames ``positions`` (the window's input frames).
        """
        return self._with_scalars(*self._read_extra_parts(samples, positions))

    def _assemble(
        self, samples: range | Sequence[int], windows: list[list[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``x`` ``(n * windows, in_channels, *spatial)``, ``y``, finite mask (sample-major).

        The time-invariant extras are read once for all windows.
        """
        needed = sorted({p for w in windows for p in w})
        where = {p: i for i, p in enumerate(needed)}
        block, frame_ok = self.read_checked(samples, needed)
        n = block.shape[0]
        extras = self.extra_inputs and self.n_extra > 0
        if extras:
            static, tv = self._read_extra_parts(samples, needed)
            static_ok = finite_rows(np.ascontiguousarray(static).reshape(n, -1))
        xs, ys, oks = [], [], []
        for win in windows:
            w = [where[p] for p in win]
            x = block[:, w[:-1]].reshape(n, -1, *block.shape[3:])
            ok = frame_ok[:, w].all(1)
            if extras:
                scalars = tv[:, w[:-1]]
                ok = ok & static_ok & np.isfinite(scalars.reshape(n, -1)).all(1)
                x = np.concatenate([x, self._with_scalars(static, scalars)], axis=1)
            xs.append(x)
            ys.append(block[:, w[-1]])
            oks.append(ok)
        x_all = einops.rearrange(np.stack(xs, 1), "n w c ... -> (n w) c ...")
        y_all = einops.rearrange(np.stack(ys, 1), "n w c ... -> (n w) c ...")
        return x_all, y_all, np.asarray(np.stack(oks, 1).reshape(-1))

    def read_items(
        self, samples: range | Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every item of samples ``samples`` (sorted), as :meth:`PDEBenchDataset.read_items`."""
        x, y, ok = self._assemble(samples, self._windows)
        ids = np.repeat(np.asarray(list(samples)), len(self._windows))
        return x, y, ids, ok

    def check_finite(self, ok: np.ndarray, ids: np.ndarray, policy: str | None = None) -> None:
        """Raise :class:`NonFiniteError` naming the file and trajectory of the first bad item."""
        if (policy or self.on_nonfinite) == "raise" and not ok.all():
            bad = int(ids[np.argmin(ok)])
            path, traj = self.locate(bad)
            raise NonFiniteError(
                path,
                f"trajectory {traj} has NaN/inf values in the selected frames or extra inputs; "
                "pass on_nonfinite='skip' to drop such trajectories",
                self.layout.sample_key(bad),
            )

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"item {item} out of range for {len(self)} items")
        item %= len(self)
        sample = self.indices[item // len(self._windows)]
        w = self._windows[item % len(self._windows)]
        x, y, ok = self._assemble(range(sample, sample + 1), [w])
        self.check_finite(ok, np.array([sample]))
        return torch.from_numpy(x[0]), torch.from_numpy(y[0])

    def extras(self, item: int) -> Tensor:
        """The extra inputs of trajectory ``indices[item]`` at its first frame (for rollouts).

        Returns ``(n_extra, *spatial)``.
        """
        sample = self.indices[item]
        return torch.from_numpy(self.read_extras(range(sample, sample + 1), [0])[0])


class WellStream(PDEBenchStream):
    """:class:`~liponet.data.PDEBenchStream` over a :class:`WellDataset` (same parameters).

    Shuffled, bounded-memory, sharded across processes (``rank``/``world_size``) and
    DataLoader workers; ``**dataset_kwargs`` go to :class:`WellDataset`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import WellStream, generate_well
    >>> root = generate_well(pathlib.Path(tempfile.mkdtemp()) / "adv", n_samples=10, nx=8, nt=4,
    ...                      dims=1)
    >>> stream = WellStream(root, split="train", batch_size=5, block_size=2, rank=0,
    ...                     world_size=2)
    >>> [tuple(x.shape) for x, y in stream]
    [(5, 3, 8), (5, 3, 8), (2, 3, 8)]
    """

    dataset_class = WellDataset
