"""Map-style PDEBench dataset: PDEBench's strides, caps and splits, items ``(x, y)``."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import einops
import h5py
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .direct import FINITE_CHECKS, OffsetReader, all_finite
from .errors import EmptySelectionError, NonFiniteError
from .layouts import DarcyLayout, Layout, detect_layout, open_h5

__all__ = ["PDEBenchDataset", "pdebench_splits"]

SPLITS = ("train", "val", "test")
TASKS = ("step", "autoregressive", "coefficient")
WINDOWS = ("first", "all")
NONFINITE = ("raise", "skip")
#: PDEBench's test fraction.
TEST_RATIO = 0.1
#: Samples per slab when reading many samples (``to_tensors``, scans).
SLAB = 64


def pdebench_splits(
    n_samples: int, *, test_at_end: bool, val_fraction: float = 0.1
) -> dict[str, range]:
    """PDEBench's train/test split of ``n_samples`` (after ``num_samples_max``), plus validation.

    Single-array, CFD and Darcy files: ``test = [0, int(0.1 n))`` (the FIRST 10%). Group files:
    ``test = [int(n (1 - 0.1)), n)`` (the LAST samples). PDEBench trains on the rest; here the
    LAST ``int(val_fraction * len(rest))`` samples of that rest form the validation split and
    ``train`` is what remains (``val_fraction = 0`` gives PDEBench's train split exactly).

    Examples
    --------
    >>> from liponet.data import pdebench_splits
    >>> pdebench_splits(25, test_at_end=False, val_fraction=0.1)
    {'train': range(2, 23), 'val': range(23, 25), 'test': range(0, 2)}
    >>> pdebench_splits(25, test_at_end=True, val_fraction=0.0)
    {'train': range(0, 22), 'val': range(22, 22), 'test': range(22, 25)}
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if test_at_end:
        cut = int(n_samples * (1 - TEST_RATIO))
        rest, test = range(0, cut), range(cut, n_samples)
    else:
        cut = int(n_samples * TEST_RATIO)
        rest, test = range(cut, n_samples), range(0, cut)
    n_val = int(val_fraction * len(rest))
    return {
        "train": range(rest.start, rest.stop - n_val),
        "val": range(rest.stop - n_val, rest.stop),
        "test": test,
    }


def _runs(indices: Sequence[int], limit: int) -> Iterator[range]:
    """Contiguous runs of sorted ``indices``, each at most ``limit`` long."""
    start = prev = None
    for i in indices:
        if start is not None and i == prev + 1 and i - start < limit:  # type: ignore[operator]
            prev = i
            continue
        if start is not None:
            yield range(start, prev + 1)  # type: ignore[operator]
        start = prev = i
    if start is not None:
        yield range(start, prev + 1)  # type: ignore[operator]


def _selection(samples: range | Sequence[int]) -> slice | list[int]:
    """A slice for consecutive samples, else the sorted list (an h5py point selection)."""
    rows = list(samples) if not isinstance(samples, range) else samples
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:
        return slice(rows[0], rows[-1] + 1)
    return list(rows)


def _items_plan(
    windows: list[list[int]], n_in: int
) -> tuple[list[int], dict[int, int], slice | list[int], int | list[int], list[int] | None]:
    """What :meth:`PDEBenchDataset.read_items` reads and picks, from the windows' frames.

    ``(needed positions, position -> index in the read, the first window's inputs (a slice
    when they are a prefix: a view), its target's index (a list of indices for several target
    frames), its frames' indices or None when they are every frame read)``; each window is
    ``n_in`` input positions, then its target positions.
    """
    needed = sorted({p for w in windows for p in w})
    where = {p: i for i, p in enumerate(needed)}
    w = [where[p] for p in windows[0]]
    x_sel: slice | list[int] = w[:n_in] if w[:n_in] != list(range(n_in)) else slice(n_in)
    y_sel: int | list[int] = w[n_in] if len(w) == n_in + 1 else w[n_in:]
    ok_sel = None if sorted(w) == list(range(len(needed))) else w
    return needed, where, x_sel, y_sel, ok_sel


def finite_rows(a: np.ndarray) -> np.ndarray:
    """Which rows of a 2-D array are free of NaN/inf: ``(rows,)`` bool.

    Fast path: one reduction over the whole (contiguous) array (:func:`~.direct.all_finite`,
    exact); only an array that fails it is checked row by row.
    """
    if a.flags.c_contiguous and all_finite(a):
        return np.ones(a.shape[0], dtype=bool)
    return np.asarray(np.isfinite(a).all(axis=1))


def _choice(name: str, value: object, choices: Sequence[object]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def autoregressive_windows(
    path: str | os.PathLike[str],
    initial_step: int,
    n_frames: int,
    windows: str,
    target_frames: int = 1,
) -> list[list[int]]:
    """Frame indices of each window of one trajectory: ``initial_step`` inputs + the targets.

    The targets are the ``target_frames`` frames after the inputs. ``windows="all"``: every
    start whose targets lie inside the trajectory (teacher forcing; ``n_frames - initial_step
    - target_frames + 1`` windows); otherwise the first window only. Raises
    :class:`EmptySelectionError` (naming ``path``) when the selected frames hold no window.

    Examples
    --------
    >>> autoregressive_windows("f.h5", 2, 5, "all")
    [[0, 1, 2], [1, 2, 3], [2, 3, 4]]
    >>> autoregressive_windows("f.h5", 2, 5, "all", target_frames=2)
    [[0, 1, 2, 3], [1, 2, 3, 4]]
    """
    if not (isinstance(target_frames, int | np.integer) and target_frames >= 1):
        raise ValueError(f"target_frames must be an integer >= 1, got {target_frames!r}")
    if not 1 <= initial_step < n_frames or initial_step + target_frames > n_frames:
        raise EmptySelectionError(
            path,
            f"initial_step={initial_step} and target_frames={target_frames} need "
            f"{initial_step + target_frames} frames, the time stride leaves {n_frames}",
        )
    span = initial_step + target_frames
    n_starts = n_frames - span + 1 if windows == "all" else 1
    return [list(range(s, s + span)) for s in range(n_starts)]


class PDEBenchDataset(Dataset[tuple[Tensor, Tensor]]):
    """A PDEBench HDF5 file (any layout) as ``(x, y)`` pairs shaped ``(channels, *spatial)``.

    Parameters
    ----------
    path
        The HDF5 file; its layout (single-array, CFD, Darcy, group-per-sample) is detected.
    split
        ``"train"``, ``"val"`` or ``"test"``; see :func:`pdebench_splits`.
    task
        ``"step"``: frame ``t_in`` -> frame ``t_out`` (channels = fields).
        ``"autoregressive"``: ``initial_step`` frames stacked time-major as channels
        (``channel = frame * n_fields + field``) -> the next frame.
        ``"coefficient"`` (Darcy only): ``nu`` -> ``tensor``.
    t_in, t_out
        Frame indices after the time stride (negative counts from the end).
    initial_step
        Input frames of the autoregressive task (default PDEBench's: 1 for Darcy, 5 for 1-D
        diffusion-reaction files, i.e. with a ``rho`` attribute, else 10).
    windows
        Autoregressive task: ``"first"`` (one item per sample: frames ``[0, k)`` -> ``k``) or
        ``"all"`` (every window ``[s, s + k)`` -> ``s + k``; items ordered sample-major).
    target_frames
        Autoregressive task: frames each target holds, ``k .. k + target_frames - 1`` after the
        window, stacked frame-major as channels (``y``: ``(target_frames * fields,
        *spatial)``; the training targets of :attr:`liponet.train.TrainConfig.unroll`). The
        windows are those whose targets lie inside the trajectory. Default 1: the next frame.
    reduced_resolution, reduced_resolution_t
        Strides in space (all axes) and time (ignored for Darcy), as PDEBench.
    num_samples_max
        Cap on the samples of the file, applied before splitting (``None`` or -1: all).
    val_fraction
        Fraction of PDEBench's training samples held out (at its end) for validation.
    on_nonfinite
        ``"raise"`` (:class:`NonFiniteError` when an item with NaN/inf is read) or ``"skip"``
        (one pass over the split at construction drops such samples from ``indices``).
    finite_check
        Files read by file offset: ``"once"`` (default: a frame found finite is not checked
        again while the file's identity, i.e. device, inode, size, mtime and ctime, is
        unchanged, see :mod:`liponet.data.direct` for what this assumes) or ``"every_read"``
        (check every frame on every read). Other files are checked on every read.

    Attributes
    ----------
    grid
        Coordinates read from the file, strided like the data: ``{"x": ..., ["y", "z",] "t"}``.
    indices
        File sample indices (sorted) of this split.
    in_channels, out_channels
        Channels of ``x`` and ``y``.
    layout
        The detected :class:`~liponet.data.layouts.Layout`.

    Notes
    -----
    The file is opened lazily, once per process (a forked DataLoader worker reopens it), and
    closed when the dataset is pickled. Files whose datasets are contiguous float32 (the
    released 1-D files, CFD and Darcy files, and ours) are read by file offset without a
    spatial stride (see :mod:`liponet.data.direct`), with the NaN/inf check fused into the read;
    other files through h5py. Both give the same arrays.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import PDEBenchDataset, generate
    >>> path = generate("burgers", pathlib.Path(tempfile.mkdtemp()) / "b.hdf5",
    ...                 n_samples=20, nx=32, nt=6)
    >>> ds = PDEBenchDataset(path, split="train", task="step", reduced_resolution=2)
    >>> len(ds), ds[0][0].shape, ds.indices
    (17, torch.Size([1, 16]), range(2, 19))
    >>> X, Y = ds.to_tensors()
    >>> X.shape, Y.shape
    (torch.Size([17, 1, 16]), torch.Size([17, 1, 16]))
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        split: str = "train",
        task: str = "step",
        t_in: int = 0,
        t_out: int = -1,
        initial_step: int | None = None,
        windows: str = "first",
        target_frames: int = 1,
        reduced_resolution: int = 1,
        reduced_resolution_t: int = 1,
        num_samples_max: int | None = None,
        val_fraction: float = 0.1,
        on_nonfinite: str = "raise",
        finite_check: str = "once",
    ) -> None:
        _choice("split", split, SPLITS)
        _choice("finite_check", finite_check, FINITE_CHECKS)
        _choice("task", task, TASKS)
        _choice("windows", windows, WINDOWS)
        _choice("on_nonfinite", on_nonfinite, NONFINITE)
        self.path = pathlib.Path(path)
        self.split, self.task, self.on_nonfinite = split, task, on_nonfinite
        self.finite_check = finite_check
        self._file: h5py.File | None = None
        self._pid: int | None = None
        with open_h5(self.path) as f:
            self.layout: Layout = detect_layout(self.path, f)
            rho = "rho" in f.attrs
        lay = self.layout
        for name, stride in (
            ("reduced_resolution", reduced_resolution),
            ("reduced_resolution_t", reduced_resolution_t),
        ):
            if not isinstance(stride, int | np.integer) or stride < 1:
                raise EmptySelectionError(
                    self.path, f"{name}={stride!r} leaves nothing; expected an integer >= 1"
                )
        t_stride = reduced_resolution_t if lay.has_time else 1
        self._frame_ids = range(lay.n_frames)[::t_stride]
        self._space = tuple(slice(None, None, reduced_resolution) for _ in lay.spatial_shape)
        with open_h5(self.path) as f:
            self._direct = OffsetReader.probe(self.path, f, lay, self._space, finite_check)
        self.grid = {
            k: torch.as_tensor(v[:: (t_stride if k == "t" else reduced_resolution)])
            for k, v in lay.grid.items()
        }
        n = lay.n_samples
        if num_samples_max is not None and num_samples_max != -1:
            if num_samples_max < 1:
                raise EmptySelectionError(
                    self.path, f"num_samples_max={num_samples_max} leaves nothing; expected >= 1"
                )
            n = min(n, num_samples_max)
        self.indices: Sequence[int] = pdebench_splits(
            n, test_at_end=lay.test_at_end, val_fraction=val_fraction
        )[split]
        n_sel = len(self._frame_ids)
        n_fields = len(lay.fields)
        if task == "coefficient" and not isinstance(lay, DarcyLayout):
            raise ValueError(
                f"{self.path}: task 'coefficient' needs a Darcy file ('nu' + 'tensor'), "
                f"this one is {lay.kind}"
            )
        if task == "autoregressive":
            if initial_step is None:
                initial_step = 1 if isinstance(lay, DarcyLayout) else (5 if rho else 10)
            self._windows = autoregressive_windows(
                self.path, initial_step, n_sel, windows, target_frames
            )
            self.initial_step = initial_step
            self.in_channels = initial_step * n_fields
        else:
            if target_frames != 1:
                raise ValueError(
                    f"target_frames: only the autoregressive task has several target frames "
                    f"(task={task!r}), got {target_frames!r}"
                )
            pair = (0, 1) if task == "coefficient" else (t_in, t_out)
            for name, t in zip(("t_in", "t_out"), pair, strict=True):
                if not -n_sel <= t < n_sel:
                    raise EmptySelectionError(
                        self.path,
                        f"{name}={t} is out of range: the time stride leaves {n_sel} frames",
                    )
            self._windows = [[pair[0] % n_sel, pair[1] % n_sel]]
            self.in_channels = n_fields
        self.out_channels = n_fields
        self.target_frames = target_frames
        self._n_in = len(self._windows[0]) - target_frames
        if len(self.indices) == 0:
            raise EmptySelectionError(
                self.path, f"split {split!r} is empty ({n} samples, val_fraction={val_fraction})"
            )
        if on_nonfinite == "skip":
            self.indices = self._finite_indices()
            if len(self.indices) == 0:
                raise EmptySelectionError(
                    self.path, f"every sample of split {split!r} is non-finite"
                )

    # -- file handling ---------------------------------------------------------------------
    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = open_h5(self.path)
            self._pid = os.getpid()
        return self._file

    def close(self) -> None:
        """Close the file handle of this process (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        if self._direct is not None:
            self._direct.close()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state

    # -- reading -----------------------------------------------------------------------------
    def read_frames(self, samples: range | Sequence[int], positions: Sequence[int]) -> np.ndarray:
        """Frames ``positions`` (after the time stride) of file samples ``samples``.

        ``samples``: a range, or sorted indices read as one selection.

        Returns ``(n, len(positions), fields, *spatial)`` float32. Consecutive positions are
        read as one strided hyperslab; a single run is returned without another copy.
        """
        if self._direct is not None:
            return self._direct.read(samples, self._stored_frames(positions))[0]
        f = self._h5()
        sel = _selection(samples)
        step = self._frame_ids.step
        parts = []
        for run in _runs(sorted(set(positions)), len(self._frame_ids)):
            frames = slice(self._frame_ids[run.start], self._frame_ids[run.stop - 1] + 1, step)
            parts.append((run, self.layout.read(f, sel, frames, self._space)))
        if len(parts) == 1 and list(parts[0][0]) == list(positions):
            return parts[0][1]
        lookup = {p: (data, p - run.start) for run, data in parts for p in run}
        return np.stack([lookup[p][0][:, lookup[p][1]] for p in positions], axis=1)

    def read_checked(
        self, samples: range | Sequence[int], positions: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`read_frames` and which frames are free of NaN/inf: ``(n, len(positions))``.

        Reads by file offset check each piece once, right after reading it (in cache).
        """
        if self._direct is not None:
            return self._direct.read(samples, self._stored_frames(positions))
        block = self.read_frames(samples, positions)
        n = block.shape[0]
        ok = finite_rows(block.reshape(n * len(positions), -1)).reshape(n, len(positions))
        return block, ok

    def _stored_frames(self, positions: Sequence[int]) -> tuple[int, ...]:
        """Stored frame indices of ``positions`` (cached: a stream asks for the same ones)."""
        key = tuple(positions)
        cache = self.__dict__.setdefault("_frames_cache", {})
        frames = cache.get(key)
        if frames is None:
            frames = cache[key] = tuple(int(self._frame_ids[p]) for p in key)
        return frames

    def read_items(
        self, samples: range | Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every item of file samples ``samples`` (a range or sorted indices), sample-major.

        Returns ``x`` ``(items, in_channels, *spatial)``, ``y`` (numpy float32, views of one
        read when there is one window per sample), the file sample index of each item and a
        boolean mask of the items free of NaN/inf. Nothing is raised here.
        """
        plan = self.__dict__.get("_items_plan")
        if plan is None:  # the same for every read (a stream reads per batch): work it out once
            plan = self._items_plan = _items_plan(self._windows, self._n_in)
        needed, where, x_sel, y_pos, ok_sel = plan
        if self._direct is not None:
            stored = self.__dict__.get("_needed_frames")
            if stored is None:
                stored = self._needed_frames = self._stored_frames(needed)
            block, frame_ok = self._direct.read(samples, stored)
        else:
            block, frame_ok = self.read_checked(samples, needed)
        # block: (n, len(needed), fields, *spatial)
        n = block.shape[0]
        n_in = self._n_in
        if len(self._windows) == 1:
            x = block[:, x_sel].reshape(n, -1, *block.shape[3:])  # (n, k * fields, *spatial)
            y = block[:, y_pos].reshape(n, -1, *block.shape[3:])  # (n, frames * fields, ...)
            ok = np.asarray((frame_ok if ok_sel is None else frame_ok[:, ok_sel]).all(1))
        else:
            xs, ys, oks = [], [], []
            for win in self._windows:
                w = [where[p] for p in win]
                xs.append(block[:, w[:n_in]])
                ys.append(block[:, w[n_in:]])
                oks.append(frame_ok[:, w].all(1))
            x = einops.rearrange(np.stack(xs, 1), "n w k f ... -> (n w) (k f) ...")
            y = einops.rearrange(np.stack(ys, 1), "n w t f ... -> (n w) (t f) ...")
            ok = np.asarray(np.stack(oks, 1).reshape(-1))
        ids = np.asarray(samples)
        ids = ids if len(self._windows) == 1 else np.repeat(ids, len(self._windows))
        return x, y, ids, ok

    def check_finite(self, ok: np.ndarray, ids: np.ndarray, policy: str | None = None) -> None:
        """Raise :class:`NonFiniteError` for the first item not ``ok`` under ``"raise"``.

        ``policy`` overrides ``on_nonfinite``.
        """
        if (policy or self.on_nonfinite) == "raise" and not ok.all():
            bad = int(ids[np.argmin(ok)])
            raise NonFiniteError(
                self.path,
                f"sample {bad} has NaN/inf values in the selected frames; pass "
                "on_nonfinite='skip' to drop such samples",
                self.layout.sample_key(bad),
            )

    def _finite_indices(self) -> list[int]:
        keep: list[int] = []
        for run in _runs(self.indices, SLAB):
            _, _, ids, ok = self.read_items(run)
            bad = set(ids[~ok].tolist())
            keep.extend(i for i in run if i not in bad)
        return keep

    def __len__(self) -> int:
        return len(self.indices) * len(self._windows)

    def __getitem__(self, item: int) -> tuple[Tensor, Tensor]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"item {item} out of range for {len(self)} items")
        item %= len(self)
        sample = self.indices[item // len(self._windows)]
        w = self._windows[item % len(self._windows)]
        block, ok = self.read_checked(range(sample, sample + 1), w)
        block = block[0]  # (k + target frames, fields, *spatial)
        self.check_finite(np.asarray(ok.all(axis=1)), np.array([sample]))
        x = einops.rearrange(block[: self._n_in], "k f ... -> (k f) ...")
        if self.target_frames == 1:
            return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(block[-1])
        y = einops.rearrange(block[self._n_in :], "t f ... -> (t f) ...")
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))

    def to_tensors(self) -> tuple[Tensor, Tensor]:
        """Every item of the split stacked: ``X`` ``(items, in_channels, *spatial)``, ``Y``."""
        xs, ys = [], []
        for run in _runs(self.indices, SLAB):
            x, y, ids, ok = self.read_items(run)
            self.check_finite(ok, ids)
            xs.append(x)
            ys.append(y)
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    def trajectory(self, item: int) -> Tensor:
        """All frames (after the time stride) of sample ``indices[item]``, for rollouts.

        Returns ``(frames, fields, *spatial)``.
        """
        sample = self.indices[item]
        positions = list(range(len(self._frame_ids)))
        return torch.from_numpy(self.read_frames(range(sample, sample + 1), positions)[0])

    def sample_bytes(self) -> int:
        """Bytes read per sample for this task (all frames its items use, after strides)."""
        frames = len({p for w in self._windows for p in w})
        points = int(
            np.prod(
                [
                    len(range(n)[s])
                    for n, s in zip(self.layout.spatial_shape, self._space, strict=True)
                ]
            )
        )
        return 4 * frames * len(self.layout.fields) * points

    @property
    def reads_by_offset(self) -> bool:
        """Whether samples are read by file offset (cheap per sample, in any order)."""
        return self._direct is not None

    @property
    def items_per_sample(self) -> int:
        """Items each sample gives (1, or the windows of ``windows="all"``)."""
        return len(self._windows)

    @property
    def n_frames(self) -> int:
        """Frames per trajectory after the time stride."""
        return len(self._frame_ids)
