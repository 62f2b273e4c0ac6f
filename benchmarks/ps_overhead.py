"""What running the seed's parameter-server job through ParameterServerTrainOperator costs over
launching the same four TensorFlow processes by hand.

The seed's shape: chief + 2 workers + 1 ps, dags/ps_example/train_keras3.py (a Keras 3 model in a
ClusterCoordinator loop, run by the chief only), --epochs 4, the ps/worker tasks served by
``python -m airflow_tf.runtime.tf_server`` (server_mode="runtime"):

(a) by hand: four free ports, one TF_CONFIG per task (chief/ps/worker/worker), all four processes
    started with subprocess; wait for the chief to exit 0, then terminate the ps and workers.
(b) through the operator: real Airflow ``dag.test()`` of benchmarks/dags/bench_training.py's
    bench_ps (ParameterServerTrainOperator with tf_ps_example's ps_keras3_loop parameters:
    node_count=2, worker_count=2, parameter_server_count=1, then a report task), in a fresh process.
(c) control: job_overhead.py's control DAG, the same task shape (plan -> 2 mapped launch -> a
    deferring wait -> teardown, report) doing nothing: the fixed cost of dag.test() itself.

Each is repeated REPEATS times, alternating (a, b, c, a, b, c, ...); a run during which other
processes used more than --max-foreign-cpu-s CPU seconds is repeated (--max-discards in all).
Derived: operator overhead = (b) - (a); the same minus dag.test()'s fixed cost (c).
Usage: python benchmarks/ps_overhead.py [--repeats N] [--epochs N] [--max-foreign-cpu-s S] [--max-discards N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (REPO, ForeignCpu, bench_env, command_line, fmt_s, machine_facts, median, wait_for_quiet,  # noqa: E402
                    write_section)
from job_overhead import (AIRFLOW_HOME, CONTROL_DAG, CONTROL_DAG_ID, CONTROL_DIR, HAND_DIR,  # noqa: E402
                          control_breakdown, free_ports, run_dag_test)

SECTION = "parameter_server"
BENCH_DAGS = os.path.join(REPO, "benchmarks", "dags")
SOURCE_DIR = os.path.join(REPO, "dags", "ps_example")
DAG_ID = "bench_ps"
SCRIPT = "train_keras3.py"
# chief first, then ps, then workers: the operator's placement order (and so its ranks).
TASKS = [("chief", 0), ("ps", 0), ("worker", 0), ("worker", 1)]
POLL_INTERVAL_S = 1.0  # the operator's default poll_interval, as in tf_ps_example


def airflow_env() -> dict[str, str]:
    """Airflow settings for dag.test(): every bundle the benchmarks use, so that one benchmark's
    runs never drop another's bundle from the shared .airflow/bench database."""
    env = bench_env(AIRFLOW_HOME)
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([
        {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": path}}
        for name, path in (("dags-folder", os.path.join(REPO, "dags")), ("bench-control", CONTROL_DIR),
                           ("bench-dags", BENCH_DAGS))
    ])
    return env


def prepare() -> tuple[dict[str, str], str]:
    """Control DAG file, directories, `airflow db migrate`. Returns (env, log dir)."""
    os.makedirs(CONTROL_DIR, exist_ok=True)
    os.makedirs(HAND_DIR, exist_ok=True)
    with open(os.path.join(CONTROL_DIR, "bench_control.py"), "w") as f:
        f.write(CONTROL_DAG)
    env = airflow_env()
    log_dir = os.path.join(AIRFLOW_HOME, "bench-logs")
    os.makedirs(log_dir, exist_ok=True)
    print("airflow db migrate ...", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return env, log_dir


def breakdown(op: dict) -> dict:
    """Phases of an operator run from its task-instance rows and XComs (epoch seconds), like
    job_overhead.breakdown, but for jobs whose nodes may end without a duration: a node of daemon
    ranks only (the ps node here) runs until the teardown task stops it, so the wait result has no
    exit for it. The node span then ends with the last node that did exit (here node 0: the chief
    exited, the launcher stopped worker 0 beside it)."""
    tis = {(t["task_id"], t["map_index"]): t for t in op["tis"]}
    wait = op["xcoms"]["train.wait[-1]"]
    handles = {op["xcoms"][f"train.launch[{n['node_index']}]"]["node_index"]: op["xcoms"][f"train.launch[{n['node_index']}]"]
               for n in wait["nodes"]}
    node_start = {i: h["started_at"] for i, h in handles.items()}
    node_end = {n["node_index"]: node_start[n["node_index"]] + n["duration_s"] for n in wait["nodes"]
                if n["duration_s"] is not None}
    first_start, last_start = min(node_start.values()), max(node_start.values())
    last_end = max(node_end.values())
    t0, t1 = op["dag_test_start"], op["dag_test_end"]

    def span(task_id, map_index=-1):
        ti = tis.get((task_id, map_index))
        return (ti["end"] - ti["start"]) if ti and ti["start"] and ti["end"] else None

    wait_ti = tis[("train.wait", -1)]
    plan_ti = tis[("train.plan", -1)]
    return {
        "to_first_node_start_s": first_start - t0,
        "node_start_skew_s": last_start - first_start,
        "node_span_s": last_end - first_start,
        "node_durations_s": [n["duration_s"] for n in wait["nodes"]],
        "after_last_exit_s": t1 - last_end,
        "exit_to_wait_end_s": (wait_ti["end"] - last_end) if wait_ti["end"] else None,
        "plan_task_s": span("train.plan"),
        "launch_task_s": [span("train.launch", i) for i in sorted(node_start)],
        "teardown_task_s": span("train.teardown"),
        "report_task_s": span("report"),
        "first_task_start_s": (plan_ti["start"] - t0) if plan_ti["start"] else None,
    }


# -- (a) by hand -------------------------------------------------------------------------------
def run_by_hand(epochs: int) -> dict:
    """Four TF processes, TF_CONFIG by hand. Returns the chief's wall time and the full wall time
    (until the ps and workers are gone), plus the time to the chief's first logged epoch."""
    addresses = {task: f"127.0.0.1:{port}" for task, port in zip(TASKS, free_ports(len(TASKS)))}
    cluster = {role: [addresses[(r, i)] for r, i in TASKS if r == role] for role in ("chief", "worker", "ps")}
    run_dir = tempfile.mkdtemp(prefix="ps-run-", dir=HAND_DIR)
    base_env = bench_env(AIRFLOW_HOME)
    procs, logs = [], []
    start = time.perf_counter()
    start_epoch = time.time()
    for rank, (role, index) in enumerate(TASKS):
        task_dir = os.path.join(run_dir, f"{role}-{index}")
        os.makedirs(task_dir)
        env = dict(base_env)
        env.update({
            "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": role, "index": index}}),
            # What the scripts' helpers read; plain env vars, as the operator's plan sets them.
            "AIRFLOW_TF_RANK": str(rank), "AIRFLOW_TF_WORLD_SIZE": str(len(TASKS)), "AIRFLOW_TF_ROLE": role,
            "AIRFLOW_TF_IS_CHIEF": "1" if role == "chief" else "0",
            "AIRFLOW_TF_NODE_DIR": task_dir, "AIRFLOW_TF_OUTPUT_DIR": os.path.join(run_dir, "outputs"),
            "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1",
        })
        argv = ([sys.executable, "-u", SCRIPT, "--epochs", str(epochs)] if role == "chief"
                else [sys.executable, "-u", "-m", "airflow_tf.runtime.tf_server"])
        log = open(os.path.join(task_dir, "task.log"), "wb")
        logs.append(log)
        procs.append(subprocess.Popen(argv, cwd=SOURCE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT))
    chief = procs[0]
    try:
        while chief.poll() is None:
            if any(p.poll() is not None for p in procs[1:]):
                raise RuntimeError(f"a ps/worker task exited early: {[p.poll() for p in procs]}; logs in {run_dir}")
            time.sleep(0.01)
        chief_s = time.perf_counter() - start
    finally:
        for proc in procs[1:]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs[1:]:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if chief.poll() is None:
            chief.kill()
            chief.wait()
    wall = time.perf_counter() - start
    for log in logs:
        log.close()
    if chief.returncode != 0:
        raise RuntimeError(f"hand-launched chief failed with {chief.returncode}; logs in {run_dir}")
    first_epoch = None
    with open(os.path.join(run_dir, "chief-0", "metrics-rank0.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("epoch") == 1 and "loss" in record:
                first_epoch = record["time"] - start_epoch
                break
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"chief_s": chief_s, "wall_s": wall, "stop_s": wall - chief_s, "first_epoch_s": first_epoch}


def operator_first_epoch(op: dict) -> float | None:
    """dag.test() start -> the chief logged epoch 1 (from the wait result's history, if it has times)."""
    wait = op["xcoms"].get("train.wait[-1]") or {}
    for record in wait.get("history") or []:
        if record.get("epoch") == 1 and "time" in record and "loss" in record:
            return record["time"] - op["dag_test_start"]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-foreign-cpu-s", type=float, default=1.5,
                        help="a run during which other processes used more CPU seconds is repeated")
    parser.add_argument("--max-discards", type=int, default=3, help="repeat at most this many disturbed runs in all")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unrecorded warm-up runs")
    args = parser.parse_args()
    node_count = 2

    env, log_dir = prepare()
    if not args.no_warmup:
        print("warm-up (not recorded): one control dag.test()", flush=True)
        run_dag_test(CONTROL_DAG_ID, CONTROL_DIR, args.epochs, node_count, env, os.path.join(log_dir, "ps-control-warmup.log"))

    hand, op, ctl, busy, foreign = [], [], [], [], []
    discarded: list[str] = []

    def measured(label, fn, *fn_args):
        while True:
            quiet = wait_for_quiet()
            with ForeignCpu() as cpu:
                result = fn(*fn_args)
            if cpu.foreign_s > args.max_foreign_cpu_s and len(discarded) < args.max_discards:
                discarded.append(f"{label} ({cpu.foreign_s:.1f})")
                print(f"{label}: others used {cpu.foreign_s:.1f} CPU-s meanwhile -> discarded, repeated", flush=True)
                continue
            busy[-1].append(quiet)
            foreign[-1].append(cpu.foreign_s)
            return result

    for i in range(args.repeats):
        busy.append([])
        foreign.append([])
        hand.append(measured(f"round {i + 1} (a)", run_by_hand, args.epochs))
        print(f"round {i + 1}: by hand: chief {hand[-1]['chief_s']:.2f} s, all stopped {hand[-1]['wall_s']:.2f} s",
              flush=True)
        op.append(measured(f"round {i + 1} (b)", run_dag_test, DAG_ID, BENCH_DAGS, args.epochs, node_count, env,
                           os.path.join(log_dir, f"ps-operator-{i + 1}.log")))
        op[-1]["phases"] = breakdown(op[-1])
        print(f"round {i + 1}: operator dag.test() {op[-1]['dag_test_s']:.2f} s", flush=True)
        ctl.append(measured(f"round {i + 1} (c)", run_dag_test, CONTROL_DAG_ID, CONTROL_DIR, args.epochs, node_count,
                            env, os.path.join(log_dir, f"ps-control-{i + 1}.log")))
        ctl[-1]["phases"] = control_breakdown(ctl[-1])
        print(f"round {i + 1}: control dag.test() {ctl[-1]['dag_test_s']:.2f} s", flush=True)

    chief_wall = [h["chief_s"] for h in hand]
    hand_wall = [h["wall_s"] for h in hand]
    op_wall = [o["dag_test_s"] for o in op]
    op_proc = [o["process_s"] for o in op]
    ctl_wall = [c["dag_test_s"] for c in ctl]
    ctl_proc = [c["process_s"] for c in ctl]
    ph = [o["phases"] for o in op]
    m_hand, m_op, m_ctl = median(hand_wall), median(op_wall), median(ctl_wall)
    overhead = m_op - m_hand
    own = m_op - m_ctl - m_hand
    outside = [o - p["node_span_s"] - c for o, p, c in zip(op_wall, ph, ctl_wall)]
    node_extra = [p["node_span_s"] - h for p, h in zip(ph, hand_wall)]
    hand_first = [h["first_epoch_s"] for h in hand]
    op_first = [operator_first_epoch(o) for o in op]

    def med_of(key):
        return median([p[key] for p in ph if p[key] is not None])

    def med_opt(values):
        values = [v for v in values if v is not None]
        return median(values) if values else None

    def row(i):
        p = ph[i]
        return (f"| {i + 1} | {fmt_s(chief_wall[i])} | {fmt_s(hand_wall[i])} | {fmt_s(op_wall[i])} | {fmt_s(op_proc[i])} | "
                f"{fmt_s(ctl_wall[i])} | {fmt_s(ctl_proc[i])} | {fmt_s(p['to_first_node_start_s'])} | "
                f"{fmt_s(p['node_span_s'])} | {fmt_s(p['after_last_exit_s'])} | {fmt_s(op_wall[i] - hand_wall[i])} | "
                f"{fmt_s(outside[i])} | {' / '.join(fmt_s(v, 1) for v in foreign[i])} |")

    body = f"""
## Parameter-server job overhead: ParameterServerTrainOperator vs. the same four processes by hand

{machine_facts()}
- command: `{command_line()}`
- workload: the seed's shape, chief + 2 workers + 1 ps, all on this machine: dags/ps_example/{SCRIPT}
  --epochs {args.epochs} (its defaults otherwise: 30 steps per epoch, batch 64) on the chief; ps and workers serve
  with `python -m airflow_tf.runtime.tf_server` (server_mode="runtime")
- (a) by hand: four free ports, TF_CONFIG per task, `subprocess.Popen` all four, wait for the chief to exit 0,
  then SIGTERM the ps and workers and wait for them; "(a) all stopped" is the time until they are gone
- (b) operator: `dag.test()` of bench_ps (benchmarks/dags/bench_training.py: ParameterServerTrainOperator with
  tf_ps_example's ps_keras3_loop parameters, node_count=2, then a report task) in a fresh process, SQLite,
  AIRFLOW_HOME=.airflow/bench; nodes: node 0 = chief + worker 0, node 1 = ps 0 + worker 1
- (c) control: job_overhead.py's control DAG (plan, 2 mapped launches, deferring wait with a trigger that fires
  at once, teardown, report; no-op tasks): dag.test()'s own fixed cost
- {args.repeats} rounds, alternating a, b, c ({'no warm-up' if args.no_warmup else 'after one unrecorded warm-up of c'}); seconds

| round | (a) chief exit | (a) all stopped | (b) dag.test() | (b) whole process | (c) control dag.test() | (c) whole process | (b): start -> first node up | (b): node span | (b): last node exit -> end | (b) - (a) | (b) - node span - (c) | others' CPU-s during a / b / c |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(row(i) for i in range(args.repeats)) + f"""
| **median** | {fmt_s(median(chief_wall))} | **{fmt_s(m_hand)}** | **{fmt_s(m_op)}** | {fmt_s(median(op_proc))} | **{fmt_s(m_ctl)}** | {fmt_s(median(ctl_proc))} | {fmt_s(med_of('to_first_node_start_s'))} | {fmt_s(med_of('node_span_s'))} | {fmt_s(med_of('after_last_exit_s'))} | {fmt_s(median([o - h for o, h in zip(op_wall, hand_wall)]))} | {fmt_s(median(outside))} | |

