"""The Well's layout: files written here with plain h5py, read by WellDataset / WellStream."""

import csv

import h5py
import numpy as np
import pytest
import torch

from liponet.data import (
    NonFiniteError,
    PDEBenchFileNotFoundError,
    WellDataset,
    WellFormatError,
    WellStream,
    compute_stats,
    generate_well,
)

AXES = "xyz"
SIZES = {1: (12,), 2: (8, 6), 3: (6, 4, 4)}


def strings(values):
    return np.array(values, dtype=h5py.string_dtype())


def put(group, name, data, *, tv, sv, dv=None):
    ds = group.create_dataset(name, data=np.asarray(data, dtype=np.float32))
    ds.attrs["time_varying"] = tv
    ds.attrs["sample_varying"] = sv
    if dv is not None:
        ds.attrs["dim_varying"] = np.asarray(dv, dtype=bool)
    return ds


def write_well(path, dims=2, n=3, nt=5, bc=None, seed=0, skip=(), t2_flat=False):
    """A file with scalar, vector, tensor, constant and partly-varying fields and two scalars.

    Returns the arrays written, by name, for checks.
    """
    rng = np.random.default_rng(seed)
    shape = SIZES[dims]
    axes = list(AXES[:dims])
    bc = bc or {a: "periodic" for a in axes}
    arrays = {
        "density": rng.standard_normal((n, nt, *shape)),
        "velocity": rng.standard_normal((n, nt, *shape, dims)),
        "stress": rng.standard_normal((n, nt, *shape, dims, dims)),
        "mask": rng.standard_normal((n, *shape)),  # constant in time
        "profile": rng.standard_normal((nt, shape[0])),  # x only, same for every sample
        "Re": rng.uniform(1, 2, n),
        "forcing": rng.uniform(0, 1, nt),  # time-varying scalar
    }
    with h5py.File(path, "w") as f:
        if "n_spatial_dims" not in skip:
            f.attrs["n_spatial_dims"] = dims
        f.attrs["n_trajectories"] = n
        f.attrs["dataset_name"] = "test"
        d = f.create_group("dimensions")
        d.attrs["spatial_dims"] = strings(axes)
        t = d.create_dataset("time", data=np.linspace(0, 1, nt, dtype=np.float32))
        t.attrs["sample_varying"] = False
        for a, m in zip(axes, shape, strict=True):
            d.create_dataset(a, data=np.linspace(0, 1, m, dtype=np.float32))
        b = f.create_group("boundary_conditions")
        for a, kind in bc.items():
            g = b.create_group(f"{a}_{kind}")
            g.attrs["associated_dims"] = strings([a])
            g.attrs["bc_type"] = kind
        s = f.create_group("scalars")
        s.attrs["field_names"] = strings(["Re", "forcing"])
        put(s, "Re", arrays["Re"], tv=False, sv=True)
        put(s, "forcing", arrays["forcing"], tv=True, sv=False)
        g0 = f.create_group("t0_fields")
        g0.attrs["field_names"] = strings(["density", "mask", "profile"])
        put(g0, "density", arrays["density"], tv=True, sv=True, dv=[True] * dims)
        put(g0, "mask", arrays["mask"], tv=False, sv=True, dv=[True] * dims)
        put(g0, "profile", arrays["profile"], tv=True, sv=False, dv=[True] + [False] * (dims - 1))
        if "t1_fields" not in skip:
            g1 = f.create_group("t1_fields")
            g1.attrs["field_names"] = strings(["velocity"])
            put(g1, "velocity", arrays["velocity"], tv=True, sv=True, dv=[True] * dims)
        g2 = f.create_group("t2_fields")
        g2.attrs["field_names"] = strings(["stress"])
        stress = arrays["stress"]
        if t2_flat:
            stress = stress.reshape(*stress.shape[:-2], dims * dims)
        put(g2, "stress", stress, tv=True, sv=True, dv=[True] * dims)
    return arrays


