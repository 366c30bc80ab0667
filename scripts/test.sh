#!/usr/bin/env bash
# The test command of the README and of CI: set up .venv if needed, then lint, type-check,
# build the documentation site, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check liponet tests benchmarks
.venv/bin/mypy
# the documentation site (docs/, mkdocs.yml) from the docstrings; warnings are errors
.venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
.venv/bin/python -m pytest "$@"
