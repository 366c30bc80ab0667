"""Dataset registry of the trainer: names -> builders of (train, validation) splits.

A builder takes the :class:`~liponet.train.config.DataConfig`, the run's seed and the rank /
world size (for streaming datasets that shard themselves) and returns a :class:`DataBundle`.
Map-style datasets are sharded by the trainer (``GlobalBatchSampler``); iterable datasets must
shard themselves from ``rank`` and ``world_size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset, TensorDataset

if TYPE_CHECKING:
    from .config import DataConfig

__all__ = [
    "DataBundle",
    "available_datasets",
    "build_dataset",
    "reaction_fields",
    "register_dataset",
    "shifted_fields",
]


@dataclass
class DataBundle:
    """Training and validation splits, and what a checkpoint should remember about them.

    Attributes
    ----------
    train, val
        Datasets yielding ``(input, target)`` pairs of tensors.
    normalizer_state
        Normalization statistics to store with the model (or ``None``).
    info
        Plain facts for logs (sizes, shapes, file).

    Examples
    --------
    >>> from liponet.train import DataConfig
    >>> config = DataConfig("toy-shift", kwargs={"n_train": 8, "n_val": 4, "grid": 16})
    >>> bundle = build_dataset(config)
    >>> isinstance(bundle, DataBundle), bundle.info["name"]
    (True, 'toy-shift')
    """

    train: Dataset[Any]
    val: Dataset[Any]
    normalizer_state: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)


Builder = Callable[["DataConfig", int, int, int], DataBundle]
_DATASETS: dict[str, Builder] = {}


def register_dataset(name: str) -> Callable[[Builder], Builder]:
    """Decorator adding a builder ``(config, seed, rank, world_size) -> DataBundle``.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> @register_dataset("doc-example")
    ... def _example(config, seed, rank, world_size):
    ...     x = torch.randn(6, 1, 8)
    ...     return DataBundle(train=TensorDataset(x, x), val=TensorDataset(x[:2], x[:2]))
    >>> from liponet.train import DataConfig
    >>> len(build_dataset(DataConfig("doc-example")).train)
    6
    >>> del _DATASETS["doc-example"]  # (keep the registry as it was)
    """

    def decorator(fn: Builder) -> Builder:
        _DATASETS[name] = fn
        return fn

    return decorator


def available_datasets() -> list[str]:
    """Registered dataset names, sorted.

    Examples
    --------
    >>> {"pdebench", "pdebench-stream", "well"} <= set(available_datasets())
    True
    """
    return sorted(_DATASETS)


def build_dataset(
    config: DataConfig, seed: int = 0, rank: int = 0, world_size: int = 1
) -> DataBundle:
    """Build the splits named by ``config.name``.

    Raises
    ------
    ValueError
        For an unknown name (listing the registered ones) or bad options.

    Examples
    --------
    >>> from liponet.train import DataConfig
    >>> config = DataConfig("toy-shift", kwargs={"n_train": 8, "n_val": 4, "grid": 16})
    >>> bundle = build_dataset(config)
    >>> len(bundle.train), len(bundle.val)
    (8, 4)
    """
    if config.name not in _DATASETS:
        raise ValueError(
            f"unknown dataset {config.name!r}; available: {', '.join(available_datasets())}"
        )
    return _DATASETS[config.name](config, seed, rank, world_size)


def shifted_fields(
    n: int, grid: int, shift: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random periodic fields ``(n, 1, grid)`` and the same fields shifted by ``shift`` cells.

    The fields are sums of four sines with random integer wavenumbers (0-2 per mode, as in
    PDEBench's initial conditions), amplitudes and phases; the target is exactly what periodic
    advection produces after moving ``shift`` cells, so the true operator is an L2 isometry.
    """
    x = (torch.arange(grid, dtype=torch.float64) + 0.5) / grid  # cell centres on [0, 1]
    k = torch.randint(0, 3, (n, 4, 1), generator=generator) * torch.arange(1, 5).view(1, 4, 1)
    amp = torch.rand(n, 4, 1, generator=generator, dtype=torch.float64)
    phase = 2 * math.pi * torch.rand(n, 4, 1, generator=generator, dtype=torch.float64)
    a = (amp * torch.sin(2 * math.pi * k * x + phase)).sum(dim=1, keepdim=True)
    return a.float(), torch.roll(a, shifts=shift, dims=-1).float()


