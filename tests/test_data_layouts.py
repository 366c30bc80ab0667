"""Every PDEBench layout, written here by plain h5py (not by our generators), loads correctly."""

import h5py
import numpy as np
import pytest

from liponet.data import PDEBenchDataset


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_cfd_multi_field(tmp_path, dims):
    rng = np.random.default_rng(dims)
    n, nt = 20, 6
    space = (8, 6, 4)[:dims]
    path = tmp_path / f"{dims}D_CFD_Rand_Eta0.01_Zeta0.01_periodic_Train.hdf5"
    names = ["density", "pressure", "Vx", "Vy", "Vz"][: 2 + dims]
    fields = {k: _rand(rng, n, nt, *space) for k in names}
    with h5py.File(path, "w") as f:
        for k, v in fields.items():
            f[k] = v
        for axis, m in zip("xyz", space, strict=False):
            f[f"{axis}-coordinate"] = np.linspace(-1, 1, m, dtype=np.float32)
        f["t-coordinate"] = np.linspace(0, 1, nt + 1, dtype=np.float32)
        f.attrs["eta"], f.attrs["zeta"] = 0.01, 0.01
    ds = PDEBenchDataset(path, split="test", task="step", t_in=1, t_out=4, reduced_resolution=2)
    assert ds.layout.kind == "cfd" and ds.layout.fields == tuple(names)
    assert ds.in_channels == ds.out_channels == 2 + dims
    assert list(ds.indices) == [0, 1]
    x, y = ds[1]
    sl = (slice(None, None, 2),) * dims
    np.testing.assert_array_equal(x.numpy(), np.stack([fields[k][1, 1][sl] for k in names]))
    np.testing.assert_array_equal(y.numpy(), np.stack([fields[k][1, 4][sl] for k in names]))
    assert set(ds.grid) == {*"xyz"[:dims], "t"}
    np.testing.assert_allclose(ds.grid["x"].numpy(), np.linspace(-1, 1, 8)[::2], rtol=1e-6)
    ar = PDEBenchDataset(path, split="train", task="autoregressive", initial_step=2, val_fraction=0)
    x, y = ar[0]
    # channels: frame-major, field-minor
    expect = np.stack([fields[k][2, t] for t in (0, 1) for k in names])
    np.testing.assert_array_equal(x.numpy(), expect)
    np.testing.assert_array_equal(y.numpy(), np.stack([fields[k][2, 2] for k in names]))


def test_darcy(tmp_path):
    rng = np.random.default_rng(0)
    n, m = 30, 16
    nu = np.where(_rand(rng, n, m, m) > 0, 1.0, 0.1).astype(np.float32)
    sol = _rand(rng, n, 1, m, m)
    path = tmp_path / "2D_DarcyFlow_beta1.0_Train.hdf5"
    with h5py.File(path, "w") as f:
        f["nu"], f["tensor"] = nu, sol
        f["x-coordinate"] = f["y-coordinate"] = (np.arange(m, dtype=np.float32) + 0.5) / m
        f.attrs["beta"] = 1.0
    ds = PDEBenchDataset(
        path, split="test", task="coefficient", reduced_resolution=2, reduced_resolution_t=7
    )  # Darcy ignores the time stride, as PDEBench
    assert ds.layout.kind == "darcy" and list(ds.indices) == [0, 1, 2]
    X, Y = ds.to_tensors()
    np.testing.assert_array_equal(X.numpy(), nu[:3, None, ::2, ::2])
    np.testing.assert_array_equal(Y.numpy(), sol[:3, :, ::2, ::2])
    assert set(ds.grid) == {"x", "y"}
    ar = PDEBenchDataset(path, split="test", task="autoregressive")  # initial_step 1: nu -> u
    np.testing.assert_array_equal(ar[0][0].numpy(), nu[0][None])
    np.testing.assert_array_equal(ar[0][1].numpy(), sol[0])
    with pytest.raises(ValueError, match="needs a Darcy file"):
        other = tmp_path / "single.h5"
        with h5py.File(other, "w") as f:
            f["tensor"] = sol[:, :, 0]
            f["x-coordinate"] = np.arange(m, dtype=np.float32)
            f["t-coordinate"] = np.arange(2, dtype=np.float32)
        PDEBenchDataset(other, task="coefficient")


