#!/usr/bin/env bash
# README's test command: installs into ./.venv if needed, then lint, types and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
# The optional extras too, so the DVS (tonic) and NIR tests run rather than skip.
EXTRAS=dev,dvs,nir bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest -q "$@"
