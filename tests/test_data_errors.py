"""Each bad input gives a specific PDEBenchFormatError naming file, key and expectation."""

import h5py
import numpy as np
import pytest

from liponet.data import (
    CorruptFileError,
    EmptySelectionError,
    MissingKeyError,
    NonFiniteError,
    NotHDF5Error,
    PDEBenchDataset,
    PDEBenchFileNotFoundError,
    PDEBenchFormatError,
    PDEBenchStream,
    UnknownLayoutError,
    WrongRankError,
    compute_stats,
    generate,
)


def single(path, n=20, nt=4, nx=8, **extra):
    data = np.arange(n * nt * nx, dtype=np.float32).reshape(n, nt, nx)
    with h5py.File(path, "w") as f:
        f["tensor"] = extra.pop("tensor", data)
        if extra.pop("x", True):
            f["x-coordinate"] = np.arange(nx, dtype=np.float32)
        f["t-coordinate"] = np.arange(nt + 1, dtype=np.float32)
    return path


def test_error_hierarchy():
    assert issubclass(PDEBenchFormatError, ValueError)
    assert issubclass(PDEBenchFileNotFoundError, FileNotFoundError)
    for cls in (
        NotHDF5Error,
        CorruptFileError,
        UnknownLayoutError,
        MissingKeyError,
        WrongRankError,
        NonFiniteError,
        EmptySelectionError,
    ):
        assert issubclass(cls, PDEBenchFormatError)


def test_missing_file(tmp_path):
    with pytest.raises(PDEBenchFileNotFoundError, match=r"nope\.h5: no such file"):
        PDEBenchDataset(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path):
    bad = tmp_path / "notes.h5"
    bad.write_text("hello, not an HDF5 file\n" * 100)
    with pytest.raises(NotHDF5Error, match=r"notes\.h5: not an HDF5 file"):
        PDEBenchDataset(bad)


@pytest.mark.parametrize("keep", [0.05, 0.5, 0.95])
def test_truncated(tmp_path, keep):
    path = single(tmp_path / "t.h5", n=200, nt=8, nx=64)
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(PDEBenchFormatError, match=r"t\.h5.*(truncated|corrupt|HDF5)"):
        ds = PDEBenchDataset(path, split="train", val_fraction=0)
        ds.to_tensors()


def test_corrupt_bytes(tmp_path):
    path = single(tmp_path / "c.h5", n=50, nt=4, nx=16)
    raw = bytearray(path.read_bytes())
    raw[512:2048] = b"\xff" * 1536  # clobber metadata after the superblock
    path.write_bytes(bytes(raw))
    with pytest.raises(PDEBenchFormatError, match=r"c\.h5"):
        PDEBenchDataset(path).to_tensors()


def test_unknown_layout(tmp_path):
    path = tmp_path / "u.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.zeros(3)
    with pytest.raises(UnknownLayoutError, match=r"u\.h5: keys \[weights\] match no PDEBench"):
        PDEBenchDataset(path)


def test_missing_keys(tmp_path):
    path = single(tmp_path / "m.h5", x=False)
    with pytest.raises(MissingKeyError, match=r"m\.h5 \[key 'x-coordinate'\]: missing key"):
        PDEBenchDataset(path)
    cfd = tmp_path / "cfd.h5"
    with h5py.File(cfd, "w") as f:
        f["density"] = f["pressure"] = np.zeros((3, 4, 5), np.float32)
    with pytest.raises(MissingKeyError, match=r"\[key 'Vx'\]"):
        PDEBenchDataset(cfd)
    group = tmp_path / "g.h5"
    with h5py.File(group, "w") as f:
        for i in range(10):
            if i == 3:
                f.create_group("0003")
                continue
            f[f"{i:04d}/data"] = np.zeros((3, 4, 4, 1), np.float32)
            f[f"{i:04d}/grid/x"] = f[f"{i:04d}/grid/y"] = np.zeros(4, np.float32)
            f[f"{i:04d}/grid/t"] = np.zeros(3, np.float32)
    ds = PDEBenchDataset(group, split="train", val_fraction=0)
    with pytest.raises(MissingKeyError, match=r"\[key '0003/data'\]"):
        ds.to_tensors()


