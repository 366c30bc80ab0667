"""Generator families (a registry), the chunked simulation loop and the atomic HDF5 writer."""

from __future__ import annotations

import os
import pathlib
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import h5py
import numpy as np
import torch
import yaml
from torch import Tensor

__all__ = [
    "Family",
    "available_families",
    "generate",
    "get_family",
    "register_family",
    "simulate",
]

#: Samples solved together (one batched solve) by default.
DEFAULT_BATCH_SIZE = 256

Progress = Callable[[int, int], object]

_FAMILIES: dict[str, type[Family]] = {}


class Family(ABC):
    """One PDE family: its parameters, grid, initial conditions, batched solver and layout.

    Parameters
    ----------
    nx
        Cells per spatial axis.
    nt
        Stored frames including the initial one (``None``: the family's PDEBench default).
    params
        PDE parameters; names must be among ``defaults``.

    Attributes
    ----------
    layout
        ``"single"`` (``tensor`` + coordinates), ``"darcy"`` (``nu`` + ``tensor``) or ``"group"``
        (one group per sample).
    """

    name: ClassVar[str]
    layout: ClassVar[str]
    defaults: ClassVar[dict[str, float]]
    default_nx: ClassVar[int]
    default_nt: ClassVar[int | None]
    #: How the stored outputs are computed from the inputs, written to the file's attributes so
    #: that a theorem about that discrete map can be matched to it
    #: (:func:`liponet.certify.generator_lipschitz`).
    discretization: ClassVar[str] = "unspecified"

    def __init__(self, nx: int, nt: int | None, params: Mapping[str, Any]) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"family {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(self.defaults)) or 'none'}"
            )
        if nx < 2:
            raise ValueError(f"family {self.name!r}: nx must be >= 2, got {nx}")
        if self.default_nt is None:
            if nt is not None:
                raise ValueError(f"family {self.name!r} is steady: nt must be None, got {nt}")
        elif nt is None:
            nt = self.default_nt
        elif nt < 2:
            raise ValueError(f"family {self.name!r}: nt must be >= 2, got {nt}")
        self.nx = int(nx)
        self.nt = nt
        self.params = {k: float(params.get(k, v)) for k, v in self.defaults.items()}

    @abstractmethod
    def coordinates(self) -> dict[str, np.ndarray]:
        """Coordinate arrays by file key (``x-coordinate`` ..., or ``grid/x`` ... for groups)."""

    @abstractmethod
    def sample_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each stored array, by key (``tensor``, ``nu``, ``data``)."""

    @abstractmethod
    def solve(
        self, seed: int, indices: range, device: torch.device, tick: Callable[[], None]
    ) -> dict[str, Tensor]:
        """Solve samples ``indices`` together; arrays ``(b, *sample_shape)`` by key.

        ``tick()`` is called ``ticks_per_chunk()`` times (once per stored frame).
        """

    def ticks_per_chunk(self) -> int:
        """How many times :meth:`solve` calls ``tick``."""
        return self.nt if self.nt is not None else 1

    def attributes(self) -> dict[str, Any]:
        """File attributes (PDEBench's names)."""
        return {}

    def discretization_attributes(self) -> dict[str, Any]:
        """``discretization`` and what a theorem about it needs (``nx``; families add more)."""
        return {"discretization": self.discretization, "nx": self.nx}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator adding a family to the registry under ``cls.name``."""
    if cls.name in _FAMILIES and _FAMILIES[cls.name] is not cls:
        raise ValueError(f"family name {cls.name!r} is already registered")
    _FAMILIES[cls.name] = cls
    return cls


def available_families() -> list[str]:
    """Registered family names, sorted.

    Examples
    --------
    >>> from liponet.data import available_families
    >>> {"advection", "burgers", "darcy"} <= set(available_families())
    True
    """
    return sorted(_FAMILIES)


def get_family(name: str) -> type[Family]:
    """The family class registered under ``name`` (``ValueError`` listing the choices)."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(
            f"unknown family {name!r}; available: {', '.join(available_families())}"
        ) from None