def expected_frame(arrays, b, t, dims):
    """The channels of one frame in the documented order."""
    shape = SIZES[dims]
    profile = arrays["profile"][t].reshape(shape[0], *[1] * (dims - 1))
    return np.concatenate(
        [
            arrays["density"][b, t][None],
            np.broadcast_to(profile, shape)[None],
            np.moveaxis(arrays["velocity"][b, t], -1, 0),
            np.moveaxis(arrays["stress"][b, t].reshape(*shape, dims * dims), -1, 0),
        ]
    )


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("t2_flat", [False, True])
def test_channels_grids_and_values(tmp_path, dims, t2_flat):
    path = tmp_path / "one.hdf5"
    arrays = write_well(path, dims=dims, t2_flat=t2_flat)
    ds = WellDataset(path, initial_step=2)
    axes = AXES[:dims]
    frame = (
        ["density", "profile"]
        + [f"velocity_{a}" for a in axes]
        + [f"stress_{a}{b}" for a in axes for b in axes]
    )
    assert ds.target_names == tuple(frame)
    assert ds.channel_names == (
        *[f"{c}@{k}" for k in range(2) for c in frame],
        "mask",
        "Re",
        "forcing@0",
        "forcing@1",
    )
    assert ds.in_channels == len(ds.channel_names) == 2 * len(frame) + 4
    assert ds.n_extra == 4
    assert len(ds) == 3 * (5 - 2)
    assert list(ds.grid) == [*axes, "t"]
    for a, m in zip(axes, SIZES[dims], strict=True):
        torch.testing.assert_close(ds.grid[a], torch.linspace(0, 1, m))
    x, y = ds[4]  # trajectory 1, window starting at frame 1: frames 1, 2 -> 3
    assert x.shape == (ds.in_channels, *SIZES[dims]) and y.shape == (len(frame), *SIZES[dims])
    n_f = len(frame)
    f1, f2, f3 = (expected_frame(arrays, 1, t, dims) for t in (1, 2, 3))
    np.testing.assert_allclose(x[:n_f].numpy(), f1, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x[n_f : 2 * n_f].numpy(), f2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y.numpy(), f3, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x[2 * n_f].numpy(), arrays["mask"][1], rtol=0, atol=1e-6)
    extras = x[2 * n_f + 1 :].reshape(3, -1).numpy()
    want = [arrays["Re"][1], arrays["forcing"][1], arrays["forcing"][2]]
    np.testing.assert_allclose(extras, np.repeat(np.float32(want)[:, None], extras.shape[1], 1))
    # the batched path gives the same items as __getitem__
    X, Y = ds.to_tensors()
    assert X.shape == (len(ds), ds.in_channels, *SIZES[dims])
    for i in range(len(ds)):
        xi, yi = ds[i]
        torch.testing.assert_close(X[i], xi, rtol=0, atol=0)
        torch.testing.assert_close(Y[i], yi, rtol=0, atol=0)


def test_step_task_strides_and_no_extras(tmp_path):
    arrays = write_well(tmp_path / "f.hdf5", dims=2, nt=7)
    ds = WellDataset(
        tmp_path / "f.hdf5",
        task="step",
        t_in=0,
        t_out=-1,
        reduced_resolution=2,
        reduced_resolution_t=3,
        extra_inputs=False,
    )
    assert len(ds) == 3 and ds.n_extra == 0 and ds.in_channels == ds.out_channels == 8
    x, y = ds[2]
    np.testing.assert_allclose(x[0].numpy(), arrays["density"][2, 0, ::2, ::2], atol=1e-6)
    np.testing.assert_allclose(y[0].numpy(), arrays["density"][2, 6, ::2, ::2], atol=1e-6)
    torch.testing.assert_close(ds.grid["t"], torch.linspace(0, 1, 7)[::3])
    assert ds.grid["x"].shape == (4,) and ds.grid["y"].shape == (3,)


