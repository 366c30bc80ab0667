"""The PDEBench on-disk layouts: detection, validation and strided slab reads.

Every layout reads a contiguous range of samples as one float32 array of shape
``(samples, frames, fields, *spatial)`` (the in-memory convention, converted once, here).
Darcy files are read as two frames: frame 0 is the coefficient ``nu``, frame 1 the solution.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import einops
import h5py
import numpy as np
from h5py import h5s

from .errors import (
    CorruptFileError,
    MissingKeyError,
    NotHDF5Error,
    PDEBenchFileNotFoundError,
    SizeMismatchError,
    UnknownLayoutError,
    UnreadableFileError,
    WrongRankError,
)

__all__ = [
    "CFDLayout",
    "DarcyLayout",
    "GroupLayout",
    "Layout",
    "SingleArrayLayout",
    "detect_layout",
    "open_h5",
]

#: A contiguous sample slice, or sorted sample indices (read as one h5py selection).
Samples = slice | list[int]

#: Spatial axis names, in order, and the coordinate keys of the array layouts.
AXES = ("x", "y", "z")
CFD_FIELDS = ("density", "pressure", "Vx", "Vy", "Vz")


def open_h5(path: str | os.PathLike[str]) -> h5py.File:
    """Open ``path`` read-only, turning every failure into a :class:`PDEBenchFormatError`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise PDEBenchFileNotFoundError(path, "no such file (expected a PDEBench HDF5 file)")
    if os.path.isdir(path):
        raise NotHDF5Error(path, "is a directory, expected an HDF5 file")
    try:
        with open(path, "rb") as probe:
            probe.read(8)
    except OSError as err:
        raise UnreadableFileError(
            path, f"cannot be read ({err.strerror or type(err).__name__}); check its permissions"
        ) from None
    if not h5py.is_hdf5(path):
        raise NotHDF5Error(path, "not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(
            path, f"HDF5 file cannot be opened (truncated or corrupt): {err}"
        ) from err


def read_array(f: h5py.File, key: str, selection: tuple[object, ...] = ()) -> np.ndarray:
    """``f[key][selection]`` as float32, with format errors instead of h5py tracebacks."""
    ds = _dataset(f, key)
    try:
        if selection and isinstance(selection[0], list):
            return _read_rows(ds, selection[0], selection[1:])
        return np.asarray(ds[selection] if selection else ds[()], dtype=np.float32)
    except (OSError, RuntimeError) as err:
        raise CorruptFileError(
            f.filename, f"cannot read data (truncated or corrupt): {err}", key
        ) from err


def _read_rows(ds: h5py.Dataset, rows: list[int], rest: tuple[object, ...]) -> np.ndarray:
    """Sorted ``rows`` of the first axis (with ``rest`` on the others) into one array.

    Each run of consecutive rows is one hyperslab read straight into its (contiguous) place in
    the output through h5py's low-level API: one large HDF5 I/O call per run, without h5py's
    per-call selection machinery, and no HDF5 gather buffer (unlike a point selection).
    """
    starts, counts, strides, shape = [0], [1], [1], [len(rows)]
    for axis, sel in enumerate(rest, start=1):
        if isinstance(sel, slice):
            r = range(*sel.indices(ds.shape[axis]))
            starts.append(r.start)
            counts.append(len(r))
            strides.append(r.step)
            shape.append(len(r))
        elif isinstance(sel, int | np.integer):
            starts.append(int(sel))
            counts.append(1)
            strides.append(1)
        else:
            raise TypeError(f"unsupported selection {sel!r}")
    for n in ds.shape[1 + len(rest) :]:
        starts.append(0)
        counts.append(n)
        strides.append(1)
        shape.append(n)
    out = np.empty(shape, dtype=np.float32)
    if out.size == 0:
        return out
    if ds.dtype != np.float32:
        for i, row in enumerate(rows):
            out[i] = ds[(row, *rest)]
        return out
    fspace = ds.id.get_space()
    first = 0
    while first < len(rows):
        last = first + 1
        while last < len(rows) and rows[last] == rows[last - 1] + 1:
            last += 1
        starts[0], counts[0] = rows[first], last - first
        fspace.select_hyperslab(tuple(starts), tuple(counts), tuple(strides))
        dest = out[first:last]  # contiguous
        ds.id.read(h5s.create_simple(dest.shape), fspace, dest)
        first = last
    return out