def simulate(
    family: str | Family,
    *,
    n_samples: int,
    nx: int | None = None,
    nt: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    **params: Any,
) -> Iterator[tuple[range, dict[str, Tensor]]]:
    """Solve ``n_samples`` samples chunk by chunk, yielding ``(indices, arrays)``.

    The arrays are float32 on the CPU, exactly what :func:`generate` writes; each sample only
    depends on ``seed`` and its index (not on ``batch_size``). ``progress(done, total)`` is
    called after every stored frame of every chunk.

    Examples
    --------
    >>> from liponet.data import simulate
    >>> [(chunk, arrays["tensor"].shape) for chunk, arrays in
    ...  simulate("advection", n_samples=3, nx=16, nt=4, batch_size=2)]
    [(range(0, 2), torch.Size([2, 4, 16])), (range(2, 3), torch.Size([1, 4, 16]))]
    """
    fam = _instantiate(family, nx, nt, params)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device)
    chunks = [range(a, min(a + batch_size, n_samples)) for a in range(0, n_samples, batch_size)]
    total = len(chunks) * fam.ticks_per_chunk()
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for chunk in chunks:
        arrays = fam.solve(seed, chunk, dev, tick)
        yield chunk, {k: v.detach().to("cpu", torch.float32) for k, v in arrays.items()}


def generate(
    family: str,
    path: str | os.PathLike[str],
    *,
    n_samples: int,
    nx: int | None = None,
    nt: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    **params: Any,
) -> pathlib.Path:
    """Generate a PDEBench-layout HDF5 file with a batched torch solver, atomically.

    Parameters
    ----------
    family
        A name from :func:`available_families`.
    path
        The file to write (replaced if present; parent folders are created).
    n_samples, nx, nt
        Samples, cells per axis, stored frames including t=0 (``None``: PDEBench's default;
        steady families take no ``nt``).
    seed
        Sample ``i`` depends only on ``(seed, i)``.
    device
        Where the solver runs (initial conditions are drawn on the CPU).
    progress
        ``progress(done, total)`` after each stored frame; an exception raised in it aborts
        the generation and no file is left behind.
    batch_size
        Samples solved together.
    **params
        PDE parameters of the family (e.g. ``beta``, ``nu``, ``rho``, ``t_final``).

    Returns
    -------
    pathlib.Path
        The path written. The data is first written to a temporary file in the same folder and
        renamed over ``path`` only when complete.

    Examples
    --------
    >>> import tempfile, pathlib, h5py
    >>> from liponet.data import generate
    >>> out = generate("advection", pathlib.Path(tempfile.mkdtemp()) / "adv.hdf5",
    ...                n_samples=3, nx=16, nt=5, beta=0.4)
    >>> with h5py.File(out) as f:
    ...     f["tensor"].shape, f["t-coordinate"].shape, float(f.attrs["beta"])
    ((3, 5, 16), (6,), 0.4)
    """
    fam = _instantiate(family, nx, nt, params)
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            _write(f, fam, n_samples, seed, device, batch_size, progress)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _instantiate(
    family: str | Family, nx: int | None, nt: int | None, params: Mapping[str, Any]
) -> Family:
    if isinstance(family, Family):
        return family
    cls = get_family(family)
    return cls(nx if nx is not None else cls.default_nx, nt, params)


def _write(
    f: h5py.File,
    fam: Family,
    n_samples: int,
    seed: int,
    device: torch.device | str,
    batch_size: int,
    progress: Progress | None,
) -> None:
    shapes = fam.sample_shapes()
    chunks = simulate(
        fam,
        n_samples=n_samples,
        seed=seed,
        device=device,
        batch_size=batch_size,
        progress=progress,
    )
    if fam.layout == "group":
        width = max(4, len(str(n_samples - 1)))
        for chunk, arrays in chunks:
            for j, i in enumerate(chunk):
                group = f.create_group(f"{i:0{width}d}")
                for key in shapes:
                    group.create_dataset(key, data=arrays[key][j].numpy(), compression="lzf")
                for key, coord in fam.coordinates().items():
                    group.create_dataset(key, data=coord)
                config = {"family": fam.name, "seed": seed, "sample": i, **fam.params}
                config.update(fam.discretization_attributes())
                group.attrs["config"] = yaml.safe_dump(config, sort_keys=True)
        return
    datasets = {
        key: f.create_dataset(key, shape=(n_samples, *shape), dtype="f4")
        for key, shape in shapes.items()
    }
    for key, coord in fam.coordinates().items():
        f.create_dataset(key, data=coord)
    for name, value in {**fam.attributes(), **fam.discretization_attributes()}.items():
        f.attrs[name] = value
    for chunk, arrays in chunks:
        for key, ds in datasets.items():
            ds[chunk.start : chunk.stop] = arrays[key].numpy()
