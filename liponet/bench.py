"""PDEBench-style benchmark with certificates: tasks, presets, model builders, one run per row.

The library half of ``liponet bench`` (the CLI prints; this module never does). One *row* is one
model trained and scored on one task:

* **Task.** One-step operator learning as PDEBench's autoregressive setting: the input is a window
  of ``initial_step`` frames (frames as channels), the target the next frame; training uses every
  window of every training trajectory (teacher forcing); evaluation rolls the model out from the
  first window of each test trajectory to the last frame. Darcy maps the coefficient to the
  solution (one step, no rollout).
* **Metrics** (:func:`liponet.metrics.pdebench_metrics`) with PDEBench's flaws corrected: the
  input frames are excluded from the errors, ``max`` is the true maximum over the whole test set,
  and a separate validation split (the end of PDEBench's training split) is reported next to test.
* **Certificates.** The certified Lipschitz bound of the model (``lipschitz_bound()``; ``nan`` for
  models without one, e.g. neuraloperator's FNO) and the operator error bound
  (:func:`liponet.certify.operator_error_bound`) of the one-step operator on test windows,
  calibrated on training windows, with its coverage and tightness. ``L_G`` of the one-step map
  *between the grid samples the file holds*: certified only where the file's ``discretization``
  attribute matches a theorem about that discrete map (:func:`liponet.certify.generator_lipschitz`:
  exact advection samples shifted by whole cells; the 1-D diffusion-reaction scheme without a
  spatial stride), otherwise the largest pair ratio over the calibration windows (labelled
  estimated), never the continuous operator's constant applied to samples. The column
  ``L_G_premise`` says which and why. A window of frames as input keeps these constants: the next
  frame depends on the last one only, whose distance is at most the window's.

Presets: ``tiny`` (one task, a few steps: the test suite runs it end to end), ``small`` (generated
data, 2 CPU cores, about 30 minutes for everything), ``full`` (PDEBench's sizes, strides and FNO
hyperparameters; reads real PDEBench files from ``data_dir`` unchanged).
"""

from __future__ import annotations

import csv
import io
import math
import os
import pathlib
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from .certify import (
    LipschitzConstant,
    coverage_report,
    estimate_true_lipschitz,
    field_operator,
    float32_storage_noise,
    generator_lipschitz,
    model_constant,
    observed_errors,
    operator_error_bound,
)
from .data import PDEBenchDataset, WellDataset, generate, generate_well
from .functional import TARGET_MARGIN
from .layers import SpectralShortcut, exact_train_norms
from .metrics import pdebench_metrics
from .models import (
    FNO,
    DeepONet,
    LipDeepONet,
    LipFNO,
    LipLocalDeepONet,
    LocalDeepONet,
    rollout,
)
from .train import DistContext, TrainConfig, Trainer
from .train.constraint import ConstraintWarning, resolve_auto_k
from .train.distributed import resolve_device
from .train.shortcut_fit import (
    SHORTCUT_INITS,
    fit_model_shortcut,
    fit_shortcut,
    free_fit,
    resolve_shortcut_bound,
)

__all__ = [
    "AUGMENT_SUFFIXES",
    "DEFAULT_MODELS",
    "MODELS",
    "MODEL_TRAINING",
    "NRMSE_TARGETS",
    "PRESETS",
    "PUBLISHED_FNO_NRMSE",
    "RECIPE_SUFFIXES",
    "REGULARIZER_SUFFIXES",
    "STEP_TIME_FILE",
    "TARGET_SEEDS",
    "TASKS",
    "TIME_TARGET",
    "BenchData",
    "FieldModel",
    "Preset",
    "Task",
    "append_row",
    "done_keys",
    "load_task",
    "network_of",
    "per_task",
    "preset_settings",
    "read_rows",
    "read_step_ratios",
    "recipe",
    "reference_model",
    "resolve_task",
    "run_bench",
    "run_row",
    "seed_summary_table",
    "summarize",
    "summary_table",
    "target_checks",
    "train",
    "train_config",
    "training_preset",
    "write_results",
]

Progress = Callable[[str], object]


@dataclass(frozen=True)
class Task:
    """One PDEBench task.

    Attributes
    ----------
    name
        Benchmark name, e.g. ``"advection_1d"``.
    family, params
        Generator family and PDE parameters (:func:`liponet.data.generate`).
    pdebench_file
        PDEBench's file name (looked up in ``data_dir``).
    dims
        Spatial dimensions.
    coefficient
        Darcy: coefficient -> solution (no time, no rollout).
    theorem
        Name of the continuous operator's theorem (:func:`liponet.certify.true_lipschitz`), for
        reference only: the certificates use the constant of the file's discrete map
        (:func:`liponet.certify.generator_lipschitz`) or a data estimate.
    periodic
        Periodic in space (DeepONet trunks then get Fourier features; FNOs no padding).
    layout
        ``"pdebench"`` (one HDF5 file) or ``"well"`` (a dataset folder in The Well's layout,
        read by :class:`~liponet.data.WellDataset` without its extra inputs; ``family`` is a
        :func:`~liponet.data.generate_well` family).
    """

    name: str
    family: str
    params: Mapping[str, Any]
    pdebench_file: str
    dims: int
    coefficient: bool = False
    theorem: str | None = None
    periodic: bool = True
    layout: str = "pdebench"


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "advection_1d",
            "advection",
            {"beta": 0.1},
            "1D_Advection_Sols_beta0.1.hdf5",
            1,
            theorem="advection",
        ),
        Task("burgers_1d", "burgers", {"nu": 0.01}, "1D_Burgers_Sols_Nu0.01.hdf5", 1),
        Task(
            "diffusion_reaction_1d",
            "diffusion_reaction_1d",
            {"nu": 0.5, "rho": 1.0},
            "ReacDiff_Nu0.5_Rho1.0.hdf5",
            1,
            theorem="diffusion_reaction",
        ),
        Task(
            "darcy_2d",
            "darcy",
            {"beta": 1.0},
            "2D_DarcyFlow_beta1.0_Train.hdf5",
            2,
            coefficient=True,
            periodic=False,
        ),
        Task(
            "diffusion_reaction_2d",
            "diffusion_reaction_2d",
            {},
            "2D_diff-react_NA_NA.h5",
            2,
            periodic=False,
        ),
        Task(
            "well_advection_2d",
            "well_advection",
            {"dims": 2},
            "well_advection_2d",
            2,
            layout="well",
        ),
    )
}

#: PDEBench's published FNO nRMSE (paper, full-size data; shared/pdebench-format.md).
PUBLISHED_FNO_NRMSE: dict[str, tuple[float, str]] = {
    "advection_1d": (4.9e-3, "beta=0.1; low confidence"),
    "burgers_1d": (7.8e-3, "nu=0.01"),
    "diffusion_reaction_1d": (7.0e-4, "quoted for nu=2, rho=1; this task is nu=0.5, rho=1"),
    "darcy_2d": (0.064, "beta=1"),
    "diffusion_reaction_2d": (0.12, ""),
}


@dataclass(frozen=True)
class Preset:
    """Sizes and hyperparameters of one benchmark scale.

    ``n_samples``/``nx``/``nt`` are what a generated file gets (per task, or one number for
    every task; ``nt=None`` for Darcy), ``strides`` the ``(space, time)`` subsampling applied
    when reading (PDEBench's for ``full``), ``initial_step`` the input frames per task. Training
    (through :class:`liponet.train.Trainer`, see :func:`train_config`): Adam, about ``steps``
    optimizer steps (per task, or one number) rounded up to whole epochs (or ``epochs`` over the
    training windows when set), batch ``batch``, relative training-input noise ``input_noise``
    (:class:`~liponet.train.TrainConfig`; 0 = none), symmetry augmentation ``augment``
    (``none``, ``transpose``, ``d4``: :mod:`liponet.train.augment`), weight averaging ``ema``
    (the decay, 0 = none; :mod:`liponet.train.averaging`), learning rate halved
    ``lr_halvings`` times at equal intervals (``scheduler "step"``; PDEBench: every 100 of 500
    epochs) or cosine-annealed to 0 (``"cosine"``), stepped once per epoch (``schedule_unit
    "epoch"``) or after every optimizer step (``"step"``); ``unroll`` autoregressive frames per
    training window (1: one-step windows; ``K``: the loss of the model's own ``K``-step rollout,
    ``unroll_gradient`` ``"all"`` or ``"last"``, :mod:`liponet.train.unroll`; the windows then
    are those with ``K`` frames after them). ``models``: the rows a run trains by
    default (``None``: :data:`DEFAULT_MODELS`); ``seeds``: the training seeds, one row each;
    ``note``: a paragraph the results file shows (sizes, cuts).
    """

    name: str
    tasks: tuple[str, ...]
    n_samples: int | Mapping[str, int]
    nx: Mapping[str, int]
    nt: Mapping[str, int | None]
    strides: Mapping[str, tuple[int, int]]
    initial_step: Mapping[str, int]
    steps: int | Mapping[str, int]
    epochs: int | None = None
    batch: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    input_noise: float = 0.0
    augment: str = "none"
    ema: float = 0.0
    unroll: int = 1
    unroll_gradient: str = "all"
    lr_halvings: int = 4
    scheduler: str = "step"
    schedule_unit: str = "epoch"
    models: tuple[str, ...] | None = None
    seeds: tuple[int, ...] = (0,)
    note: str = ""
    width: int = 20
    modes: int | Mapping[str, int] = 12
    depth: int = 4
    onet_width: int = 64
    onet_basis: int = 32
    onet_depth: int = 3
    harmonics: int = 4
    n_calib: int = 1024
    n_query: int = 512
    threads: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def per_task(value: int | Mapping[str, int], task: str) -> int:
    """A preset setting that is one number for every task or a number per task."""
    if isinstance(value, Mapping):
        if task not in value:
            raise ValueError(f"the preset has no value for task {task!r} (has {', '.join(value)})")
        return int(value[task])
    return int(value)


def _per_task_text(value: int | Mapping[str, int]) -> str:
    if isinstance(value, Mapping):
        return " / ".join(f"{v} ({k})" for k, v in value.items())
    return str(value)


_ALL = tuple(t for t, spec in TASKS.items() if spec.layout == "pdebench")
#: The Well-layout task (run with ``--tasks well_advection_2d``), settings per preset.
_WELL = "well_advection_2d"

#: The rows of the ``small`` preset: every model family with its unconstrained twin, the
#: defaults and ``LipFNO-best`` (the ``medium`` variants ``LipFNO-clip`` / ``-inc``: ``--models``).
SMALL_MODELS = (
    "neuralop-FNO",
    "FNO",
    "LipFNO",
    "LipFNO-best",
    "DeepONet",
    "LipDeepONet",
    "LocalDeepONet",
    "LipLocalDeepONet",
)

#: The rows of the ``medium`` preset: FNO, LipFNO with its defaults, the strongest variants.
MEDIUM_MODELS = ("FNO", "LipFNO", "LipFNO-clip", "LipFNO-inc")

MEDIUM_NOTE = (
    "Preset `medium`: PDEBench's FNO hyperparameters (width 20, 12 kept modes, depth 4; "
    "advection keeps all 64 modes but Nyquist, for every model: with 12, FNO's rollout nRMSE "
    "was 0.0696 in a trial of this preset, 14x PDEBench's figure; fno_accuracy.md found the "
    "same need for high modes on advection) on generated "
    "data at reduced size: 1-D tasks with PDEBench's frames (advection and Burgers 41 frames, "
    "10 input frames; diffusion-reaction 21 frames, 5 input frames) on 128 cells (generated on "
    "256, read with stride 2; PDEBench: 256 of 1024), 512 trajectories (advection 1024; "
    "PDEBench: 10000); Darcy on 32 x 32 (generated on 64, stride 2; PDEBench: 128 x 128), "
    "1024 samples. Adam, lr 3e-3 cosine-annealed per epoch, batch 32, about 4000 optimizer "
    "steps (Darcy 1500) rounded up to whole epochs, three training seeds on the same data. "
    "Learning rates: 3e-3 suits neither family everywhere, so rows named `-lr` (1e-2), "
    "`-lr1e-3`, `-lr3e-4` and `-lr2e-2` (`liponet.bench.MODEL_TRAINING`) train the same network at "
    "another rate; FNO was screened at 1e-3, 3e-3 and 1e-2 on every task (one seed, then three "
    "seeds at its best), and the targets table judges the best LipFNO against the best FNO over "
    "the rates tried, each family at its own best rate. "
    "Recipes (`liponet.bench.RECIPE_SUFFIXES`): the preset's cosine steps once per epoch (5 "
    "epochs on advection, the last at about 10% of the peak rate; Burgers 10, diffusion-reaction "
    "20, Darcy 58) with weight decay 1e-4; "
    "rows named `-cos` anneal it after every optimizer step instead, `-wd0` train without "
    "weight decay, `-cos-wd0` both (each row's `recipe` column says which), for both families, "
    "and the targets table takes each family's best over every recipe and rate. "
    "Symmetry augmentation (`liponet.bench.AUGMENT_SUFFIXES`, Darcy): rows named `-tr` train "
    "each batch as read or transposed (exact on the stride-2 read), `-d4` on any of the eight "
    "symmetries of the square (six of them half a coarse cell off on that read: "
    "darcy_symmetry.md); the recipe column says `augment=...`. "
    "Unrolled training (`liponet.bench.UNROLL_SUFFIXES`, autoregressive tasks): rows named "
    "`-ur2` / `-ur4` train each window on the model's own 2- / 4-step rollout (loss averaged "
    "over the frames, gradient through all of them), `-ur2pf` / `-ur4pf` on the pushforward "
    "trick (the last frame's loss only), for both families; the recipe column says `unroll=K`. "
    "Sized for about one hour of 2 CPU cores; on a GPU at full size: `liponet bench --preset "
    "full --data-dir PDEBENCH --device cuda --seeds 0 1 2 --models FNO LipFNO LipFNO-clip "
    "LipFNO-inc`."
)
_STEP_1D = {"advection_1d": 10, "burgers_1d": 10, "diffusion_reaction_1d": 5}
_STEP = {**_STEP_1D, "darcy_2d": 1, "diffusion_reaction_2d": 10}

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        tasks=("advection_1d",),
        n_samples=24,
        nx={"advection_1d": 32, _WELL: 16},
        nt={"advection_1d": 9, _WELL: 6},
        strides={"advection_1d": (2, 1), _WELL: (1, 1)},
        initial_step={"advection_1d": 2, _WELL: 2},
        steps=4,
        batch=8,
        width=8,
        modes=4,
        depth=2,
        onet_width=16,
        onet_basis=8,
        onet_depth=2,
        harmonics=2,
        n_calib=64,
        n_query=32,
    ),
    "small": Preset(
        name="small",
        tasks=_ALL,
        n_samples=256,
        nx={
            "advection_1d": 128,
            "burgers_1d": 128,
            "diffusion_reaction_1d": 128,
            "darcy_2d": 32,
            "diffusion_reaction_2d": 32,
            _WELL: 32,
        },
        nt={
            "advection_1d": 41,
            "burgers_1d": 41,
            "diffusion_reaction_1d": 21,
            "darcy_2d": None,
            "diffusion_reaction_2d": 21,
            _WELL: 21,
        },
        strides={t: ((2, 1) if TASKS[t].dims == 1 else (1, 1)) for t in (*_ALL, _WELL)},
        initial_step={**_STEP, _WELL: 2},
        steps=300,
        batch=32,
        lr=3e-3,
        models=SMALL_MODELS,
        width=16,
        modes=12,
        depth=4,
        onet_width=64,
        onet_basis=32,
        onet_depth=3,
        n_calib=1024,
        n_query=512,
    ),
    "medium": Preset(
        name="medium",
        tasks=("advection_1d", "burgers_1d", "diffusion_reaction_1d", "darcy_2d"),
        n_samples={
            "advection_1d": 1024,
            "burgers_1d": 512,
            "diffusion_reaction_1d": 512,
            "darcy_2d": 1024,
        },
        nx={"advection_1d": 256, "burgers_1d": 256, "diffusion_reaction_1d": 256, "darcy_2d": 64},
        nt={"advection_1d": 41, "burgers_1d": 41, "diffusion_reaction_1d": 21, "darcy_2d": None},
        strides={
            "advection_1d": (2, 1),
            "burgers_1d": (2, 1),
            "diffusion_reaction_1d": (2, 1),
            "darcy_2d": (2, 1),
        },
        initial_step=_STEP,
        steps={
            "advection_1d": 4000,
            "burgers_1d": 4000,
            "diffusion_reaction_1d": 4000,
            "darcy_2d": 1500,
        },
        batch=32,
        lr=3e-3,
        scheduler="cosine",
        width=20,
        modes={"advection_1d": 64, "burgers_1d": 12, "diffusion_reaction_1d": 12, "darcy_2d": 12},
        depth=4,
        models=MEDIUM_MODELS,
        seeds=(0, 1, 2),
        n_calib=1024,
        n_query=512,
        note=MEDIUM_NOTE,
    ),
    "full": Preset(
        name="full",
        tasks=_ALL,
        n_samples=10000,
        nx={"advection_1d": 1024, "burgers_1d": 1024, "diffusion_reaction_1d": 1024},
        nt={"advection_1d": 201, "burgers_1d": 201, "diffusion_reaction_1d": 101},
        strides={
            "advection_1d": (4, 5),
            "burgers_1d": (4, 5),
            "diffusion_reaction_1d": (4, 1),
            "darcy_2d": (1, 1),
            "diffusion_reaction_2d": (1, 1),
        },
        initial_step=_STEP,
        steps=0,
        epochs=500,
        batch=50,
        lr=1e-3,
        width=20,
        modes=12,
        depth=4,
        onet_width=128,
        onet_basis=64,
        onet_depth=4,
        n_calib=4096,
        n_query=1024,
    ),
}