def test_boundary_conditions(tmp_path):
    write_well(tmp_path / "f.hdf5", dims=2, bc={"x": "PERIODIC", "y": "open"})
    ds = WellDataset(tmp_path / "f.hdf5")
    assert ds.boundary_conditions == {"x": "periodic", "y": "open"}
    assert ds.periodic == (True, False) and ds.grid_type == "cartesian"
    write_well(tmp_path / "g.hdf5", dims=3, bc={"x": "wall", "y": "periodic", "z": "periodic"})
    assert WellDataset(tmp_path / "g.hdf5").periodic == (False, True, True)


def make_splits(root, files=(2, 1, 1), n=3):
    seed = 0
    for split, count in zip(("train", "valid", "test"), files, strict=True):
        (root / split).mkdir(parents=True)
        for i in range(count):
            write_well(root / split / f"part{i}.hdf5", n=n, seed=seed)
            seed += 1


def test_splits_and_multiple_files(tmp_path):
    make_splits(tmp_path)
    train = WellDataset(tmp_path, split="train", windows="first")
    assert [p.name for p in train.files] == ["part0.hdf5", "part1.hdf5"]
    assert len(train) == 6 and train.indices == range(6)
    assert train.locate(4) == (tmp_path / "train" / "part1.hdf5", 1)
    second = write_well(tmp_path / "scratch.hdf5", n=3, seed=1)  # the content of part1
    x, y = train[4]
    np.testing.assert_allclose(y[0].numpy(), second["density"][1, 1], atol=1e-6)
    np.testing.assert_allclose(x[0].numpy(), second["density"][1, 0], atol=1e-6)
    X, _ = train.to_tensors()
    torch.testing.assert_close(X[4], x)
    assert len(WellDataset(tmp_path, split="valid", windows="first")) == 3
    assert len(WellDataset(tmp_path, split="val", windows="first")) == 3  # PDEBench's name
    test = WellDataset(tmp_path, split="test")
    assert test.split == "test" and len(test) == 3 * 4
    # The Well's download puts the splits under data/
    (tmp_path / "ds" / "data").mkdir(parents=True)
    (tmp_path / "valid").rename(tmp_path / "ds" / "data" / "valid")
    assert len(WellDataset(tmp_path / "ds", split="valid", windows="first")) == 3


def test_stream_shards_cover_the_split_once(tmp_path):
    make_splits(tmp_path, files=(3, 1, 1), n=4)
    seen = []
    for rank in range(2):
        stream = WellStream(
            tmp_path, split="train", windows="first", block_size=1, rank=rank, world_size=2
        )
        ys = [y for _, y in stream]
        assert len(ys) == 6
        seen += [tuple(y[0, 0, :2].tolist()) for y in ys]
    assert len(set(seen)) == 12  # 12 trajectories, each once
    batches = list(WellStream(tmp_path, split="train", batch_size=5, seed=3))
    assert [len(x) for x, _ in batches] == [5, 5, 5, 5, 5, 5, 5, 5, 5, 3]


def test_stats_of_the_time_varying_fields(tmp_path):
    arrays = write_well(tmp_path / "f.hdf5", dims=1)
    stats = compute_stats(WellStream(tmp_path / "f.hdf5"))
    assert stats.mean.shape == (4,)  # density, profile, velocity_x, stress_xx
    torch.testing.assert_close(
        stats.mean[0],
        torch.tensor(arrays["density"].mean(), dtype=torch.float32),
        atol=1e-6,
        rtol=0,
    )