@register_dataset("toy-shift")
def _toy_shift(config: DataConfig, seed: int, rank: int, world_size: int) -> DataBundle:
    """In-memory periodic shift (exact advection) fields: no file, for tests and smoke runs.

    Options (``data.kwargs``): ``n_train`` (64), ``n_val`` (16), ``grid`` (32), ``shift`` (3),
    ``seed`` (0; independent of the training seed, so every run sees the same data),
    ``target_frames`` (1: the field shifted once; ``K``: the ``K`` fields shifted ``1, ..., K``
    times, stacked as channels, the targets of an unrolled run, ``TrainConfig.unroll = K``).
    """
    options = {"n_train": 64, "n_val": 16, "grid": 32, "shift": 3, "seed": 0, "target_frames": 1}
    unknown = sorted(set(config.kwargs) - set(options))
    if unknown:
        raise ValueError(
            f"data.kwargs: unknown option {unknown[0]!r} for toy-shift; valid: {', '.join(options)}"
        )
    options.update(config.kwargs)
    for key in ("n_train", "n_val", "grid", "target_frames"):
        if not (isinstance(options[key], int) and options[key] >= 1):
            raise ValueError(f"data.kwargs.{key}: must be a positive integer, got {options[key]!r}")
    generator = torch.Generator().manual_seed(int(options["seed"]))
    n_train, n_val = int(options["n_train"]), int(options["n_val"])
    shift = int(options["shift"])
    a, u = shifted_fields(n_train + n_val, int(options["grid"]), shift, generator)
    if options["target_frames"] > 1:  # the exact later frames: the field shifted again
        frames = range(1, int(options["target_frames"]) + 1)
        u = torch.cat([torch.roll(a, shifts=j * shift, dims=-1) for j in frames], 1)
    return DataBundle(
        train=TensorDataset(a[:n_train], u[:n_train]),
        val=TensorDataset(a[n_train:], u[n_train:]),
        info={"name": "toy-shift", "n_train": n_train, "n_val": n_val, "shape": list(a.shape[1:])},
    )


@register_dataset("pdebench")
def _pdebench(config: DataConfig, seed: int, rank: int, world_size: int) -> DataBundle:
    """A PDEBench HDF5 file (``data.path``) through :class:`liponet.data.PDEBenchDataset`.

    ``data.kwargs`` are passed to it (``task``, ``t_in``, ``t_out``, ``initial_step``,
    ``reduced_resolution``, ``reduced_resolution_t``, ``num_samples_max``, ``val_fraction``, ...);
    the train and val splits are PDEBench's training samples minus a held-out validation tail
    (PDEBench's test split, the first 10% of single-array files, is never touched).
    """
    from ..data import PDEBenchDataset

    train, val = _file_splits(config, PDEBenchDataset, "pdebench", "HDF5 file", "FILE", "val")
    return DataBundle(train=train, val=val, info=_file_info("pdebench", config, train, val))


def _file_splits(
    config: DataConfig, cls: Any, name: str, what: str, metavar: str, val_split: str
) -> tuple[Any, Any]:
    """The ``train`` and ``val_split`` splits of the file or folder ``data.path`` as ``cls``."""
    if not config.path:
        raise ValueError(f"data.path: the {name} dataset needs the {what} (--data-path {metavar})")
    kwargs = dict(config.kwargs)
    for key in ("split", "path"):
        if key in kwargs:
            raise ValueError(f"data.kwargs.{key}: set by the trainer, remove it")
    try:
        train = cls(config.path, split="train", **kwargs)
        return train, cls(config.path, split=val_split, **kwargs)
    except TypeError as err:
        raise ValueError(f"data.kwargs: {err}") from None


def _file_info(name: str, config: DataConfig, train: Any, val: Any) -> dict[str, Any]:
    """The run's record of a file-backed dataset: name, path, sizes and channels."""
    return {
        "name": name,
        "path": str(config.path),
        "n_train": len(train),
        "n_val": len(val),
        "in_channels": train.in_channels,
        "out_channels": train.out_channels,
    }


#: Options of :class:`liponet.data.PDEBenchStream` that are not :class:`PDEBenchDataset` options.
_STREAM_OPTIONS = ("block_size", "buffer_size", "shuffle")


@register_dataset("pdebench-stream")
def _pdebench_stream(config: DataConfig, seed: int, rank: int, world_size: int) -> DataBundle:
    """A PDEBench HDF5 file streamed with bounded memory (:class:`liponet.data.PDEBenchStream`).

    The training split streams (sharded by ``rank`` / ``world_size``, reshuffled each epoch from
    the run's seed, every sample on exactly one rank); the validation split is read as a map-style
    dataset. ``data.kwargs``: ``block_size``, ``buffer_size``, ``shuffle`` plus every
    :class:`~liponet.data.PDEBenchDataset` option.
    """
    from ..data import PDEBenchDataset, PDEBenchStream

    if not config.path:
        raise ValueError(
            "data.path: the pdebench-stream dataset needs the HDF5 file (--data-path FILE)"
        )
    kwargs = dict(config.kwargs)
    for key in ("split", "path", "rank", "world_size", "seed", "batch_size"):
        if key in kwargs:
            raise ValueError(f"data.kwargs.{key}: set by the trainer, remove it")
    dataset_kwargs = {k: v for k, v in kwargs.items() if k not in _STREAM_OPTIONS}
    try:
        train = PDEBenchStream(
            config.path, split="train", seed=seed, rank=rank, world_size=world_size, **kwargs
        )
        val = PDEBenchDataset(config.path, split="val", **dataset_kwargs)
    except TypeError as err:
        raise ValueError(f"data.kwargs: {err}") from None
    return DataBundle(
        train=train,
        val=val,
        info={"name": "pdebench-stream", "path": str(config.path), "n_val": len(val)},
    )


