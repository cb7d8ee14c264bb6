#!/usr/bin/env bash
# README's test command: installs into ./.venv if needed, then lint and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