@dataclass
class BenchData:
    """The tensors of one task: one-step windows and full test/validation trajectories.

    ``x_train``/``y_train``: ``(n, initial_step * C, *spatial)`` / ``(n, C, *spatial)``;
    ``traj_test``/``traj_val``: ``(n, frames, C, *spatial)`` (Darcy: ``x_test``, ``y_test`` only);
    ``x_test``/``y_test``: one-step windows of the test split (for the certificates);
    ``read_kwargs``: the :class:`~liponet.data.PDEBenchDataset` settings the windows were read
    with (an unrolled row reads its training windows again with ``target_frames``).
    """

    task: Task
    path: pathlib.Path
    initial_step: int
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_val: Tensor
    y_val: Tensor
    traj_test: Tensor | None
    traj_val: Tensor | None
    in_channels: int
    out_channels: int
    spatial: tuple[int, ...]
    dt: float
    read_kwargs: Mapping[str, Any] = field(default_factory=dict)


def resolve_task(
    task: str, preset: Preset, data_dir: str | os.PathLike[str] | None
) -> tuple[pathlib.Path, dict[str, Any]]:
    """The file a task reads and the :class:`~liponet.data.PDEBenchDataset` settings it uses.

    With ``data_dir`` the PDEBench file name of the task inside it (must exist: real downloaded
    files are read unchanged); without, the path a generated file gets in the working folder
    (the caller generates it, see :func:`load_task`). Settings: PDEBench's strides of the preset
    and its ``initial_step``.

    Examples
    --------
    >>> path, kw = resolve_task("burgers_1d", PRESETS["full"], None)
    >>> path.name, kw["reduced_resolution"], kw["reduced_resolution_t"], kw["initial_step"]
    ('1D_Burgers_Sols_Nu0.01.hdf5', 4, 5, 10)
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; available: {', '.join(TASKS)}")
    spec = TASKS[task]
    if task not in preset.strides:
        raise ValueError(f"preset {preset.name!r} has no settings for task {task!r}")
    sx, st = preset.strides[task]
    kwargs: dict[str, Any] = {"reduced_resolution": sx, "reduced_resolution_t": st}
    if spec.coefficient:
        kwargs["task"] = "coefficient"
    else:
        kwargs.update(task="autoregressive", initial_step=preset.initial_step[task])
    if data_dir is None:
        return pathlib.Path(spec.pdebench_file), kwargs
    path = pathlib.Path(data_dir) / spec.pdebench_file
    if not (path.is_dir() if spec.layout == "well" else path.is_file()):
        raise FileNotFoundError(
            f"--data-dir {data_dir}: task {task!r} needs PDEBench's file {spec.pdebench_file!r} "
            f"there ({path} does not exist)"
        )
    return path, kwargs


def _dataset(path: pathlib.Path, split: str, **kwargs: Any) -> PDEBenchDataset:
    """A PDEBench file's split, or a Well folder's (``val`` is its ``valid`` folder)."""
    if path.is_dir():
        well_split = "valid" if split == "val" else split
        return WellDataset(path, split=well_split, extra_inputs=False, **kwargs)
    return PDEBenchDataset(path, split=split, **kwargs)


def _windows(path: pathlib.Path, split: str, kwargs: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    extra: dict[str, Any] = {} if kwargs["task"] == "coefficient" else {"windows": "all"}
    return _dataset(path, split, **kwargs, **extra).to_tensors()


def _trajectories(
    path: pathlib.Path, split: str, kwargs: Mapping[str, Any]
) -> tuple[Tensor, float]:
    """``(n, frames, C, *spatial)`` trajectories and the time between two (strided) frames."""
    ds = _dataset(path, split, **kwargs)
    t = ds.grid["t"]
    return torch.stack([ds.trajectory(i) for i in range(len(ds.indices))]), float(t[1] - t[0])


def load_task(
    task: str,
    preset: Preset,
    data_dir: str | os.PathLike[str] | None,
    work_dir: str | os.PathLike[str],
    seed: int = 0,
) -> BenchData:
    """Read (generating first if there is no ``data_dir``) the tensors of one task.

    Generated files go to ``work_dir`` under PDEBench's file name and are reused when present
    with the same sizes (the seed is part of the folder name).
    """
    path, kwargs = resolve_task(task, preset, data_dir)
    spec = TASKS[task]
    if data_dir is None:
        folder = pathlib.Path(work_dir) / f"{preset.name}-seed{seed}"
        path = folder / path
        if spec.layout == "well":
            if not (path / "data").is_dir():
                generate_well(
                    path,
                    n_samples=per_task(preset.n_samples, task),
                    nx=preset.nx[task],
                    nt=int(preset.nt[task] or 2),
                    seed=seed,
                    **spec.params,
                )
        elif not path.is_file():
            generate(
                spec.family,
                path,
                n_samples=per_task(preset.n_samples, task),
                nx=preset.nx[task],
                nt=preset.nt[task],
                seed=seed,
                **spec.params,
            )
    x_train, y_train = _windows(path, "train", kwargs)
    x_test, y_test = _windows(path, "test", kwargs)
    x_val, y_val = _windows(path, "val", kwargs)
    traj_test = traj_val = None
    step, dt = 1, float("nan")
    if not spec.coefficient:
        traj_test, dt = _trajectories(path, "test", kwargs)
        traj_val, _ = _trajectories(path, "val", kwargs)
        step = int(kwargs["initial_step"])
    return BenchData(
        spec,
        path,
        step,
        x_train,
        y_train,
        x_test,
        y_test,
        x_val,
        y_val,
        traj_test,
        traj_val,
        in_channels=x_train.shape[1],
        out_channels=y_train.shape[1],
        spatial=tuple(x_train.shape[2:]),
        dt=dt,
        read_kwargs=dict(kwargs),
    )


# -- models ----------------------------------------------------------------------------------

Builder = Callable[[BenchData, Preset], nn.Module]


def fno_modes(data: BenchData, preset: Preset) -> tuple[int, ...]:
    """The preset's kept modes, capped at what each spatial size resolves."""
    modes = per_task(preset.modes, data.task.name)
    return tuple(min(modes, (n + 1) // 2) for n in data.spatial)


def fno_padding(data: BenchData) -> float:
    """Domain padding of FNOs: none for periodic tasks, 1/8 otherwise."""
    return 0.0 if data.task.periodic else 0.125


def lipfno_builder(**variant: Any) -> Builder:
    """Builder of a LipFNO sized by the preset, with expressivity-variant keywords.

    ``output_scale="auxiliary"`` gets the ball its certificate covers: radius 1.5 times the
    largest function norm of the training inputs. ``k="auto"`` is resolved from the training
    windows as ``liponet train`` does (:func:`liponet.train.resolve_auto_k`: the data's largest
    pair ratio, of the increments with ``increment=True``, times its margin; estimated).
    ``hidden_factor=f``: the convex-potential blocks' ``hidden = f * width`` (the variant's
    ``width``, else the preset's).
    ``exact_norms=True``: train with exact norms (:func:`liponet.layers.exact_train_norms`).
    ``increment="spectral"`` gets ``shortcut_size``, the task's grid; ``shortcut_init="lstsq"``
    sets its ``S`` to the least-squares step of the training windows
    (:meth:`~liponet.layers.SpectralShortcut.fit_`) and ``shortcut_frozen=True`` keeps it there
    (:func:`init_shortcut`). ``k="auto-residual"`` (with ``shortcut_init="lstsq"``): ``k`` of
    ``f`` from what ``f`` has left to fit, the residual ``y - S(x)`` of the fitted shortcut
    (its largest pair ratio against the windows, times the same margin; estimated).
    """

    def build(data: BenchData, preset: Preset) -> nn.Module:
        extra = _with_shortcut_size(dict(variant), data)
        init = {key: extra.pop(key) for key in _SHORTCUT_INIT_KEYS if key in extra}
        exact = extra.pop("exact_norms", False)
        if extra.get("shortcut_bound") == "auto":  # the ball of the unconstrained fit's norm
            how = init.get("shortcut_init") or "lstsq"
            free = _free_fit(data, how)
            extra, _ = resolve_shortcut_bound(extra, data.x_train, data.y_train, how, free=free)
        if "hidden_factor" in extra:
            extra["hidden"] = round(extra.pop("hidden_factor") * extra.get("width", preset.width))
        if extra.get("k") == "auto":
            windows = TensorDataset(data.x_train, data.y_train)
            extra, _ = resolve_auto_k({**extra, "out_channels": data.out_channels}, windows)
            del extra["out_channels"]
        elif extra.get("k") == "auto-residual":
            if init.get("shortcut_init") not in SHORTCUT_INITS:
                raise ValueError(
                    f"k='auto-residual' needs shortcut_init (one of {', '.join(SHORTCUT_INITS)})"
                )
            ball = extra.get("shortcut_bound", 1.0)
            residual = TensorDataset(
                data.x_train, _shortcut_residual(data, init["shortcut_init"], ball)
            )
            extra, _ = resolve_auto_k({**extra, "k": "auto", "increment": False}, residual)
            extra["increment"] = "spectral"
        if extra.get("output_scale") == "auxiliary" and "radius" not in extra:
            norms = data.x_train.pow(2).sum(1).flatten(1).mean(-1).sqrt()
            extra["radius"] = 1.5 * float(norms.max())
        model = _sized(LipFNO, data, preset, extra)
        if exact:
            exact_train_norms(model)
        return init_shortcut(model, data, **init)

    return build


def fitted_shortcut(data: BenchData, how: str = "lstsq", s: float | None = 1.0) -> SpectralShortcut:
    """The :data:`SHORTCUT_INITS` fit ``how`` of a shortcut (ball ``s``) to the training windows.

    The rollout fits (tens of seconds) are computed once per data set and ball
    (:func:`_free_fit`): a ball that holds the unconstrained fit takes it as it is.
    """
    shortcut = SpectralShortcut(data.in_channels, data.out_channels, data.spatial, s=s)
    if not how.startswith("rollout"):
        return fit_shortcut(shortcut, data.x_train, data.y_train, how)
    free = _free_fit(data, how)
    if s is None or float(torch.linalg.matrix_norm(free, ord=2).max()) <= s * TARGET_MARGIN:
        return shortcut.assign_(free)

    def fit() -> Tensor:
        return _weights(fit_shortcut(shortcut, data.x_train, data.y_train, how))

    return shortcut.assign_(_cached(data, (how, s), fit))


def _weights(shortcut: SpectralShortcut) -> Tensor:
    return torch.view_as_complex(shortcut.weight.detach().clone()).to(torch.complex128)


#: Shortcut fits by training set and ``(how, ball)``: ``id(x_train) -> (x_train, fits)`` (the
#: tensor is kept, so its id is not reused while the entry lives; one bench process).
_FITS: dict[int, tuple[Tensor, dict[tuple[str, float | None], Tensor]]] = {}


def _cached(data: BenchData, key: tuple[str, float | None], fit: Callable[[], Tensor]) -> Tensor:
    entry = _FITS.get(id(data.x_train))
    if entry is None or entry[0] is not data.x_train:
        entry = _FITS[id(data.x_train)] = (data.x_train, {})
    if key not in entry[1]:
        entry[1][key] = fit()
    return entry[1][key]


def _free_fit(data: BenchData, how: str) -> Tensor:
    """:func:`liponet.train.shortcut_fit.free_fit` of the training windows, cached per data set."""
    return _cached(data, (how, None), lambda: free_fit(data.x_train, data.y_train, how))


@torch.no_grad()
def _shortcut_residual(
    data: BenchData, how: str, s: float | None = 1.0, batch: int = 4096
) -> Tensor:
    """``y - S(x)`` on the training windows, ``S`` the :func:`fitted_shortcut` (ball ``s``)."""
    shortcut = fitted_shortcut(data, how, s).eval()
    x, y = data.x_train, data.y_train
    return torch.cat(
        [y[i : i + batch] - shortcut(x[i : i + batch]) for i in range(0, len(x), batch)]
    )


#: Builder keywords of :func:`init_shortcut` (not model keywords).
_SHORTCUT_INIT_KEYS = ("shortcut_init", "shortcut_frozen")


def init_shortcut(
    model: nn.Module,
    data: BenchData,
    shortcut_init: str | None = None,
    shortcut_frozen: bool = False,
) -> nn.Module:
    """``model`` with its spectral shortcut fitted to the training windows (and frozen).

    :func:`liponet.train.shortcut_fit.fit_model_shortcut` on ``data.x_train -> data.y_train``
    (``shortcut_init``: ``"lstsq"`` or ``"lstsq-rel"``, see :data:`SHORTCUT_INITS`), the same
    fit ``liponet train --set shortcut_init=...`` makes.
    """
    if shortcut_init is not None and shortcut_init not in SHORTCUT_INITS:
        raise ValueError(
            f"shortcut_init={shortcut_init!r}: expected None or one of {', '.join(SHORTCUT_INITS)}"
        )
    if shortcut_init is None and not shortcut_frozen:
        return model
    if shortcut_init is not None and shortcut_init.startswith("rollout"):
        ball = next(m for m in model.modules() if isinstance(m, SpectralShortcut)).s
        fitted = fitted_shortcut(data, shortcut_init, ball)
        free = torch.view_as_complex(fitted.weight.detach()).to(torch.complex128)
        return fit_model_shortcut(model, None, None, shortcut_init, shortcut_frozen, free=free)
    return fit_model_shortcut(model, data.x_train, data.y_train, shortcut_init, shortcut_frozen)


def _with_shortcut_size(keywords: dict[str, Any], data: BenchData) -> dict[str, Any]:
    """``keywords`` with ``shortcut_size`` = the task's grid when ``increment="spectral"``."""
    if keywords.get("increment") == "spectral" and "shortcut_size" not in keywords:
        grid = tuple(data.spatial)
        keywords["shortcut_size"] = grid[0] if len(grid) == 1 else grid
    return keywords


def _sized(cls: type[nn.Module], data: BenchData, preset: Preset, keywords: dict) -> nn.Module:
    """``cls`` (FNO or LipFNO) at the task's channels, modes and padding, the preset's sizes.

    ``keywords`` may override the preset's ``width`` and ``depth`` (a cheaper variant) and,
    with ``modes=m``, its kept modes (capped as :func:`fno_modes` caps them).
    """
    keywords = dict(keywords)
    modes = fno_modes(data, replace(preset, modes=keywords.pop("modes", preset.modes)))
    sizes = {"width": preset.width, "depth": preset.depth, "padding": fno_padding(data)}
    return cls(data.in_channels, data.out_channels, modes, **{**sizes, **keywords})


def fno_builder(**keywords: Any) -> Builder:
    """The bench's unconstrained FNO (the preset's sizes, the task's padding) with ``keywords``.

    Examples
    --------
    >>> build = fno_builder(activation="relu")   # e.g. FNO with ReLU instead of GELU
    >>> callable(build)
    True
    """

    def build(data: BenchData, preset: Preset) -> nn.Module:
        extra = _with_shortcut_size(dict(keywords), data)
        init = {key: extra.pop(key) for key in _SHORTCUT_INIT_KEYS if key in extra}
        return init_shortcut(_sized(FNO, data, preset, extra), data, **init)

    return build


def _neuralop_fno(data: BenchData, preset: Preset) -> nn.Module:
    from neuralop.models import FNO as NeuralopFNO  # optional dependency (extra "baseline")

    return NeuralopFNO(
        n_modes=fno_modes(data, preset),
        in_channels=data.in_channels,
        out_channels=data.out_channels,
        hidden_channels=preset.width,
        n_layers=preset.depth,
        domain_padding=None if data.task.periodic else fno_padding(data),
    )


def deeponet_builder(constrained: bool, **variant: Any) -> Builder:
    """Builder of a (Lip)DeepONet sized by the preset, with expressivity-variant keywords."""

    def build(data: BenchData, preset: Preset) -> nn.Module:
        d = data.task.dims
        cls = LipDeepONet if constrained else DeepONet
        options: dict[str, Any] = {
            "harmonics": preset.harmonics if data.task.periodic and d == 1 else 0,
            **variant,
        }
        return cls(
            n_sensors=math.prod(data.spatial),
            domain=([0.0] * d, [1.0] * d),
            in_channels=data.in_channels,
            out_channels=data.out_channels,
            n_basis=preset.onet_basis,
            width=preset.onet_width,
            depth=preset.onet_depth,
            **options,
        )

    return build


def local_deeponet_builder(constrained: bool, **variant: Any) -> Builder:
    """Builder of a (Lip)LocalDeepONet on the task's grid, with expressivity-variant keywords.

    A 3 x 3 (1-D: 3-cell) patch per output point, zero-padded at the boundary, and half the
    preset DeepONets' width and basis: the branch runs once per grid point, so this keeps a row
    affordable on a CPU (the sizes of ``benchmarks/deeponet_2d.py``). The model is a field map
    (one input), trained and certified as the FNOs are; it is tied to the task's grid.
    """

    def build(data: BenchData, preset: Preset) -> nn.Module:
        d = len(data.spatial)
        cls = LipLocalDeepONet if constrained else LocalDeepONet
        return cls(
            data.spatial,
            ([0.0] * d, [1.0] * d),
            data.in_channels,
            data.out_channels,
            n_basis=max(1, preset.onet_basis // 2),
            width=max(2, preset.onet_width // 2),
            depth=preset.onet_depth,
            **variant,
        )

    return build


#: The ``LipFNO-wide`` keywords (also ``LipFNO-wide-lr``'s).
_WIDE: dict[str, Any] = dict(
    normalization="clip", k=1.3, block="cpl", hidden_factor=2, increment=False, budget="last"
)

#: The ``LipFNO-inc`` keywords (also ``LipFNO-inc-lr``'s and ``LipFNO-inc-lr1e-3``'s).
_INC: dict[str, Any] = dict(
    normalization="clip", k="auto", block="cpl", increment=True, budget="last"
)

#: Benchmark model name -> builder. ``LipFNO``: the model's defaults. ``LipFNO-best``: variants
#: (b) free last layer + (c) vector output scale (the ``small`` preset's choice, see
#: benchmarks/README.md). ``LipFNO-clip``: per-mode clipped multipliers with slack ``k = 3`` in
#: the last layer. ``LipFNO-inc``: increment form ``u_last + f(x)``, convex-potential blocks,
#: clipped multipliers, ``k`` of ``f`` = 2 x the increments' data constant (certified ``1 + k``;
#: the best configuration of benchmarks/lipfno_blocks.py). ``LipFNO-wide``: convex-potential
#: blocks with twice the ReLU features (``hidden = 2 width``), clipped multipliers, ``k = 1.3``
#: (just above the medium 1-D tasks' data constants, 1.01-1.13): the best configuration of
#: benchmarks/burgers_study.py. ``LipFNO-free``: fused Fourier blocks with clipped multipliers
#: (1-Lipschitz) and an unconstrained last projection layer whose exact norm enters the
#: certificate (no ``k``; benchmarks/darcy_study.py). ``LipFNO-clip-lr``: ``LipFNO-clip`` trained
#: at learning rate 1e-2 (:data:`MODEL_TRAINING`), the best of benchmarks/darcy_study.py;
#: ``FNO-lr``: FNO at the same rate. ``LipFNO-wide-lr``: ``LipFNO-wide`` at that rate.
#: ``LipFNO-d2``: LipFNO's defaults pinned (convex-potential blocks, clip, ``k = 1``) with two
#: blocks instead of the preset's four, and ``LipFNO-inc-d2``: ``LipFNO-inc`` with two blocks:
#: the cheaper configurations for tasks whose accuracy has slack (advection, 1-D
#: diffusion-reaction); a convex-potential block costs about 1.3x an FNO block per step
#: (``K`` and ``K^T``), so two of them bring a step near FNO's (benchmarks/medium_step_time.py).
#: ``LipFNO-inc0.3-d2``: the increment form with two blocks and a fixed ``k = 0.3`` of the
#: increment (certified 1.3; advection's one-step increment is small against the frame, and
#: the identity carries the frame's amplitude exactly; benchmarks/advection_study.py).
#: ``LipFNO-wide-d2`` / ``-d3``: ``LipFNO-wide`` with two / three blocks (Burgers at FNO's step
#: time: a wide block costs about 2x an FNO block, so two of them fit the 1.3x budget);
#: ``LipFNO-wide-d2-m16``: with 16 kept modes; ``LipFNO-wide-d2-k2``: with ``k = 2``;
#: ``LipFNO-wide-d2-exact`` / ``LipFNO-wide-exact``: trained with exact norms
#: (:func:`liponet.layers.exact_train_norms`). Their learning-rate variants are the Burgers
#: screens of benchmarks/README.md ("Burgers at FNO's step time"); ``LipFNO-wide-d2-lr``
#: (1e-2) is the closest to both Burgers targets.
#: Width for depth at the same step budget (Burgers, benchmarks/README.md "Burgers at FNO's
#: step time"): ``LipFNO-wide-w16-d3`` (width 16, ``hidden = 32``, three blocks),
#: ``LipFNO-wide-w12`` / ``-w10`` (width 12 / 10, four blocks), ``LipFNO-h20-d3`` /
#: ``LipFNO-h30-d3`` (width 20, ``hidden`` 20 / 30, three blocks), ``LipFNO-w12-h36-d3`` (width
#: 12, ``hidden = 36``, three blocks), ``LipFNO-w12-h40-d3`` (width 12, ``hidden = 40``, three
#: blocks: what the cheaper chain of branch burgers13d buys); ``LipFNO-wide-d2-sp``:
#: ``LipFNO-wide-d2`` with softplus inside the blocks (``cpl_activation``). All at ``k = 1.3``
#: with clipped multipliers as ``LipFNO-wide``; their ``-lr`` rows train at 1e-2, ``-lr5e-3`` /
#: ``-lr7e-3`` / ``-lr1.5e-2`` / ``-lr2e-2`` at those rates, ``-lr-wd3e-4`` / ``-lr-wd1e-3`` at
#: 1e-2 with that weight decay (the preset's is 1e-4), ``-lr-noise`` at 1e-2 with input noise.
#: ``LipFNO-m8``: LipFNO's four convex-potential blocks (clip) with 8 kept modes per dimension
#: instead of the preset's 12 and slack ``k = 3``: on Darcy the kept spectrum's products are
#: what a convex-potential block costs beyond an FNO block, so the step drops to 1.25x
#: FNO's (benchmarks/darcy_study.py; ``LipFNO-m8-lr``: at learning rate 1e-2; ``-lr1.5e-2`` /
#: ``-lr2e-2`` / ``-lr7e-3``: at 1.5e-2 / 2e-2 / 7e-3). ``LipFNO-m8-k4``: the same network
#: with ``k = 4``; ``LipFNO-m6`` / ``-m9`` / ``-m10``: with 6 / 9 / 10 kept modes
#: (benchmarks/results/darcy_step_time_13e/).
#: ``LipFNO-sc-...``: the spectral shortcut (``increment="spectral"``, ``S(x) + f(x)``: a learned
#: full-band linear step ``S`` of the window, every rfft mode of the grid, ``max_k ||S_k|| <=
#: 1``, in place of ``u_last``; :class:`liponet.layers.SpectralShortcut`) on ``LipFNO-inc0.3-d2``
#: (``-sc-inc0.3-d2``), ``LipFNO-inc-d2`` (``-sc-inc-d2``) and ``LipFNO-wide-d2``
#: (``-sc-wide-d2``, certified ``1 + 1.3``), and with ``k = 0.05`` of ``f`` (``-sc-inc0.05-d2``:
#: on advection ``S`` carries the step, ``f`` only a correction); ``FNO-sc``: FNO with the
#: unconstrained shortcut, their fair twin (benchmarks/spectral_shortcut.py). ``-ls``: the
#: shortcut starts at the least-squares step of the training windows
#: (:meth:`liponet.layers.SpectralShortcut.fit_`, :func:`init_shortcut`) and trains on from it;
#: ``-lsfz``: fitted and frozen (only ``f`` trains), ``LipFNO-sc-inc-d2-ls`` /
#: ``-lsfz`` and ``FNO-sc-ls`` / ``-lsfz`` alike; ``LipFNO-sc-kres-d2-lsfz``: fitted, frozen,
#: and ``f``'s ``k`` from the fitted shortcut's residual (``k="auto-residual"``); ``-lsrfz``:
#: the same with the relative-weighted fit (``shortcut_init="lstsq-rel"``); ``-g``: ``f``
#: behind a gate that starts at 0 (``gate=True``: the step starts as the fitted ``S``).
#: ``-rofz``: the shortcut fitted to the rollout of the training trajectories
#: (``shortcut_init="rollout"``, :func:`liponet.train.shortcut_fit.rollout_multipliers`) inside
#: LipFNO's ball ``max_k ||S_k|| <= 1`` and frozen; ``-roafz``: the same with the ball of the
#: unconstrained rollout fit's norm (``shortcut_bound="auto"``: the fit as it is, as FNO's twin
#: ``FNO-sc-rofz-g`` gets it).
#: ``LocalDeepONet`` /
#: ``LipLocalDeepONet``: the local-branch DeepONets (:func:`local_deeponet_builder`), whose
#: outputs are not confined to a low-rank span (2-D diffusion-reaction). Variant rows pin the
#: keywords they are about, so a change of LipFNO's defaults does not change them. The
#: learning-rate variants of :data:`MODEL_TRAINING` are added after it, with their base's builder.
_SC_INC_D2: dict[str, Any] = dict(
    normalization="clip", k="auto", block="cpl", increment="spectral", budget="last", depth=2
)
MODELS: dict[str, Builder] = {
    "neuralop-FNO": _neuralop_fno,
    "FNO": fno_builder(),
    "LipFNO": lipfno_builder(),
    "LipFNO-best": lipfno_builder(free_last_layer=True, output_scale="vector"),
    "LipFNO-clip": lipfno_builder(
        normalization="clip", k=3.0, block="fourier", increment=False, budget="last"
    ),
    "LipFNO-inc": lipfno_builder(**_INC),
    "LipFNO-wide": lipfno_builder(**_WIDE),
    "LipFNO-free": lipfno_builder(
        normalization="clip", block="fourier", free_last_layer=True, increment=False, budget="last"
    ),
    "LipFNO-d2": lipfno_builder(
        normalization="clip", k=1.0, block="cpl", increment=False, budget="last", depth=2
    ),
    "LipFNO-inc-d2": lipfno_builder(
        normalization="clip", k="auto", block="cpl", increment=True, budget="last", depth=2
    ),
    "LipFNO-inc0.3-d2": lipfno_builder(
        normalization="clip", k=0.3, block="cpl", increment=True, budget="last", depth=2
    ),
    "LipFNO-wide-d2": lipfno_builder(**_WIDE, depth=2),
    "LipFNO-wide-d3": lipfno_builder(**_WIDE, depth=3),
    "LipFNO-wide-d2-m16": lipfno_builder(**_WIDE, depth=2, modes=16),
    "LipFNO-wide-d2-k2": lipfno_builder(**{**_WIDE, "k": 2.0}, depth=2),
    "LipFNO-wide-d2-exact": lipfno_builder(**_WIDE, depth=2, exact_norms=True),
    "LipFNO-wide-exact": lipfno_builder(**_WIDE, exact_norms=True),
    "LipFNO-wide-w16-d3": lipfno_builder(**_WIDE, width=16, depth=3),
    "LipFNO-wide-w12": lipfno_builder(**_WIDE, width=12),
    "LipFNO-wide-d2-sp": lipfno_builder(**_WIDE, depth=2, cpl_activation="softplus"),
    "LipFNO-h30-d3": lipfno_builder(**{**_WIDE, "hidden_factor": 1.5}, depth=3),
    "LipFNO-h20-d3": lipfno_builder(**{**_WIDE, "hidden_factor": 1}, depth=3),
    "LipFNO-wide-w10": lipfno_builder(**_WIDE, width=10),
    "LipFNO-w12-h36-d3": lipfno_builder(**{**_WIDE, "hidden_factor": 3}, width=12, depth=3),
    "LipFNO-w12-h40-d3": lipfno_builder(**{**_WIDE, "hidden_factor": 10 / 3}, width=12, depth=3),
    "LipFNO-m8": lipfno_builder(
        normalization="clip", k=3.0, block="cpl", increment=False, budget="last", modes=8
    ),
    "LipFNO-m6": lipfno_builder(
        normalization="clip", k=3.0, block="cpl", increment=False, budget="last", modes=6
    ),
    "LipFNO-m9": lipfno_builder(
        normalization="clip", k=3.0, block="cpl", increment=False, budget="last", modes=9
    ),
    "LipFNO-m10": lipfno_builder(
        normalization="clip", k=3.0, block="cpl", increment=False, budget="last", modes=10
    ),
    "LipFNO-m8-k4": lipfno_builder(
        normalization="clip", k=4.0, block="cpl", increment=False, budget="last", modes=8
    ),
    "LipFNO-sc-inc0.3-d2": lipfno_builder(
        normalization="clip", k=0.3, block="cpl", increment="spectral", budget="last", depth=2
    ),
    "LipFNO-sc-inc-d2": lipfno_builder(
        normalization="clip", k="auto", block="cpl", increment="spectral", budget="last", depth=2
    ),
    "LipFNO-sc-wide-d2": lipfno_builder(**{**_WIDE, "increment": "spectral"}, depth=2),
    "LipFNO-sc-inc0.05-d2": lipfno_builder(
        normalization="clip", k=0.05, block="cpl", increment="spectral", budget="last", depth=2
    ),
    "FNO-sc": fno_builder(increment="spectral"),
    "LipFNO-sc-inc-d2-ls": lipfno_builder(**_SC_INC_D2, shortcut_init="lstsq"),
    "LipFNO-sc-inc-d2-lsfz": lipfno_builder(
        **_SC_INC_D2, shortcut_init="lstsq", shortcut_frozen=True
    ),
    "LipFNO-sc-kres-d2-lsfz": lipfno_builder(
        **{**_SC_INC_D2, "k": "auto-residual"}, shortcut_init="lstsq", shortcut_frozen=True
    ),
    "LipFNO-sc-kres-d2-lsrfz": lipfno_builder(
        **{**_SC_INC_D2, "k": "auto-residual"}, shortcut_init="lstsq-rel", shortcut_frozen=True
    ),
    "FNO-sc-lsrfz": fno_builder(
        increment="spectral", shortcut_init="lstsq-rel", shortcut_frozen=True
    ),
    "LipFNO-sc-kres-d2-lsfz-g": lipfno_builder(
        **{**_SC_INC_D2, "k": "auto-residual"},
        gate=True,
        shortcut_init="lstsq",
        shortcut_frozen=True,
    ),
    "FNO-sc-lsfz-g": fno_builder(
        increment="spectral", gate=True, shortcut_init="lstsq", shortcut_frozen=True
    ),
    "LipFNO-sc-kres-d2-rofz-g": lipfno_builder(
        **{**_SC_INC_D2, "k": "auto-residual"},
        gate=True,
        shortcut_init="rollout",
        shortcut_frozen=True,
    ),
    "LipFNO-sc-kres-d2-roafz-g": lipfno_builder(
        **{**_SC_INC_D2, "k": "auto-residual", "shortcut_bound": "auto"},
        gate=True,
        shortcut_init="rollout",
        shortcut_frozen=True,
    ),
    "FNO-sc-rofz-g": fno_builder(
        increment="spectral", gate=True, shortcut_init="rollout", shortcut_frozen=True
    ),
    "FNO-sc-ls": fno_builder(increment="spectral", shortcut_init="lstsq"),
    "FNO-sc-lsfz": fno_builder(increment="spectral", shortcut_init="lstsq", shortcut_frozen=True),
    "DeepONet": deeponet_builder(constrained=False),
    "LipDeepONet": deeponet_builder(constrained=True),
    "LocalDeepONet": local_deeponet_builder(constrained=False),
    "LipLocalDeepONet": local_deeponet_builder(constrained=True),
}


#: Training settings a model row uses instead of the preset's (fields of :class:`Preset`), for
#: variants that are about the optimizer rather than the network. ``LipFNO-clip-lr``:
#: ``LipFNO-clip`` at learning rate 1e-2 (benchmarks/darcy_study.py: clipped multipliers fit
#: and generalize better with larger steps on Darcy); ``FNO-lr``: FNO at the same rate, its
#: fair reference (FNO gains more from it there). ``-noise`` variants train with
#: ``input_noise`` (white noise of 3e-3 times each training window's RMS on the inputs, the
#: targets clean; :class:`~liponet.train.TrainConfig`): ``LipFNO-d2-noise`` (advection: the
#: rollout accumulates LipFNO's one-step errors, not its one-step error, which is below FNO's;
#: benchmarks/advection_study.py), ``FNO-noise``, its same-settings FNO, and
#: ``FNO-lr3e-4-noise``, the same noise for advection's best FNO. A variant's network is its
#: name less ``-lr...`` / ``-noise...``.
MODEL_TRAINING: dict[str, dict[str, Any]] = {
    "FNO-lr": {"lr": 1e-2},
    "LipFNO-clip-lr": {"lr": 1e-2},
    "LipFNO-wide-lr": {"lr": 1e-2},
    "LipFNO-lr": {"lr": 1e-2},
    "LipFNO-inc-lr": {"lr": 1e-2},
    "FNO-lr1e-3": {"lr": 1e-3},
    "LipFNO-lr1e-3": {"lr": 1e-3},
    "LipFNO-inc-lr1e-3": {"lr": 1e-3},
    "LipFNO-wide-lr1e-3": {"lr": 1e-3},
    "FNO-lr2e-2": {"lr": 2e-2},
    "FNO-lr3e-4": {"lr": 3e-4},
    "FNO-lr1e-4": {"lr": 1e-4},
    "LipFNO-wide-lr2e-2": {"lr": 2e-2},
    "LipFNO-wide-d2-lr": {"lr": 1e-2},
    "LipFNO-wide-d3-lr": {"lr": 1e-2},
    "LipFNO-wide-d2-m16-lr": {"lr": 1e-2},
    "LipFNO-wide-d2-k2-lr": {"lr": 1e-2},
    "LipFNO-wide-w16-d3-lr": {"lr": 1e-2},
    "LipFNO-wide-w12-lr": {"lr": 1e-2},
    "LipFNO-wide-d2-sp-lr": {"lr": 1e-2},
    "LipFNO-h30-d3-lr": {"lr": 1e-2},
    "LipFNO-h20-d3-lr": {"lr": 1e-2},
    "LipFNO-wide-w10-lr": {"lr": 1e-2},
    "LipFNO-w12-h36-d3-lr": {"lr": 1e-2},
    "LipFNO-w12-h36-d3-lr7e-3": {"lr": 7e-3},
    "LipFNO-w12-h36-d3-lr1.5e-2": {"lr": 1.5e-2},
    "LipFNO-w12-h40-d3-lr": {"lr": 1e-2},
    "LipFNO-wide-w16-d3-lr5e-3": {"lr": 5e-3},
    "LipFNO-wide-w12-lr5e-3": {"lr": 5e-3},
    "LipFNO-wide-w16-d3-lr-wd3e-4": {"lr": 1e-2, "weight_decay": 3e-4},
    "LipFNO-wide-w16-d3-lr-wd1e-3": {"lr": 1e-2, "weight_decay": 1e-3},
    "LipFNO-wide-w12-lr2e-2": {"lr": 2e-2},
    "LipFNO-wide-w16-d3-lr2e-2": {"lr": 2e-2},
    "LipFNO-wide-w16-d3-lr-noise": {"lr": 1e-2, "input_noise": 3e-3},
    "LipFNO-wide-d2-lr5e-3": {"lr": 5e-3},
    "LipFNO-wide-d2-lr2e-2": {"lr": 2e-2},
    "LipFNO-d2-noise": {"input_noise": 3e-3},
    "FNO-noise": {"input_noise": 3e-3},
    "FNO-lr3e-4-noise": {"lr": 3e-4, "input_noise": 3e-3},
    "LipFNO-m8-lr": {"lr": 1e-2},
    "LipFNO-m8-lr1.5e-2": {"lr": 1.5e-2},
    "LipFNO-m8-lr2e-2": {"lr": 2e-2},
    "LipFNO-m8-k4-lr": {"lr": 1e-2},
    "LipFNO-m8-lr7e-3": {"lr": 7e-3},
    "LipFNO-m10-lr": {"lr": 1e-2},
    "LipFNO-m6-lr": {"lr": 1e-2},
    "LipFNO-m9-lr": {"lr": 1e-2},
    # the spectral-shortcut rows' rates, screened under the per-step recipe (both families)
    "LipFNO-sc-inc-d2-lr": {"lr": 1e-2},
    "LipFNO-sc-inc-d2-lr1e-3": {"lr": 1e-3},
    "FNO-sc-lr1e-3": {"lr": 1e-3},
    # the fitted, frozen shortcut's rows at a lower rate (f only trains; both families)
    "LipFNO-sc-inc-d2-lsfz-lr1e-3": {"lr": 1e-3},
    "LipFNO-sc-kres-d2-lsfz-lr1e-3": {"lr": 1e-3},
    "FNO-sc-lsfz-lr1e-3": {"lr": 1e-3},
    "LipFNO-sc-kres-d2-lsrfz-lr1e-3": {"lr": 1e-3},
    "FNO-sc-lsrfz-lr1e-3": {"lr": 1e-3},
    "LipFNO-sc-kres-d2-lsfz-g-lr1e-3": {"lr": 1e-3},
    "FNO-sc-lsfz-g-lr1e-3": {"lr": 1e-3},
    "LipFNO-sc-kres-d2-lsfz-g-lr": {"lr": 1e-2},
    "FNO-sc-lsfz-g-lr": {"lr": 1e-2},
    "LipFNO-sc-kres-d2-lsfz-g-lr5e-3": {"lr": 5e-3},
    "FNO-sc-lsfz-g-lr3e-4": {"lr": 3e-4},
    "FNO-sc-lsfz-g-lr5e-4": {"lr": 5e-4},
    "FNO-sc-lsfz-g-lr2e-3": {"lr": 2e-3},
    "FNO-sc-rofz-g-lr2e-3": {"lr": 2e-3},
    "LipFNO-sc-kres-d2-roafz-g-lr5e-3": {"lr": 5e-3},
    "LipFNO-sc-kres-d2-rofz-g-lr5e-3": {"lr": 5e-3},
}


#: Recipe suffixes (composable with ``-lr...``): ``-cos`` anneals a cosine after every
#: optimizer step, reaching 0 after the last one (``schedule_unit "step"``), instead of once per
#: epoch (the ``medium`` preset's advection rows run 5 epochs, the last at about 10% of the peak
#: rate); ``-wd0`` trains without weight decay (the preset's is 1e-4); ``-cos-wd0`` both.
RECIPE_SUFFIXES: dict[str, dict[str, Any]] = {
    "-cos": {"scheduler": "cosine", "schedule_unit": "step"},
    "-wd0": {"weight_decay": 0.0},
    "-cos-wd0": {"scheduler": "cosine", "schedule_unit": "step", "weight_decay": 0.0},
}
#: The models (networks or :data:`MODEL_TRAINING` variants) with :data:`RECIPE_SUFFIXES`
#: entries: every FNO learning rate and the best LipFNO rows of the ``medium`` targets.
RECIPE_BASES = (
    "FNO",
    "FNO-lr",
    "FNO-lr1e-3",
    "FNO-lr3e-4",
    "FNO-lr2e-2",
    "LipFNO-lr",
    "LipFNO-d2",
    "LipFNO-inc0.3-d2",
    "LipFNO-wide",
    "LipFNO-wide-lr",
    "LipFNO-wide-d2-lr",
    "LipFNO-wide-d2",
    "LipFNO-wide-d2-lr5e-3",
    "LipFNO-wide-d2-lr2e-2",
    "LipFNO-wide-d3-lr",
    "LipFNO-wide-w16-d3-lr",
    "LipFNO-wide-w12-lr",
    "LipFNO-wide-d2-sp-lr",
    "LipFNO-h30-d3-lr",
    "LipFNO-h20-d3-lr",
    "LipFNO-wide-w10-lr",
    "LipFNO-w12-h36-d3-lr",
    "LipFNO-w12-h36-d3-lr7e-3",
    "LipFNO-w12-h36-d3-lr1.5e-2",
    "LipFNO-w12-h40-d3-lr",
    "LipFNO-wide-w16-d3-lr5e-3",
    "LipFNO-wide-w12-lr5e-3",
    "LipFNO-wide-w16-d3-lr-wd3e-4",
    "LipFNO-wide-w16-d3-lr-wd1e-3",
    "LipFNO-wide-w12-lr2e-2",
    "LipFNO-wide-w16-d3-lr2e-2",
    "LipFNO-wide-w16-d3-lr-noise",
    "FNO-noise",
    "LipFNO-wide-w16-d3",
    "LipFNO-wide-w12",
    "LipFNO-h20-d3",
    "LipFNO-wide-d2-m16-lr",
    "LipFNO-inc-d2",
    "LipFNO-m8-lr",
    "LipFNO-sc-inc-d2",
    "LipFNO-sc-inc0.3-d2",
    "LipFNO-sc-wide-d2",
    "LipFNO-sc-inc0.05-d2",
    "FNO-sc",
    "LipFNO-sc-inc-d2-lr",
    "LipFNO-sc-inc-d2-lr1e-3",
    "FNO-sc-lr1e-3",
    "LipFNO-sc-inc-d2-ls",
    "LipFNO-sc-inc-d2-lsfz",
    "LipFNO-sc-kres-d2-lsfz",
    "FNO-sc-ls",
    "FNO-sc-lsfz",
    "LipFNO-sc-inc-d2-lsfz-lr1e-3",
    "LipFNO-sc-kres-d2-lsfz-lr1e-3",
    "FNO-sc-lsfz-lr1e-3",
    "LipFNO-sc-kres-d2-lsrfz",
    "FNO-sc-lsrfz",
    "LipFNO-sc-kres-d2-lsrfz-lr1e-3",
    "FNO-sc-lsrfz-lr1e-3",
    "LipFNO-sc-kres-d2-lsfz-g",
    "FNO-sc-lsfz-g",
    "LipFNO-sc-kres-d2-lsfz-g-lr1e-3",
    "FNO-sc-lsfz-g-lr1e-3",
    "LipFNO-sc-kres-d2-lsfz-g-lr",
    "FNO-sc-lsfz-g-lr",
    "LipFNO-sc-kres-d2-lsfz-g-lr5e-3",
    "FNO-sc-lsfz-g-lr3e-4",
    "FNO-sc-lsfz-g-lr5e-4",
    "FNO-sc-lsfz-g-lr2e-3",
    "LipFNO-sc-kres-d2-rofz-g",
    "LipFNO-sc-kres-d2-roafz-g",
    "FNO-sc-rofz-g",
    "FNO-sc-rofz-g-lr2e-3",
    "LipFNO-sc-kres-d2-roafz-g-lr5e-3",
    "LipFNO-sc-kres-d2-rofz-g-lr5e-3",
)


def _add_training_variants(bases: Sequence[str], suffixes: Mapping[str, Mapping[str, Any]]) -> None:
    """Register ``base + suffix`` in :data:`MODEL_TRAINING`: the base's settings, the suffix's."""
    for name in bases:
        for suffix, settings in suffixes.items():
            MODEL_TRAINING[name + suffix] = {**MODEL_TRAINING.get(name, {}), **settings}


_add_training_variants(RECIPE_BASES, RECIPE_SUFFIXES)

#: Symmetry-augmentation suffixes (:mod:`liponet.train.augment`; square 2-D tasks: Darcy):
#: ``-d4`` trains on a random symmetry of the square per batch (all eight), ``-tr`` on the
#: identity or the transpose (the subgroup that stays exact on the ``medium`` preset's
#: stride-2 read of Darcy, benchmarks/results/darcy_study.md).
AUGMENT_SUFFIXES: dict[str, dict[str, Any]] = {
    "-d4": {"augment": "d4"},
    "-tr": {"augment": "transpose"},
}
#: The Darcy rows with :data:`AUGMENT_SUFFIXES` entries: FNO's rates and the best LipFNO rows.
AUGMENT_BASES = (
    "FNO",
    "FNO-lr",
    "FNO-lr2e-2",
    "LipFNO-clip-lr",
    "LipFNO-wide-lr",
    "LipFNO-m8-lr",
    "LipFNO-m8-lr1.5e-2",
    "LipFNO-m8-lr2e-2",
    "LipFNO-m8-k4-lr",
    "LipFNO-m8-lr7e-3",
    "LipFNO-m10-lr",
    "LipFNO-m6-lr",
    "LipFNO-m9-lr",
)
_add_training_variants(AUGMENT_BASES, AUGMENT_SUFFIXES)

#: Regularizing recipes of the Darcy ``-tr`` rows (issue 13: LipFNO fits the training set as
#: well as FNO and generalizes worse, benchmarks/results/darcy_study.md): ``-noise3e-2`` adds
#: white noise of 3e-2 times each training input's RMS (``input_noise``; training only: the
#: evaluated map and its certificate are the network's own); ``-ema`` deploys an exponential
#: moving average of the weights, decay 0.998 (``ema``, horizon about 500 of Darcy's 1508
#: steps; the certificate is the averaged model's own, :mod:`liponet.train.averaging`). Given
#: to both families' best rows, so each is compared at its best.
REGULARIZER_SUFFIXES: dict[str, dict[str, Any]] = {
    "-noise3e-2": {"input_noise": 3e-2},
    "-ema": {"ema": 0.998},
}
#: The ``-tr`` rows with :data:`REGULARIZER_SUFFIXES` entries.
REGULARIZER_BASES = ("FNO-lr2e-2-tr", "LipFNO-m8-lr-tr")
_add_training_variants(REGULARIZER_BASES, REGULARIZER_SUFFIXES)

#: The factored convex-potential rows (issue 13: the wide block's ReLU features without their
#: FFT cost): ``K = V M``, a ``width``-channel multiplier ``M`` and a pointwise ``V`` to
#: ``hidden`` features (:class:`liponet.layers.FactoredConvexPotentialBlock`,
#: ``block="cpl-factored"``), clipped multipliers. ``LipFNO-fw``: ``LipFNO-wide``'s network
#: with factored blocks (width 20, ``hidden = 2 width``, four blocks, ``k = 1.3``); ``-d2`` /
#: ``-d3``: two / three blocks; ``-h3``: ``hidden = 3 width``; ``-k3``: ``k = 3``; ``-m8``: 8
#: kept modes per dimension; ``-w12-h36-d3`` / ``-w16-d3``: the factored twins of
#: ``LipFNO-w12-h36-d3`` / ``LipFNO-wide-w16-d3`` (``-w16-k3-d3``: with ``k = 3``). Their
#: ``-lr`` rows train at 1e-2, ``-lr5e-3`` at 5e-3; recipe suffixes on all, symmetry suffixes
#: on the Darcy rows.
_FACTORED: dict[str, Any] = {**_WIDE, "block": "cpl-factored"}
_FACTORED_NETWORKS: dict[str, dict[str, Any]] = {
    "LipFNO-fw": {},
    "LipFNO-fw-d3": {"depth": 3},
    "LipFNO-fw-h3": {"hidden_factor": 3},
    "LipFNO-fw-h3-d3": {"hidden_factor": 3, "depth": 3},
    "LipFNO-fw-k3": {"k": 3.0},
    "LipFNO-fw-m8": {"modes": 8},
    "LipFNO-fw-m8-k3": {"modes": 8, "k": 3.0},
    "LipFNO-fw-k3-d3": {"k": 3.0, "depth": 3},
    "LipFNO-fw-k3-d2": {"k": 3.0, "depth": 2},
    "LipFNO-fw-m8-k3-d3": {"modes": 8, "k": 3.0, "depth": 3},
    "LipFNO-fw-m8-k3-d2": {"modes": 8, "k": 3.0, "depth": 2},
    "LipFNO-fw-m8-k3-h3-d2": {"modes": 8, "k": 3.0, "hidden_factor": 3, "depth": 2},
    "LipFNO-fw-m8-k3-h3-d3": {"modes": 8, "k": 3.0, "hidden_factor": 3, "depth": 3},
    "LipFNO-fw-w12-h36-d3": {"width": 12, "hidden_factor": 3, "depth": 3},
    "LipFNO-fw-w16-d3": {"width": 16, "depth": 3},
    "LipFNO-fw-w16-k3-d3": {"width": 16, "k": 3.0, "depth": 3},
}
for _name, _extra in _FACTORED_NETWORKS.items():
    MODELS[_name] = lipfno_builder(**{**_FACTORED, **_extra})
    MODEL_TRAINING[_name + "-lr"] = {"lr": 1e-2}
    MODEL_TRAINING[_name + "-lr5e-3"] = {"lr": 5e-3}
    _rates = (_name, _name + "-lr", _name + "-lr5e-3")
    _add_training_variants(_rates, RECIPE_SUFFIXES)
    _add_training_variants(_rates, AUGMENT_SUFFIXES)

#: Unrolled-training suffixes (:mod:`liponet.train.unroll`; autoregressive tasks): ``-urK``
#: trains on the loss of the model's own ``K``-step rollout from each window, averaged over
#: the ``K`` frames, with the gradient through all of it (a step costs about ``K`` one-step
#: steps); ``-urKpf`` is the pushforward trick (``K - 1`` frames without gradient, the last
#: frame's loss: ``K - 1`` forward passes more than a one-step step). Both families get them.
UNROLL_SUFFIXES: dict[str, dict[str, Any]] = {
    "-ur2": {"unroll": 2},
    "-ur4": {"unroll": 4},
    "-ur2pf": {"unroll": 2, "unroll_gradient": "last"},
    "-ur4pf": {"unroll": 4, "unroll_gradient": "last"},
}
#: The rows with :data:`UNROLL_SUFFIXES` entries: each autoregressive task's best FNO and
#: LipFNO lines of the ``medium`` targets (recipe variants included).
UNROLL_BASES = (
    "FNO-cos",
    "FNO-lr1e-3-cos",
    "LipFNO-w12-h36-d3-lr-cos",
    "LipFNO-wide-lr-cos",
    "FNO-sc-rofz-g-lr2e-3-cos-wd0",
    "LipFNO-sc-kres-d2-roafz-g-cos-wd0",
    "FNO-lr-cos",
    "LipFNO-inc-d2-cos",
)
_add_training_variants(UNROLL_BASES, UNROLL_SUFFIXES)

#: The suffixes a training-settings variant's name may end with (its network: the rest).
_TRAINING_SUFFIXES = ("-lr", "-noise", "-cos", "-wd0", "-d4", "-tr", "-ema", "-ur")


def _base_model(name: str) -> str:
    """The network a training-settings variant builds: its name less its settings suffixes.

    Suffixes: ``-lr...``, ``-noise...``, ``-cos``, ``-wd0`` (:data:`RECIPE_SUFFIXES`), ``-d4``,
    ``-tr`` (:data:`AUGMENT_SUFFIXES`), ``-ema`` (:data:`REGULARIZER_SUFFIXES`), ``-ur...``
    (:data:`UNROLL_SUFFIXES`).
    """
    while name in MODEL_TRAINING or name not in MODELS:
        head, sep, _ = max(
            (name.rpartition(suffix) for suffix in _TRAINING_SUFFIXES), key=lambda p: len(p[0])
        )
        if not sep:
            raise ValueError(f"training variant {name!r} names no model of MODELS")
        name = head
    return name


# Each training-settings variant builds its base model's network.
MODELS.update({name: MODELS[_base_model(name)] for name in MODEL_TRAINING})

#: What a preset without ``models`` trains: every entry of :data:`MODELS` but the training
#: variants of :data:`RECIPE_SUFFIXES`, :data:`AUGMENT_SUFFIXES`, :data:`REGULARIZER_SUFFIXES`
#: and :data:`UNROLL_SUFFIXES` (run them by name, ``--models``).
_VARIANT_SUFFIXES = (*RECIPE_SUFFIXES, *AUGMENT_SUFFIXES, *REGULARIZER_SUFFIXES, *UNROLL_SUFFIXES)
DEFAULT_MODELS = tuple(
    name for name in MODELS if not any(name.endswith(suffix) for suffix in _VARIANT_SUFFIXES)
)


def neuralop_available() -> bool:
    """Whether neuraloperator (the optional baseline) imports."""
    try:
        import neuralop.models  # noqa: F401
    except ImportError:
        return False
    return True


# -- training and scoring ----------------------------------------------------------------------


def relative_mse(pred: Tensor, target: Tensor) -> Tensor:
    """``sum (pred - target)^2 / sum target^2`` over the batch (scale-free training loss)."""
    return (pred - target).pow(2).sum() / target.pow(2).sum().clamp_min(1e-12)


class FieldModel(nn.Module):
    """A DeepONet as a map of fields ``(batch, C, *spatial) -> (batch, out, *spatial)``.

    The :class:`~liponet.train.Trainer` calls ``model(x)`` with one tensor; a DeepONet reads the
    input field at its grid points as sensors and is evaluated at the cell centres
    (:func:`liponet.certify.field_operator`). The wrapped model's parameters are this module's.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        """Evaluate the wrapped DeepONet on the input's own grid."""
        return field_operator(self.model)(x)


class _StepClock:
    """Seconds spent in optimizer steps, from the Trainer's ``step``/``epoch`` events.

    Counts from the previous event (or :meth:`start`) to each ``step`` event: batching, forward,
    backward and the optimizer step; the per-epoch validation, certification and checkpoint
    (between the last step of an epoch and its ``epoch`` event) are left out. ``clock`` is
    :func:`time.process_time` on the CPU (the process's CPU time: fair when other processes
    share the cores) and :func:`time.perf_counter` on an accelerator (the Trainer synchronizes
    after every step when it reads the loss).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.seconds = 0.0
        self.steps = 0
        self.mark = clock()

    def start(self) -> None:
        self.mark = self.clock()

    def __call__(self, event: str, record: dict[str, Any]) -> None:
        now = self.clock()
        if event == "step":
            self.seconds += now - self.mark
            self.steps += 1
        self.mark = now


#: Validation windows the Trainer scores after every epoch (a fixed subset: the rows' own
#: validation score is the full rollout, computed once after training).
EPOCH_VAL_WINDOWS = 256


def train_config(
    data: BenchData, preset: Preset, seed: int, out_dir: str | os.PathLike[str], device: str
) -> TrainConfig:
    """The :class:`~liponet.train.TrainConfig` of one row: the preset's budget as epochs.

    ``preset.steps`` optimizer steps become ``ceil(steps / batches per epoch)`` epochs (every
    training window once per epoch, reshuffled); the learning rate follows
    ``preset.scheduler``: ``"step"`` halves it ``lr_halvings`` times at equal intervals,
    ``"cosine"`` anneals it to 0 at the end of the run, stepped per ``preset.schedule_unit``
    (``"epoch"``, or ``"step"``: after every optimizer step; the halvings then fall on steps).
    Loss: relative L2 (per sample, averaged); no gradient clipping, no bf16 (benchmark figures
    in float32).
    """
    n = _window_count(data, preset.unroll)
    batches = max(1, math.ceil(n / preset.batch))
    epochs = (
        preset.epochs
        if preset.epochs is not None
        else max(1, math.ceil(per_task(preset.steps, data.task.name) / batches))
    )
    halvings = max(0, preset.lr_halvings)
    units = epochs * batches if preset.schedule_unit == "step" else epochs
    return TrainConfig(
        epochs=epochs,
        batch_size=min(preset.batch, n),
        lr=preset.lr,
        weight_decay=preset.weight_decay,
        optimizer="adam",
        scheduler=preset.scheduler,
        schedule_unit=preset.schedule_unit,
        step_size=max(1, units // (halvings + 1)),
        gamma=0.5 if halvings else 1.0,
        grad_clip=0.0,
        input_noise=preset.input_noise,
        augment=preset.augment,
        ema=preset.ema,
        unroll=preset.unroll,
        unroll_gradient=preset.unroll_gradient,
        loss="rel_l2",
        seed=seed,
        device=device,
        bf16=False,
        out_dir=str(out_dir),
    )


_UNROLLED: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}


def _window_count(data: BenchData, unroll: int) -> int:
    """Training windows with ``unroll`` frames after them (one-step windows: ``x_train``'s).

    Each training trajectory of ``F`` frames gives ``F - initial_step`` one-step windows and
    ``unroll - 1`` fewer unrolled ones (data without trajectories: ``x_train``'s count).
    """
    n = data.x_train.shape[0]
    if unroll == 1 or data.traj_test is None:
        return n
    per = data.traj_test.shape[1] - data.initial_step
    return (n // per) * (per - unroll + 1)


def training_windows(data: BenchData, preset: Preset) -> tuple[Tensor, Tensor]:
    """The training pairs of a row: one-step windows, or with ``preset.unroll`` target frames.

    ``(x, y)``: ``data.x_train``, ``data.y_train`` when ``preset.unroll == 1``; else every
    window of the training trajectories with ``K = preset.unroll`` frames after it, ``y``
    ``(n, K * C, *spatial)`` (read again from ``data.path`` with ``target_frames=K``; kept per
    data and ``K`` while ``data`` lives).
    """
    k = preset.unroll
    if k == 1:
        return data.x_train, data.y_train
    if data.traj_test is None or not data.read_kwargs:
        raise ValueError(
            f"unroll: {k} needs an autoregressive task read from its file, not "
            f"{data.task.name!r} ({'a coefficient task' if data.traj_test is None else 'no file'})"
        )
    key = (id(data), k)
    if key not in _UNROLLED:
        read = {**data.read_kwargs, "windows": "all", "target_frames": k}
        _UNROLLED.clear()  # one task's windows at a time
        _UNROLLED[key] = _dataset(data.path, "train", **read).to_tensors()
        if _UNROLLED[key][0].shape[0] != _window_count(data, k):  # the budget assumed it
            raise RuntimeError(f"unroll: {k}-frame windows of {data.path} miscounted")
    return _UNROLLED[key]


def train(
    model: nn.Module, data: BenchData, preset: Preset, seed: int = 0, device: str = "cpu"
) -> tuple[Callable[[Tensor], Tensor], float, int]:
    """Train on the one-step windows through :class:`liponet.train.Trainer`.

    Returns ``(field map, seconds in optimizer steps, optimizer steps)``; the field map takes
    and returns CPU tensors (the model stays on ``device``). The Trainer's run folder (per-epoch
    checkpoints and log) is a temporary folder.
    """
    net = FieldModel(model) if hasattr(model, "branch_coefficients") else model
    n_val = data.x_val.shape[0]
    pick = torch.randperm(n_val, generator=torch.Generator().manual_seed(seed))
    pick = pick[:EPOCH_VAL_WINDOWS]
    train_set = TensorDataset(*training_windows(data, preset))
    val_set = TensorDataset(data.x_val[pick], data.y_val[pick])
    with tempfile.TemporaryDirectory(prefix="liponet-bench-run-") as run_dir:
        config = train_config(data, preset, seed, run_dir, device)
        ctx = DistContext(device=resolve_device(config.device))
        on_cpu = ctx.device.type == "cpu"
        clock = _StepClock(time.process_time if on_cpu else time.perf_counter)
        with warnings.catch_warnings():
            # a binding constraint is a finding here, not a mistake: the row shows the model's
            # certified bound next to L_G (the data's constant)
            warnings.simplefilter("ignore", ConstraintWarning)
            trainer = Trainer(
                config, train_set, val_set, ctx=ctx, model=net, callbacks=[clock], progress=False
            )
        clock.start()
        trainer.fit()
    net.eval()
    target = next(net.parameters()).device

    def f(x: Tensor) -> Tensor:
        return net(x.to(target)).cpu()

    return f, clock.seconds, clock.steps


@torch.no_grad()
def _predict(f: Callable[[Tensor], Tensor], x: Tensor, batch: int = 256) -> Tensor:
    return torch.cat([f(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def rollout_fields(f: Callable[[Tensor], Tensor], traj: Tensor, initial_step: int) -> Tensor:
    """Predicted trajectories ``(n, frames, C, *spatial)``: true input frames, then the rollout.

    The rollout itself is :func:`liponet.models.rollout` (batched through ``_predict``).
    """
    head = traj[:, :initial_step]  # (n, k, C, *spatial)
    steps = traj.shape[1] - initial_step
    if steps < 1:
        return head
    window = head.flatten(1, 2)  # (n, k * C, *spatial), frame-major
    predicted = rollout(lambda w: _predict(f, w), window, steps)  # (n, steps, C, *spatial)
    return torch.cat([head, predicted], 1)


def _scores(f: Callable[[Tensor], Tensor], data: BenchData, split: str) -> dict[str, float]:
    traj = data.traj_test if split == "test" else data.traj_val
    if traj is None:  # coefficient task: one step
        x, y = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
        metrics = pdebench_metrics(_predict(f, x), y)
    else:
        pred = rollout_fields(f, traj, data.initial_step)
        # (n, T, C, *spatial) -> (n, C, *spatial, T); the input frames are excluded
        metrics = pdebench_metrics(
            pred.movedim(1, -1),
            traj.movedim(1, -1),
            time_axis=True,
            input_frames=data.initial_step,
        )
    return {k: float(v) for k, v in metrics.items()}


def _true_constant(
    data: BenchData, x_cal: Tensor, y_cal: Tensor, preset: Preset
) -> tuple[LipschitzConstant, str]:
    """``L_G`` of the data's own one-step map, and one line saying what it rests on."""
    import h5py

    attrs: dict[str, Any] = {}
    if data.path.is_file():  # a Well folder (the well_advection task) states no discretization
        with h5py.File(data.path, "r") as f:
            attrs = dict(f.attrs)
    sx, st = preset.strides.get(data.task.name, (1, 1))
    if not data.task.coefficient:
        constant, why = generator_lipschitz(attrs, frames=st, spatial_stride=sx)
        if constant is not None:
            return constant, f"certified: {why}"
    else:
        why = "coefficient -> solution: no theorem here"
    # no theorem: the next frame (or the solution) against its input, largest pair ratio
    last = x_cal[:, -data.out_channels :]
    return estimate_true_lipschitz(last, y_cal, safety=1.0), f"estimated ({why})"


def certificate_columns(
    model: nn.Module, f: Callable[[Tensor], Tensor], data: BenchData, preset: Preset
) -> dict[str, Any]:
    """Certified model bound, ``L_G`` with its label, and the one-step error bound's coverage."""
    if not hasattr(model, "lipschitz_bound"):
        return {
            "lipschitz_certified": float("nan"),
            "L_G": float("nan"),
            "L_G_label": "",
            "L_G_premise": "",
            "bound_label": "no certificate",
            "coverage": float("nan"),
            "tightness_median": float("nan"),
            "n_queries": 0,
        }
    gen = torch.Generator().manual_seed(1)
    cal = torch.randperm(data.x_train.shape[0], generator=gen)[: preset.n_calib]
    qry = torch.randperm(data.x_test.shape[0], generator=gen)[: preset.n_query]
    x_cal, y_cal = data.x_train[cal], data.y_train[cal]
    x_q, y_q = data.x_test[qry], data.y_test[qry]
    l_true, premise = _true_constant(data, x_cal, y_cal, preset)
    bound = operator_error_bound(
        x_q,
        x_cal,
        calib_targets=y_cal,
        calib_preds=_predict(f, x_cal),
        lipschitz_model=model_constant(model),  # type: ignore[arg-type]
        lipschitz_true=l_true,
        input_noise=(
            float32_storage_noise(l_true.value, x_cal, y_cal, x_q, y_q)
            if l_true.label == "certified"
            else 0.0
        ),
    )
    report = coverage_report(bound, observed_errors(y_q, _predict(f, x_q)))
    return {
        "lipschitz_certified": float(model.lipschitz_bound()),  # type: ignore[operator]
        "L_G": l_true.value,
        "L_G_label": l_true.label,
        "L_G_premise": premise,
        "bound_label": bound.label,
        "coverage": report.coverage,
        "tightness_median": report.tightness_median,
        "n_queries": report.n_queries,
    }


#: Columns of a result row, in order.
COLUMNS = (
    "task",
    "model",
    "seed",
    "status",
    "params",
    "train_s",
    "steps",
    "nrmse",
    "val_nrmse",
    "rmse",
    "max",
    "crmse",
    "brmse",
    "frmse_low",
    "frmse_mid",
    "frmse_high",
    "lipschitz_certified",
    "L_G",
    "L_G_label",
    "L_G_premise",
    "bound_label",
    "coverage",
    "tightness_median",
    "n_queries",
    "recipe",
)

_TEXT_COLUMNS = frozenset(
    {"task", "model", "status", "L_G_label", "L_G_premise", "bound_label", "recipe"}
)
_INT_COLUMNS = frozenset({"seed", "params", "steps", "n_queries"})


def run_row(
    model_name: str,
    data: BenchData,
    preset: Preset,
    seed: int = 0,
    builder: Builder | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Build, train (through the Trainer), score and certify one model on one task: one row.

    ``builder`` replaces the registered builder of ``model_name`` (benchmark variants); ``seed``
    sets the initial weights and the sample order (the data are the task's); a registered model
    trains with its :data:`MODEL_TRAINING` settings in place of the preset's. The row also
    carries the trained model (``"_model"``) and its field map (``"_f"``) for further studies;
    :func:`write_results` writes only :data:`COLUMNS`.
    """
    if builder is None and model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; available: {', '.join(MODELS)}")
    row: dict[str, Any] = {"task": data.task.name, "model": model_name, "seed": seed}
    if model_name == "neuralop-FNO" and not neuralop_available():
        return {**row, "status": "not installed"}
    torch.manual_seed(seed)
    if builder is None:
        preset = training_preset(preset, model_name)
    row["recipe"] = recipe(preset)
    model = (builder or MODELS[model_name])(data, preset)
    f, seconds, steps = train(model, data, preset, seed, device)
    row["_model"], row["_f"] = model, f
    test = _scores(f, data, "test")
    val = _scores(f, data, "val")
    row.update(
        status="ok",
        params=sum(p.numel() for p in model.parameters()),
        train_s=seconds,
        steps=steps,
        val_nrmse=val["nrmse"],
        **{k: test[k] for k in COLUMNS if k in test},
    )
    row.update(certificate_columns(model, f, data, preset))
    return row


def training_preset(preset: Preset, model: str) -> Preset:
    """``preset`` with ``model``'s :data:`MODEL_TRAINING` settings in place of its own.

    Examples
    --------
    >>> p = training_preset(PRESETS["medium"], "LipFNO-wide-lr-cos-wd0")
    >>> p.lr, p.weight_decay, p.schedule_unit
    (0.01, 0.0, 'step')
    """
    return with_overrides(preset, **MODEL_TRAINING.get(model, {}))


def recipe(preset: Preset) -> str:
    """The training recipe a row ran with, as its ``recipe`` column states it.

    Optimizer (always Adam), learning rate, weight decay, schedule and its unit, input noise,
    symmetry augmentation, weight averaging.

    Examples
    --------
    >>> recipe(PRESETS["medium"])
    'adam lr=0.003 wd=0.0001 cosine/epoch'
    >>> recipe(training_preset(PRESETS["medium"], "FNO-lr3e-4-cos-wd0"))
    'adam lr=0.0003 wd=0 cosine/step'
    """
    schedule = f"{preset.scheduler}/{preset.schedule_unit}"
    if preset.scheduler == "step":
        schedule += f" halvings={max(0, preset.lr_halvings)}"
    text = f"adam lr={preset.lr:g} wd={preset.weight_decay:g} {schedule}"
    text += f" noise={preset.input_noise:g}" if preset.input_noise else ""
    text += f" augment={preset.augment}" if preset.augment != "none" else ""
    text += f" ema={preset.ema:g}" if preset.ema else ""
    if preset.unroll > 1:
        text += f" unroll={preset.unroll}" + ("/last" if preset.unroll_gradient == "last" else "")
    return text


def _fill_recipes(rows: Sequence[Mapping[str, Any]], preset: Preset) -> list[dict[str, Any]]:
    """Rows with a ``recipe``: rows written before the column existed get their model's.

    Those rows ran with the preset's settings and their model's :data:`MODEL_TRAINING` entry
    (:func:`training_preset`), which the variants named in them keep.
    """
    return [
        {**r, "recipe": r.get("recipe") or recipe(training_preset(preset, str(r["model"])))}
        for r in rows
    ]


# -- CSV rows: written one at a time, read back for the tables ----------------------------------


def append_row(path: str | os.PathLike[str], row: Mapping[str, Any]) -> None:
    """Append one row (:data:`COLUMNS`) to a CSV file, writing the header if the file is new.

    One ``write`` of one line per row, flushed at once: a run that stops keeps every finished
    row, and two processes appending to the same file do not interleave lines. A file written
    by an older version of the bench (a subset of today's columns, ``task``, ``model``,
    ``seed`` and ``status`` among them) is first rewritten with today's header (atomically;
    its rows keep their values, the new columns empty), so the row keeps every column.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file() or path.stat().st_size == 0
    fields: Sequence[str] = COLUMNS
    if not new:
        with path.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        older = {"task", "model", "seed", "status"} <= set(header) <= set(COLUMNS)
        if tuple(header) != COLUMNS and not older:
            raise ValueError(
                f"{path}: its header {header} is not liponet bench's columns {list(COLUMNS)}"
            )
        if tuple(header) != COLUMNS:
            _upgrade_header(path)
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=fields, restval="", extrasaction="ignore", lineterminator="\n"
    )
    if new:
        writer.writeheader()
    writer.writerow({k: row.get(k, "") for k in fields})
    with path.open("a", newline="") as fh:
        fh.write(buffer.getvalue())
        fh.flush()


def _upgrade_header(path: pathlib.Path) -> None:
    """Rewrite a CSV of an older bench with :data:`COLUMNS` (same rows, new columns empty).

    Where the old header is a prefix of :data:`COLUMNS` only the header line changes (its rows
    read with the new trailing columns empty, :func:`read_rows`), so a file that other branches
    append rows to merges line by line.
    """
    text = path.read_text()
    header, sep, body = text.partition("\n")
    old = next(csv.reader([header]), [])
    if tuple(old) == COLUMNS[: len(old)]:
        tmp = path.with_name(f".{path.name}.upgrade.tmp")
        tmp.write_text(",".join(COLUMNS) + sep + body)
        os.replace(tmp, path)
        return
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("0" if k == "seed" else "") if row.get(k) is None else row[k]
                         for k in COLUMNS})  # fmt: skip
    tmp = path.with_name(f".{path.name}.upgrade.tmp")
    tmp.write_text(buffer.getvalue())
    os.replace(tmp, path)


def _parse(key: str, value: str | None) -> Any:
    if value is None:  # a short line (a row of an older header under today's)
        value = ""
    if key in _TEXT_COLUMNS:
        return value
    if value == "":
        return float("nan")
    if key in _INT_COLUMNS:
        return int(float(value))
    return float(value)


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a results CSV (:func:`append_row` / :func:`write_results`), numbers as numbers.

    Files written before the ``seed`` column existed read as seed 0.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file (run liponet bench first)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"task", "model", "status"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a liponet bench CSV (missing columns {sorted(missing)})")
        rows = []
        for raw in reader:
            row = {k: _parse(k, v) for k, v in raw.items() if k is not None}
            row.setdefault("seed", 0)
            rows.append(row)
    return rows


def done_keys(rows: Sequence[Mapping[str, Any]]) -> set[tuple[str, str, int]]:
    """``(task, model, seed)`` of the finished rows (status ``ok``): what a resumed run skips."""
    return {(r["task"], r["model"], int(r["seed"])) for r in rows if r.get("status") == "ok"}


# -- summary over seeds -----------------------------------------------------------------------

#: The issue's targets: the best LipFNO variant's mean nRMSE over FNO's, per task.
NRMSE_TARGETS: dict[str, float] = {
    "advection_1d": 1.0,
    "burgers_1d": 1.2,
    "diffusion_reaction_1d": 1.2,
    "darcy_2d": 1.0,
}
#: The issue's target on the train time of that variant over FNO's.
TIME_TARGET = 1.3


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    vals = [v for v in values if math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, float("nan")
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def reference_model(model: str) -> str:
    """The FNO a model's ratios are taken against: the one trained with the same settings.

    ``"FNO"`` for every model without :data:`MODEL_TRAINING` settings (and for FNO variants
    themselves); otherwise the FNO entry of :data:`MODEL_TRAINING` with the same settings, so a
    model tuned on the optimizer is compared with FNO given the same tuning.

    Examples
    --------
    >>> reference_model("LipFNO"), reference_model("LipFNO-clip-lr"), reference_model("FNO-lr")
    ('FNO', 'FNO-lr', 'FNO')
    """
    settings = MODEL_TRAINING.get(model)
    if settings is None or model.startswith("FNO"):
        return "FNO"
    return next(
        (n for n, v in MODEL_TRAINING.items() if n.startswith("FNO") and v == settings), "FNO"
    )


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One line per task and model over its seeds: mean, sample std, min/max, ratios to FNO.

    Keys: ``task``, ``model``, ``seeds``, ``nrmse_mean``, ``nrmse_std``, ``nrmse_min``,
    ``nrmse_max``, ``nrmse_ratio`` (mean over the mean of its reference FNO on the same task,
    :func:`reference_model`; ``nan`` where that has no row), ``train_s_mean``,
    ``train_ratio`` (likewise), ``lipschitz_mean``, ``lipschitz_max``. Only ``ok`` rows count.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in ok:
        groups.setdefault((r["task"], r["model"]), []).append(r)
    lines: list[dict[str, Any]] = []
    for (task, model), group in groups.items():
        nrmse = [float(r["nrmse"]) for r in group]
        mean, std = _mean_std(nrmse)
        lips = [float(r["lipschitz_certified"]) for r in group]
        lines.append(
            {
                "task": task,
                "model": model,
                "seeds": len(group),
                "nrmse_mean": mean,
                "nrmse_std": std,
                "nrmse_min": min(nrmse),
                "nrmse_max": max(nrmse),
                "train_s_mean": _mean_std([float(r["train_s"]) for r in group])[0],
                "lipschitz_mean": _mean_std(lips)[0],
                "lipschitz_max": max(lips) if all(math.isfinite(v) for v in lips) else float("nan"),
            }
        )
    for line in lines:
        name = reference_model(line["model"])
        ref = next((x for x in lines if x["task"] == line["task"] and x["model"] == name), None)
        nan = float("nan")
        line["nrmse_ratio"] = line["nrmse_mean"] / ref["nrmse_mean"] if ref else nan
        line["train_ratio"] = line["train_s_mean"] / ref["train_s_mean"] if ref else nan
    return lines


def _ratio_key(value: float) -> float:
    return value if math.isfinite(value) else math.inf


#: The side-by-side step-time results of the ``medium`` models
#: (``benchmarks/medium_step_time.py``), read beside ``bench_medium.csv``.
STEP_TIME_FILE = "medium_step_time.csv"


def read_step_ratios(path: str | os.PathLike[str]) -> dict[tuple[str, str], float]:
    """``(task, model) -> ratio_to_FNO`` from a ``medium_step_time.csv`` (empty if absent).

    Those ratios are measured side by side (all models of a task interleaved in one process),
    the fair time figure on a shared machine, unlike ``train_s``, measured one row after
    another under whatever load the machine had.
    """
    p = pathlib.Path(path)
    if not p.is_file():
        return {}
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = {"task", "model", "ratio_to_FNO"} - set(rows[0] if rows else {})
    if rows and missing:
        raise ValueError(f"{p}: expected columns task, model, ratio_to_FNO; missing {missing}")
    return {(r["task"], r["model"]): float(r["ratio_to_FNO"]) for r in rows}


#: Seeds a line needs to decide :func:`target_checks` (when its family has such lines).
TARGET_SEEDS = 3


def _best_of(lines: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The line with the lowest mean nRMSE, among those with :data:`TARGET_SEEDS` seeds.

    All lines compete when none has that many.
    """
    full = [s for s in lines if s["seeds"] >= TARGET_SEEDS] or list(lines)
    return min(full, key=lambda s: _ratio_key(s["nrmse_mean"]), default=None)


def network_of(model: str) -> str:
    """The bench model with the same network: ``model`` less its training-settings suffix.

    A :data:`MODEL_TRAINING` variant (``LipFNO-wide-lr``, ``FNO-lr1e-3``, ...) trains the network
    of the model named without its ``-lr...`` / ``-noise...`` suffixes; its step time is that
    model's (input noise adds one ``randn`` per batch).

    Examples
    --------
    >>> network_of("LipFNO-wide-lr2e-2"), network_of("FNO-lr"), network_of("LipFNO-d2")
    ('LipFNO-wide', 'FNO', 'LipFNO-d2')
    >>> network_of("LipFNO-d2-noise"), network_of("FNO-lr3e-4-noise")
    ('LipFNO-d2', 'FNO')
    """
    return _base_model(model) if model in MODEL_TRAINING else model


def target_checks(
    summary: Sequence[Mapping[str, Any]],
    step_ratios: Mapping[tuple[str, str], float] | None = None,
) -> list[dict[str, Any]]:
    """Per task with a target: the LipFNO model that answers the issue's targets.

    Both families are judged at their best training settings. The FNO is the FNO variant
    (``FNO``, ``FNO-lr``, ...: the same network at other learning rates) with the lowest mean
    nRMSE among the lines with :data:`TARGET_SEEDS` seeds (all lines when none has that many):
    ``nrmse_ratio`` is a LipFNO's mean over that best FNO's (``fno_model``, ``fno_seeds``,
    ``fno_nrmse``), and ``same_settings_ratio`` its ratio to FNO trained with its own settings
    (:func:`reference_model`).

    The issue asks for a LipFNO configuration within the nRMSE target *and* the train-time
    target. Among the LipFNO models with as many seeds as that FNO that meet the nRMSE target,
    the one with the smallest time ratio is chosen; where none meets it, the most accurate one,
    so a miss shows by how much. The most accurate model is reported beside it
    (``best_model``, ``best_nrmse_ratio``, ``best_time_ratio``), and the most accurate one
    within the time target (``fast_model``, ``fast_nrmse_ratio``, ``fast_time_ratio``; ``None``
    and NaN where no model is fast enough). The time ratio is the
    side-by-side step ratio of ``step_ratios`` (:func:`read_step_ratios`) where it has the
    model's network (:func:`network_of`; ``time_source`` ``"step"``), else the sequential
    ``train_s`` ratio to its reference FNO (``"train_s"``; where that FNO has no line, e.g. a
    recipe variant, the ratio of the line of its network). An unrolled line
    (:data:`UNROLL_SUFFIXES`) costs more per step than its network: its time is its own step
    row or its ``train_s`` ratio, never its network's; and when the best FNO is unrolled, every
    time ratio is divided by that FNO's cost over its network's one-step time, so time is
    judged against what the best FNO took. ``better_screens`` lists
    ``(model, seeds, mean nRMSE)`` of the lines with fewer seeds that beat the chosen FNO or
    the most accurate LipFNO: screens not yet confirmed, which could change the verdict.

    Examples
    --------
    >>> line = lambda m, e: {"task": "darcy_2d", "model": m, "seeds": 3, "nrmse_mean": e,
    ...     "nrmse_ratio": float("nan"), "train_ratio": 1.0, "lipschitz_max": 1.0}
    >>> lines = [line("FNO", 0.05), line("FNO-lr", 0.04), line("LipFNO-wide", 0.046)]
    >>> c, = target_checks(lines)
    >>> c["model"], c["fno_model"], round(c["nrmse_ratio"], 3), c["nrmse_met"]
    ('LipFNO-wide', 'FNO-lr', 1.15, False)
    """
    steps = step_ratios or {}

    def time_of(s: Mapping[str, Any]) -> tuple[float, str]:
        unrolled = MODEL_TRAINING.get(s["model"], {}).get("unroll", 1) > 1
        keys = [(s["task"], s["model"])]
        if not unrolled:  # an unrolled step costs more than its network's
            keys.append((s["task"], network_of(s["model"])))
        for key in keys:
            if key in steps:
                return steps[key], "step"
        if unrolled:  # its own train_s over plain FNO's (the step rows' baseline)
            plain = next(
                (x for x in summary if x["task"] == s["task"] and x["model"] == "FNO"), None
            )
            ratio = s["train_s_mean"] / plain["train_s_mean"] if plain else float("nan")
            return ratio, "train_s"
        if math.isnan(s["train_ratio"]):  # no same-settings FNO: the network's own line's
            net = next(
                (
                    x
                    for x in summary
                    if x["task"] == s["task"] and x["model"] == network_of(s["model"])
                ),
                None,
            )
            if net is not None:
                return net["train_ratio"], "train_s"
        return s["train_ratio"], "train_s"

    def unroll_cost(s: Mapping[str, Any]) -> float:
        """An unrolled line's time over its network's one-step time (1 when not unrolled)."""
        if MODEL_TRAINING.get(s["model"], {}).get("unroll", 1) == 1:
            return 1.0
        one_step = steps.get((s["task"], network_of(s["model"])), 1.0)
        return time_of(s)[0] / one_step

    checks = []
    for task, target in NRMSE_TARGETS.items():
        here = [s for s in summary if s["task"] == task]
        fno = _best_of([s for s in here if s["model"].startswith("FNO")])
        lip = [s for s in here if s["model"].startswith("LipFNO")]
        if fno is None or not lip:
            continue
        eligible = [s for s in lip if s["seeds"] >= fno["seeds"]] or lip

        def ratio(s: Mapping[str, Any], ref: Mapping[str, Any] = fno) -> float:
            return float(s["nrmse_mean"] / ref["nrmse_mean"])

        fno_cost = unroll_cost(fno)  # an unrolled best FNO's train time is that much longer

        def rel_time(s: Mapping[str, Any], cost: float = fno_cost) -> tuple[float, str]:
            value, source = time_of(s)
            return value / cost, source

        best = min(eligible, key=lambda s: _ratio_key(ratio(s)))
        in_time = [s for s in eligible if rel_time(s)[0] <= TIME_TARGET]
        fast = min(in_time, key=lambda s: _ratio_key(ratio(s))) if in_time else None
        meeting = [s for s in eligible if ratio(s) <= target]
        chosen = min(meeting, key=lambda s: _ratio_key(rel_time(s)[0])) if meeting else best
        time_ratio, source = rel_time(chosen)
        screens = [
            s
            for s in here
            if s["seeds"] < fno["seeds"]
            and s["nrmse_mean"] < (fno if s["model"].startswith("FNO") else best)["nrmse_mean"]
        ]
        checks.append(
            {
                "task": task,
                "model": chosen["model"],
                "seeds": chosen["seeds"],
                "fno_model": fno["model"],
                "fno_seeds": fno["seeds"],
                "fno_nrmse": fno["nrmse_mean"],
                "nrmse_ratio": ratio(chosen),
                "same_settings_ratio": chosen["nrmse_ratio"],
                "nrmse_target": target,
                "nrmse_met": ratio(chosen) <= target,
                "train_ratio": time_ratio,
                "time_source": source,
                "train_target": TIME_TARGET,
                "train_met": time_ratio <= TIME_TARGET,
                "lipschitz_max": chosen["lipschitz_max"],
                "best_model": best["model"],
                "best_nrmse_ratio": ratio(best),
                "best_time_ratio": rel_time(best)[0],
                "fast_model": fast["model"] if fast else None,
                "fast_nrmse_ratio": ratio(fast) if fast else float("nan"),
                "fast_time_ratio": rel_time(fast)[0] if fast else float("nan"),
                "better_screens": [(s["model"], s["seeds"], s["nrmse_mean"]) for s in screens],
            }
        )
    return checks


# -- output ---------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}"
    return str(value)


MD_COLUMNS = (
    "model",
    "seed",
    "recipe",
    "params",
    "train_s",
    "steps",
    "nrmse",
    "val_nrmse",
    "max",
    "frmse_low",
    "frmse_high",
    "lipschitz_certified",
    "L_G",
    "L_G_label",
    "bound_label",
    "coverage",
    "tightness_median",
)


def markdown_table(rows: Sequence[Mapping[str, Any]], task: str) -> list[str]:
    """Markdown lines of one task's table, with PDEBench's published FNO as a reference row."""
    lines = ["| " + " | ".join(MD_COLUMNS) + " |", "|" + "---|" * len(MD_COLUMNS)]
    for r in rows:
        if r["task"] != task:
            continue
        if r.get("status") != "ok":
            cells = [r["model"], _fmt(r.get("seed", 0))]
            cells += ["-"] * (len(MD_COLUMNS) - 3) + [str(r.get("status"))]
        else:
            cells = [_fmt(r.get(c, float("nan"))) for c in MD_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if task in PUBLISHED_FNO_NRMSE:
        value, note = PUBLISHED_FNO_NRMSE[task]
        label = "FNO (published, full-size data" + (f"; {note})" if note else ")")
        cells = [label, *("-" for _ in MD_COLUMNS[1:])]
        cells[MD_COLUMNS.index("nrmse")] = _fmt(value)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


SUMMARY_COLUMNS = (
    "task",
    "model",
    "seeds",
    "nRMSE mean ± std",
    "min-max",
    "nRMSE / FNO",
    "train_s mean",
    "train / FNO",
    "certified L (max)",
    "published FNO",
)


def summary_markdown(
    rows: Sequence[Mapping[str, Any]],
    step_ratios: Mapping[tuple[str, str], float] | None = None,
) -> list[str]:
    """Markdown of :func:`summarize` and of :func:`target_checks` (with ``step_ratios``)."""
    summary = summarize(rows)
    lines = []
    tuned = sorted({s["model"] for s in summary} & set(MODEL_TRAINING))
    if tuned:
        lines += [
            "Ratios to FNO are to FNO trained with the model's settings: "
            + "; ".join(
                f"{m} ({', '.join(f'{k}={v}' for k, v in MODEL_TRAINING[m].items())}) "
                f"against {reference_model(m)}"
                for m in tuned
            )
            + ".",
            "",
        ]
    lines += ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    for s in summary:
        published = PUBLISHED_FNO_NRMSE.get(s["task"], (float("nan"), ""))[0]
        cells = [
            s["task"],
            s["model"],
            str(s["seeds"]),
            f"{_fmt(s['nrmse_mean'])} ± {_fmt(s['nrmse_std'])}",
            f"{_fmt(s['nrmse_min'])}-{_fmt(s['nrmse_max'])}",
            _fmt(s["nrmse_ratio"]),
            _fmt(s["train_s_mean"]),
            _fmt(s["train_ratio"]),
            _fmt(s["lipschitz_max"]),
            _fmt(published) if s["model"] == "FNO" else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    checks = target_checks(summary, step_ratios)
    if checks:
        lines += [
            "",
            "Targets (issue 13): a LipFNO model's mean nRMSE / the best FNO's <= the target "
            f"and its train time / FNO's <= {TIME_TARGET}. Each family at its best settings: the "
            "best FNO is the FNO variant (the same network under the training settings of "
            "`liponet.bench.MODEL_TRAINING`: learning rates, per-step cosine `-cos`, no weight "
            "decay `-wd0`) with the lowest mean nRMSE over "
            f"{TARGET_SEEDS} seeds; `/ FNO same settings` is the ratio to FNO trained as that "
            "model was. Per task, of the LipFNO models with as many seeds as that FNO that meet "
            "the nRMSE target, the one with the smallest time ratio; where none does, the most "
            "accurate (so the miss shows). Time: the side-by-side "
            f"Trainer step ratio of `{STEP_TIME_FILE}` (`benchmarks/medium_step_time.py`, all "
            "models of a task interleaved in one process; a training-settings variant takes its "
            "network's) where it has the model (`step`), else "
            "the ratio of the rows' sequential `train_s` (`train_s`; measured under the shared "
            "machine's varying load, not a fair time figure). `most accurate LipFNO`: its nRMSE "
            "/ the best FNO's and its time ratio; `most accurate within time`: the same for the "
            f"most accurate model whose time ratio is <= {TIME_TARGET}. The last column lists "
            "the lines with fewer "
            "seeds that beat the chosen FNO or the most accurate LipFNO: unconfirmed screens "
            "that could change the verdict.",
            "",
            "| task | LipFNO model | seeds | best FNO (seeds, nRMSE) | nRMSE / best FNO | target "
            "| met | nRMSE / FNO same settings | time / FNO (source) | met | certified L (max) "
            "| most accurate LipFNO | most accurate within time "
            "| lower screens, unconfirmed (seeds, nRMSE) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in checks:
            screens = ", ".join(f"{m} ({n}, {_fmt(v)})" for m, n, v in c["better_screens"])
            nrmse_verdict = (
                "yes"
                if c["nrmse_met"]
                else (f"no ({c['nrmse_ratio'] / c['nrmse_target']:.2f}x the target)")
            )
            time_verdict = (
                "yes"
                if c["train_met"]
                else "unknown (no time ratio)"
                if math.isnan(c["train_ratio"])
                else (f"no ({c['train_ratio'] / c['train_target']:.2f}x the target)")
            )
            fast = (
                f"{c['fast_model']}: {_fmt(c['fast_nrmse_ratio'])}x, time "
                f"{_fmt(c['fast_time_ratio'])}x"
                if c["fast_model"]
                else "none"
            )
            lines.append(
                f"| {c['task']} | {c['model']} | {c['seeds']} "
                f"| {c['fno_model']} ({c['fno_seeds']}, {_fmt(c['fno_nrmse'])}) "
                f"| {_fmt(c['nrmse_ratio'])} | {_fmt(c['nrmse_target'])} | {nrmse_verdict} "
                f"| {_fmt(c['same_settings_ratio'])} | {_fmt(c['train_ratio'])} "
                f"({c['time_source']}) | {time_verdict} | {_fmt(c['lipschitz_max'])} "
                f"| {c['best_model']}: {_fmt(c['best_nrmse_ratio'])}x, time "
                f"{_fmt(c['best_time_ratio'])}x | {fast} | {screens or '-'} |"
            )
    return lines


def preset_settings(preset: Preset) -> dict[str, Any]:
    """The preset's training settings, as the results' Settings line shows them."""
    return {
        "preset": preset.name,
        "steps": _per_task_text(preset.steps)
        if preset.epochs is None
        else f"{preset.epochs} epochs",
        "samples": _per_task_text(preset.n_samples),
        "batch": preset.batch,
        "lr": preset.lr,
        "scheduler": preset.scheduler,
        "schedule_unit": preset.schedule_unit,
        "weight_decay": preset.weight_decay,
        "width": preset.width,
        "modes": _per_task_text(preset.modes),
        "depth": preset.depth,
    }


def _this_run_note(md_path: pathlib.Path) -> str:
    """The ``**This run:**`` paragraph of an existing results file, without its label ("" if none).

    A rebuild from the CSV (``--append``, ``--from-csv``) without a new ``--note`` keeps it: the
    paragraph says how the rows were produced, which a rebuild does not change.
    """
    if not md_path.is_file():
        return ""
    label = "**This run:** "
    lines = md_path.read_text().split("\n")
    for i, line in enumerate(lines):
        if line.startswith(label):
            paragraph = [line[len(label) :]]
            for more in lines[i + 1 :]:
                if not more.strip():
                    break
                paragraph.append(more)
            return "\n".join(paragraph)
    return ""


def write_results(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | os.PathLike[str],
    preset: Preset,
    settings: Mapping[str, Any],
    *,
    write_csv: bool = True,
    note: str = "",
) -> list[pathlib.Path]:
    """Write ``bench_{preset}.csv``, ``.md`` and ``.png``; return the paths written.

    With ``write_csv=False`` the CSV is left as it is (tables regenerated from it, e.g. after
    an incremental run); ``note`` is a paragraph about this run (e.g. a cut budget); a rebuild
    without one keeps the existing file's paragraph (:func:`_this_run_note`). The
    markdown has one table per task (one row per model and seed) and
    a summary over seeds (:func:`summarize`, :func:`target_checks`). The PNG needs matplotlib
    and at least one trained row; otherwise it is skipped.
    """
    rows = _fill_recipes(rows, preset)
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"bench_{preset.name}"
    csv_path = stem.with_suffix(".csv")
    paths = []
    if write_csv:
        with csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS, restval="")
            writer.writeheader()
            for r in rows:
                writer.writerow({k: r.get(k, "") for k in COLUMNS})
        paths.append(csv_path)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    md = [
        f"# liponet bench, preset `{preset.name}`",
        "",
        "Regenerate: `.venv/bin/python -m liponet bench --preset "
        f"{preset.name}` (writes this file, the CSV and the PNG; `--from-csv` rebuilds this "
        "file and the PNG from the CSV alone).",
        "",
        "Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        "",
    ]
    if preset.note:
        md += [preset.note, ""]
    if not note and not write_csv:
        note = _this_run_note(stem.with_suffix(".md"))
    if note:
        md += [f"**This run:** {note}", ""]
    md += [
        "Columns: PDEBench metrics on the test split (rollout from the first window, input frames "
        "excluded; `max` = true maximum over the test set), `val_nrmse` on a separate validation "
        "split; `train_s` = time in the Trainer's optimizer steps (process CPU seconds on a CPU; "
        "per-epoch validation and checkpoints excluded); `lipschitz_certified` = the model's "
        "certified bound (function norm); `L_G` = the "
        "one-step map's constant between the file's grid samples, with its label (certified = a "
        "theorem about that discrete map, matched to the file's `discretization` attribute; "
        "estimated = largest ratio over calibration pairs; the premise is stated under each "
        "task); coverage / median tightness (bound / observed) "
        "of the one-step operator error bound on test windows, calibrated on training windows; "
        "the bound is certified only if both constants are; `recipe` = the row's training "
        "settings (Adam, learning rate, weight decay, schedule: `cosine/epoch` anneals once per "
        "epoch, `cosine/step` after every optimizer step; rows written before the column existed "
        "show their model's settings, `liponet.bench.MODEL_TRAINING`).",
        "",
    ]
    md += ["## Summary (test rollout nRMSE; `L` = certified Lipschitz bound)", ""]
    md += [*summary_table(rows), ""]
    if len({int(r.get("seed", 0)) for r in rows}) > 1:
        steps = read_step_ratios(out / STEP_TIME_FILE) if preset.name == "medium" else {}
        md += ["## Summary over seeds", "", *summary_markdown(rows, steps), ""]
    for task in tasks:
        premises = [r.get("L_G_premise") for r in rows if r["task"] == task]
        premise = next((p for p in premises if p), "")
        md += [f"## {task}", ""]
        if premise:
            md += [f"L_G premise: {premise}", ""]
        md += [*markdown_table(rows, task), ""]
    md_path = stem.with_suffix(".md")
    md_path.write_text("\n".join(md))
    paths.append(md_path)
    png = _plot(rows, tasks, stem.with_suffix(".png"))
    if png is not None:
        paths.append(png)
    return paths


def _plot(
    rows: Sequence[Mapping[str, Any]], tasks: Sequence[str], path: pathlib.Path
) -> pathlib.Path | None:
    """One row of bars per model (named on the left), one bar per task, three metrics across.

    Bars: the mean over seeds; error bars: the smallest to the largest. Presets run from a few
    models to over a hundred (``tiny``), so the models are rows of a figure whose height grows
    with them, and the legend names only the tasks (colours).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return None
    models = list(dict.fromkeys(r["model"] for r in ok))
    height = 0.8 / max(1, len(tasks))
    fig_h = max(2.6, 1.5 + 0.16 * len(models) * max(1, len(tasks)) ** 0.5)
    fig, axes = plt.subplots(1, 3, figsize=(15, fig_h), sharey=True)
    columns = ("nrmse", "lipschitz_certified", "train_s")
    titles = ("test nRMSE (rollout)", "certified Lipschitz bound", "train time (s)")
    for ax, column, title in zip(axes, columns, titles, strict=True):
        for j, t in enumerate(tasks):
            ys, mid, lo, hi = [], [], [], []
            for i, m in enumerate(models):
                vals = [float(r[column]) for r in ok if r["task"] == t and r["model"] == m]
                vals = [v for v in vals if math.isfinite(v) and v > 0]  # a log axis
                if vals:
                    mean = sum(vals) / len(vals)
                    ys.append(i + (j - (len(tasks) - 1) / 2) * height)
                    mid.append(mean)
                    lo.append(mean - min(vals))
                    hi.append(max(vals) - mean)
            ax.barh(ys, mid, height, xerr=[lo, hi], capsize=1.5, color=f"C{j % 10}", label=t)
        ax.set_xscale("log")
        ax.set_title(title + ("" if len(ok) == len(models) * len(tasks) else ", seeds min-max"))
        ax.grid(axis="x", which="both", lw=0.3, alpha=0.5)
    axes[0].set_yticks(range(len(models)))
    axes[0].set_yticklabels(models, fontsize=7)
    axes[0].set_ylim(len(models) - 0.5, -0.5)  # the first model at the top, as in the tables
    # The tasks' colours above the panels: a fixed place, over no bar (loc="best" searches the
    # data and warns when that takes over a second on a loaded machine, which a caller treating
    # warnings as errors sees as a failed run).
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(tasks), 8), fontsize=8)
    with warnings.catch_warnings():  # a layout it cannot tighten is cosmetic, not a failed run
        warnings.filterwarnings("ignore", "Tight layout not applied", UserWarning)
        fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.4 / fig_h))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _number(value: Any) -> float:
    """A float from a row value (floats from a run, strings from a CSV; '' is nan)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def summary_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """The documented summary: test nRMSE per task and model, ``(L x)`` where certified.

    Works on rows of a run or of the CSV it wrote (values as strings), so the README table can
    be regenerated from the committed CSV and compared cell by cell (``tests/test_bench.py``).
    The last column is PDEBench's published FNO on full-size data (a reference).

    Examples
    --------
    >>> rows = [{"task": "advection_1d", "model": "LipFNO", "status": "ok", "nrmse": "0.0931",
    ...          "lipschitz_certified": "1.0000002"}]
    >>> summary_table(rows)[2]
    '| advection_1d | 0.0931 (L 1) | 0.0049 |'
    """
    tasks = list(dict.fromkeys(str(r["task"]) for r in rows))
    models = list(dict.fromkeys(str(r["model"]) for r in rows))
    index = {(str(r["task"]), str(r["model"])): r for r in rows}
    lines = [
        "| task | " + " | ".join(models) + " | published FNO (full-size) |",
        "|---|" + "---|" * (len(models) + 1),
    ]
    for task in tasks:
        cells = [task]
        for model in models:
            r = index.get((task, model))
            if r is None or r.get("status") != "ok":
                cells.append("-" if r is None else str(r.get("status")))
                continue
            cell = _fmt(_number(r.get("nrmse")))
            lip = _number(r.get("lipschitz_certified"))
            if not math.isnan(lip):
                cell += f" (L {_fmt(lip)})"
            cells.append(cell)
        published = PUBLISHED_FNO_NRMSE.get(task)
        cells.append(_fmt(published[0]) if published else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def seed_summary_table(
    rows: Sequence[Mapping[str, Any]], models: Sequence[str] | None = None
) -> list[str]:
    """The documented summary over seeds: per task and model, mean ± std nRMSE, ratios to FNO.

    Each cell is ``mean ± std (n seeds, L max)``, followed for models other than FNO by
    ``: nRMSE ratio x, time ratio x`` (means over FNO's means, :func:`summarize`); ``-`` where a
    model has no finished row. Works on the rows of :func:`read_rows`, so the README table can
    be regenerated from the committed CSV and compared cell by cell.

    Examples
    --------
    >>> rows = [
    ...     {"task": "burgers_1d", "model": m, "seed": s, "status": "ok", "nrmse": v,
    ...      "train_s": t, "lipschitz_certified": lip}
    ...     for m, s, v, t, lip in [("FNO", 0, 0.01, 10.0, 50.0), ("FNO", 1, 0.03, 10.0, 40.0),
    ...                             ("LipFNO", 0, 0.03, 15.0, 1.0)]]
    >>> seed_summary_table(rows)[2]
    '| burgers_1d | 0.02 ± 0.0141 (2 seeds, L 50) | 0.03 (1 seed, L 1): 1.5x, time 1.5x | 0.0078 |'
    """
    summary = summarize(rows)
    names = list(models or dict.fromkeys(s["model"] for s in summary))
    lines = [
        "| task | " + " | ".join(names) + " | published FNO (full-size) |",
        "|---|" + "---|" * (len(names) + 1),
    ]
    for task in dict.fromkeys(s["task"] for s in summary):
        cells = [task]
        for name in names:
            line = next((x for x in summary if x["task"] == task and x["model"] == name), None)
            if line is None:
                cells.append("-")
                continue
            n = line["seeds"]
            cell = _fmt(line["nrmse_mean"])
            if n > 1:
                cell += f" ± {_fmt(line['nrmse_std'])}"
            cell += f" ({n} seed{'s' if n > 1 else ''}, L {_fmt(line['lipschitz_max'])})"
            if name != "FNO":
                cell += f": {_fmt(line['nrmse_ratio'])}x, time {_fmt(line['train_ratio'])}x"
            cells.append(cell)
        published = PUBLISHED_FNO_NRMSE.get(task)
        cells.append(_fmt(published[0]) if published else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def run_bench(
    preset: Preset,
    *,
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    work_dir: str | os.PathLike[str],
    seed: int = 0,
    seeds: Sequence[int] | None = None,
    device: str = "cpu",
    skip: set[tuple[str, str, int]] | None = None,
    on_row: Callable[[dict[str, Any]], object] | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Every (seed, task, model) row of a preset, in that order.

    A run cut short still has every task for its first seeds.
    ``seed`` generates the data (when there is no ``data_dir``); ``seeds`` are the training
    seeds (default: the preset's); ``models`` default to the preset's. Rows whose
    ``(task, model, seed)`` is in ``skip`` are not run (resuming a run). ``on_row(row)`` and
    ``progress(message)`` after each row.
    """
    if preset.name == "full" and data_dir is None:
        raise ValueError(
            "preset 'full' reads PDEBench's files: pass --data-dir with the downloaded files"
        )
    rows = []
    names = tuple(models or preset.models or DEFAULT_MODELS)
    for name in names:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}")
    chosen = tuple(tasks or preset.tasks)
    cache: dict[str, BenchData] = {}
    for train_seed in seeds if seeds is not None else preset.seeds:
        for task in chosen:
            for name in names:
                if (task, name, train_seed) in (skip or set()):
                    continue
                if task not in cache:
                    cache[task] = load_task(task, preset, data_dir, work_dir, seed)
                row = run_row(name, cache[task], preset, train_seed, device=device)
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                if progress is not None:
                    progress(
                        f"{task} {name} seed {train_seed}: "
                        + ", ".join(
                            f"{k}={_fmt(row[k])}"
                            for k in (
                                "status",
                                "nrmse",
                                "train_s",
                                "lipschitz_certified",
                                "coverage",
                            )
                            if k in row
                        )
                    )
    return rows


def with_overrides(preset: Preset, **changes: Any) -> Preset:
    """A copy of ``preset`` with some fields replaced (e.g. ``steps``)."""
    return replace(preset, **{k: v for k, v in changes.items() if v is not None})
