"""PDEBench-style leaderboard with certificates: the script form of ``liponet bench``.

Trains and scores neuraloperator's FNO, our FNO, LipFNO (plain 1-Lipschitz and the best
expressivity variant), DeepONet and LipDeepONet on 1-D advection, Burgers, diffusion-reaction,
2-D Darcy and 2-D diffusion-reaction (see :mod:`liponet.bench` for the task, metric and
certificate definitions). Same flags as the command:

    .venv/bin/python benchmarks/pdebench.py --preset small        # generated data, 2 CPU cores
    .venv/bin/python benchmarks/pdebench.py --preset full --data-dir /path/to/pdebench

Writes ``benchmarks/results/bench_{preset}.{md,csv,png}``.
"""

from __future__ import annotations

import sys

from liponet.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