Medians:

- operator dag.test() / by hand (all stopped): **{m_op / m_hand:.2f}x**; difference **{overhead:+.2f} s**
  (over the chief's exit alone: {m_op - median(chief_wall):+.2f} s).
- minus dag.test()'s fixed cost (control, {fmt_s(m_ctl)} s): the operator's own overhead is **{own:+.2f} s**.
  Split so that run-to-run variation of the training cancels: orchestration outside the node span,
  (b) - node span - (c), median **{median(outside):+.2f} s**; node span - (a) (node launcher, detached nodes, stopping
  the daemon ranks, training next to a live dag.test() process), median **{median(node_extra):+.2f} s**
  (per round: {", ".join(f"{v:+.2f}" for v in node_extra)}).
- where (b)'s time goes: {fmt_s(med_of('to_first_node_start_s'))} s from dag.test() start until the first node process
  is up (of which {fmt_s(med_of('first_task_start_s'))} s before the plan task starts; control:
  {fmt_s(median([c['phases']['first_task_start_s'] for c in ctl]))} s; plan task {fmt_s(med_of('plan_task_s'))} s,
  control plan task {fmt_s(median([c['phases']['plan_task_s'] for c in ctl]))} s), launch tasks
  {", ".join(fmt_s(median([p['launch_task_s'][i] for p in ph])) for i in range(node_count))} s, node start skew
  {fmt_s(med_of('node_start_skew_s'), 3)} s; node span {fmt_s(med_of('node_span_s'))} s; {fmt_s(med_of('after_last_exit_s'))} s
  from the last node's exit to the end of dag.test() (node exit -> wait task done {fmt_s(med_of('exit_to_wait_end_s'))} s,
  trigger polling every {POLL_INTERVAL_S:.0f} s; report {fmt_s(med_of('report_task_s'))} s, teardown
  {fmt_s(med_of('teardown_task_s'))} s).
