#!/usr/bin/env bash
# Installs optuna-spikenas and its development tools into ./.venv (idempotent).
# torch is installed first from its CPU build; constraints.txt then keeps pip from
# replacing it with a CUDA build when spikingjelly asks for torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_install() {
    # Some machines' pip configuration names local package folders that may not exist; pip
    # warns about each one on every call, which says nothing about this install.
    .venv/bin/python -m pip install --quiet "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import optuna_spikenas, spikingjelly, optuna, pytest, ruff" 2>/dev/null; then
    echo "Installing optuna-spikenas into .venv (a minute or two on the first run)..."
    pip_install --upgrade pip
    pip_install torch==2.13.0
    pip_install -c constraints.txt -e '.[dev]'
fi
