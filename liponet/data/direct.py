"""Reads of float32 datasets by file offset, with the finite check fused in or done once.

HDF5 stores a contiguous (unchunked, so unfiltered and uncompressed) dataset as one run of bytes
at a fixed file offset, and an uncompressed chunked dataset whose chunks hold whole samples
(chunk shape ``(c, *the rest of the dataset's shape)``) as one run of bytes per chunk; the
released PDEBench 1-D files and ours are contiguous. For such files a sample's frames are plain
byte ranges, read here with ``os.preadv`` straight into their place in the output batch (one
call per run of samples that lie back to back in the file): no HDF5 selection per read, no
intermediate buffer, one copy (the kernel's) as by a plain h5py read of the whole slab, however
the samples are shuffled. Anything else (compressed, external or non-float32 storage, chunks
that split a sample, group-per-sample files, spatial strides) is read through h5py by the
layouts.

NaN/inf check (``finite_check``):

``"every_read"``
    Right after each group of about :data:`CHECK_BYTES` has been read, while it is still in
    the CPU cache, a single reduction checks it (:func:`all_finite`); a failing group is then
    rechecked frame by frame.
``"once"`` (default)
    The same check, but each (sample, frame) found finite is marked with a digest of the
    file's identity (device, inode, size, mtime and ctime in ns, from ``fstat`` on the open
    descriptor right after the read), and later reads of marked frames skip the check while
    the identity is unchanged. The marks live in memory shared with forked DataLoader workers,
    so a frame is checked once per file state, not once per epoch or worker.

Why ``"once"`` is exact under stated assumptions: POSIX updates ctime (and mtime) at the start
of every ``write``/``truncate`` to the file, and ctime cannot be set back by any user call
(``utime`` and ``touch`` set it to *now*). A mark is only made, and only honoured, when the
file's ctime is more than :data:`QUIET_SECONDS` older than the moment before the read, and the
identity right after the read is the marked one. Any write that lands between the marking read
and a later read therefore begins after the ctime seen by both, on a later clock tick (the
kernel stamps ctime with a coarse clock: milliseconds on local Linux filesystems, up to 2 s on
FAT), so it changes the identity and the frames are checked again. What this assumes, and
``"every_read"`` does not: the system clock does not step back; no single ``write`` call into
the file lasts longer than :data:`QUIET_SECONDS`; nobody modifies the file through a memory
map (such writes stamp the times only when a page is first dirtied); a local filesystem (on a
network filesystem another host's writes reach this host's cached attributes late); and the
mark of another identity is taken for this one only on a 64-bit BLAKE2b digest collision
(probability ``2**-64``). Use ``"every_read"`` for files that may change while they are read.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import mmap
import os
import time
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np
import torch

from .errors import CorruptFileError
from .layouts import Layout

__all__ = ["FINITE_CHECKS", "OffsetReader", "all_finite"]

#: Bytes read between two finite checks: the checked data is still in the (L2) cache.
CHECK_BYTES = 512 * 1024
#: Most buffers one ``preadv`` call takes (POSIX guarantees at least 16; Linux allows 1024).
MAX_IOV = 512
#: Policies of the NaN/inf check of reads by file offset (see the module docstring).
FINITE_CHECKS = ("once", "every_read")
#: ``finite_check="once"`` marks and trusts frames only of files whose ctime is older than this.
QUIET_SECONDS = 2.0


def all_finite(a: np.ndarray) -> bool:
    """Whether a contiguous float array is free of NaN/inf, in one memory-bound pass.

    The sum of all entries (torch's vectorized float reduction, the fastest full pass at hand:
    about 3x numpy's BLAS dot ``a . a`` on cached data) is NaN or infinite when any entry is:
    IEEE addition propagates NaN, an infinity stays infinite unless an opposite one meets it,
    and ``inf + -inf`` is NaN. It can also overflow for finite entries (a sum beyond ~3e38), so
    a non-finite result is rechecked entry by entry: the answer is exact either way.

    Examples
    --------
    >>> import numpy as np
    >>> from liponet.data.direct import all_finite
    >>> all_finite(np.full(8, 3e38, np.float32)), all_finite(np.array([1.0, np.nan]))
    (True, False)
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


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def identity_token(identity: tuple[int, ...]) -> int:
    """A nonzero int64 digest (BLAKE2b, 8 bytes) of a file identity tuple."""
    data = b"".join(int(v).to_bytes(16, "little", signed=True) for v in identity)
    token = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
    return token or 1


class OffsetReader:
    """Frames of samples read by file offset (``os.preadv``), with an exact finite check.

    Build with :meth:`probe`, which returns ``None`` unless every dataset the layout reads is
    native float32, contiguous or chunked by whole samples without filters, in a plain
    (``sec2``) file, and there is no spatial stride.

    Parameters
    ----------
    path
        The HDF5 file.
    sources
        Per stored frame, per field: ``(dataset number, byte offset of that frame within a
        sample's record)``.
    bases
        Per dataset number: ``(key, offsets, record)``: the HDF5 key, the ``(N,)`` int64 file
        offsets of each sample's record ``ds[s]`` (its frames back to back) and its bytes.
    frame_shape
        Spatial shape of one frame of one field.
    finite_check
        ``"once"`` or ``"every_read"`` (see :mod:`liponet.data.direct`).

    Notes
    -----
    The file descriptor is opened lazily once per process (safe with fork and DataLoader
    workers) and dropped on pickling. The verification marks (``"once"``: 8 bytes per sample
    and stored frame) are an anonymous shared mapping made here, inherited by forked
    processes; a pickled copy (spawned workers) starts with its own empty marks.

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
        sources: Sequence[Sequence[tuple[int, int]]],
        bases: Sequence[tuple[str, np.ndarray, int]],
        frame_shape: tuple[int, ...],
        finite_check: str = "once",
    ) -> None:
        if finite_check not in FINITE_CHECKS:
            raise ValueError(
                f"finite_check must be one of {', '.join(map(repr, FINITE_CHECKS))}, "
                f"got {finite_check!r}"
            )
        self.path = os.fspath(path)
        self.sources = [[(int(d), int(o)) for d, o in frame] for frame in sources]
        self.keys = [key for key, _, _ in bases]
        self.bases = [np.ascontiguousarray(b, dtype=np.int64) for _, b, _ in bases]
        self.frame_bytes = 4 * int(np.prod(frame_shape))
        #: Bytes of one sample's record per dataset (``ds[s]``: its frames back to back).
        self.records = [int(record) for _, _, record in bases]
        self.frame_shape = tuple(frame_shape)
        self.n_fields = len(self.sources[0])
        self.n_samples = min(len(b) for b in self.bases)
        self.finite_check = finite_check
        self._plans: dict[tuple[int, ...], tuple[list[tuple[int, int, int, int, int]], Any]] = {}
        self._fd: int | None = None
        self._pid: int | None = None
        self._token: tuple[tuple[int, ...], int] = ((), 0)
        self._map: mmap.mmap | None = None
        self._marks: np.ndarray | None = None
        self._whole = self._used = np.zeros(0, dtype=np.int64)
        self._last: tuple[Any, Any] = (None, None)
        if finite_check == "once":
            self._new_marks()

    @classmethod
    def probe(
        cls,
        path: str | os.PathLike[str],
        f: h5py.File,
        layout: Layout,
        space: tuple[slice, ...],
        finite_check: str = "once",
    ) -> OffsetReader | None:
        """An offset reader for ``layout`` in open file ``f``, or ``None`` if h5py must read."""
        keys = layout.frame_sources()
        if not hasattr(os, "preadv"):  # not on Windows (and some platforms): read with h5py
            return None
        if keys is None or f.driver != "sec2" or any(s.step not in (None, 1) for s in space):
            return None
        numbers: dict[str, int] = {}
        bases: list[tuple[str, np.ndarray, int]] = []
        frame_bytes = 4 * int(np.prod(layout.spatial_shape, dtype=np.int64))
        sources = []
        for frame in keys:
            row = []
            for key, position in frame:
                if key not in numbers:
                    try:
                        offsets = _sample_offsets(f[key])
                    except (OSError, RuntimeError, ValueError, KeyError):  # h5py reports it
                        offsets = None
                    if offsets is None:
                        return None
                    numbers[key] = len(bases)
                    record = 4 * int(np.prod(f[key].shape[1:], dtype=np.int64))
                    bases.append((key, offsets, record))
                row.append((numbers[key], position * frame_bytes))
            sources.append(row)
        return cls(path, sources, bases, layout.spatial_shape, finite_check)

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
        state.update(_fd=None, _pid=None, _map=None, _marks=None)
        state["_whole"] = state["_used"] = np.zeros(0, dtype=np.int64)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.finite_check == "once":
            self._new_marks()

    def _new_marks(self) -> None:
        """Empty verification marks in a shared anonymous mapping (zero pages until touched).

        Layout (int64): ``[0]`` nonzero once any per-frame mark was written (until then the
        per-frame region is never touched, so it costs no memory); ``[1 : 1 + N]`` per sample,
        the token under which every stored frame was marked at once; then ``(N, frames)``
        per-frame marks, written only by reads of some of the frames.
        """
        n, n_frames = self.n_samples, len(self.sources)
        self._map = mmap.mmap(-1, 8 * (1 + n + n * n_frames))  # MAP_SHARED | MAP_ANONYMOUS
        words = np.frombuffer(self._map, dtype=np.int64)
        self._used = words[:1]
        self._whole = words[1 : 1 + n]
        self._marks = words[1 + n :].reshape(n, n_frames)

    def verified(self) -> np.ndarray:
        """``(samples, stored frames)`` bool: frames marked finite for the file as it is now.

        Always all ``False`` under ``finite_check="every_read"``.
        """
        if self._marks is None:
            return np.zeros((self.n_samples, len(self.sources)), dtype=bool)
        token = self._current_token(_identity(os.fstat(self._descriptor())))
        whole = np.broadcast_to((self._whole == token)[:, None], self._marks.shape)
        return np.asarray(whole | (self._marks == token)) if self._used[0] else whole.copy()

    def _current_token(self, identity: tuple[int, ...]) -> int:
        if identity != self._token[0]:
            self._token = (identity, identity_token(identity))
        return self._token[1]

    # -- reading -----------------------------------------------------------------------------
    def _plan(self, frames: tuple[int, ...]) -> tuple[list[tuple[int, int, int, int, int]], Any]:
        """Pieces ``(field, first, stop, dataset, offset)`` of a sample's read; marks' columns.

        The columns index ``frames`` into the marks (a slice when they are every stored frame).
        Output positions ``[first, stop)`` of that field are one contiguous byte range of the
        file, starting at ``offset`` bytes into the sample's record of that dataset.
        """
        plan = self._plans.get(frames)
        if plan is not None:
            return plan
        pieces = []
        for k in range(self.n_fields):
            first = 0
            for j in range(1, len(frames) + 1):
                number, offset = self.sources[frames[first]][k]
                if (
                    j < len(frames)
                    and j - first < MAX_IOV
                    and self.sources[frames[j]][k]
                    == (number, offset + (j - first) * self.frame_bytes)
                ):
                    continue
                pieces.append((k, first, j, number, offset))
                first = j
        every = frames == tuple(range(len(self.sources)))
        columns = slice(None) if every else np.asarray(frames, dtype=np.intp)
        self._plans[frames] = plan = (pieces, columns)
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
        if frames is self._last[0]:  # a stream asks for the same frames every time
            key, (pieces, columns) = self._last
        else:
            key = frames if isinstance(frames, tuple) else tuple(int(t) for t in frames)
            pieces, columns = self._plan(key)
            self._last = (key, (pieces, columns))
        rows = np.asarray(samples, dtype=np.int64).reshape(-1)
        n, n_frames = len(rows), len(key)
        out = np.empty((n, n_frames, self.n_fields, *self.frame_shape), dtype=np.float32)
        ok = np.ones((n, n_frames), dtype=bool)
        if out.size == 0:
            return out, ok
        if rows.view(np.uint64).max() >= self.n_samples:  # negatives wrap to huge values
            raise IndexError(
                f"{self.path}: samples must be in [0, {self.n_samples}), got "
                f"{int(rows.min())}..{int(rows.max())}"
            )
        fd = self._descriptor()
        flat = out.reshape(n, -1)
        row_bytes = flat[0].nbytes
        need: np.ndarray | None = None  # rows to check; None: every row
        checking = True
        marks, token = self._marks, 0
        if marks is not None:
            now_ns = time.time_ns()  # before the read (see the module docstring)
            before = _identity(os.fstat(fd))
            if before[4] + int(QUIET_SECONDS * 1e9) < now_ns:
                token = self._current_token(before)
                whole_hit = self._whole[rows] == token
                if whole_hit.all():  # every frame of every row marked
                    need, checking = np.zeros(n, dtype=bool), False
                elif not self._used[0]:  # no per-frame marks anywhere
                    need = None if not whole_hit.any() else ~whole_hit
                else:
                    hit = marks[rows][:, columns] == token
                    hit |= whole_hit[:, None]
                    rows_hit = hit.all(axis=1)
                    if rows_hit.all():
                        need, checking = np.zeros(n, dtype=bool), False
                    elif rows_hit.any():
                        need = ~rows_hit
            else:
                marks = None  # a file changed lately: check every read, mark nothing
        group = max(1, CHECK_BYTES // row_bytes) if checking else n
        number, offset = pieces[0][3], pieces[0][4]
        whole = len(pieces) == 1 and offset == 0 and row_bytes == self.records[number]
        if whole and not checking:
            # Nothing to check: the records in file order, each run of records lying back to
            # back in the file read by one call, each record into its own row (any order).
            starts = self.bases[number][rows].tolist()
            order = sorted(range(n), key=starts.__getitem__) if n > 1 else [0]
            view = flat.data.cast("B")
            i = 0
            while i < n:
                at = starts[order[i]]
                j = i + 1
                while j < n and j - i < MAX_IOV and starts[order[j]] == at + (j - i) * row_bytes:
                    j += 1
                bufs: list[Any] = [view[r * row_bytes : (r + 1) * row_bytes] for r in order[i:j]]
                if os.preadv(fd, bufs, at) != (j - i) * row_bytes:
                    self._read_fully(fd, bufs, at, self.keys[number])
                i = j
        elif whole:
            # One piece covering a whole record of one dataset: samples whose records lie back
            # to back in the file are one byte range, read into consecutive rows by one call
            # (cut at the check groups, each group checked right after its read, in cache).
            starts = self.bases[number][rows].tolist()
            cuts = [k for k in range(1, n) if starts[k] - starts[k - 1] != row_bytes]
            if group < n:
                cuts = sorted({*cuts, *range(group, n, group)})
            i = 0
            for j in [*cuts, n]:
                bufs = [flat[i:j]]
                if os.preadv(fd, bufs, starts[i]) != (j - i) * row_bytes:
                    self._read_fully(fd, bufs, starts[i], self.keys[number])
                if checking and (j % group == 0 or j == n):
                    self._check(out, ok, need, j - 1 - (j - 1) % group, j)
                i = j
        else:
            for start in range(0, n, group):
                stop = min(start + group, n)
                for i in range(start, stop):
                    self._read_row(fd, out[i], int(rows[i]), pieces)
                if checking:
                    self._check(out, ok, need, start, stop)
        if marks is not None:
            if _identity(os.fstat(fd)) != before:  # changed during the read: trust nothing
                if need is not None:
                    skipped = ~need
                    for start in range(0, n, group):
                        self._check(out, ok, skipped, start, min(start + group, n))
            elif checking:
                good = ok.all(axis=1) if need is None else need & ok.all(axis=1)
                marked = rows if good.all() else rows[good]
                if isinstance(columns, slice):  # every stored frame: one mark per sample
                    self._whole[marked] = token
                else:
                    self._used[0] = 1
                    marks[marked[:, None], columns] = token
                partial = ~ok.all(axis=1) & ok.any(axis=1)
                for r in np.flatnonzero(partial):  # some frames finite: mark those
                    self._used[0] = 1
                    marks[rows[r], np.asarray(key)[ok[r]]] = token
        return out, ok

    def _read_row(
        self,
        fd: int,
        row: np.ndarray,
        sample: int,
        pieces: list[tuple[int, int, int, int, int]],
    ) -> None:
        single = self.n_fields == 1
        for k, first, end, number, offset in pieces:
            bufs: list[Any] = (
                [row[first:end, 0]] if single else [row[j, k] for j in range(first, end)]
            )
            where = int(self.bases[number][sample]) + offset
            if os.preadv(fd, bufs, where) != (end - first) * self.frame_bytes:
                self._read_fully(fd, bufs, where, self.keys[number])

    @staticmethod
    def _check(
        out: np.ndarray, ok: np.ndarray, need: np.ndarray | None, start: int, stop: int
    ) -> None:
        """Set ``ok`` for rows ``[start, stop)`` that ``need`` a check.

        ``need=None``: all of them, by one reduction while they are still in cache.
        """
        rows: Sequence[int]
        if need is None:
            if all_finite(out[start:stop]):
                return
            rows = range(start, stop)
        else:
            rows = [i for i in range(start, stop) if need[i] and not all_finite(out[i])]
        n_frames = out.shape[1]
        for i in rows:
            ok[i] = np.isfinite(out[i].reshape(n_frames, -1)).all(axis=1)

    def _read_fully(self, fd: int, bufs: list[Any], where: int, key: str) -> None:
        """Retry a short read piece by piece; the end of the file means a truncated file."""
        for buf in bufs:
            view = (buf.data if isinstance(buf, np.ndarray) else memoryview(buf)).cast("B")
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


def _sample_offsets(ds: h5py.Dataset) -> np.ndarray | None:
    """File offset of each sample's record (``ds[s]``) of a dataset read by offset, or None.

    The dataset must be native float32 in the file itself (no external storage, no filters),
    either contiguous and allocated, or chunked with chunks of whole samples
    (``chunks[1:] == shape[1:]``), every chunk allocated at its full size.
    """
    if ds.dtype != np.dtype(np.float32) or not ds.dtype.isnative or ds.ndim < 1:
        return None
    plist = ds.id.get_create_plist()
    if plist.get_external_count() or plist.get_nfilters():
        return None
    n = ds.shape[0]
    record = 4 * int(np.prod(ds.shape[1:], dtype=np.int64))
    if ds.chunks is None:
        if plist.get_layout() != h5py.h5d.CONTIGUOUS:
            return None
        offset = ds.id.get_offset()
        if offset is None:
            return None
        return int(offset) + record * np.arange(n, dtype=np.int64)
    per_chunk = ds.chunks[0]
    if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]) or not hasattr(ds.id, "chunk_iter"):
        return None
    n_chunks = -(-n // per_chunk)
    starts = np.full(n_chunks, -1, dtype=np.int64)
    sizes_ok = [True]

    def visit(info: Any) -> None:
        if info.size != per_chunk * record or info.filter_mask:
            sizes_ok[0] = False
        starts[info.chunk_offset[0] // per_chunk] = info.byte_offset

    ds.id.chunk_iter(visit)
    if not sizes_ok[0] or (starts < 0).any():  # unallocated chunks read as fill values
        return None
    s = np.arange(n, dtype=np.int64)
    return starts[s // per_chunk] + (s % per_chunk) * record
