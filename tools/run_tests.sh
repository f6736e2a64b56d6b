#!/usr/bin/env bash
# The project's test command: set up the environment if needed, check it, run the suite.
#   bash tools/run_tests.sh [pytest args...]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$(bash "$repo/tools/setup_env.sh" | tail -n 1)"
cd "$repo"
"$venv/bin/python" tools/check_env.py
exec "$venv/bin/python" -m pytest tests -q -p no:cacheprovider "$@"
