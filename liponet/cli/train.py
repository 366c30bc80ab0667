"""``liponet train``: train a registered model from a TOML/YAML config and flags (torchrun too)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import UsageError, warnings_as_lines

HELP = "train a model (config file + flags); multi-GPU/multi-node with torchrun"

EPILOG = """\
configuration:
  Settings come from --config (TOML or YAML; keys as in liponet.train.TrainConfig), then the
  shortcut flags, then --set KEY=VALUE (dotted keys, YAML values), in that order. Example:
    liponet train --model LipMLP --data toy-shift --epochs 5 --set model.kwargs.width=32
  The data set the model's sizes it leaves out: in_channels / out_channels (LipFNO, FNO,
  DeepONets: the channel axis of one input / target sample) and in_features / out_features
  (LipMLP, MLP: its last axis); a value given that contradicts the data is an error. The
  rest must be given when the model has no default (LipFNO/FNO: modes, e.g. [16] in 1-D).
  With model.kwargs.increment=spectral (LipFNO/FNO), shortcut_size is the data's grid;
  --set shortcut_init=lstsq fits the shortcut to the training windows before the first step
  (shortcut_frozen=true keeps it there), and model.kwargs.shortcut_bound=auto sizes its ball
  from that fit (LipFNO; default 1). Example for a linear time stepper (wave, advection):
    liponet train ... --set model.kwargs.increment=spectral --set shortcut_init=lstsq \
      --set model.kwargs.shortcut_bound=auto --set model.kwargs.k=auto
  Output: OUT/last.pt, OUT/best.pt (checkpoints) and OUT/log.jsonl (one JSON line per epoch).
  --resume OUT/last.pt continues a run exactly (also from a mid-epoch file, see save_every_steps).

learning-rate schedule:
  --scheduler cosine (default) anneals the rate to --lr-min (default 0) over the run; with
  --schedule-unit epoch (default) it steps once per epoch, so over a few epochs the last one
  still runs well above the floor; --schedule-unit step anneals it after every optimizer step
  (optionally after --warmup-steps N of linear warmup). Example:
    liponet train ... --epochs 6 --schedule-unit step --warmup-steps 100 --weight-decay 0

unrolled training (autoregressive data):
  --unroll K trains each window on the model's own K-step rollout (loss averaged over the K
  frames, gradient through all of them; --set unroll_gradient=last: the pushforward trick,
  only the last frame's loss; --set unroll_curriculum=N grows K over the first N steps). It
  sets data.kwargs.target_frames=K (pdebench, pdebench-stream, toy-shift), so both splits hold
  K frames after each window and validation scores the K-step rollout. A step costs about K.

run folders:
  OUT belongs to one run: a second run into it while the first is alive is refused, and a
  folder holding a finished or stopped run is refused unless --resume OUT/last.pt (same
  settings and data; a finished run needs more --epochs) or --overwrite (deletes its files).
  Ctrl-C or SIGTERM saves a resumable OUT/last.pt, then exits 130 / 143. Before training:
  the data file, the model against the data's shapes, OUT writable with room for a checkpoint.

distributed:
  torchrun --nproc_per_node=N -m liponet train ...        one machine, N processes
  (NCCL with one GPU per process when CUDA is available, Gloo on CPU; --set batch_size is the
  GLOBAL batch.) Several machines: run on every node
  torchrun --nnodes=M --nproc_per_node=N --node_rank=I --rdzv_backend=c10d \\
      --rdzv_endpoint=HOST:29500 --rdzv_id=RUN_ID -m liponet train ...
  with HOST = an address of node 0 reachable by all. If a process dies, torchrun stops the
  others and exits non-zero; a hung process makes the others fail after dist_timeout_s.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Config file, shortcut flags, overrides and resume."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--config", type=Path, help="TOML (.toml) or YAML (.yaml/.yml) file")
    parser.add_argument("--model", help="registered model name (see `liponet info`)")
    parser.add_argument("--data", help="dataset name (see `liponet info`)")
    parser.add_argument("--data-path", help="data file for file-backed datasets")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    # schedule flags pass through the config's checks (one-line errors, e.g. warmup-steps=abc)
    parser.add_argument("--weight-decay", metavar="WD", help="optimizer weight decay (>= 0)")
    parser.add_argument("--scheduler", help="learning-rate schedule: none, cosine or step")
    parser.add_argument(
        "--schedule-unit",
        metavar="UNIT",
        help="epoch (default: the schedule steps once per epoch) or step (every optimizer step)",
    )
    parser.add_argument(
        "--warmup-steps",
        metavar="N",
        help="optimizer steps of linear warmup (cosine with --schedule-unit step)",
    )
    parser.add_argument("--lr-min", metavar="LR", help="the rate a cosine ends at (default 0)")
    parser.add_argument(
        "--augment",
        metavar="GROUP",
        help="symmetry augmentation of square 2-D training pairs: none, transpose or d4",
    )
    parser.add_argument(
        "--unroll",
        metavar="K",
        help="train on the model's own K-step rollout from each window (default 1: one step); "
        "sets data.kwargs.target_frames=K too",
    )
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--out", help="run folder (checkpoints, log)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any setting, e.g. --set model.kwargs.width=64 (repeatable)",
    )
    parser.add_argument("--resume", type=Path, help="checkpoint to continue from")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run files another run left in --out (default: refuse the folder)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def read_config_file(path: Path) -> dict[str, Any]:
    """Parse a TOML or YAML configuration file into plain data.

    Raises
    ------
    UsageError
        Missing file, unknown extension, or a syntax error (one line, naming the file).
    """
    if not path.is_file():
        raise UsageError(f"config file {path} does not exist")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    try:
        if suffix == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise UsageError(f"config file {path}: expected .toml, .yaml or .yml")
    except UsageError:
        raise
    except Exception as err:  # tomllib.TOMLDecodeError, yaml.YAMLError
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"config file {path}: {detail}") from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path}: expected a table of settings at the top level")
    return data