def test_generator_and_metric_roundtrip(tmp_path):
    root = generate_well(tmp_path / "adv", n_samples=12, nx=8, nt=6, dims=3, files_per_split=2)
    ds = WellDataset(root, split="train", initial_step=2)
    assert len(ds.files) == 2 and len(ds) == 10 * 4
    assert ds.channel_names[-4:] == ("velocity_x", "velocity_y", "velocity_z", "speed")
    assert ds.periodic == (True, True, True) and ds.grid_type == "cartesian"
    x, y = ds[0]
    speed = torch.linalg.vector_norm(x[-4:-1, 0, 0, 0])
    torch.testing.assert_close(x[-1], torch.full_like(x[-1], float(speed)))
    # exact advection: the tracer is a shift of its start, so its mean over the cube is constant
    torch.testing.assert_close(y.mean(), x[0].mean(), atol=1e-5, rtol=0)


# -- files that break the specification ---------------------------------------------------


def test_missing_group(tmp_path):
    write_well(tmp_path / "f.hdf5", skip=("t1_fields",))
    with pytest.raises(WellFormatError, match=r"f\.hdf5 \[key 't1_fields'\]: group 't1_fields'"):
        WellDataset(tmp_path / "f.hdf5")


def test_missing_root_attribute(tmp_path):
    write_well(tmp_path / "f.hdf5", skip=("n_spatial_dims",))
    with pytest.raises(WellFormatError, match=r"missing attribute 'n_spatial_dims'"):
        WellDataset(tmp_path / "f.hdf5")


def corrupt(path, edit):
    write_well(path)
    with h5py.File(path, "a") as f:
        edit(f)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda f: (
                f["t0_fields"].__delitem__("density"),
                f["t0_fields"]
                .create_dataset("density", data=np.zeros((3, 5, 8, 7), np.float32))
                .attrs.update(time_varying=True, sample_varying=True, dim_varying=[True, True]),
            ),
            r"\[key '/t0_fields/density'\]: has shape \(3, 5, 8, 7\), expected \(3, 5, 8, 6\)",
        ),
        (
            lambda f: f["t1_fields/velocity"].attrs.__setitem__("dim_varying", [True]),
            r"dim_varying is \[True\], expected 2 booleans",
        ),
        (
            lambda f: f["boundary_conditions/x_periodic"].attrs.__setitem__("bc_type", "mirror"),
            r"bc_type is 'mirror', expected one of periodic, wall, open",
        ),
        (
            lambda f: f["boundary_conditions/x_periodic"].attrs.__setitem__(
                "associated_dims", strings(["q"])
            ),
            r"associated_dims names 'q', not an axis",
        ),
        (
            lambda f: f["t2_fields"].attrs.__setitem__("field_names", strings(["stress", "ghost"])),
            r"'ghost' is listed in field_names but the dataset is missing",
        ),
        (
            lambda f: f["t0_fields/density"].attrs.__delitem__("time_varying"),
            r"missing attribute 'time_varying'",
        ),
        (
            lambda f: f["dimensions"].attrs.__setitem__("spatial_dims", strings(["x"])),
            r"spatial_dims lists 1 axes \['x'\], expected n_spatial_dims = 2",
        ),
        (
            lambda f: f["scalars/Re"].attrs.__setitem__("sample_varying", False),
            r"\[key '/scalars/Re'\]: has shape \(3,\), expected \(\) or \(1,\)",
        ),
    ],
    ids=["shape", "dim_varying", "bc_type", "bc_axis", "listed", "attribute", "axes", "scalar"],
)
def test_spec_violations_are_named(tmp_path, edit, message):
    path = tmp_path / "bad.hdf5"
    corrupt(path, edit)
    with pytest.raises(WellFormatError, match=message):
        WellDataset(path)


