#!/usr/bin/env bash
# Check the CUDA path on a machine with an NVIDIA GPU: mmcv's CUDA ops against its CPU ops,
# one bf16 AMP step of the ConvMAE and MixedAE pretraining recipes, 10 iterations of a shrunk
# Mask R-CNN and UperNet, and tools/analysis/speed.py --arch base; one table at the end.
#
#   bash tools/gpu_check.sh [--out DIR] [--checks ops pretrain transfer speed]
#
# The checks take under 5 minutes on one GPU; the environment comes first from
# tools/setup_env.sh (seconds when up to date; on a GPU machine without a cached mmcv CUDA
# wheel it builds one, see docs/cuda.md). GPU_CHECK_PYTHON=/path/to/python skips the setup
# and uses that interpreter's packages. Exit status: 0 all passed, 1 a check failed,
# 2 no GPU visible or mmcv without CUDA ops (nothing ran).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

fail() { printf 'gpu_check: FAILED: %s\n' "$*" >&2; exit 2; }

# Say "no GPU" before any setup: with an existing venv ask its torch, else nvidia-smi.
python="${GPU_CHECK_PYTHON:-}"
probe="$python"
if [[ -z "$probe" && -x "${MIXEDCONV_VENV:-$repo/.venv}/bin/python" ]]; then
    probe="${MIXEDCONV_VENV:-$repo/.venv}/bin/python"
fi
if [[ -n "$probe" ]]; then
    "$probe" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
        || fail "no CUDA GPU visible to torch ($probe; CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}): this check needs an NVIDIA GPU"
elif ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    fail "no NVIDIA GPU visible (nvidia-smi lists none): this check needs an NVIDIA GPU"
fi

if [[ -z "$python" ]]; then
    venv="$(bash "$repo/tools/setup_env.sh" | tail -n 1)"
    python="$venv/bin/python"
fi
cd "$repo"
exec "$python" tools/analysis/gpu_check.py "$@"