def build_config(args: argparse.Namespace) -> Any:
    """The validated :class:`~liponet.train.TrainConfig` from file, flags and overrides."""
    from ..train import apply_overrides, config_from_dict

    data = read_config_file(args.config) if args.config is not None else {}
    shortcuts = {
        "model.name": args.model,
        "data.name": args.data,
        "data.path": args.data_path,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "seed": args.seed,
        "device": args.device,
        "out_dir": args.out,
    }
    for key, value in shortcuts.items():
        if value is not None:
            node = data
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
    schedule = {
        "weight_decay": args.weight_decay,
        "scheduler": args.scheduler,
        "schedule_unit": args.schedule_unit,
        "warmup_steps": args.warmup_steps,
        "lr_min": args.lr_min,
        "augment": args.augment,
        "unroll": args.unroll,
    }
    flags = [f"{key}={value}" for key, value in schedule.items() if value is not None]
    merged = apply_overrides(data, [*flags, *args.overrides])
    return config_from_dict(_with_target_frames(merged))


#: Datasets whose ``data.kwargs.target_frames`` gives the ``K`` target frames of ``unroll``.
TARGET_FRAME_DATASETS = ("pdebench", "pdebench-stream", "toy-shift")


def _with_target_frames(data: dict[str, Any]) -> dict[str, Any]:
    """``unroll = K > 1`` without ``data.kwargs.target_frames``: set it to ``K`` (when known)."""
    unroll = data.get("unroll")
    source = data.get("data")
    if not (isinstance(unroll, int) and unroll > 1 and isinstance(source, dict)):
        return data
    kwargs = source.get("kwargs")
    if source.get("name") not in TARGET_FRAME_DATASETS or not isinstance(kwargs, dict | None):
        return data
    if kwargs is None or "target_frames" not in kwargs:
        source["kwargs"] = {**(kwargs or {}), "target_frames": unroll}
    return data


#: Model keywords the data determine: name -> (which tensor, which axis of one sample).
DATA_SIZES = {
    "in_channels": ("inputs", 0),
    "out_channels": ("targets", 0),
    "in_features": ("inputs", -1),
    "out_features": ("targets", -1),
}


def _first_sample(data: Any) -> tuple[Any, Any] | None:
    """``(input, target)`` of one sample: the validation split's first, else the training's."""
    from torch.utils.data import IterableDataset

    for split in (data.val, data.train):
        if isinstance(split, IterableDataset):
            continue
        if len(split):
            x, y = split[0]
            return x, y
    for x, y in data.train:  # every split streams: the first sample the stream yields
        return x, y
    return None


