"""Small dataset folders in The Well's layout: periodic advection of a tracer in 1-3 D.

Each trajectory advects a random band-limited tracer ``u0`` with its own constant velocity
``c``: ``u(x, t) = u0(x - c t)`` on the periodic unit cube, evaluated exactly (a finite
Fourier series). The files follow The Well's specification (see :mod:`liponet.data.well`):

- ``t0_fields/tracer`` ``(B, T, *axes)`` (time-varying: the field to predict);
- ``t1_fields/velocity`` ``(B, D)``: sample-varying, constant in time and space
  (``dim_varying`` all false), read as ``D`` extra input channels;
- ``t2_fields`` empty; ``scalars/speed`` ``(B,)`` = ``|c|``;
- periodic boundary conditions on every axis; ``dimensions/x`` ... cell centres, ``time``.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from typing import Any

import h5py
import numpy as np

__all__ = ["WELL_FAMILIES", "generate_well"]

AXES = ("x", "y", "z")
#: The Well-layout families :func:`generate_well` writes (also reachable from ``liponet generate``).
WELL_FAMILIES = ("well_advection",)
#: Largest Fourier index per axis of the initial tracer.
MAX_MODE = 2


def _names(values: list[str]) -> np.ndarray:
    return np.array(values, dtype=h5py.string_dtype())


def _split_sizes(n: int) -> dict[str, int]:
    if n < 3:
        raise ValueError(f"n_samples must be >= 3 (one per split), got {n}")
    n_eval = max(1, n // 10)
    return {"train": n - 2 * n_eval, "valid": n_eval, "test": n_eval}


def _trajectories(
    rng: np.random.Generator, n: int, nx: int, nt: int, dims: int, t_final: float
) -> tuple[np.ndarray, np.ndarray]:
    """Tracer ``(n, nt, *[nx] * dims)`` and velocities ``(n, dims)``, float32."""
    grids = np.meshgrid(*[(np.arange(nx) + 0.5) / nx] * dims, indexing="ij")
    coords = np.stack(grids, 0).reshape(dims, -1)  # (dims, points)
    k = np.stack(
        np.meshgrid(*[np.arange(-MAX_MODE, MAX_MODE + 1)] * dims, indexing="ij"), -1
    ).reshape(-1, dims)  # (modes, dims)
    times = np.linspace(0.0, t_final, nt)
    velocity = rng.uniform(-1.0, 1.0, (n, dims))
    amp = rng.standard_normal((n, len(k))) / (1.0 + (k**2).sum(1))
    phase = rng.uniform(0.0, 2 * np.pi, (n, len(k)))
    kx = 2 * np.pi * (k @ coords)  # (modes, points)
    out = np.empty((n, nt, nx**dims), dtype=np.float32)
    for b in range(n):
        kc = 2 * np.pi * (k @ velocity[b])  # (modes,)
        arg = kx[None] - (kc[None, :] * times[:, None])[:, :, None] + phase[b][None, :, None]
        out[b] = np.einsum("m,tmp->tp", amp[b], np.cos(arg))  # (modes),(t,modes,points)->(t,p)
    return out.reshape(n, nt, *[nx] * dims), velocity.astype(np.float32)


def _write_file(
    path: pathlib.Path, u: np.ndarray, velocity: np.ndarray, nx: int, nt: int, t_final: float
) -> None:
    n, dims = velocity.shape
    axes = list(AXES[:dims])
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs.update(
                dataset_name="well_advection",
                grid_type="cartesian",
                n_spatial_dims=dims,
                n_trajectories=n,
                simulation_parameters=_names(["t_final"]),
                t_final=t_final,
            )
            d = f.create_group("dimensions")
            d.attrs["spatial_dims"] = _names(axes)
            time = d.create_dataset("time", data=np.linspace(0, t_final, nt, dtype=np.float32))
            time.attrs["sample_varying"] = False
            for a in axes:
                c = d.create_dataset(a, data=((np.arange(nx) + 0.5) / nx).astype(np.float32))
                c.attrs.update(sample_varying=False, time_varying=False)
            bcs = f.create_group("boundary_conditions")
            for a in axes:
                g = bcs.create_group(f"{a}_periodic")
                g.attrs.update(
                    associated_dims=_names([a]),
                    associated_fields=_names([]),
                    bc_type="PERIODIC",
                    sample_varying=False,
                    time_varying=False,
                )
                g.create_dataset("mask", data=np.zeros(nx, dtype=bool))
                g.create_dataset("values", data=np.zeros(0, dtype=np.float32))
            s = f.create_group("scalars")
            s.attrs["field_names"] = _names(["speed"])
            speed = s.create_dataset("speed", data=np.linalg.norm(velocity, axis=1))
            speed.attrs.update(sample_varying=True, time_varying=False)
            groups = {
                name: f.create_group(name) for name in ("t0_fields", "t1_fields", "t2_fields")
            }
            groups["t0_fields"].attrs["field_names"] = _names(["tracer"])
            tracer = groups["t0_fields"].create_dataset("tracer", data=u)
            tracer.attrs.update(dim_varying=[True] * dims, sample_varying=True, time_varying=True)
            groups["t1_fields"].attrs["field_names"] = _names(["velocity"])
            vel = groups["t1_fields"].create_dataset("velocity", data=velocity)
            vel.attrs.update(dim_varying=[False] * dims, sample_varying=True, time_varying=False)
            groups["t2_fields"].attrs["field_names"] = _names([])
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def generate_well(
    path: str | os.PathLike[str],
    *,
    n_samples: int,
    nx: int = 32,
    nt: int = 11,
    dims: int = 2,
    seed: int = 0,
    t_final: float = 1.0,
    files_per_split: int = 1,
    **params: Any,
) -> pathlib.Path:
    """Write a small dataset folder in The Well's layout (``data/{train,valid,test}/*.hdf5``).

    Parameters
    ----------
    path
        The dataset folder (created; existing files of the same names are replaced, each
        written atomically).
    n_samples
        Trajectories in all: 10% (at least one) each for ``valid`` and ``test``, the rest
        ``train``.
    nx, nt, dims
        Points per axis, stored steps (including ``t = 0``), spatial dimensions (1, 2 or 3).
    seed
        The random tracers and velocities.
    t_final
        Time of the last step.
    files_per_split
        Files each split's trajectories are spread over (multi-file datasets).
    **params
        Accepted for the CLI's ``--param``: only ``dims``, ``t_final``, ``files_per_split``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib, h5py
    >>> from liponet.data import generate_well
    >>> root = generate_well(pathlib.Path(tempfile.mkdtemp()) / "adv", n_samples=10, nx=8, nt=4)
    >>> sorted(p.name for p in (root / "data").iterdir())
    ['test', 'train', 'valid']
    >>> with h5py.File(root / "data" / "train" / "well_advection_train_00.hdf5") as f:
    ...     f["t0_fields/tracer"].shape, f["t1_fields/velocity"].shape
    ((8, 4, 8, 8), (8, 2))
    """
    unknown = sorted(set(params) - {"dims", "t_final", "files_per_split"})
    if unknown:
        raise ValueError(
            f"generate_well: unknown parameter(s) {', '.join(unknown)}; accepted: dims, "
            "t_final, files_per_split"
        )
    dims = int(params.get("dims", dims))
    t_final = float(params.get("t_final", t_final))
    files_per_split = int(params.get("files_per_split", files_per_split))
    if dims not in (1, 2, 3):
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    if nx < 2 or nt < 2:
        raise ValueError(f"nx and nt must be >= 2, got nx={nx}, nt={nt}")
    if files_per_split < 1:
        raise ValueError(f"files_per_split must be >= 1, got {files_per_split}")
    root = pathlib.Path(path)
    rng = np.random.default_rng(seed)
    for split, n in _split_sizes(n_samples).items():
        folder = root / "data" / split
        folder.mkdir(parents=True, exist_ok=True)
        u, velocity = _trajectories(rng, n, nx, nt, dims, t_final)
        cuts = np.array_split(np.arange(n), min(files_per_split, n))
        for i, rows in enumerate(cuts):
            name = f"well_advection_{split}_{i:02d}.hdf5"
            _write_file(folder / name, u[rows], velocity[rows], nx, nt, t_final)
    return root