@pytest.mark.parametrize(
    "name,fields,lim,t_end",
    [("2D_diff-react_NA_NA.h5", 2, 1.0, 5.0), ("2D_rdb_NA_NA.h5", 1, 2.5, 1.0)],
)
def test_group_per_sample(tmp_path, name, fields, lim, t_end):
    rng = np.random.default_rng(1)
    n, nt, m = 12, 5, 8
    path = tmp_path / name
    data = {}
    with h5py.File(path, "w") as f:
        for i in rng.permutation(n):  # creation order must not matter: keys are sorted
            key = f"{i:04d}"
            data[key] = _rand(rng, nt, m, m, fields)
            g = f.create_group(key)
            g.create_dataset("data", data=data[key], compression="lzf")
            x = np.linspace(-lim, lim, m, dtype=np.float32)
            g["grid/x"], g["grid/y"] = x, x
            g["grid/t"] = np.linspace(0, t_end, nt, dtype=np.float32)
            g.attrs["config"] = f"sim: {{seed: {i}}}"
    keys = sorted(data)
    test = PDEBenchDataset(path, split="test", task="step", t_in=0, t_out=-1)
    assert test.layout.kind == "group-per-sample"
    assert list(test.indices) == [10, 11]  # keys[int(12 * 0.9):] = last 10% (rounded up)
    X, Y = test.to_tensors()
    for j, i in enumerate(test.indices):
        np.testing.assert_array_equal(X[j].numpy(), np.moveaxis(data[keys[i]][0], -1, 0))
        np.testing.assert_array_equal(Y[j].numpy(), np.moveaxis(data[keys[i]][-1], -1, 0))
    train = PDEBenchDataset(
        path, split="train", val_fraction=0.2, reduced_resolution=2, reduced_resolution_t=2
    )
    assert list(train.indices) == list(range(0, 8))  # [0, 10) minus the last int(0.2*10) = 2
    assert train.in_channels == fields and train[0][0].shape == (fields, 4, 4)
    np.testing.assert_allclose(train.grid["t"].numpy(), np.linspace(0, t_end, nt)[::2], rtol=1e-6)
    np.testing.assert_allclose(train.grid["x"].numpy(), np.linspace(-lim, lim, m)[::2], rtol=1e-6)
    scattered = train.read_frames([1, 4], [0, 2])  # as the stream reads shuffled batches
    for j, i in enumerate((1, 4)):
        expect = np.moveaxis(data[keys[i]][[0, 4], ::2, ::2], -1, 1)
        np.testing.assert_array_equal(scattered[j], expect)


def test_scattered_rows_read_like_slices(tmp_path):
    """Non-consecutive samples (the stream's shuffled batches) read through the run-by-run path
    equal the same samples read one by one, for every array layout and with strides."""
    rng = np.random.default_rng(3)
    darcy = tmp_path / "darcy.h5"
    with h5py.File(darcy, "w") as f:
        f["nu"] = _rand(rng, 12, 8, 8)
        f["tensor"] = _rand(rng, 12, 1, 8, 8)
        f["x-coordinate"] = f["y-coordinate"] = np.arange(8, dtype=np.float32)
    cfd = tmp_path / "cfd.h5"
    with h5py.File(cfd, "w") as f:
        for k in ("density", "pressure", "Vx", "Vy"):
            f[k] = _rand(rng, 12, 5, 8, 6)
        f["x-coordinate"] = np.arange(8, dtype=np.float32)
        f["y-coordinate"] = np.arange(6, dtype=np.float32)
        f["t-coordinate"] = np.arange(6, dtype=np.float32)
    for path, kwargs in ((darcy, {}), (cfd, dict(reduced_resolution_t=2))):
        ds = PDEBenchDataset(path, reduced_resolution=2, **kwargs)
        positions = list(range(ds.n_frames))
        rows = [1, 2, 3, 7, 10]
        scattered = ds.read_frames(rows, positions)
        one_by_one = np.concatenate([ds.read_frames(range(i, i + 1), positions) for i in rows])
        np.testing.assert_array_equal(scattered, one_by_one)
        step = ds.read_frames([0, 5], [positions[-1], 0])  # reordered frames too
        full = ds.read_frames(range(0, 6), positions)
        np.testing.assert_array_equal(step[:, 0], full[[0, 5], -1])
        np.testing.assert_array_equal(step[:, 1], full[[0, 5], 0])
