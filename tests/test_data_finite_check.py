"""The NaN/inf check of reads by file offset: ``finite_check="once"`` trusts a frame only while
the file's identity is unchanged (and the file quiet), ``"every_read"`` checks every read; and
files chunked by whole samples are read by offset like contiguous ones."""

import os
import pickle
import types

import h5py
import numpy as np
import pytest
import torch

from liponet.data import CorruptFileError, NonFiniteError, PDEBenchDataset, PDEBenchStream, direct
from liponet.data.direct import OffsetReader


def write_single(path, x, **create):
    _, nt, *space = x.shape
    with h5py.File(path, "w", **create.pop("file", {})) as f:
        f.create_dataset("tensor", data=x, **create)
        for axis, m in zip("xyz", space, strict=False):
            f[f"{axis}-coordinate"] = np.arange(m, dtype=np.float32)
        f["t-coordinate"] = np.arange(nt + 1, dtype=np.float32)
    return path


def with_ids(shape, seed=0):
    """Random samples whose point 1 holds the sample index in every frame."""
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x[:, :, 1] = np.arange(shape[0])[:, None]
    return x


def ids_of(batches):
    return sorted(round(float(v)) for x, _ in batches for v in x[:, 0, 1])


@pytest.fixture
def quiet(monkeypatch):
    """Files written by the test count as quiet at once (the window is for real writers)."""
    monkeypatch.setattr(direct, "QUIET_SECONDS", 0.0)


@pytest.fixture
def checks(monkeypatch):
    """Counts the reductions of the finite check."""
    calls = []
    real = direct.all_finite
    monkeypatch.setattr(direct, "all_finite", lambda a: calls.append(a.size) or real(a))
    return calls


def poke(path, sample, frame, point, value=np.nan):
    """Write ``value`` into the file in place; make sure the identity changed (mtime)."""
    st = os.stat(path)
    with h5py.File(path, "r+") as f:
        f["tensor"][sample, frame, point] = value
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


STREAM = dict(split="train", val_fraction=0, block_size=4, buffer_size=8, batch_size=6)
STREAM.update(task="autoregressive", initial_step=4)  # every frame is read


def test_once_checks_each_frame_once_per_identity_and_catches_later_nan(tmp_path, quiet, checks):
    x = with_ids((60, 5, 32))
    path = write_single(tmp_path / "o.h5", x)
    stream = PDEBenchStream(path, **STREAM)
    assert stream.dataset.finite_check == "once"
    reader = stream.dataset._direct
    assert isinstance(reader, OffsetReader) and not reader.verified().any()
    assert ids_of(stream) == list(range(6, 60))
    assert len(checks) > 0 and reader.verified()[6:].all() and not reader.verified()[:6].any()
    checks.clear()
    stream.set_epoch(1)
    assert ids_of(stream) == list(range(6, 60))
    assert checks == []  # nothing rechecked while the file is unchanged
    reader.read(np.arange(6, 20), (0, 3))  # some frames of samples verified whole
    assert checks == []
    reader.read(np.arange(0, 8), (0, 3))  # samples 0-5 (test split) were never read
    assert len(checks) == 6 and reader.verified()[:6, [0, 3]].all()
    assert not reader.verified()[:6, [1, 2, 4]].any()
    checks.clear()
    poke(path, 33, 2, 7)  # NaN written after the verification
    assert not reader.verified().any()  # new identity: no mark holds
    stream.set_epoch(2)
    with pytest.raises(NonFiniteError, match=r"o\.h5 \[key 'tensor'\].*sample 33 has NaN/inf"):
        list(stream)
    skip = PDEBenchStream(path, on_nonfinite="skip", **STREAM)
    for epoch in range(2):  # a non-finite frame is never marked: dropped every epoch
        skip.set_epoch(epoch)
        assert ids_of(skip) == sorted(set(range(6, 60)) - {33})
    # its finite frames are marked, the NaN frame never is
    assert skip.dataset._direct.verified()[33].tolist() == [True, True, False, True, True]


def test_every_read_checks_every_epoch(tmp_path, quiet, checks):
    x = with_ids((60, 5, 32))
    x[20, 4, 9] = np.inf
    path = write_single(tmp_path / "e.h5", x)
    stream = PDEBenchStream(path, finite_check="every_read", **STREAM)
    for epoch in range(3):
        stream.set_epoch(epoch)
        with pytest.raises(NonFiniteError, match="sample 20 has NaN/inf"):
            list(stream)
    clean = write_single(tmp_path / "c.h5", with_ids((60, 5, 32)))
    stream = PDEBenchStream(clean, finite_check="every_read", **STREAM)
    per_epoch = []
    for epoch in range(3):
        checks.clear()
        stream.set_epoch(epoch)
        assert ids_of(stream) == list(range(6, 60))
        per_epoch.append(sum(checks))
    assert per_epoch == [54 * 5 * 32] * 3  # every value of the split, every epoch
    assert not stream.dataset._direct.verified().any()