def _dataset(f: h5py.File | h5py.Group, key: str) -> h5py.Dataset:
    filename = f.file.filename
    try:
        obj = f.get(key)
    except (OSError, RuntimeError, KeyError) as err:
        raise CorruptFileError(filename, f"cannot read the key (corrupt file): {err}", key) from err
    if obj is None:
        raise MissingKeyError(filename, "missing key, required by this layout", key)
    if not isinstance(obj, h5py.Dataset):
        raise WrongRankError(filename, "expected a dataset, found a group", key)
    return obj


@dataclass
class Layout(ABC):
    """A detected layout: sizes, field names and coordinates (all read from the file).

    Attributes
    ----------
    n_samples, n_frames
        Samples and stored frames (Darcy: 2, coefficient then solution).
    spatial_shape
        Points per spatial axis.
    fields
        Channel names, in channel order.
    grid
        Coordinates by axis name (``x``, ``y``, ``z``, and ``t`` = the frame times).
    """

    path: str
    n_samples: int
    n_frames: int
    spatial_shape: tuple[int, ...]
    fields: tuple[str, ...]
    grid: dict[str, np.ndarray] = field(repr=False)

    kind: ClassVar[str]
    #: Which end of the file PDEBench's test split takes.
    test_at_end: ClassVar[bool] = False
    #: Whether the time stride applies (Darcy has no time axis).
    has_time: ClassVar[bool] = True

    @abstractmethod
    def read(
        self, f: h5py.File, samples: Samples, frames: slice, space: tuple[slice, ...]
    ) -> np.ndarray:
        """Read a slab: ``(n, t, fields, *spatial)`` float32.

        ``samples`` is a contiguous slice or a sorted list of sample indices (one selection, no
        intermediate copy), ``frames`` a (strided) frame slice and
        ``space`` one (strided) slice per spatial axis.
        """

    def sample_key(self, sample: int) -> str:
        """The HDF5 key(s) holding sample ``sample`` (for error messages)."""
        return "/".join(self.fields)

    def frame_sources(self) -> list[list[tuple[str, int]]] | None:
        """Where each stored frame of each field lives, for reads by file offset.

        ``[frame][field] = (key, position)``: the dataset, shaped ``(N, ...)``, and the frame's
        index among the frames each of its samples stores; ``None`` when samples do not live
        in a few ``(N, ...)`` datasets.
        """
        return [[(key, t) for key in self.fields] for t in range(self.n_frames)]


def _spatial(path: str, f: h5py.File, shape: Sequence[int], key: str, prefix: str) -> dict:
    grid = {}
    for axis, n in zip(AXES, shape, strict=False):
        name = f"{prefix}{axis}-coordinate" if not prefix.endswith("/") else f"{prefix}{axis}"
        coord = read_array(f, name).reshape(-1)
        if coord.shape[0] != n:
            raise WrongRankError(
                path, f"has {coord.shape[0]} points, expected {n} to match {key!r}", name
            )
        grid[axis] = coord
    return grid


def _time(path: str, f: h5py.File, key: str, n_frames: int, name: str) -> np.ndarray:
    t = read_array(f, name).reshape(-1)
    if t.shape[0] < n_frames:
        raise WrongRankError(path, f"has {t.shape[0]} times, expected >= {n_frames} frames", name)
    return t[:n_frames]


