#!/usr/bin/env bash
# README's main job: install, create a study with Optuna's own CLI, run a real training-free
# search on the embedded Animal-MNIST dataset, and show the best trial with Optuna's CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
STORAGE="sqlite:///quickstart.db"
optuna create-study --storage "$STORAGE" --study-name quickstart --direction maximize \
    --skip-if-exists >/dev/null
optuna-spikenas optimize --storage "$STORAGE" --study-name quickstart \
    --config studies/quickstart.toml "$@"
echo
echo "$ optuna best-trial --storage $STORAGE --study-name quickstart -f yaml"
optuna best-trial --storage "$STORAGE" --study-name quickstart -f yaml 2>/dev/null
