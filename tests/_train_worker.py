"""Training worker for the subprocess tests (run directly or under torchrun).

Usage: python tests/_train_worker.py CONFIG.json [--pause-step N] [--fail-rank R --fail-step N]
                                   [--kill-at N] [--resume CHECKPOINT]
  --pause-step N: after global step N print "PAUSED" and sleep (the test SIGKILLs it);
  --fail-rank R --fail-step N: rank R raises RuntimeError after global step N; with these,
  every rank prints "STEP <rank> <step>" after each step and the failing rank prints
  "FAILING <time.monotonic()>" (one clock for every process of the machine) just before;
  --kill-at N: die (os._exit(137), as SIGKILL: no cleanup) at the N-th phase of a checkpoint
  write (liponet.train.checkpoint.write_phase; 1-based); at a "tmp-open" phase it first
  writes a few bytes into the temporary file, as a write cut short would.
"""

import argparse
import json
import os
import sys
import time

import liponet.train.checkpoint as checkpoint_module
from liponet.train import (
    Trainer,
    build_dataset,
    cleanup_distributed,
    config_from_dict,
    init_distributed,
)


def say(line: str) -> None:
    """One line on stdout in one write: the ranks share torchrun's stdout, and print() writes
    the text and the newline separately when unbuffered (PYTHONUNBUFFERED), so lines of two
    ranks could interleave."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--pause-step", type=int)
    parser.add_argument("--fail-rank", type=int)
    parser.add_argument("--fail-step", type=int)
    parser.add_argument("--kill-at", type=int)
    parser.add_argument("--resume")
    args = parser.parse_args()
    calls = []

    def phase(name, path):
        calls.append(name)
        if len(calls) == args.kill_at:
            if name == "tmp-open":
                with open(path, "wb") as partial:
                    partial.write(b"PK\x03\x04 cut short")
            print(f"KILLED at {name} {path.name}", flush=True)
            os._exit(137)

    checkpoint_module.write_phase = phase
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
        if args.fail_rank is not None:
            say(f"STEP {record['rank']} {record['step']}")
        if record["rank"] == args.fail_rank and record["step"] == args.fail_step:
            say(f"FAILING {time.monotonic()}")
            raise RuntimeError(f"rank {ctx.rank} fails on purpose")

    trainer = Trainer(cfg, data.train, data.val, ctx=ctx, callbacks=[hook], progress=False)
    trainer.fit(resume_from=args.resume)
    cleanup_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