def test_wrong_rank(tmp_path):
    path = single(tmp_path / "r.h5", tensor=np.zeros((5, 8), np.float32))
    with pytest.raises(WrongRankError, match=r"\[key 'tensor'\]: has rank 2 \(5, 8\), expected"):
        PDEBenchDataset(path)
    bad_x = single(tmp_path / "x.h5", nx=8)
    with h5py.File(bad_x, "a") as f:
        del f["x-coordinate"]
        f["x-coordinate"] = np.zeros(7, np.float32)
    with pytest.raises(WrongRankError, match="has 7 points, expected 8"):
        PDEBenchDataset(bad_x)
    darcy = tmp_path / "d.h5"
    with h5py.File(darcy, "w") as f:
        f["nu"] = np.zeros((3, 4, 4), np.float32)
        f["tensor"] = np.zeros((3, 4, 4), np.float32)
    with pytest.raises(WrongRankError, match=r"\[key 'tensor'\].*expected \(N, 1, \*spatial\)"):
        PDEBenchDataset(darcy)


def test_nonfinite_raise_and_skip(tmp_path):
    data = np.ones((20, 4, 8), np.float32)
    data[5, 3, 2] = np.nan
    data[7, 0, 0] = np.inf
    path = single(tmp_path / "n.h5", tensor=data)
    ds = PDEBenchDataset(path, split="train", val_fraction=0)
    with pytest.raises(NonFiniteError, match=r"\[key 'tensor'\]: sample 5 has NaN/inf"):
        ds.to_tensors()
    with pytest.raises(NonFiniteError, match="sample 7"):
        ds[5]  # item 5 = sample 7
    skip = PDEBenchDataset(path, split="train", val_fraction=0, on_nonfinite="skip")
    assert 5 not in skip.indices and 7 not in skip.indices and len(skip) == 16
    assert skip.to_tensors()[0].isfinite().all()
    stream = PDEBenchStream(path, split="train", val_fraction=0, on_nonfinite="skip")
    assert len(list(stream)) == 16
    with pytest.raises(NonFiniteError):
        list(PDEBenchStream(path, split="train", val_fraction=0))
    with pytest.raises(NonFiniteError):
        compute_stats(path, split="train", val_fraction=0)
    assert compute_stats(skip).count == 16 * 4 * 8


def test_nonfinite_in_a_group_file_names_the_group(tmp_path):
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        for i in range(10):
            data = np.zeros((3, 4, 4, 2), np.float32)
            if i == 4:
                data[2, 1, 1, 1] = np.nan
            f[f"{i:04d}/data"] = data
            f[f"{i:04d}/grid/x"] = f[f"{i:04d}/grid/y"] = np.zeros(4, np.float32)
            f[f"{i:04d}/grid/t"] = np.zeros(3, np.float32)
    with pytest.raises(NonFiniteError, match=r"\[key '0004/data'\]: sample 4 has NaN/inf"):
        PDEBenchDataset(path, split="train", val_fraction=0).to_tensors()
    assert 4 not in PDEBenchDataset(path, val_fraction=0, on_nonfinite="skip").indices


def test_selections_that_leave_nothing(tmp_path):
    path = single(tmp_path / "s.h5", n=20, nt=4)
    for kwargs, msg in [
        (dict(reduced_resolution=0), "reduced_resolution=0 leaves nothing"),
        (dict(reduced_resolution_t=-1), "reduced_resolution_t=-1 leaves nothing"),
        (dict(num_samples_max=0), "num_samples_max=0 leaves nothing"),
        (dict(split="test", num_samples_max=9), "split 'test' is empty"),
        (dict(task="autoregressive", initial_step=2, reduced_resolution_t=2), "initial_step=2"),
        (dict(t_out=2, reduced_resolution_t=3), "t_out=2 is out of range"),
    ]:
        with pytest.raises(EmptySelectionError, match=msg):
            PDEBenchDataset(path, **kwargs)


def test_bad_arguments(tmp_path):
    path = generate("advection", tmp_path / "a.h5", n_samples=10, nx=8, nt=3)
    with pytest.raises(ValueError, match="task must be one of"):
        PDEBenchDataset(path, task="steps")
    with pytest.raises(ValueError, match="split must be one of"):
        PDEBenchDataset(path, split="validation")
    with pytest.raises(ValueError, match="rank must be in"):
        PDEBenchStream(path, rank=2, world_size=2)
