"""Streaming access to big PDEBench files: chunk-aware shuffling, sharding, statistics."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import IterableDataset, get_worker_info

from .reader import NONFINITE, PDEBenchDataset, _choice, _runs

__all__ = ["NormStats", "PDEBenchStream", "compute_stats", "shard_blocks"]

#: Samples per contiguous read and items kept in the shuffle buffer, by default.
BLOCK_SIZE = 16
BUFFER_SIZE = 256
#: Samples at least this large (bytes of the frames read) are read per batch, straight from the
#: file; smaller ones per block, then gathered in memory.
DIRECT_READ_BYTES = 64 * 1024
#: Files read by file offset: consecutive batches of up to this many bytes (and at most a pool)
#: are read together, so that runs of samples lying back to back in the file, which a pool's
#: blocks are, take one read call each.
READ_GROUP_BYTES = 16 * 1024 * 1024


class PDEBenchStream(IterableDataset[Any]):
    """Iterate over a split of a PDEBench file with bounded memory.

    Each epoch, the split's samples are cut into blocks of ``block_size`` consecutive samples
    (locality on disk); the block order is shuffled with ``(seed, epoch)``, the resulting
    sequence is cut into balanced contiguous parts for the ``world_size * num_workers``
    streams (rank-major, :func:`shard_blocks`), and each stream shuffles its items within
    pools of about ``buffer_size`` items.

    What the shuffle randomises: the order of the blocks (a uniform permutation per epoch,
    seeded by ``(seed, epoch)``) and, within each pool of ``ceil(buffer_size / block_size)``
    consecutive blocks of that order, the order of the items (a uniform permutation). A batch
    is a run of that item order, so it holds samples of ``buffer_size / batch_size`` or fewer
    pools; two samples of one block land in the same batch more often than under a full
    shuffle (``block_size=1`` gives a uniform permutation of the whole epoch).

    Reads: files stored contiguously or chunked by whole samples (see
    :mod:`liponet.data.direct`) are read by file offset, a few batches at a time (up to
    ``READ_GROUP_BYTES``, at most a pool), each sample's frames straight into its row of the
    batch array (one copy, as a plain read; one call per run of samples lying back to back in
    the file, so ``block_size`` and ``buffer_size`` mostly set the randomness), with the
    NaN/inf check fused into the read (``finite_check``); other files with large samples
    (``>= DIRECT_READ_BYTES``) per batch through h5py, one read per run of consecutive
    samples; other small samples by whole blocks, the pool's items gathered in memory. Memory:
    the batches read together (one pool for the last case). Samples dropped as non-finite
    (``on_nonfinite="skip"``) are replaced by the next ones, so batches stay whole.

    Parameters
    ----------
    path
        The HDF5 file.
    block_size, buffer_size
        Samples per read; items in the shuffle buffer.
    shuffle
        Shuffle blocks and items (``False``: file order within each stream).
    seed
        Shuffling seed; the epoch (see :meth:`set_epoch`) is mixed in.
    rank, world_size
        This process's shard; default from ``torch.distributed`` when initialised, else 0 / 1.
        Every item of the split is yielded by exactly one stream (rank, then DataLoader
        worker) each epoch (:func:`shard_blocks`); streams differ by at most one item, and the
        trainer evens out the step counts (zero-weight steps on a rank without a batch).
    batch_size
        If set, yield collated batches ``(x, y)`` of this many items (use
        ``DataLoader(stream, batch_size=None)``); the last batch may be smaller.
    **dataset_kwargs
        ``split``, ``task``, strides ... as :class:`PDEBenchDataset`; ``on_nonfinite="skip"``
        drops non-finite items on the fly.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import PDEBenchStream, generate
    >>> path = generate("advection", pathlib.Path(tempfile.mkdtemp()) / "a.hdf5",
    ...                 n_samples=40, nx=16, nt=4)
    >>> stream = PDEBenchStream(path, split="train", block_size=4, buffer_size=8, batch_size=10)
    >>> [tuple(x.shape) for x, y in stream]
    [(10, 1, 16), (10, 1, 16), (10, 1, 16), (3, 1, 16)]
    """

    #: The dataset class built from ``path`` and ``**dataset_kwargs`` (subclasses: other layouts).
    dataset_class: type[PDEBenchDataset] = PDEBenchDataset

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_size: int = BLOCK_SIZE,
        buffer_size: int = BUFFER_SIZE,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        batch_size: int | None = None,
        **dataset_kwargs: Any,
    ) -> None:
        super().__init__()
        policy = dataset_kwargs.pop("on_nonfinite", "raise")
        _choice("on_nonfinite", policy, NONFINITE)
        if block_size < 1 or buffer_size < 1 or (batch_size is not None and batch_size < 1):
            raise ValueError(
                f"block_size, buffer_size and batch_size must be >= 1, got "
                f"{block_size}, {buffer_size}, {batch_size}"
            )
        self.dataset = self.dataset_class(path, **dataset_kwargs)
        self.on_nonfinite = policy
        self.block_size, self.buffer_size = block_size, buffer_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        if world_size is None:
            initialised = dist.is_available() and dist.is_initialized()
            world_size = dist.get_world_size() if initialised else 1
            rank = dist.get_rank() if initialised and rank is None else rank
        self.rank, self.world_size = (rank or 0), world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be in [0, {self.world_size}), got {self.rank}")
        self.batch_size = batch_size

    @property
    def in_channels(self) -> int:
        """Channels of ``x``."""
        return self.dataset.in_channels

    @property
    def out_channels(self) -> int:
        """Channels of ``y``."""
        return self.dataset.out_channels

    @property
    def grid(self) -> dict[str, Tensor]:
        """Coordinates read from the file (strided)."""
        return self.dataset.grid

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (call before iterating, in every process)."""
        self.epoch = int(epoch)

    def blocks(self) -> list[range]:
        """Blocks of the current epoch for this stream (rank and worker), in read order."""
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        indices = self.dataset.indices
        if isinstance(indices, range) and indices.step == 1:  # what _runs gives, at once
            size, stop = self.block_size, indices.stop
            blocks = [range(a, min(a + size, stop)) for a in range(indices.start, stop, size)]
        else:
            blocks = list(_runs(indices, self.block_size))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(len(blocks))
            blocks = [blocks[i] for i in order]
        return shard_blocks(blocks, self.world_size, self.rank, n_workers, worker)

    def _pools(self) -> Iterator[tuple[np.random.Generator, list[range]]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker, 1])
        blocks = self.blocks()
        per_pool = max(1, -(-self.buffer_size // self.block_size))
        for p in range(0, len(blocks), per_pool):
            yield rng, blocks[p : p + per_pool]

    def _sample_order(self) -> np.ndarray:
        """File sample indices of this stream, in yield order (each pool permuted in turn)."""
        pools = list(self._pools())
        blocks = [b for _, pool in pools for b in pool]
        if not blocks:
            return np.zeros(0, dtype=np.int64)
        if any(b.step != 1 for b in blocks):  # not from _runs: concatenate as they come
            order = np.concatenate([np.arange(b.start, b.stop, b.step) for b in blocks])
        else:  # the blocks' samples back to back, without a Python loop per sample
            lengths = np.array([len(b) for b in blocks], dtype=np.int64)
            ends = np.cumsum(lengths)
            shift = np.array([b.start for b in blocks], dtype=np.int64) - (ends - lengths)
            order = np.arange(int(ends[-1]), dtype=np.int64) + np.repeat(shift, lengths)
        if self.shuffle:
            at = 0
            for rng, pool in pools:  # each pool uniformly permuted, in place
                size = sum(len(b) for b in pool)
                rng.shuffle(order[at : at + size])
                at += size
        return order

    def _chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` arrays of finite items, in yield order.

        Files read by file offset, and large items (>= ``DIRECT_READ_BYTES`` per sample) of
        other files: the sample order is cut into batches (across pool boundaries, so batches
        stay whole) and each batch's sorted samples are read straight into the batch array;
        by offset, consecutive batches of up to ``READ_GROUP_BYTES`` (at most a pool) are
        read into one array together and yielded as views of it. After items were dropped
        (``on_nonfinite="skip"``) the next read starts with a batch that only tops the short
        ones up, so that later batches are whole again. Small items of other files: each block is
        read whole (one contiguous read), the pool is gathered in memory.
        """
        windows = self.dataset.items_per_sample
        read = max(1, (self.batch_size or self.block_size) // windows)
        if self.dataset.reads_by_offset or self.dataset.sample_bytes() >= DIRECT_READ_BYTES:
            order, at, want = self._sample_order(), 0, read
            by_offset = self.dataset.reads_by_offset
            per_read = 1  # batches read at once: by offset, up to a pool and READ_GROUP_BYTES
            if by_offset:
                batch_bytes = max(1, read * self.dataset.sample_bytes())
                per_read = max(1, min(self.buffer_size // read, READ_GROUP_BYTES // batch_bytes))
            while at < len(order):
                group: list[np.ndarray] = []
                while len(group) < per_read and at < len(order):
                    group.append(np.sort(order[at : at + want]))
                    at += len(group[-1])
                    want = read
                samples: Any = group[0] if len(group) == 1 else np.concatenate(group)
                x, y, ids, ok = self.dataset.read_items(samples if by_offset else samples.tolist())
                whole = bool(ok.all())
                if not whole:
                    self.dataset.check_finite(ok, ids, policy=self.on_nonfinite)
                dropped, lo = 0, 0
                for part in group:
                    hi = lo + len(part) * windows
                    xb, yb = x[lo:hi], y[lo:hi]
                    if not whole and not ok[lo:hi].all():
                        xb, yb = xb[ok[lo:hi]], yb[ok[lo:hi]]
                        dropped += int((~ok[lo:hi]).sum())
                    lo = hi
                    yield xb, yb
                    del xb, yb
                if dropped:
                    want = -(-dropped // windows)  # top the short batches up first
                # drop our references before the next read, so that the allocator can
                # reuse this memory once the consumer is done with it
                del x, y
            return
        for rng, pool in self._pools():
            parts = [self.dataset.read_items(b) for b in pool]
            for _, _, ids, ok in parts:
                self.dataset.check_finite(ok, ids, policy=self.on_nonfinite)
            x = np.concatenate([q[0][q[3]] for q in parts])
            y = np.concatenate([q[1][q[3]] for q in parts])
            perm = rng.permutation(len(x)) if self.shuffle else np.arange(len(x))
            for a in range(0, len(perm), read * windows):
                take = perm[a : a + read * windows]
                yield x[take], y[take]

    def __iter__(self) -> Iterator[Any]:
        if self.batch_size is None:
            for x, y in self._chunks():  # one view per item, made by torch at once
                xs, ys = torch.from_numpy(x).unbind(0), torch.from_numpy(y).unbind(0)
                yield from zip(xs, ys, strict=True)
                del xs, ys
                del x, y  # see _chunks
            return
        held_x: list[np.ndarray] = []
        held_y: list[np.ndarray] = []
        count = 0
        for x, y in self._chunks():
            if not held_x and len(x) == self.batch_size:  # the common case: no copy
                yield torch.from_numpy(x), torch.from_numpy(y)
                del x, y  # see _chunks
                continue
            held_x.append(x)
            held_y.append(y)
            count += len(x)
            while count >= self.batch_size:
                cx, cy = np.concatenate(held_x), np.concatenate(held_y)
                yield (
                    torch.from_numpy(cx[: self.batch_size]),
                    torch.from_numpy(cy[: self.batch_size]),
                )
                count -= self.batch_size
                # nothing left over: back to the no-copy case
                held_x = [cx[self.batch_size :]] if count else []
                held_y = [cy[self.batch_size :]] if count else []
        if count:
            yield torch.from_numpy(np.concatenate(held_x)), torch.from_numpy(np.concatenate(held_y))


def _share(n: int, parts: int, i: int) -> tuple[int, int]:
    """Part ``i`` of ``parts`` balanced contiguous parts of ``range(n)``: ``[start, stop)``."""
    return i * n // parts, (i + 1) * n // parts


def shard_blocks(
    blocks: Sequence[range], world_size: int, rank: int, n_workers: int = 1, worker: int = 0
) -> list[range]:
    """Give one stream its share of an epoch's blocks: every item in exactly one stream.

    The blocks, in the epoch's (shuffled) order, are read as one sequence of items; rank
    ``rank`` takes the ``rank``-th of ``world_size`` balanced contiguous parts of it (sizes
    differ by at most one item), and DataLoader worker ``worker`` the ``worker``-th of
    ``n_workers`` balanced parts of that. A part may start or end inside a block (at most
    ``world_size * n_workers - 1`` blocks are split), so locality on disk is kept.

    Examples
    --------
    >>> from liponet.data.stream import shard_blocks
    >>> blocks = [range(0, 16), range(16, 32), range(32, 36)]
    >>> [shard_blocks(blocks, 4, r) for r in range(4)]
    [[range(0, 9)], [range(9, 16), range(16, 18)], [range(18, 27)], [range(27, 32), range(32, 36)]]
    """
    total = sum(len(b) for b in blocks)
    start, stop = _share(total, world_size, rank)
    w_start, w_stop = _share(stop - start, n_workers, worker)
    start, stop = start + w_start, start + w_stop
    out = []
    offset = 0
    for b in blocks:
        lo, hi = max(start - offset, 0), min(stop - offset, len(b))
        if lo < hi:
            out.append(b[lo:hi])
        offset += len(b)
        if offset >= stop:
            break
    return out


@dataclass
class NormStats:
    """Per-field mean and standard deviation (float64 accumulation, stored float32).

    Attributes
    ----------
    mean, std
        ``(fields,)`` tensors.
    count
        Values per field that were averaged.

    Examples
    --------
    >>> import torch
    >>> from liponet.data import NormStats
    >>> s = NormStats(mean=torch.tensor([1.0]), std=torch.tensor([2.0]), count=10)
    >>> s.normalize(torch.full((1, 3, 4), 3.0))[0, :, 0]  # 3 frames x 1 field as channels
    tensor([1., 1., 1.])
    >>> NormStats.from_state_dict(s.state_dict()).std
    tensor([2.])
    """

    mean: Tensor
    std: Tensor
    count: int

    def _shape(self, x: Tensor, v: Tensor, channel_dim: int) -> Tensor:
        channels = x.shape[channel_dim]
        if channels % v.numel():
            raise ValueError(
                f"{channels} channels is not a multiple of the {v.numel()} fields of the stats"
            )
        v = v.repeat(channels // v.numel()).to(x)  # time-major stacking: frame * fields + field
        return v.reshape([-1 if d == channel_dim % x.ndim else 1 for d in range(x.ndim)])

    def normalize(self, x: Tensor, channel_dim: int = 1) -> Tensor:
        """``(x - mean) / std`` per field (channels may stack several frames of the fields)."""
        return (x - self._shape(x, self.mean, channel_dim)) / self._shape(x, self.std, channel_dim)

    def denormalize(self, x: Tensor, channel_dim: int = 1) -> Tensor:
        """Inverse of :meth:`normalize`."""
        return x * self._shape(x, self.std, channel_dim) + self._shape(x, self.mean, channel_dim)

    def state_dict(self) -> dict[str, Tensor]:
        """Tensors only (safe with ``torch.load(weights_only=True)``)."""
        return {
            "mean": self.mean.clone(),
            "std": self.std.clone(),
            "count": torch.tensor(self.count),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> NormStats:
        """Rebuild from :meth:`state_dict`."""
        return cls(mean=state["mean"].clone(), std=state["std"].clone(), count=int(state["count"]))


def compute_stats(
    source: PDEBenchDataset | PDEBenchStream | str | os.PathLike[str],
    *,
    block_size: int = BLOCK_SIZE,
    **dataset_kwargs: Any,
) -> NormStats:
    """Per-field mean/std over every selected frame and point of a split, in one streaming pass.

    ``source`` is a dataset, a stream (its split), or a path (with ``PDEBenchDataset`` keyword
    arguments; default the train split). Blocks are merged with Chan's parallel update in float64,
    so memory stays at one block. Samples with NaN/inf raise :class:`NonFiniteError` unless the
    dataset skips them (``on_nonfinite="skip"``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from liponet.data import compute_stats, generate
    >>> path = generate("advection", pathlib.Path(tempfile.mkdtemp()) / "a.hdf5", n_samples=20,
    ...                 nx=16, nt=4)
    >>> stats = compute_stats(path, split="train")
    >>> stats.mean.shape, stats.count == 17 * 4 * 16  # train samples x frames x points
    (torch.Size([1]), True)
    """
    if isinstance(source, PDEBenchStream):
        ds = source.dataset
    elif isinstance(source, PDEBenchDataset):
        ds = source
    else:
        ds = PDEBenchDataset(source, **dataset_kwargs)
    positions = list(range(ds.n_frames))
    n_fields = ds.out_channels
    count = 0
    mean = np.zeros(n_fields)
    m2 = np.zeros(n_fields)
    for block in _runs(ds.indices, block_size):
        raw, frame_ok = ds.read_checked(block, positions)  # (n, t, fields, *spatial)
        data = raw.astype(np.float64)
        values = np.moveaxis(data, 2, 0).reshape(n_fields, len(block), -1)
        finite = np.asarray(frame_ok.all(axis=1))
        if not finite.all():
            ds.check_finite(finite, np.asarray(block))  # raises under "raise"
            values = values[:, finite]
        flat = values.reshape(n_fields, -1)
        n_b = flat.shape[1]
        if n_b == 0:
            continue
        mean_b = flat.mean(axis=1)
        m2_b = ((flat - mean_b[:, None]) ** 2).sum(axis=1)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * n_b / total
        m2 = m2 + m2_b + delta**2 * count * n_b / total
        count = total
    std = np.sqrt(m2 / max(count, 1))
    return NormStats(
        mean=torch.as_tensor(mean, dtype=torch.float32),
        std=torch.as_tensor(std, dtype=torch.float32),
        count=count,
    )
