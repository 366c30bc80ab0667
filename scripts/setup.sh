#!/usr/bin/env bash
# Set up (or refresh) the development environment in .venv: CPU torch first, then liponet with
# its dev extras. Idempotent: a second run only checks that everything is installed.
# GPU users: create .venv yourself, install the torch build for your CUDA version
# (https://pytorch.org/get-started/locally/), then run this script; it keeps an installed torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  # Pin the CPU wheel: a bare `torch` requirement would pull a multi-GB CUDA build.
  # On the project's machines this CPU wheel is served locally; elsewhere add
  # `--index-url https://download.pytorch.org/whl/cpu` to get the CPU build.
  .venv/bin/pip install --quiet "torch==2.13.0"
fi
.venv/bin/pip install --quiet -e ".[dev]"
