"""Training worker for the subprocess tests (run directly or under torchrun).

Usage: python tests/_train_worker.py CONFIG.json [--pause-step N] [--fail-rank R --fail-step N]
  --pause-step N: after global step N print "PAUSED" and sleep (the test SIGKILLs it);
  --fail-rank R --fail-step N: rank R raises RuntimeError after global step N.
"""

import argparse
import json
import sys
import time

from liponet.train import (
    Trainer,
    build_dataset,
    cleanup_distributed,
    config_from_dict,
    init_distributed,
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--pause-step", type=int)
    parser.add_argument("--fail-rank", type=int)
    parser.add_argument("--fail-step", type=int)
    args = parser.parse_args()
    with open(args.config) as f:
        cfg = config_from_dict(json.load(f))
    ctx = init_distributed(cfg.device, cfg.dist_timeout_s)
    data = build_dataset(cfg.data, cfg.seed, ctx.rank, ctx.world_size)

    def hook(event, record):
        if event != "step":
            return
        if record["step"] == args.pause_step:
            print("PAUSED", flush=True)
            time.sleep(120)
        if record["rank"] == args.fail_rank and record["step"] == args.fail_step:
            raise RuntimeError(f"rank {ctx.rank} fails on purpose")

    Trainer(cfg, data.train, data.val, ctx=ctx, callbacks=[hook], progress=False).fit()
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
