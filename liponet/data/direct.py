"""Reads of contiguous float32 datasets by file offset, with the finite check fused in.

HDF5 stores a contiguous (unchunked, so unfiltered and uncompressed) dataset as one run of bytes
at a fixed file offset; the released PDEBench 1-D files and ours are stored so. For such files a
sample's frames are plain byte ranges, read here with ``os.preadv`` straight into their place in
the output batch: no HDF5 selection per read, no intermediate buffer, one copy (the kernel's)
as by a plain h5py read of the whole slab, however the samples are shuffled. Right after each
group of about :data:`CHECK_BYTES` has been read, while it is still in the CPU cache, a single
reduction checks it for NaN/inf (:func:`all_finite`); a failing group is then rechecked frame by
frame. Anything else (chunked, compressed, external or non-float32 storage, group-per-sample files,
spatial strides) is read through h5py by the layouts.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np
import torch

from .errors import CorruptFileError
from .layouts import Layout

__all__ = ["OffsetReader", "all_finite"]

#: Bytes read between two finite checks: the checked data is still in the (L2) cache.
CHECK_BYTES = 512 * 1024
#: Most buffers one ``preadv`` call takes (POSIX guarantees at least 16; Linux allows 1024).
MAX_IOV = 512


def all_finite(a: np.ndarray) -> bool:
    """Whether a contiguous float array is free of NaN/inf, in one memory-bound pass.

    The sum of all entries (torch's vectorized float reduction, the fastest full pass at hand:
    about 3x numpy's BLAS dot ``a . a`` on cached data) is NaN or infinite when any entry is:
    IEEE addition propagates NaN, an infinity stays infinite unless an opposite one meets it,
    and ``inf + -inf`` is NaN. It can also overflow for finite entries (a sum beyond ~3e38), so
    a non-finite result is rechecked entry by entry: the answer is exact either way.
    """
    flat = a.reshape(-1)
    if flat.size == 0:
        return True
    if flat.dtype in _TORCH_FLOATS and flat.flags.c_contiguous:
        total = float(torch.from_numpy(flat).sum())
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            total = float(np.sum(flat))
    if math.isfinite(total):
        return True
    return bool(np.isfinite(flat).all())


_TORCH_FLOATS = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))


class OffsetReader:
    """Frames of samples read by file offset (``os.preadv``), with a fused finite check.

    Build with :meth:`probe`, which returns ``None`` unless every dataset the layout reads is
    contiguous native float32 in a plain (``sec2``) file, and there is no spatial stride.

    Parameters
    ----------
    path
        The HDF5 file.
    sources
        Per stored frame, per field: ``(offset of that frame of sample 0, bytes between
        samples, dataset key)``.
    frame_shape
        Spatial shape of one frame of one field.

    Notes
    -----
    The file descriptor is opened lazily once per process (safe with fork and DataLoader
    workers) and dropped on pickling.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import generate
    >>> from liponet.data.direct import OffsetReader
    >>> from liponet.data.layouts import detect_layout, open_h5
    >>> path = generate("advection", pathlib.Path(tempfile.mkdtemp()) / "a.hdf5",
    ...                 n_samples=8, nx=16, nt=4)
    >>> with open_h5(path) as f:
    ...     reader = OffsetReader.probe(path, f, detect_layout(path, f), (slice(None),))
    >>> block, ok = reader.read([5, 2], [0, 3])
    >>> block.shape, ok.all()  # (samples, frames, fields, x)
    ((2, 2, 1, 16), np.True_)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sources: Sequence[Sequence[tuple[int, int, str]]],
        frame_shape: tuple[int, ...],
    ) -> None:
        self.path = os.fspath(path)
        self.sources = [list(frame) for frame in sources]
        self.frame_shape = tuple(frame_shape)
        self.n_fields = len(self.sources[0])
        self.frame_bytes = 4 * int(np.prod(self.frame_shape))
        self._plans: dict[tuple[int, ...], list[tuple[int, int, int, int, int]]] = {}
        self._fd: int | None = None
        self._pid: int | None = None

    @classmethod
    def probe(
        cls, path: str | os.PathLike[str], f: h5py.File, layout: Layout, space: tuple[slice, ...]
    ) -> OffsetReader | None:
        """An offset reader for ``layout`` in open file ``f``, or ``None`` if h5py must read."""
        keys = layout.frame_sources()
        if not hasattr(os, "preadv"):  # not on Windows (and some platforms): read with h5py
            return None
        if keys is None or f.driver != "sec2" or any(s.step not in (None, 1) for s in space):
            return None
        sources = []
        for frame in keys:
            row = []
            for key, position in frame:
                ds = f[key]
                try:
                    offset = _contiguous_offset(ds)
                except (OSError, RuntimeError, ValueError):  # h5py reports the damage on read
                    offset = None
                if offset is None:
                    return None
                per_sample = 4 * int(np.prod(ds.shape[1:], dtype=np.int64))
                frame_bytes = 4 * int(np.prod(layout.spatial_shape, dtype=np.int64))
                row.append((offset + position * frame_bytes, per_sample, key))
            sources.append(row)
        return cls(path, sources, layout.spatial_shape)

    # -- file handling -----------------------------------------------------------------------
    def _descriptor(self) -> int:
        if self._fd is None or self._pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            self._pid = os.getpid()
        return self._fd

    def close(self) -> None:
        """Close this process's descriptor (it reopens on the next read)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_fd"] = None
        state["_pid"] = None
        return state

    # -- reading -----------------------------------------------------------------------------
    def _plan(self, frames: tuple[int, ...]) -> list[tuple[int, int, int, int, int]]:
        """Pieces ``(field, first, stop, offset, stride)`` of one sample's read.

        Output positions ``[first, stop)`` of that field are one contiguous byte range of the
        file, starting at ``offset + sample * stride``.
        """
        plan = self._plans.get(frames)
        if plan is not None:
            return plan
        plan = []
        for k in range(self.n_fields):
            first = 0
            for j in range(1, len(frames) + 1):
                offset, stride, _ = self.sources[frames[first]][k]
                if (
                    j < len(frames)
                    and j - first < MAX_IOV
                    and self.sources[frames[j]][k][:2]
                    == (offset + (j - first) * self.frame_bytes, stride)
                ):
                    continue
                plan.append((k, first, j, offset, stride))
                first = j
        self._plans[frames] = plan
        return plan

    def read(self, samples: Sequence[int], frames: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Stored frames ``frames`` of samples ``samples`` (any order, repeats allowed).

        Returns
        -------
        block
            ``(len(samples), len(frames), fields, *spatial)`` float32, in the given orders.
        ok
            ``(len(samples), len(frames))`` bool: which frames are free of NaN/inf.
        """
        plan = self._plan(frames if isinstance(frames, tuple) else tuple(int(t) for t in frames))
        fd = self._descriptor()
        n, n_frames = len(samples), len(frames)
        out = np.empty((n, n_frames, self.n_fields, *self.frame_shape), dtype=np.float32)
        ok = np.ones((n, n_frames), dtype=bool)
        if out.size == 0:
            return out, ok
        flat = out.reshape(n, -1)
        group = max(1, CHECK_BYTES // flat[0].nbytes)
        single = self.n_fields == 1
        # One piece covering a whole sample, samples back to back in the file: a run of
        # consecutive samples is one byte range, read into consecutive rows by one call.
        whole = single and len(plan) == 1 and plan[0][4] == flat[0].nbytes
        for start in range(0, n, group):
            stop = min(start + group, n)
            i = start
            while i < stop:
                sample = int(samples[i])
                if whole:
                    j = i + 1
                    while j < stop and int(samples[j]) == sample + (j - i):
                        j += 1
                    _, _, _, offset, stride = plan[0]
                    bufs: list[Any] = [flat[i:j]]
                    where = offset + sample * stride
                    if os.preadv(fd, bufs, where) != (j - i) * stride:
                        key = self.sources[frames[0]][0][2]
                        self._read_fully(fd, bufs, where, key)
                    i = j
                    continue
                row = out[i]
                for k, first, end, offset, stride in plan:
                    bufs = [row[first:end, 0]] if single else [row[j, k] for j in range(first, end)]
                    where = offset + sample * stride
                    if os.preadv(fd, bufs, where) != (end - first) * self.frame_bytes:
                        self._read_fully(fd, bufs, where, self.sources[frames[first]][k][2])
                i += 1
            if not all_finite(flat[start:stop]):  # still in cache: one reduction per group
                for i in range(start, stop):
                    ok[i] = np.isfinite(out[i].reshape(n_frames, -1)).all(axis=1)
        return out, ok

    def _read_fully(self, fd: int, bufs: list[np.ndarray], where: int, key: str) -> None:
        """Retry a short read piece by piece; the end of the file means a truncated file."""
        for buf in bufs:
            view = memoryview(buf.data).cast("B")
            done = 0
            while done < len(view):
                got = os.preadv(fd, [view[done:]], where + done)
                if got == 0:
                    raise CorruptFileError(
                        self.path,
                        f"data ends at byte {where + done}, expected {len(view) - done} more "
                        "(truncated file)",
                        key,
                    )
                done += got
            where += len(view)


def _contiguous_offset(ds: h5py.Dataset) -> int | None:
    """File offset of a contiguous, allocated, native float32 dataset stored in the file."""
    if ds.dtype != np.dtype(np.float32) or not ds.dtype.isnative or ds.chunks is not None:
        return None
    plist = ds.id.get_create_plist()
    if plist.get_layout() != h5py.h5d.CONTIGUOUS or plist.get_external_count():
        return None
    offset = ds.id.get_offset()
    return None if offset is None else int(offset)