def test_recently_changed_file_is_checked_every_read(tmp_path, checks):
    # Default quiet window: a file written a moment ago may still change within the same
    # ctime tick, so nothing is marked and every read is checked.
    path = write_single(tmp_path / "r.h5", with_ids((30, 3, 16)))
    ds = PDEBenchDataset(path, split="train", val_fraction=0)
    for _ in range(2):
        checks.clear()
        ds.to_tensors()
        assert len(checks) > 0
    assert not ds._direct.verified().any()


def test_write_during_a_read_is_caught(tmp_path, quiet, monkeypatch):
    # The identity seen before the read is the verified one, the one after it is not (a write
    # landed meanwhile): the rows whose check was skipped are checked after all.
    path = write_single(tmp_path / "d.h5", with_ids((40, 4, 16)))
    ds = PDEBenchDataset(path, split="train", val_fraction=0, task="autoregressive",
                         initial_step=3)  # fmt: skip
    ds.to_tensors()
    reader = ds._direct
    assert reader.verified()[4:].all()
    verified = os.fstat(reader._descriptor())
    poke(path, 17, 1, 3, np.inf)
    real = os.fstat
    calls = []

    def fstat(fd):
        st = real(fd)
        calls.append(fd)
        if fd == reader._fd and len(calls) % 2 == 1:  # "before": still the verified identity
            return types.SimpleNamespace(
                **{k: getattr(verified, k) for k in dir(st) if k[:3] == "st_"}
            )
        return st

    monkeypatch.setattr(os, "fstat", fstat)
    _, ok = reader.read(np.arange(10, 20), (0, 1, 2, 3))
    assert ok[7].tolist() == [True, False, True, True] and ok[np.arange(10) != 7].all()
    assert len(calls) == 2
    monkeypatch.undo()
    assert not reader.verified().any()  # nothing was marked under either identity


def test_marks_are_shared_with_dataloader_workers(tmp_path, quiet):
    path = write_single(tmp_path / "w.h5", with_ids((64, 3, 16)))
    stream = PDEBenchStream(path, split="train", val_fraction=0, block_size=4, batch_size=5)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    assert ids_of(loader) == list(range(6, 64))
    # the workers (forked) verified the samples; the marks live in shared memory
    assert stream.dataset._direct.verified()[6:, [0, -1]].all()
    assert not stream.dataset._direct.verified()[:, 1].any()  # the frames read, no others
    copy = pickle.loads(pickle.dumps(stream.dataset))  # spawned workers: own, empty marks
    assert not copy._direct.verified().any()
    assert torch.equal(copy.to_tensors()[0], stream.dataset.to_tensors()[0])


def test_finite_check_argument_is_validated(tmp_path):
    path = write_single(tmp_path / "a.h5", with_ids((20, 3, 16)))
    with pytest.raises(ValueError, match=r"finite_check must be one of 'once', 'every_read'"):
        PDEBenchDataset(path, finite_check="never")
    with pytest.raises(ValueError, match="finite_check"):
        PDEBenchStream(path, finite_check="sometimes")


