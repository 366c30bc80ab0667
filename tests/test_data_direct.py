"""Reads by file offset: same arrays as h5py, exact finite check, fallbacks, errors; and the
stream on top of them (every index once per epoch and rank, whole batches, NaN detection)."""

import os

import h5py
import numpy as np
import pytest
import torch

from liponet.data import CorruptFileError, NonFiniteError, PDEBenchDataset, PDEBenchStream, direct
from liponet.data.direct import CHECK_BYTES, OffsetReader, all_finite


def write_single(path, data, **create):
    _, nt, *space = data.shape
    with h5py.File(path, "w", **create.pop("file", {})) as f:
        f.create_dataset("tensor", data=data, **create)
        for axis, m in zip("xyz", space, strict=False):
            f[f"{axis}-coordinate"] = np.arange(m, dtype=np.float32)
        f["t-coordinate"] = np.arange(nt + 1, dtype=np.float32)
    return path


def h5py_twin(ds):
    """The same dataset read through h5py only."""
    ds._direct = None
    return ds


def data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_all_finite_is_exact():
    x = data((3, 1000))
    assert all_finite(x)
    assert all_finite(np.full(50, 3e30, np.float32))  # x . x overflows, entries are finite
    for bad in (np.nan, np.inf, -np.inf):
        for pos in [*range(70), 999, 1999, 2999]:  # every SIMD lane and the tails
            y = x.copy()
            y.reshape(-1)[pos] = bad
            assert not all_finite(y), (bad, pos)
    assert all_finite(np.full(50, 3e38, np.float32))  # the sum overflows, entries are finite
    assert all_finite(np.array([3e38, -3e38, 3e38], np.float32))
    y = x.copy()
    y[0, 3], y[2, 500] = np.inf, -np.inf  # opposite infinities meet: NaN, still non-finite
    assert not all_finite(y)
    for dtype in (np.float64, np.float16):
        z = x.astype(dtype)
        assert all_finite(z)
        z[1, 7] = np.nan
        assert not all_finite(z)
    assert all_finite(np.zeros(0, np.float32))


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(task="step"),
        dict(task="step", t_in=1, t_out=-2, reduced_resolution_t=2),
        dict(task="autoregressive", initial_step=3, windows="all"),
        dict(task="autoregressive", initial_step=2, reduced_resolution_t=3),
    ],
)
@pytest.mark.parametrize("space", [(16,), (6, 5)])
def test_offset_reads_equal_h5py_single_array(tmp_path, kwargs, space):
    path = write_single(tmp_path / "s.h5", data((30, 9, *space)), file=dict(userblock_size=512))
    ds = PDEBenchDataset(path, split="train", **kwargs)
    assert ds.reads_by_offset
    ref = h5py_twin(PDEBenchDataset(path, split="train", **kwargs))
    for a, b in zip(ds.to_tensors(), ref.to_tensors(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    samples = [17, 3, 4, 29, 3]  # any order, repeats
    positions = [0, ds.n_frames - 1, 1]
    np.testing.assert_array_equal(
        ds.read_frames(samples, positions),
        ref.read_frames(sorted(set(samples)), positions)[
            [sorted(set(samples)).index(s) for s in samples]
        ],
    )
    torch.testing.assert_close(ds[5][0], ref[5][0], rtol=0, atol=0)


def test_offset_reads_equal_h5py_cfd_and_darcy(tmp_path):
    cfd = tmp_path / "cfd.h5"
    with h5py.File(cfd, "w") as f:
        for s, key in enumerate(("density", "pressure", "Vx", "Vy")):
            f[key] = data((12, 5, 4, 6), seed=s)
        f["x-coordinate"] = np.arange(4, dtype=np.float32)
        f["y-coordinate"] = np.arange(6, dtype=np.float32)
        f["t-coordinate"] = np.arange(6, dtype=np.float32)
    darcy = tmp_path / "darcy.h5"
    with h5py.File(darcy, "w") as f:
        f["nu"] = data((12, 8, 8), seed=5)
        f["tensor"] = data((12, 1, 8, 8), seed=6)
        f["x-coordinate"] = np.arange(8, dtype=np.float32)
        f["y-coordinate"] = np.arange(8, dtype=np.float32)
    for path, kwargs in (
        (cfd, dict(task="autoregressive", initial_step=2, windows="all")),
        (cfd, dict(task="step", reduced_resolution_t=2)),
        (darcy, dict(task="coefficient")),
    ):
        ds = PDEBenchDataset(path, split="train", **kwargs)
        assert ds.reads_by_offset
        ref = h5py_twin(PDEBenchDataset(path, split="train", **kwargs))
        for a, b in zip(ds.to_tensors(), ref.to_tensors(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda p, x: write_single(p, x, chunks=(2, 3, 16)),
        lambda p, x: write_single(p, x, compression="gzip"),
        lambda p, x: write_single(p, x.astype(np.float64)),
        lambda p, x: write_single(p, x.astype(">f4")),
    ],
    ids=["chunked", "compressed", "float64", "big-endian"],
)
def test_other_storage_falls_back_to_h5py(tmp_path, make):
    x = data((20, 6, 16))
    path = make(tmp_path / "o.h5", x)
    ds = PDEBenchDataset(path, split="train", task="autoregressive", initial_step=5)
    assert not ds.reads_by_offset
    X, Y = ds.to_tensors()
    np.testing.assert_array_equal(X.numpy(), x[2:19, :5])
    np.testing.assert_array_equal(Y.numpy(), x[2:19, 5:6])
    strided = PDEBenchDataset(write_single(tmp_path / "r.h5", x), reduced_resolution=2)
    assert not strided.reads_by_offset  # spatial strides go through h5py


def test_runs_of_consecutive_whole_samples_read_in_one_call(tmp_path, monkeypatch):
    # Every frame of a single-field file: consecutive samples are one byte range, read by one
    # preadv into consecutive rows; any order, repeats, runs cut by the finite-check groups.
    x = data((50, 7, 96))
    x[[12, 30], [6, 0], [95, 3]] = [np.nan, np.inf]
    path = write_single(tmp_path / "w.h5", x)
    ds = PDEBenchDataset(path, split="train", val_fraction=0, task="autoregressive",
                         initial_step=6)  # fmt: skip
    reader = ds._direct
    assert isinstance(reader, OffsetReader)
    monkeypatch.setattr(direct, "CHECK_BYTES", 4 * 7 * 96 * 4)  # groups of 4 samples
    calls = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, at: calls.append(1) or real(fd, bufs, at))
    samples = [3, 4, 5, 9, 10, 11, 12, 13, 0, 1, 1, 2, 49, 30, 31]
    block, ok = reader.read(samples, list(range(7)))
    np.testing.assert_array_equal(block[:, :, 0], x[samples])
    np.testing.assert_array_equal(ok, np.isfinite(x[samples]).all(axis=2))
    assert len(calls) == 7  # [3-5] [9] | [10-13] | [0-1] [1-2] | [49] [30-31]
    kwargs = dict(split="train", val_fraction=0, task="autoregressive", initial_step=6)
    skipping = PDEBenchDataset(path, on_nonfinite="skip", **kwargs)
    twin = h5py_twin(PDEBenchDataset(path, on_nonfinite="skip", **kwargs))
    for a, b in zip(skipping.to_tensors(), twin.to_tensors(), strict=True):
        assert a.shape[0] == len(skipping.indices) == len(ds.indices) - 2 and torch.equal(a, b)


def test_truncated_data_region_names_the_file_and_key(tmp_path):
    path = write_single(tmp_path / "t.h5", data((40, 4, 256)))
    ds = PDEBenchDataset(path, split="train", val_fraction=0)
    assert ds.reads_by_offset
    whole = PDEBenchDataset(path, split="train", val_fraction=0, task="autoregressive",
                            initial_step=3)  # fmt: skip
    assert isinstance(whole._direct, OffsetReader)
    with h5py.File(path) as f:
        end = f["tensor"].id.get_offset() + 20 * 4 * 256 * 4  # keep 20 samples
    os.truncate(path, end)
    ds.read_frames(range(4, 20), [0, 3])  # the bytes still there read fine
    with pytest.raises(CorruptFileError, match=r"t\.h5 \[key 'tensor'\].*truncated"):
        ds.to_tensors()
    with pytest.raises(CorruptFileError, match=r"t\.h5 \[key 'tensor'\].*truncated"):
        whole._direct.read(list(range(15, 25)), [0, 1, 2, 3])  # one run across the end


def with_ids(shape, seed=0):
    """Random samples whose spatial point 1 holds the sample index in every frame."""
    x = data(shape, seed)
    x[:, :, 1] = np.arange(shape[0])[:, None]
    return x


def ids_of(batches):
    """Sample index of every item (x[0, 1] = frame 0, point 1) of batches or single items."""
    return [
        round(float(x[..., 0, 1].reshape(-1)[k]))
        for x, _ in batches
        for k in range(x[..., 0, 1].numel())
    ]


@pytest.fixture
def nan_file(tmp_path):
    x = with_ids((120, 6, 64))
    x[[9, 40, 41, 77], [5, 0, 3, 2], [63, 0, 17, 5]] = [np.nan, np.inf, -np.inf, np.nan]
    return write_single(tmp_path / "n.h5", x), x


def test_fused_check_finds_every_nonfinite_frame(nan_file):
    path, x = nan_file
    ds = PDEBenchDataset(path, split="train", val_fraction=0)
    assert ds.reads_by_offset and ds.sample_bytes() < CHECK_BYTES  # several samples per check
    _, ok = ds.read_checked(range(0, 120), list(range(6)))
    np.testing.assert_array_equal(ok, np.isfinite(x).all(axis=2))
    reader = ds._direct
    assert isinstance(reader, OffsetReader)
    _, ok = reader.read([77, 9, 10], [2, 5, 0])
    np.testing.assert_array_equal(ok, [[False, True, True], [True, False, True], [True] * 3])


@pytest.mark.parametrize("batch_size", [None, 8])
def test_shuffled_stream_raises_on_nan_and_skips_exactly_those(nan_file, batch_size):
    path, _ = nan_file
    kw = dict(split="train", val_fraction=0, block_size=4, buffer_size=12, seed=3)
    kw.update(task="autoregressive", initial_step=5)  # every frame is read
    with pytest.raises(NonFiniteError, match=r"sample (40|41|77) has NaN/inf"):
        list(PDEBenchStream(path, batch_size=batch_size, **kw))  # 9 is in the test split
    stream = PDEBenchStream(path, batch_size=batch_size, on_nonfinite="skip", **kw)
    got = ids_of(stream)
    assert sorted(got) == sorted(set(range(12, 120)) - {40, 41, 77})
    if batch_size:  # dropped items are topped up: every batch but the last is whole
        sizes = [len(x) for x, _ in stream]
        assert set(sizes[:-1]) == {batch_size} and sum(sizes) == len(got)


def test_shuffled_stream_every_index_once_per_epoch_and_rank(tmp_path):
    path = write_single(tmp_path / "e.h5", with_ids((203, 3, 16)))
    split = list(PDEBenchDataset(path, split="train").indices)
    kw = dict(split="train", block_size=5, buffer_size=12, batch_size=8, seed=4)
    orders = []
    for epoch in range(3):
        one = PDEBenchStream(path, **kw)
        one.set_epoch(epoch)
        batches = list(one)
        assert [len(x) for x, _ in batches[:-1]] == [8] * (len(batches) - 1)  # whole batches
        orders.append(ids_of(batches))
        assert sorted(orders[-1]) == split
        shards = []
        for rank in range(3):
            s = PDEBenchStream(path, rank=rank, world_size=3, **kw)
            s.set_epoch(epoch)
            shards.append(ids_of(s))
        flat = [i for s in shards for i in s]
        assert len({len(s) for s in shards}) == 1 and len(flat) == len(set(flat))
        assert set(flat) <= set(split) and len(flat) >= len(split) - 3 * 5
    assert orders[0] != orders[1] != orders[2]


def test_platform_without_preadv_falls_back_to_h5py(tmp_path, monkeypatch):
    import numpy as np

    from liponet.data import PDEBenchDataset, generate

    path = generate("advection", tmp_path / "a.hdf5", n_samples=12, nx=16, nt=4, seed=0)
    direct = PDEBenchDataset(path, split="train")
    assert direct.reads_by_offset
    x1, y1 = direct.to_tensors()
    monkeypatch.delattr("os.preadv")
    fallback = PDEBenchDataset(path, split="train")
    assert not fallback.reads_by_offset
    x2, y2 = fallback.to_tensors()
    np.testing.assert_array_equal(x1.numpy(), x2.numpy())
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
