#!/usr/bin/env bash
# The whole test suite: set up, then pytest (unit, integration with real Airflow + TensorFlow,
# and the end-to-end run on a real scheduler + triggerer + api-server). Extra args go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO/scripts/setup.sh"
cd "$REPO"
exec python -m pytest "$@"
