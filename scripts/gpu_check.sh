#!/usr/bin/env bash
# The GPU check (issue 18), one command on a machine with an NVIDIA GPU:
#   bash scripts/gpu_check.sh            # estimated 5-8 min on an H100 (not yet run); --quick: smoke test
# It checks that CPU and GPU give the same scores, runs the quickstart on the GPU and measures
# SNASNet's CIFAR-10 setting, then prints one markdown table (benchmarks/gpu_check.py says how).
# Without a GPU it prints one line and exits 0, having installed and run nothing.
#
# Installation, only when needed (like scripts/install.sh, into ./.venv):
#   - torch with CUDA already importable (in .venv, or in python3 when .venv is missing: then
#     .venv is made with --system-site-packages to reuse it): nothing is installed for torch;
#   - otherwise the CUDA build of torch at the version constraints.txt pins (2.13.0), with
#     torchvision to match, from PyTorch's wheel index for the CUDA tag below;
#   - then the package itself if .venv cannot import it (constraints.txt, less its torch pins
#     when torch came from elsewhere).
# Environment:
#   GPU_CHECK_CUDA=cu130|cu128|cu126  the wheels' CUDA tag. Default: from the driver's CUDA
#       version (nvidia-smi): >= 13.0 gives cu130, >= 12.8 cu128, else cu126. PyTorch builds each
#       release for about three CUDA versions and drops the oldest as new ones come (2.9 for
#       12.6, 12.8 and 13.0); 2.13 is expected for 12.8 and 13.0 at least. A driver runs wheels
#       of its own CUDA version or older.
#   GPU_CHECK_TORCH_INDEX=URL  the index for torch (default https://download.pytorch.org/whl/TAG);
#       e.g. a local mirror when the machine cannot reach the internet.
#   GPU_CHECK_WHEELS=DIR  install everything from the wheels in DIR (pip --no-index): for a
#       machine with no network at all.
#   GPU_CHECK_NO_INSTALL=1  install nothing; run with .venv's Python (python3 without .venv).
#   GPU_CHECK_PYTHON=PATH  run with this Python and install nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

NO_GPU="no CUDA GPU here: gpu_check needs one; nothing was run"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "$NO_GPU"
    exit 0
fi

cuda_torch() {  # Does Python $1 import a torch that sees a CUDA GPU?
    "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1
}

version_ge() {  # Is version $1 at least $2?
    [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]
}

pip_install() {
    local args=(--quiet)
    if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
        args+=(--no-index --find-links "$GPU_CHECK_WHEELS")
    fi
    .venv/bin/python -m pip install "${args[@]}" "$@"
}

install_failed() {
    echo "gpu_check: installing $1 failed. Set GPU_CHECK_CUDA (cu130, cu128, cu126)," \
        "GPU_CHECK_TORCH_INDEX (an index URL) or GPU_CHECK_WHEELS (a folder of wheels)," \
        "or install torch with CUDA into .venv yourself and rerun." >&2
    exit 1
}

PY="${GPU_CHECK_PYTHON:-}"
if [ -z "$PY" ] && [ "${GPU_CHECK_NO_INSTALL:-0}" = 1 ]; then
    PY=.venv/bin/python
    [ -x "$PY" ] || PY=python3
elif [ -z "$PY" ]; then
    PY=.venv/bin/python
    constraints=constraints.txt
    if [ ! -x .venv/bin/python ]; then
        if cuda_torch python3; then
            echo "gpu_check: making .venv on python3's torch" \
                "($(python3 -c 'import torch; print(torch.__version__)'))" >&2
            python3 -m venv --system-site-packages .venv
        else
            python3 -m venv .venv
        fi
    fi
    if cuda_torch .venv/bin/python; then
        # torch came from elsewhere (python3's, or installed by hand): keep it.
        constraints=.venv/gpu_check-constraints.txt
        grep -v -E '^(torch|torchvision|torchaudio)==' constraints.txt >"$constraints"
    else
        torch_version=$(sed -n 's/^torch==//p' constraints.txt)
        vision_version=$(sed -n 's/^torchvision==//p' constraints.txt)
        driver_cuda=$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n1)
        driver_cuda=${driver_cuda:-0.0}
        tag="${GPU_CHECK_CUDA:-}"
        if [ -z "$tag" ]; then
            if version_ge "$driver_cuda" 13.0; then
                tag=cu130
            elif version_ge "$driver_cuda" 12.8; then
                tag=cu128
            else
                tag=cu126
            fi
        fi
        index="${GPU_CHECK_TORCH_INDEX:-https://download.pytorch.org/whl/$tag}"
        echo "gpu_check: installing torch $torch_version+$tag (the driver's CUDA: $driver_cuda)" \
            "from ${GPU_CHECK_WHEELS:-$index} into .venv..." >&2
        index_args=()
        [ -n "${GPU_CHECK_WHEELS:-}" ] || index_args=(--index-url "$index")
        pip_install "${index_args[@]}" "torch==$torch_version+$tag" \
            "torchvision==$vision_version+$tag" || install_failed "torch $torch_version+$tag"
    fi
    if ! .venv/bin/python -c 'import optuna_spikenas, optuna, spikingjelly' >/dev/null 2>&1 \
        || [ ! -x .venv/bin/optuna-spikenas ]; then
        echo "gpu_check: installing optuna-spikenas into .venv..." >&2
        pip_install -c "$constraints" -e . || install_failed optuna-spikenas
    fi
fi

exec "$PY" benchmarks/gpu_check.py "$@"
