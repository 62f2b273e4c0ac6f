#!/usr/bin/env bash
# The main job: set up, then run the example pipeline (2-node MultiWorkerMirrored training)
# through real Airflow on the embedded defaults (SQLite, local-process nodes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO/scripts/setup.sh"
airflow db migrate >/dev/null
exec python "$REPO/scripts/run_demo.py" "$@"
