"""Process-group setup for ``torchrun`` (NCCL on GPU, Gloo on CPU) and small collectives.

``torchrun --nproc_per_node=N -m liponet train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them. Without
them (a plain ``python -m liponet train``) it returns a single-process context and creates no
process group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "all_gather_floats",
    "all_reduce_sum",
    "cleanup_distributed",
    "init_distributed",
    "resolve_device",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and its device.

    Examples
    --------
    >>> DistContext()
    DistContext(rank=0, world_size=1, local_rank=0, device=device(type='cpu'))
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group is in use."""
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` if CUDA is available, else ``cpu``.

    Raises
    ------
    ValueError
        If ``cuda`` is requested and unavailable, or ``device`` is not auto/cpu/cuda.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: unknown value {device!r}; valid: auto, cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' requested but no CUDA device is available")
    if device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto", timeout_s: float = 300.0) -> DistContext:
    """Join the process group described by torchrun's environment variables, if any.

    Parameters
    ----------
    device
        ``auto``, ``cpu`` or ``cuda``; with CUDA each process uses ``cuda:LOCAL_RANK`` and NCCL,
        otherwise Gloo.
    timeout_s
        Timeout of every collective: if a peer hangs (alive but stuck), the others raise after this
        many seconds. A peer that *dies* is noticed at once (closed connection) and torchrun then
        stops the remaining workers.

    Examples
    --------
    >>> ctx = init_distributed("cpu")  # one process, no torchrun: nothing to initialise
    >>> ctx.rank, ctx.world_size
    (0, 1)
    >>> cleanup_distributed()
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    target = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=target)
    rank = int(os.environ["RANK"])
    if target.type == "cuda":
        torch.cuda.set_device(target)
    backend = "nccl" if target.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=target)


def cleanup_distributed(barrier: bool = True) -> None:
    """Leave the process group (if one was created).

    With ``barrier`` (the normal end of a run) every rank first waits for the others: tearing
    Gloo down while a peer still talks to it can abort the process ("terminate called without an
    active exception", seen in about one run in four on a loaded 2-core machine). Pass
    ``barrier=False`` on an error path, where a peer may already be gone.

    Examples
    --------
    >>> cleanup_distributed()  # a no-op outside torchrun
    """
    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum of ``values`` over ranks (``values`` itself when not distributed)."""
    if not ctx.distributed:
        return values
    out = values.clone().to(ctx.device)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def all_gather_floats(value: float, ctx: DistContext) -> list[float]:
    """``value`` from every rank, in rank order (float64, exact)."""
    if not ctx.distributed:
        return [value]
    mine = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    gathered = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, mine)
    return [float(t.item()) for t in gathered]
