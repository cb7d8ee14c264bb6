#!/usr/bin/env bash
# Installs optuna-spikenas and its development tools into ./.venv (idempotent).
# EXTRAS (default "dev") names the optional extras: the tests use "dev,dvs,nir".
# torch is installed first from its CPU build; constraints.txt then keeps pip from
# replacing it with a CUDA build when spikingjelly asks for torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."

pip_install() {
    # Drop two kinds of noise: warnings about local package folders named in some machines'
    # pip configuration, and setuptools' notice about editable installs. Errors still show.
    .venv/bin/python -m pip install --quiet "$@" 2>&1 | {
        grep -v -E 'is ignored: it is neither a file|^ *!!$|^ *$|\*{20}|BuildBackendWarning|Please be careful with folders|name as your package|with strategy, WheelFile' || true
    }
}

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
EXTRAS="${EXTRAS:-dev}"
# Reinstall whenever the declared dependencies or the extras asked for change.
wanted=$( (cat pyproject.toml constraints.txt; echo "$EXTRAS") | sha256sum | cut -d' ' -f1)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$wanted" ] || [ ! -x .venv/bin/optuna-spikenas ]; then
    echo "Installing optuna-spikenas into .venv (a minute or two on the first run)..."
    pip_install --upgrade pip
    pip_install torch==2.13.0
    pip_install -c constraints.txt -e ".[$EXTRAS]"
    echo "$wanted" > .venv/.installed
fi
