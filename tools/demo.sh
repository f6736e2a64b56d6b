#!/usr/bin/env bash
# The main job: set up the environment if needed, then run the embedded default benchmark
# (pretrain tiny ConvMAE, MixedAE and MAE encoders on generated data, transfer each to
# Mask R-CNN and UperNet, evaluate, write the leaderboard). Extra arguments go to
# tools/benchmark.py, e.g. --data-root /data to run the real recipes.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/tools/setup_env.sh" | tail -n 1)"
cd "$repo"
exec "$venv/bin/python" tools/benchmark.py --pretrain convmae,mixedae,mae \
    --work-dir work_dirs/embedded "$@"