def test_folder_errors(tmp_path):
    with pytest.raises(PDEBenchFileNotFoundError, match="no such file or folder"):
        WellDataset(tmp_path / "absent")
    with pytest.raises(WellFormatError, match=r"no 'valid' folder for split 'valid'"):
        WellDataset(tmp_path, split="valid")
    (tmp_path / "train").mkdir()
    with pytest.raises(WellFormatError, match=r"train: holds no \.hdf5/\.h5 file"):
        WellDataset(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        WellDataset(tmp_path, split="training")
    write_well(tmp_path / "train" / "a.hdf5")
    write_well(tmp_path / "train" / "b.hdf5", dims=1)
    with pytest.raises(WellFormatError, match=r"b\.hdf5: axes/fields/sizes differ from .* a\.hdf5"):
        WellDataset(tmp_path)
    with pytest.raises(ValueError, match=r"split='test' needs a dataset folder"):
        WellDataset(tmp_path / "train" / "a.hdf5", split="test")


def test_nonfinite_names_file_and_trajectory(tmp_path):
    corrupt(tmp_path / "f.hdf5", lambda f: f["t0_fields/mask"].__setitem__((2, 0, 0), np.nan))
    ds = WellDataset(tmp_path / "f.hdf5")
    with pytest.raises(NonFiniteError, match=r"f\.hdf5 .*trajectory 2 has NaN/inf"):
        ds.to_tensors()
    assert list(WellDataset(tmp_path / "f.hdf5", on_nonfinite="skip").indices) == [0, 1]


def test_pickles_for_workers(tmp_path):
    import pickle

    write_well(tmp_path / "f.hdf5")
    ds = WellDataset(tmp_path / "f.hdf5")
    x0, _ = ds[0]
    clone = pickle.loads(pickle.dumps(ds))
    torch.testing.assert_close(clone[0][0], x0)
    ds.close()


def test_generate_command_writes_a_well_folder(tmp_path, capsys):
    from liponet.cli import main

    root = tmp_path / "adv"
    args = ["generate", "well_advection", str(root), "--n-samples", "10", "--nx", "8"]
    assert main([*args, "--nt", "4", "--param", "dims=1", "--param", "files_per_split=2"]) == 0
    assert capsys.readouterr().out.strip() == str(root)
    train = WellDataset(root, split="train")
    assert len(train.files) == 2 and train.grid["x"].shape == (8,) and len(train) == 8 * 3
    bad = tmp_path / "bad"
    assert main(["generate", "well_advection", str(bad), "--n-samples", "2"]) == 2
    assert "n_samples must be >= 3" in capsys.readouterr().err and not bad.exists()
    assert main([*args[:2], str(bad), *args[3:], "--param", "dims=4"]) == 2
    assert "dims must be 1, 2 or 3" in capsys.readouterr().err and not bad.exists()


def test_bench_task_on_well_data(tmp_path):
    from liponet.cli import main

    out = tmp_path / "out"
    args = ["bench", "--preset", "tiny", "--tasks", "well_advection_2d", "--models", "FNO"]
    assert main([*args, "LipFNO", "--out", str(out), "--quiet"]) == 0
    with (out / "bench_tiny.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["model"] for r in rows] == ["FNO", "LipFNO"]
    assert all(r["task"] == "well_advection_2d" and r["status"] == "ok" for r in rows)
    assert float(rows[1]["lipschitz_certified"]) <= 1 + 1e-6
    assert all(0 < float(r["nrmse"]) < 10 for r in rows)


def test_liponet_train_on_a_well_folder(tmp_path, capsys):
    from liponet.cli import main
    from liponet.train import load_model

    root = generate_well(tmp_path / "adv", n_samples=20, nx=8, nt=4, dims=1)
    args = ["train", "--model", "LipFNO", "--data", "well", "--data-path", str(root)]
    options = [
        "--set", "epochs=1", "--set", "batch_size=8", "--set", f"out_dir={tmp_path / 'run'}",
        "--set", "model.kwargs.in_channels=3", "--set", "model.kwargs.out_channels=1",
        "--set", "model.kwargs.modes=[3]", "--set", "model.kwargs.width=4",
        "--set", "model.kwargs.depth=1", "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    assert main([*args, *options]) == 0
    assert "L_certified" in capsys.readouterr().out
    model, ckpt = load_model(tmp_path / "run" / "best.pt")
    assert ckpt.config["data"]["name"] == "well" and model.lipschitz_bound() <= 1 + 1e-5
