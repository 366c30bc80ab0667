#!/usr/bin/env bash
# The test command of the README and of CI: set up .venv if needed, then lint, type-check, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check liponet tests benchmarks
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
