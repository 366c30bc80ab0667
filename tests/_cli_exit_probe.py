"""``python -m liponet ARGS``, checking the order of the distributed exit path (run under torchrun).

Usage: python tests/_cli_exit_probe.py train --config C.yaml ...  (the arguments of ``liponet``)

When the process group is destroyed, no ``DistributedDataParallel`` wrapper may be alive: its
C++ ``Reducer`` holds a reference to the group, and when it is freed later (with the trainer,
as the command returns) it destroys the Gloo group holding the GIL, which can deadlock against
Gloo's worker thread: a rank that never exits. The probe prints ``PROBE: ...`` on stderr and
exits 3 if a wrapper was alive at that moment, else it exits with the command's status.
"""

import gc
import sys

import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from liponet.cli import main

violations: list[str] = []
destroy = dist.destroy_process_group


def checked_destroy(*args, **kwargs):
    # no gc.collect() first: a wrapper left in a reference cycle counts (a later collection
    # would free it after the group is gone)
    alive = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    if alive:
        violations.append(f"{alive} DistributedDataParallel wrapper(s) alive")
    return destroy(*args, **kwargs)


dist.destroy_process_group = checked_destroy

if __name__ == "__main__":
    status = main(sys.argv[1:])
    destroyed = not dist.is_initialized()
    if violations or not destroyed:
        reason = "; ".join(violations) or "the process group was never destroyed"
        print(f"PROBE: destroy_process_group: {reason}", file=sys.stderr, flush=True)
        sys.exit(3)
    sys.exit(status)
