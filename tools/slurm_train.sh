#!/usr/bin/env bash
# Training on a Slurm cluster, one task per GPU, from a checkout: runs python -m mixedconv.slurm.
#   [GPUS=16] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#     bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# Example: GPUS=16 bash tools/slurm_train.sh gpu convmae \
#     configs/convmae/convmae_convvit-base-p16_8xb256-amp-coslr-1600e_in1k.py work_dirs/convmae
set -euo pipefail
if [[ $# -lt 4 ]]; then
    echo "usage: [GPUS=N] bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# the checkout's package, for this process and the tasks srun starts (srun exports the env)
export PYTHONPATH="$(dirname "$here")${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python}" -m mixedconv.slurm "$@"
