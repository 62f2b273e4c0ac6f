#!/usr/bin/env bash
# Measure (never assert): every benchmarks/*.py (parse cost, job overhead, parameter-server and
# Horovod overhead, worker slots, throughput, orchestration overhead, fan-out, the Celery
# deployment, and any other benchmark there). Each rewrites only its own section of docs/benchmarks.md. Run on an
# otherwise idle machine: each waits (up to BENCH_QUIET_WAIT_S seconds, default 180) for the CPUs
# to settle before it measures, and reports how much else ran meanwhile.
# Usage: scripts/bench.sh [NAME ...]   e.g. scripts/bench.sh parse_cost   (default: all)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$REPO/scripts/setup.sh"
cd "$REPO"

available=()
for name in parse_cost job_overhead ps_overhead horovod_overhead worker_slots; do
  [ -f "benchmarks/$name.py" ] && available+=("$name")
done
for path in benchmarks/*.py; do
  name="$(basename "$path" .py)"
  case " common parse_cost job_overhead ps_overhead horovod_overhead worker_slots " in *" $name "*) continue ;; esac
  case "$name" in _*) continue ;; esac
  available+=("$name")
done

benchmarks=("$@")
if [ ${#benchmarks[@]} -eq 0 ]; then
  benchmarks=("${available[@]}")
fi
for name in "${benchmarks[@]}"; do
  if [ ! -f "benchmarks/$name.py" ] || [ "$name" = common ]; then
    echo "bench: no benchmark named '$name' (have: ${available[*]})" >&2
    exit 2
  fi
done

# Benchmarks that also run again with other arguments (each run its own section of the report;
# runs separated by ";").
declare -A MORE=(
  [orchestration]="--profiles recommended --dags bench_orch_control,bench_orch_control_direct --rounds 5 --section orchestration_direct"
  [throughput]="--modes gloo,mwms --where dag_test --rounds 4 --steps 80 --warmup 40 --section throughput_more;--modes mpi --where scheduler --rounds 5 --steps 80 --warmup 40 --section throughput_mpi;--modes mwms --where dag_test,scheduler --rounds 5 --steps 80 --warmup 40 --section throughput_mwms"
)

failed=()
for name in "${benchmarks[@]}"; do
  echo "== bench: $name"
  if ! python "benchmarks/$name.py"; then
    echo "bench: $name failed" >&2
    failed+=("$name")
  fi
  IFS=';' read -r -a more_runs <<< "${MORE[$name]:-}"
  for more in "${more_runs[@]}"; do
    echo "== bench: $name $more"
    # shellcheck disable=SC2086 # the arguments are words on purpose
    if ! python "benchmarks/$name.py" $more; then
      echo "bench: $name $more failed" >&2
      failed+=("$name ($more)")
    fi
  done
done
echo "bench: results in docs/benchmarks.md"
if [ ${#failed[@]} -gt 0 ]; then
  echo "bench: failed: ${failed[*]}" >&2
  exit 1
fi
