#!/usr/bin/env bash
# Check the CUDA path on a machine with an NVIDIA GPU in one command: the tests of tests/cuda
# (mmcv's CUDA ops, bf16 AMP pretraining steps, shrunk Mask R-CNN and UperNet runs) and
# tools/analysis/speed.py, then one table. `bash tools/gpu_check.sh --help` says more.
#
#   bash tools/gpu_check.sh [--out DIR] [--checks ops pretrain transfer speed]
#
# The environment comes first from tools/setup_env.sh (seconds when up to date; on a GPU
# machine without a cached mmcv CUDA wheel it builds one, see docs/cuda.md);
# GPU_CHECK_PYTHON=/path/to/python skips the setup and uses that interpreter's packages.
# Without a GPU it says so and exits with 2 before any setup.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv_python="${MIXEDCONV_VENV:-$repo/.venv}/bin/python"

for arg in "$@"; do
    if [[ "$arg" == -h || "$arg" == --help ]]; then  # the standard library is enough for it
        python="${GPU_CHECK_PYTHON:-}"
        [[ -n "$python" ]] || { [[ -x "$venv_python" ]] && python="$venv_python"; } \
            || python=python3
        exec "$python" tools/analysis/gpu_check.py --help
    fi
done

python="${GPU_CHECK_PYTHON:-}"
if [[ -z "$python" ]]; then
    if ! nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
        echo 'gpu_check: FAILED: no NVIDIA GPU visible (nvidia-smi lists none): the CUDA path' \
             'needs a machine with an NVIDIA GPU and driver' >&2
        exit 2
    fi
    python="$(bash tools/setup_env.sh | tail -n 1)/bin/python"
fi
exec "$python" tools/analysis/gpu_check.py "$@"
