#!/usr/bin/env bash
# Measure (never assert): parse cost, job overhead, worker slots. Each benchmark rewrites its own
# section of docs/benchmarks.md. Run on an otherwise idle machine; each waits (up to
# BENCH_QUIET_WAIT_S seconds, default 180) for the CPUs to settle before it measures.
# Usage: scripts/bench.sh [parse_cost] [job_overhead] [worker_slots]   (default: all three)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO/scripts/setup.sh"
cd "$REPO"

benchmarks=("$@")
if [ ${#benchmarks[@]} -eq 0 ]; then
  benchmarks=(parse_cost job_overhead worker_slots)
fi
for name in "${benchmarks[@]}"; do
  if [ ! -f "benchmarks/$name.py" ]; then
    echo "bench: no benchmark named '$name' (have: parse_cost job_overhead worker_slots)" >&2
    exit 2
  fi
done
for name in "${benchmarks[@]}"; do
  echo "== bench: $name"
  python "benchmarks/$name.py"
done
echo "bench: results in docs/benchmarks.md"