def check_storage(path: str, ds: h5py.Dataset, key: str) -> None:
    """Refuse an array whose declared size the file does not store.

    HDF5 lets a dataset declare any shape and allocate storage later: unwritten parts read as
    the fill value (zeros). A 7 KB file can so declare 10**7 samples. Contiguous arrays must
    store every declared byte inside the file; chunked ones every chunk (compression may make
    chunks small, but each must exist). External and virtual datasets are not checked.

    Raises
    ------
    SizeMismatchError
        Naming the key, the declared shape and bytes, and what the file holds.
    """
    try:
        if ds.is_virtual or ds.external:
            return
        declared = int(ds.size) * ds.dtype.itemsize
        shape = tuple(ds.shape)
        if ds.chunks is None:
            stored = int(ds.id.get_storage_size())
            offset = ds.id.get_offset()
            size = os.path.getsize(path)
            if stored < declared:
                raise SizeMismatchError(
                    path,
                    f"declares shape {shape} ({declared:,} bytes of {ds.dtype}) but stores "
                    f"{stored:,} bytes; the rest would read as fill values (a placeholder or "
                    "unfinished file)",
                    key,
                )
            if offset is not None and offset + stored > size:
                raise SizeMismatchError(
                    path,
                    f"declares {stored:,} bytes at offset {offset:,} but the file has only "
                    f"{size:,} bytes (truncated)",
                    key,
                )
            return
        expected = 1
        for n, c in zip(shape, ds.chunks, strict=True):
            expected *= -(-n // c)
        allocated = int(ds.id.get_num_chunks())
    except (OSError, RuntimeError) as err:
        raise CorruptFileError(path, f"cannot read the storage layout: {err}", key) from err
    if allocated < expected:
        raise SizeMismatchError(
            path,
            f"declares shape {shape} in {expected:,} chunks of {ds.chunks} but stores only "
            f"{allocated:,}; the rest would read as fill values (a placeholder or unfinished "
            "file)",
            key,
        )


def _check_rank(path: str, ds: h5py.Dataset, key: str, ranks: Sequence[int], what: str) -> None:
    if ds.ndim not in ranks:
        expected = " or ".join(str(r) for r in ranks)
        raise WrongRankError(
            path, f"has rank {ds.ndim} {ds.shape}, expected rank {expected} {what}", key
        )


class SingleArrayLayout(Layout):
    """``tensor`` ``(N, t, *spatial)`` with ``x-coordinate`` (...) and ``t-coordinate``."""

    kind: ClassVar[str] = "single-array"

    @classmethod
    def detect(cls, path: str, f: h5py.File) -> SingleArrayLayout:
        """Validate keys and shapes."""
        ds = _dataset(f, "tensor")
        _check_rank(path, ds, "tensor", (3, 4, 5), "(N, t, *spatial) with 1-3 spatial axes")
        check_storage(path, ds, "tensor")
        n, nt, *space = ds.shape
        grid = _spatial(path, f, space, "tensor", "")
        grid["t"] = _time(path, f, "tensor", nt, "t-coordinate")
        return cls(path, n, nt, tuple(space), ("tensor",), grid)

    def read(
        self, f: h5py.File, samples: Samples, frames: slice, space: tuple[slice, ...]
    ) -> np.ndarray:
        """See :meth:`Layout.read`."""
        data = read_array(f, "tensor", (samples, frames, *space))
        return data[:, :, None]


class CFDLayout(Layout):
    """``density``, ``pressure``, ``Vx`` [, ``Vy``, ``Vz``], each ``(N, t, *spatial)``."""

    kind: ClassVar[str] = "cfd"

    @classmethod
    def detect(cls, path: str, f: h5py.File) -> CFDLayout:
        """Validate keys and shapes; velocity components follow the spatial rank."""
        first = _dataset(f, "density")
        _check_rank(path, first, "density", (3, 4, 5), "(N, t, *spatial) with 1-3 spatial axes")
        n, nt, *space = first.shape
        fields = ("density", "pressure", *[f"V{a}" for a in AXES[: len(space)]])
        for key in fields:
            ds = _dataset(f, key)
            if ds.shape != first.shape:
                raise WrongRankError(path, f"has shape {ds.shape}, expected {first.shape}", key)
            check_storage(path, ds, key)
        grid = _spatial(path, f, space, "density", "")
        grid["t"] = _time(path, f, "density", nt, "t-coordinate")
        return cls(path, n, nt, tuple(space), fields, grid)

    def read(
        self, f: h5py.File, samples: Samples, frames: slice, space: tuple[slice, ...]
    ) -> np.ndarray:
        """See :meth:`Layout.read`."""
        return np.stack([read_array(f, k, (samples, frames, *space)) for k in self.fields], 2)


class DarcyLayout(Layout):
    """``nu`` ``(N, *spatial)`` and ``tensor`` ``(N, 1, *spatial)``, read as two frames."""

    kind: ClassVar[str] = "darcy"
    has_time: ClassVar[bool] = False

    @classmethod
    def detect(cls, path: str, f: h5py.File) -> DarcyLayout:
        """Validate keys and shapes."""
        nu, sol = _dataset(f, "nu"), _dataset(f, "tensor")
        _check_rank(path, nu, "nu", (2, 3, 4), "(N, *spatial)")
        if sol.shape != (nu.shape[0], 1, *nu.shape[1:]):
            raise WrongRankError(
                path,
                f"has shape {sol.shape}, expected (N, 1, *spatial) = "
                f"{(nu.shape[0], 1, *nu.shape[1:])} to match 'nu'",
                "tensor",
            )
        check_storage(path, nu, "nu")
        check_storage(path, sol, "tensor")
        grid = _spatial(path, f, nu.shape[1:], "nu", "")
        return cls(path, nu.shape[0], 2, tuple(nu.shape[1:]), ("tensor",), grid)

    def read(
        self, f: h5py.File, samples: Samples, frames: slice, space: tuple[slice, ...]
    ) -> np.ndarray:
        """See :meth:`Layout.read` (frame 0 = ``nu``, frame 1 = ``tensor``)."""
        wanted = range(2)[frames]
        parts = [
            read_array(f, "nu", (samples, *space))
            if t == 0
            else read_array(f, "tensor", (samples, 0, *space))
            for t in wanted
        ]
        return np.stack(parts, 1)[:, :, None]

    def sample_key(self, sample: int) -> str:
        """Darcy samples live in ``nu`` and ``tensor``."""
        return "nu/tensor"

    def frame_sources(self) -> list[list[tuple[str, int]]] | None:
        """Frame 0 is ``nu``, frame 1 ``tensor`` (see :meth:`Layout.frame_sources`)."""
        return [[("nu", 0)], [("tensor", 0)]]


@dataclass
class GroupLayout(Layout):
    """One group per sample (sorted keys).

    Each group holds ``data`` ``(t, *spatial, fields)`` and ``grid/x`` [, ``grid/y``,
    ``grid/z``], ``grid/t``.
    """

    keys: list[str] = field(default_factory=list, repr=False)

    kind: ClassVar[str] = "group-per-sample"
    test_at_end: ClassVar[bool] = True

    @classmethod
    def detect(cls, path: str, f: h5py.File) -> GroupLayout:
        """Validate the groups: the first one's shapes, every one's storage.

        Other groups' shapes are checked when read; every group must store the bytes its
        ``data`` declares (:func:`check_storage`).
        """
        keys = sorted(f.keys())
        first = keys[0]
        ds = _dataset(f, f"{first}/data")
        _check_rank(path, ds, f"{first}/data", (3, 4, 5), "(t, *spatial, fields)")
        for key in keys:  # metadata only: every group must store what it declares
            data = f.get(f"{key}/data")
            if isinstance(data, h5py.Dataset):  # (a missing one is reported when read)
                check_storage(path, data, f"{key}/data")
        nt, *space, nf = ds.shape
        grid = _spatial(path, f, space, f"{first}/data", f"{first}/grid/")
        grid["t"] = _time(path, f, f"{first}/data", nt, f"{first}/grid/t")
        fields = tuple(f"data[..., {c}]" for c in range(nf))
        return cls(path, len(keys), nt, tuple(space), fields, grid, keys=keys)

    def read(
        self, f: h5py.File, samples: Samples, frames: slice, space: tuple[slice, ...]
    ) -> np.ndarray:
        """See :meth:`Layout.read`."""
        expected = (self.n_frames, *self.spatial_shape, len(self.fields))
        out = []
        rows = range(len(self.keys))[samples] if isinstance(samples, slice) else samples
        for key in (self.keys[i] for i in rows):
            ds = _dataset(f, f"{key}/data")
            if ds.shape != expected:
                raise WrongRankError(
                    self.path,
                    f"has shape {ds.shape}, expected {expected} like the first group",
                    f"{key}/data",
                )
            data = read_array(f, f"{key}/data", (frames, *space))
            out.append(einops.rearrange(data, "t ... c -> t c ..."))
        return np.stack(out)

    def sample_key(self, sample: int) -> str:
        """The sample's group ``data``."""
        return f"{self.keys[sample]}/data"

    def frame_sources(self) -> list[list[tuple[str, int]]] | None:
        """``None``: one dataset per sample, with the fields interleaved last."""
        return None


def detect_layout(path: str | os.PathLike[str], f: h5py.File) -> Layout:
    """Recognise the layout from the keys of an open file.

    Raises
    ------
    UnknownLayoutError
        If the keys match no PDEBench layout.
    MissingKeyError, WrongRankError, CorruptFileError
        If they match one but arrays are missing or misshapen.
    """
    path = os.fspath(path)
    try:
        keys = set(f.keys())
        groups = keys and all(isinstance(f.get(k, getlink=False), h5py.Group) for k in keys)
    except (OSError, RuntimeError) as err:
        raise CorruptFileError(path, f"cannot list the keys (corrupt file): {err}") from err
    if {"tensor", "nu"} <= keys:
        return DarcyLayout.detect(path, f)
    if "tensor" in keys:
        return SingleArrayLayout.detect(path, f)
    if keys & set(CFD_FIELDS):
        return CFDLayout.detect(path, f)
    if groups:
        return GroupLayout.detect(path, f)
    listed = ", ".join(sorted(keys)[:8]) or "none"
    raise UnknownLayoutError(
        path,
        f"keys [{listed}] match no PDEBench layout; expected 'tensor' (+ coordinates), "
        "'nu' + 'tensor' (Darcy), 'density'/'pressure'/'Vx' (CFD) or one group per sample "
        "holding 'data'",
    )
