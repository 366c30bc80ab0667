"""The reader on files written here by plain h5py at PDEBench's key names and shapes."""

import pickle

import h5py
import numpy as np
import pytest
import torch

from liponet.data import PDEBenchDataset, pdebench_splits


def write_single(path, n=20, nt=11, nx=16, first_x=-0.99, seed=0):
    """1-D advection/Burgers layout (released Burgers files had x on (-1, 1))."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, nt, nx)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["tensor"] = data
        f["x-coordinate"] = np.linspace(first_x, -first_x, nx, dtype=np.float32)
        f["t-coordinate"] = (0.01 * np.arange(nt + 1)).astype(np.float32)
        f.attrs["Nu"] = 0.01
    return data


@pytest.mark.parametrize("n", [1, 9, 10, 11, 25, 29, 30, 99, 100, 1000, 10000])
def test_splits_follow_pdebench_rules(n):
    # single-array files: test = first int(0.1 N); group files: test = keys[int(N * (1 - 0.1)):]
    s = pdebench_splits(n, test_at_end=False, val_fraction=0.0)
    assert s["test"] == range(0, int(0.1 * n)) and s["train"] == range(int(0.1 * n), n)
    g = pdebench_splits(n, test_at_end=True, val_fraction=0.0)
    assert g["test"] == range(int(n * (1 - 0.1)), n) and g["train"] == range(0, int(n * 0.9))
    for rule in (s, g):
        v = pdebench_splits(n, test_at_end=rule is g, val_fraction=0.2)
        assert v["test"] == rule["test"]
        # validation = the LAST int(0.2 * len(train)) of PDEBench's train split; no overlap
        assert len(v["val"]) == int(0.2 * len(rule["train"]))
        assert sorted([*v["train"], *v["val"]]) == list(rule["train"])
        assert v["val"].stop == rule["train"].stop


def test_single_array_file_from_plain_h5py(tmp_path):
    path = tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5"
    data = write_single(path, n=20, nt=11, nx=16)
    ds = PDEBenchDataset(
        path, split="test", task="step", reduced_resolution=2, reduced_resolution_t=5
    )
    assert list(ds.indices) == [0, 1]
    assert ds.n_frames == 3 and ds.in_channels == ds.out_channels == 1
    x, y = ds[1]
    np.testing.assert_array_equal(x.numpy(), data[1, 0, ::2][None])
    np.testing.assert_array_equal(y.numpy(), data[1, 10, ::2][None])
    # coordinates are the file's (x on (-1, 1) here), strided like the data
    np.testing.assert_allclose(
        ds.grid["x"].numpy(), np.linspace(-0.99, 0.99, 16, dtype=np.float32)[::2]
    )
    np.testing.assert_allclose(ds.grid["t"].numpy(), (0.01 * np.arange(12))[:11:5], rtol=1e-6)
    tr = PDEBenchDataset(path, split="train", val_fraction=0.25, num_samples_max=18)
    assert list(tr.indices) == list(range(1, 14))  # cap 18: test [0, 1), val = last 4 of [1, 18)
    X, Y = tr.to_tensors()
    np.testing.assert_array_equal(X.numpy(), data[1:14, :1])
    np.testing.assert_array_equal(Y.numpy(), data[1:14, -1:])
    assert X.dtype == torch.float32


def test_autoregressive_windows_and_trajectories(tmp_path):
    path = tmp_path / "adv.hdf5"
    data = write_single(path, n=10, nt=12, nx=8)
    ds = PDEBenchDataset(
        path,
        split="train",
        task="autoregressive",
        initial_step=3,
        reduced_resolution_t=2,
        val_fraction=0.0,
    )
    assert len(ds) == 9 and ds.in_channels == 3 and ds.out_channels == 1
    x, y = ds[0]
    np.testing.assert_array_equal(x.numpy(), data[1, [0, 2, 4]])
    np.testing.assert_array_equal(y.numpy(), data[1, 6][None])
    np.testing.assert_array_equal(ds.trajectory(0).numpy(), data[1, ::2, None])
    every = PDEBenchDataset(
        path, split="train", task="autoregressive", initial_step=3, windows="all", val_fraction=0.0
    )
    assert len(every) == 9 * (12 - 3)
    x, y = every[9 + 4]  # sample 2 (second of the split), window starting at frame 4
    np.testing.assert_array_equal(x.numpy(), data[2, 4:7])
    np.testing.assert_array_equal(y.numpy(), data[2, 7][None])
    X, _ = every.to_tensors()
    np.testing.assert_array_equal(X[13].numpy(), x.numpy())
    # default initial_step is PDEBench's: 10 (no 'rho' attribute)
    assert PDEBenchDataset(path, task="autoregressive").in_channels == 10


def test_lazy_reopen_after_pickle_and_in_workers(tmp_path):
    path = tmp_path / "adv.hdf5"
    data = write_single(path, n=20, nt=4, nx=8)
    ds = PDEBenchDataset(path, split="train", val_fraction=0.0)
    ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[3][1].numpy(), data[5, -1][None])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    ys = torch.cat([y for _, y in loader])
    np.testing.assert_array_equal(ys.numpy(), data[2:, -1:])