@pytest.mark.parametrize("per_chunk", [1, 3])
def test_whole_sample_chunks_are_read_by_offset(tmp_path, per_chunk):
    x = with_ids((22, 6, 16))  # 22 samples: the last chunk of 3 is partial
    path = write_single(
        tmp_path / "c.h5", x, chunks=(per_chunk, 6, 16), file=dict(userblock_size=512)
    )
    for kwargs in (
        dict(task="autoregressive", initial_step=5),
        dict(task="step", t_in=1, t_out=-2),
        dict(task="autoregressive", initial_step=2, windows="all", reduced_resolution_t=2),
    ):
        ds = PDEBenchDataset(path, split="train", **kwargs)
        assert ds.reads_by_offset
        twin = PDEBenchDataset(path, split="train", **kwargs)
        twin._direct = None
        for a, b in zip(ds.to_tensors(), twin.to_tensors(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    ds = PDEBenchDataset(path, split="test", task="autoregressive", initial_step=5)
    block, _ = ds._direct.read([21, 2, 0, 1, 20], tuple(range(6)))
    np.testing.assert_array_equal(block[:, :, 0], x[[21, 2, 0, 1, 20]])


def test_cfd_chunked_by_samples_reads_by_offset(tmp_path):
    cfd = tmp_path / "cfd.h5"
    rng = np.random.default_rng(1)
    with h5py.File(cfd, "w") as f:
        for key in ("density", "pressure", "Vx", "Vy"):
            f.create_dataset(key, data=rng.standard_normal((12, 5, 4, 6), dtype=np.float32),
                             chunks=(2, 5, 4, 6))  # fmt: skip
        f["x-coordinate"] = np.arange(4, dtype=np.float32)
        f["y-coordinate"] = np.arange(6, dtype=np.float32)
        f["t-coordinate"] = np.arange(6, dtype=np.float32)
    kwargs = dict(split="train", task="autoregressive", initial_step=2, windows="all")
    ds = PDEBenchDataset(cfd, **kwargs)
    assert ds.reads_by_offset
    twin = PDEBenchDataset(cfd, **kwargs)
    twin._direct = None
    for a, b in zip(ds.to_tensors(), twin.to_tensors(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "create",
    [
        dict(chunks=(2, 3, 16)),  # a chunk splits a sample's frames
        dict(chunks=(2, 6, 16), compression="gzip"),
        dict(chunks=(2, 6, 16), shuffle=True),  # a filter, even without compression
    ],
    ids=["split-sample", "gzip", "shuffle-filter"],
)
def test_other_chunk_storage_reads_through_h5py(tmp_path, create):
    x = with_ids((20, 6, 16))
    path = write_single(tmp_path / "u.h5", x, **create)
    ds = PDEBenchDataset(path, split="train", task="autoregressive", initial_step=5)
    assert not ds.reads_by_offset
    np.testing.assert_array_equal(ds.to_tensors()[0].numpy(), x[2:19, :5])


def test_truncated_chunked_file_names_the_file_and_key(tmp_path):
    path = write_single(tmp_path / "t.h5", with_ids((30, 4, 256)), chunks=(1, 4, 256))
    with h5py.File(path) as f:
        infos = []
        f["tensor"].id.chunk_iter(infos.append)
    last = max(i.byte_offset for i in infos)
    ds = PDEBenchDataset(path, split="train", val_fraction=0)
    assert ds.reads_by_offset
    os.truncate(path, last + 100)
    with pytest.raises(CorruptFileError, match=r"t\.h5 \[key 'tensor'\].*truncated"):
        ds.to_tensors()


def test_verified_reads_in_any_order_equal_the_file(tmp_path, quiet, monkeypatch):
    # Verified rows are read in file order, one call per run of records back to back in the
    # file, each record into its own row: any order, repeats.
    x = with_ids((50, 4, 96))
    path = write_single(tmp_path / "v.h5", x)
    ds = PDEBenchDataset(path, split="train", val_fraction=0, task="autoregressive",
                         initial_step=3)  # fmt: skip
    ds.to_tensors()
    reader = ds._direct
    assert reader.verified()[5:].all()
    calls = []
    real = os.preadv
    monkeypatch.setattr(
        os, "preadv", lambda fd, bufs, at: calls.append(len(bufs)) or real(fd, bufs, at)
    )
    samples = [30, 7, 8, 31, 9, 12, 7, 40, 11, 10]
    block, ok = reader.read(samples, (0, 1, 2, 3))
    np.testing.assert_array_equal(block[:, :, 0], x[samples])
    assert ok.all()
    assert calls == [1, 6, 2, 1]  # [7] [7 8 9 10 11 12] [30 31] [40]


@pytest.mark.parametrize("finite_check", ["once", "every_read"])
def test_batches_read_together_stay_whole_when_items_are_dropped(tmp_path, quiet, finite_check):
    x = with_ids((90, 3, 16))
    x[[20, 21, 55, 70], [0, 2, 1, 0], [5, 5, 5, 5]] = np.nan
    path = write_single(tmp_path / "g.h5", x)
    kw = dict(split="train", val_fraction=0, block_size=4, buffer_size=16, seed=5)
    kw.update(task="autoregressive", initial_step=2)  # every frame is read
    for epoch in range(2):
        stream = PDEBenchStream(path, batch_size=4, on_nonfinite="skip", finite_check=finite_check,
                                **kw)  # fmt: skip
        stream.set_epoch(epoch)
        batches = list(stream)
        assert [len(b) for b, _ in batches] == [4] * 19 + [1]  # 77 finite of 81 in the split
        assert ids_of(batches) == sorted(set(range(9, 90)) - {20, 21, 55, 70})
        with pytest.raises(NonFiniteError, match=r"sample (20|21|55|70) has NaN/inf"):
            list(PDEBenchStream(path, batch_size=4, finite_check=finite_check, **kw))