def infer_data_sizes(config: Any, data: Any) -> dict[str, int | list[int]]:
    """Fill the model's channel / feature sizes from the data; return what was filled in.

    The registered model's constructor names the sizes it takes (:data:`DATA_SIZES`); one
    sample of the data gives their values. A size the user set is checked against the data,
    and a required argument the data do not determine (e.g. LipFNO's ``modes``) is asked for.

    Raises
    ------
    UsageError
        If a size set in ``model.kwargs`` contradicts the data (naming both values), or a
        required constructor argument is missing (naming it).
    """
    import inspect

    from ..models import get_model_class

    name = config.model.name
    wanted = inspect.signature(get_model_class(name)).parameters
    kwargs = config.model.kwargs
    keys = [key for key in DATA_SIZES if key in wanted]
    sample = _first_sample(data) if keys or "modes" in wanted else None
    filled: dict[str, int | list[int]] = {}
    if sample is not None:
        tensors = {"inputs": sample[0], "targets": sample[1]}
        for key in keys:
            which, axis = DATA_SIZES[key]
            shape = tuple(tensors[which].shape)
            if not shape:
                continue
            size = int(shape[axis])
            if which == "targets" and axis == 0 and config.unroll > 1:
                size //= config.unroll  # unroll's K target frames stacked as channels
            if key not in kwargs:
                kwargs[key] = filled[key] = size
            elif kwargs[key] != size:
                where = f" in {config.data.path}" if config.data.path else ""
                raise UsageError(
                    f"model.kwargs.{key}: {kwargs[key]!r} contradicts the data{where}: its "
                    f"{which} are shaped {shape} per sample, i.e. {key} = {size} (leave {key} "
                    "out to use the data's)"
                )
    if (
        kwargs.get("increment") == "spectral"
        and "shortcut_size" in wanted
        and "shortcut_size" not in kwargs
        and sample is not None
        and sample[0].ndim >= 2
    ):  # the spectral shortcut stores every mode of the data's grid (an int in 1-D)
        grid = [int(n) for n in sample[0].shape[1:]]
        kwargs["shortcut_size"] = grid[0] if len(grid) == 1 else grid
        filled["shortcut_size"] = kwargs["shortcut_size"]
    required = [
        key for key, p in wanted.items()
        if p.default is inspect.Parameter.empty and key not in kwargs
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]  # fmt: skip
    if required:
        key = required[0]
        example = "VALUE"
        if key == "modes" and sample is not None:  # one count per spatial axis
            spatial = tuple(sample[0].shape[1:])
            example = "[" + ", ".join(str(min(16, n // 2 + 1)) for n in spatial) + "]"
        raise UsageError(
            f"model.kwargs.{key}: {name} needs it and the data do not determine it; set it, "
            f"e.g. --set model.kwargs.{key}={example}"
        )
    return filled


def format_record(record: dict[str, Any], epochs: int) -> str:
    """One line summarizing an epoch record."""
    parts = [f"epoch {record['epoch']}/{epochs}", f"train_loss {record['train_loss']:.3e}"]
    for key in ("val_loss", "val_nrmse", "val_rmse", "val_max"):
        if key in record:
            parts.append(f"{key} {record[key]:.3e}")
    if "lipschitz_bound" in record:
        parts.append(f"L_certified {record['lipschitz_bound']:.6f}")
    parts.append(f"{record['time_s']:.1f}s" + (" *" if record.get("best") else ""))
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Train; print one line per epoch (rank 0) and where the outputs are."""
    from tqdm.auto import tqdm

    from ..train import (
        ConstraintWarning,
        Trainer,
        TrainingInterrupted,
        build_dataset,
        cleanup_distributed,
        init_distributed,
    )

    config = build_config(args)
    ctx = init_distributed(config.device, config.dist_timeout_s)
    try:
        data = build_dataset(config.data, config.seed, ctx.rank, ctx.world_size)
        infer_data_sizes(config, data)
    except BaseException:
        cleanup_distributed(barrier=False)
        raise

    # warnings from the Trainer's setup wait until training starts (its checks passed): a run
    # refused by a check prints its one error line only
    held: list[str] = []

    def release() -> None:
        for line in held:
            tqdm.write(line, file=sys.stderr)
        held.clear()

    def printer(event: str, record: dict[str, Any]) -> None:
        release()
        if event == "epoch" and ctx.is_main:
            tqdm.write(format_record(record, config.epochs), file=sys.stdout)

    try:
        with warnings_as_lines(ConstraintWarning, emit=held.append):  # "liponet: warning: ..."
            trainer = Trainer(
                config,
                data.train,
                data.val,
                ctx=ctx,
                normalizer_state=data.normalizer_state,
                callbacks=[printer],
                progress=not args.no_progress,
            )
            trainer.fit(resume_from=args.resume, overwrite=args.overwrite)
        release()
    except TrainingInterrupted as stop:
        if ctx.is_main:
            print(f"liponet train: {stop}", file=sys.stderr)
        cleanup_distributed(barrier=False)
        return 128 + stop.signal_number
    except BaseException:
        cleanup_distributed(barrier=False)
        raise
    if ctx.is_main:
        out = trainer.out_dir
        print(f"checkpoints: {out / 'last.pt'}, {out / 'best.pt'}; log: {out / 'log.jsonl'}")
    cleanup_distributed()
    return 0