- start -> the chief logged epoch 1: by hand {fmt_s(med_opt(hand_first))} s, through the operator (from dag.test()
  start) {fmt_s(med_opt(op_first))} s.

Raw:

""" + "\n".join([
        "- (a) by hand, chief exit / all stopped / SIGTERM -> ps and workers gone: "
        + "; ".join(f"{fmt_s(h['chief_s'])} / {fmt_s(h['wall_s'])} / {fmt_s(h['stop_s'])}" for h in hand),
        "- (a) start -> epoch 1 logged: " + ", ".join(fmt_s(v) for v in hand_first)
        + "; (b) dag.test() start -> epoch 1 logged: " + ", ".join(fmt_s(v) for v in op_first),
        "- (b) node durations from the wait result (launcher start -> exit code written; node 0 ends after the chief"
        " exits and worker 0 is stopped; node 1 holds daemons only (ps 0, worker 1), runs until the teardown task stops"
        " it and so has none: n/a): " + "; ".join(", ".join(fmt_s(d, 3) for d in p["node_durations_s"]) for p in ph),
        f"- (b) DagBag load before dag.test(): {', '.join(fmt_s(o['load_s']) for o in op)}; "
        f"(c): {', '.join(fmt_s(c['load_s']) for c in ctl)}",
        f"- (b) dag.test() start -> plan task start: {', '.join(fmt_s(p['first_task_start_s']) for p in ph)}; "
        f"(c): {', '.join(fmt_s(c['phases']['first_task_start_s']) for c in ctl)}",
        f"- (b) node exit -> wait task end: {', '.join(fmt_s(p['exit_to_wait_end_s']) for p in ph)}",
        "- CPU busy (all cores) in the second before each run (a, b, c per round): "
        + "; ".join(", ".join(f"{b:.0%}" for b in r) for r in busy),
        "- others' CPU-s: CPU seconds used during the run by processes this benchmark did not start (sampled"
        " every 0.5 s, a lower bound); near 0 means an undisturbed run",
        f"- runs discarded as disturbed (others > {args.max_foreign_cpu_s:g} CPU-s; at most {args.max_discards} repeated; "
        f"others' CPU-s in brackets): {', '.join(discarded) or 'none'}",
        "- logs of each dag.test(): .airflow/bench/bench-logs/ps-*.log",
    ])
    write_section(SECTION, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
