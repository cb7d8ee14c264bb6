#!/usr/bin/env bash
# Installs optuna-spikenas and its development tools into ./.venv (idempotent).
# torch is installed first from its CPU build; constraints.txt then keeps pip from
# replacing it with a CUDA build when spikingjelly asks for torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import optuna_spikenas, spikingjelly, optuna, pytest, ruff" 2>/dev/null; then
    echo "Installing optuna-spikenas into .venv (a minute or two on first run)..."
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet torch==2.13.0
    .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
fi