def reaction_fields(
    n: int, grid: int, growth: float, diffusion: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive periodic fields ``(n, 1, grid)`` and their image under a reaction-diffusion step.

    The operator is exact (no solver): the logistic flow ``u' = r u (1 - u)`` over a time with
    ``exp(r t) = growth``, i.e. ``u -> g u / (1 + u (g - 1))`` at every point, then the heat
    semigroup ``exp(-diffusion (2 pi k)^2)`` per Fourier mode. Inputs lie in ``[0.05, 0.55]``,
    where the logistic flow stretches (outputs' norm grows by about ``1.3-1.8`` for
    ``growth = 2``); its Lipschitz constant in the L2 norm is at most ``growth`` (the flow's slope
    ``g / (1 + u (g - 1))^2`` peaks at ``u = 0``; the heat step is a contraction).
    """
    a, _ = shifted_fields(n, grid, 0, generator)
    a = a.double()
    lo = a.amin(dim=-1, keepdim=True)
    hi = a.amax(dim=-1, keepdim=True)
    a = 0.05 + 0.5 * (a - lo) / (hi - lo).clamp_min(1e-12)
    u = growth * a / (1 + a * (growth - 1))
    k = torch.fft.rfftfreq(grid, d=1.0 / grid, dtype=torch.float64)
    u = torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-diffusion * (2 * math.pi * k) ** 2), n=grid)
    return a.float(), u.float()


@register_dataset("toy-reaction")
def _toy_reaction(config: DataConfig, seed: int, rank: int, world_size: int) -> DataBundle:
    """In-memory expanding reaction-diffusion step (:func:`reaction_fields`): no file.

    Options (``data.kwargs``): ``n_train`` (256), ``n_val`` (64), ``grid`` (64), ``growth`` (2.0),
    ``diffusion`` (1e-4), ``seed`` (0; independent of the training seed).
    """
    options: dict[str, Any] = {
        "n_train": 256, "n_val": 64, "grid": 64, "growth": 2.0, "diffusion": 1e-4, "seed": 0,
    }  # fmt: skip
    unknown = sorted(set(config.kwargs) - set(options))
    if unknown:
        raise ValueError(
            f"data.kwargs: unknown option {unknown[0]!r} for toy-reaction; valid: "
            f"{', '.join(options)}"
        )
    options.update(config.kwargs)
    for key in ("n_train", "n_val", "grid"):
        if not (isinstance(options[key], int) and options[key] >= 2):
            raise ValueError(f"data.kwargs.{key}: must be an integer >= 2, got {options[key]!r}")
    for key in ("growth", "diffusion"):
        value = options[key]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"data.kwargs.{key}: must be a finite number >= 0, got {value!r}")
    if options["growth"] <= 0:
        raise ValueError(f"data.kwargs.growth: must be > 0, got {options['growth']!r}")
    generator = torch.Generator().manual_seed(int(options["seed"]))
    n_train, n_val = int(options["n_train"]), int(options["n_val"])
    a, u = reaction_fields(
        n_train + n_val, int(options["grid"]), float(options["growth"]),
        float(options["diffusion"]), generator,
    )  # fmt: skip
    return DataBundle(
        train=TensorDataset(a[:n_train], u[:n_train]),
        val=TensorDataset(a[n_train:], u[n_train:]),
        info={
            "name": "toy-reaction",
            "n_train": n_train,
            "n_val": n_val,
            "shape": [1, a.shape[-1]],
        },
    )


@register_dataset("well")
def _well(config: DataConfig, seed: int, rank: int, world_size: int) -> DataBundle:
    """A dataset folder of The Well (``data.path``) through :class:`liponet.data.WellDataset`.

    The ``train`` folder trains, the ``valid`` folder validates (the ``test`` folder is never
    touched). ``data.kwargs`` go to the dataset (``task``, ``initial_step``, ``windows``,
    ``reduced_resolution``, ``reduced_resolution_t``, ``extra_inputs``, ``on_nonfinite``).
    """
    from ..data import WellDataset

    train, val = _file_splits(config, WellDataset, "well", "dataset folder", "DIR", "valid")
    info = {**_file_info("well", config, train, val), "channels": list(train.channel_names)}
    return DataBundle(train=train, val=val, info=info)
