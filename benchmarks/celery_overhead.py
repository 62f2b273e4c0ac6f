"""Orchestration overhead on the multi-host CeleryExecutor deployment, against Airflow's own floor.

Starts the distributed tests' deployment once (tests/distributed/deployment.py's Deployment:
PostgreSQL, Redis, api-server, scheduler, dag-processor, triggerers, two Celery worker hosts,
each host a network namespace), with two more DAG bundles: benchmarks/dags (bench_celery_mwms,
a 2-node MultiWorkerMirrored training on LocalBackend pinned to host-b's queue) and a folder
holding benchmarks/job_overhead.py's control DAG, pinned to the same queue (the floor: plan ->
2 mapped launches -> a wait whose trigger fires at once -> teardown + report, all doing nothing).

After one warm-up run of each, it alternates training run / floor run (--runs N of each) and
reads, after each run, the REST API's task-instance dates, the run's end date, the launch
handles' ``started_at`` and the wait result's ``duration_s`` (the node span: first node up ->
last node exit), and the wait's log line of its deferral. Reported per run: trigger -> run end
minus node span, split into its phases; medians and spread; other processes' CPU seconds during
each run (ForeignCpu: how disturbed it was). Runs are never repeated or dropped.

About 4-6 minutes with the default 5 runs on the 2-CPU test machine (deployment start 40-65 s,
training runs 20-30 s, floor runs 11-13 s), plus up to BENCH_QUIET_WAIT_S (here 60 s by default)
waiting for a quiet machine before the start. The deployment is stopped at the end, always.
Needs root (network namespaces), PostgreSQL 15, Redis and dockerd, like the distributed tests. Usage:
  python benchmarks/celery_overhead.py [--runs N] [--quick] [--epochs N] [--samples N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (MARKER_VAR, REPO, ForeignCpu, command_line, fmt_s, machine_facts, median,  # noqa: E402
                    wait_for_quiet, write_section)
from job_overhead import CONTROL_DAG  # noqa: E402
from worker_slots import ts  # noqa: E402

sys.path.insert(0, REPO)
from tests.distributed.deployment import WORKER_QUEUES, Deployment, DeploymentError, remove_workdir  # noqa: E402
from tests.distributed.runs import FINAL, full_log, job_id, job_processes, run_record, xcom  # noqa: E402

DAG_ID = "bench_celery_mwms"
FLOOR_DAG_ID = "bench_celery_floor"
QUEUE = "host_b"  # benchmarks/dags/celery_bench.py's QUEUE
BUNDLES_VAR = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
KEPT_LOGS = os.path.join(REPO, ".airflow", "bench-celery", "logs")
RUN_TIMEOUT_S = 240
POLL_S = 0.5  # the run's state only: every date reported comes from the database, not from this poll


def floor_dag_source() -> str:
    """job_overhead's control DAG under its own id, with every task on QUEUE (the training DAG's
    placement: the same worker, and the trigger on that host's triggerer)."""
    anchor = 'with DAG(dag_id="bench_control", schedule=None, catchup=False,'
    if anchor not in CONTROL_DAG:
        raise RuntimeError("benchmarks/job_overhead.py's CONTROL_DAG no longer has the DAG line this benchmark pins; "
                           "update floor_dag_source()")
    return CONTROL_DAG.replace(anchor, f'with DAG(dag_id="{FLOOR_DAG_ID}", schedule=None, catchup=False, '
                                       f'default_args={{"queue": "{QUEUE}"}},', 1)


class BenchDeployment(Deployment):
    """The tests' deployment, plus the benchmark's two DAG bundles (every component reads them:
    the hosts share this machine's file system outside their private disks)."""

    def __init__(self, workdir: str, floor_dir: str):
        super().__init__(workdir)
        self.floor_dir = floor_dir

    def airflow_env(self) -> dict[str, str]:
        env = super().airflow_env()
        bundles = json.loads(env[BUNDLES_VAR])
        bundles += [{"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                     "kwargs": {"path": path}}
                    for name, path in (("bench-dags", os.path.join(REPO, "benchmarks", "dags")),
                                       ("bench-floor", self.floor_dir))]
        env[BUNDLES_VAR] = json.dumps(bundles)
        return env


def deferred_at(api, dag_id: str, run_id: str) -> float | None:
    """When the wait task deferred: the task runner's "Pausing task as DEFERRED" log record
    (the trigger row, which has the date too, is gone once the trigger has fired)."""
    path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/train.wait/logs/1"
            f"?full_content=true&map_index=-1")
    content = api.request("GET", path)["content"]
    for item in content if isinstance(content, list) else []:
        if isinstance(item, dict) and str(item.get("event", "")).startswith("Pausing task as DEFERRED"):
            return ts(item.get("timestamp"))
    return None


def observe(api, dag_id: str, conf: dict) -> dict:
    """Trigger one run, wait for its end, read its records. Times are seconds after the trigger."""
    with ForeignCpu() as cpu:
        t0 = time.time()
        run_id = api.trigger(dag_id, conf)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while api.run_state(dag_id, run_id) not in FINAL:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{dag_id} run {run_id} did not end within {RUN_TIMEOUT_S} s")
            time.sleep(POLL_S)
    run = run_record(api, dag_id, run_id)
    tis = api.task_instances(dag_id, run_id)

    def at(value):
        return None if not value else ts(value) - t0

    def ti(task_id, key, index=-1):
        row = tis.get((task_id, index))
        return at(row.get(key)) if row else None

    launches = sorted(index for task_id, index in tis if task_id == "train.launch")
    obs = {
        "dag_id": dag_id, "run_id": run_id, "state": run["state"], "foreign_s": cpu.foreign_s,
        "foreign_top": cpu.top_foreign(2), "queued": at(run.get("queued_at")), "run_end": at(run.get("end_date")),
        "plan": (ti("train.plan", "start_date"), ti("train.plan", "end_date")),
        "launch": [(ti("train.launch", "start_date", i), ti("train.launch", "end_date", i)) for i in launches],
        "wait_start": ti("train.wait", "start_date"), "wait_end": ti("train.wait", "end_date"),
        # Set when the trigger's event reaches the database (the triggerer), then when the
        # scheduler queues the resumed wait.
        "fired": ti("train.wait", "scheduled_when"), "requeued": ti("train.wait", "queued_when"),
        "teardown": (ti("train.teardown", "start_date"), ti("train.teardown", "end_date")),
        "report": (ti("report", "start_date"), ti("report", "end_date")),
        "hosts": sorted({row["hostname"] for row in tis.values() if row.get("hostname")}),
        "node_start": None, "node_end": None, "leftover": None,
    }
    if run["state"] != "success":
        print(f"{dag_id} {run_id} ended {run['state']}: {({k: v['state'] for k, v in tis.items()})}", flush=True)
        for (task_id, index), row in tis.items():
            if row["state"] == "failed":
                print(full_log(api, dag_id, run_id, task_id, index)[-3000:], flush=True)
        return obs
    d = deferred_at(api, dag_id, run_id)
    obs["deferred"] = None if d is None else d - t0
    if dag_id == DAG_ID:
        results = xcom(api, dag_id, run_id, "train.wait")
        starts = {i: xcom(api, dag_id, run_id, "train.launch", map_index=i)["started_at"] for i in launches}
        ends = [starts[n["node_index"]] + n["duration_s"] for n in results["nodes"]]
        obs["node_start"], obs["node_end"] = min(starts.values()) - t0, max(ends) - t0
        obs["leftover"] = len(job_processes(job_id(dag_id, run_id)))
    return obs


def phases(o: dict) -> dict:
    """The split of trigger -> run end (seconds; None where a date is missing)."""

    def d(a, b):
        return None if a is None or b is None else b - a

    launch_starts = [s for s, _ in o["launch"] if s is not None]
    launch_ends = [e for _, e in o["launch"] if e is not None]
    last_task_end = max([v for v in (o["teardown"][1], o["report"][1]) if v is not None], default=None)
    span = d(o["node_start"], o["node_end"])
    # Training: the nodes' end is the watched event. Floor: no nodes; its wait's deferral is the
    # moment the (instant) trigger could fire, so "exit" there is the deferral.
    exit_at = o["node_end"] if o["node_end"] is not None else o.get("deferred")
    to_launch, fired_to_end = min(launch_starts, default=None), d(o["fired"], o["run_end"])
    return {
        "total": o["run_end"],
        "span": span,
        "overhead": None if o["run_end"] is None else o["run_end"] - (span or 0.0),
        "to_plan": o["plan"][0],
        "plan": d(*o["plan"]),
        "plan_to_launch": d(o["plan"][1], to_launch),
        "to_launch": to_launch,
        "launches": [d(s, e) for s, e in o["launch"]],
        "launch_to_node": d(to_launch, o["node_start"]),
        "launch_to_deferred": d(max(launch_ends, default=None), o.get("deferred")),
        "to_node": o["node_start"],
        "exit_to_fired": d(exit_at, o["fired"]),
        "fired_to_queued": d(o["fired"], o["requeued"]),
        "queued_to_wait_end": d(o["requeued"], o["wait_end"]),
        "exit_to_wait_end": d(exit_at, o["wait_end"]),
        "fired_to_wait_end": d(o["fired"], o["wait_end"]),
        "wait_to_last_task": d(o["wait_end"], last_task_end),
        "last_task_to_run_end": d(last_task_end, o["run_end"]),
        "fired_to_run_end": fired_to_end,
        # Airflow's own steps on a training run's critical path: getting to the first launch, and
        # from the trigger's event to the run's end (the rest of the floor overlaps the training).
        "critical": None if to_launch is None or fired_to_end is None else to_launch + fired_to_end,
        "after_exit": d(exit_at, o["run_end"]),
    }


def minmax(values) -> str:
    values = [v for v in values if v is not None]
    return f"runs {fmt_s(min(values))}-{fmt_s(max(values))}" if values else "n/a"


def spread(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return f"{fmt_s(median(values))} ({fmt_s(min(values))}-{fmt_s(max(values))})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each DAG, after one warm-up run each")
    parser.add_argument("--quick", action="store_true", help="one measured training run, no floor control")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--samples", type=int, default=1024)
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    if MARKER_VAR != "BENCH_AIRFLOW_TF_TAG":  # what celery_bench.py's LocalBackend passes to the nodes
        raise SystemExit(f"benchmarks/dags/celery_bench.py passes BENCH_AIRFLOW_TF_TAG to the nodes, not {MARKER_VAR}")
    if QUEUE not in WORKER_QUEUES.values():
        raise SystemExit(f"{QUEUE!r} is not a worker queue of the deployment ({sorted(WORKER_QUEUES.values())})")
    conf = {"epochs": args.epochs, "samples": args.samples, "node_count": 2}

    busy_before = wait_for_quiet(max_wait_s=float(os.environ.get("BENCH_QUIET_WAIT_S", "60")))
    t_begin = time.monotonic()
    workdir = tempfile.mkdtemp(prefix=f"atfd-bench-{os.getpid()}-")
    os.chmod(workdir, 0o755)  # postgres (its own user) must reach its directory
    floor_dir = os.path.join(workdir, "floor-dags")
    os.makedirs(floor_dir)
    with open(os.path.join(floor_dir, f"{FLOOR_DAG_ID}.py"), "w") as f:
        f.write(floor_dag_source())
    dep = BenchDeployment(workdir, floor_dir)
    train_obs: list[dict] = []
    floor_obs: list[dict] = []
    warmups: list[dict] = []
    try:
        try:
            dep.start()
        except DeploymentError as exc:
            print(f"the deployment did not start: {exc}", flush=True)
            return 1
        print(f"deployment healthy after {dep.started_in_s} s", flush=True)
        api = dep.api
        dag_ids = [DAG_ID] + ([] if args.quick else [FLOOR_DAG_ID])
        for dag_id in dag_ids:
            api.wait_for_dag(dag_id, timeout=180)
        ready_s = time.monotonic() - t_begin
        for dag_id in dag_ids:  # first task processes, first DAG version, first XCom reads: not measured
            warmups.append(observe(api, dag_id, conf))
            print(f"warm-up {dag_id}: {warmups[-1]['state']}, trigger -> run end {fmt_s(warmups[-1]['run_end'])} s",
                  flush=True)
        for i in range(runs):
            for dag_id, store in ((DAG_ID, train_obs), (FLOOR_DAG_ID, floor_obs)):
                if dag_id not in dag_ids:
                    continue
                store.append(observe(api, dag_id, conf))
                o = store[-1]
                print(f"run {i + 1} {dag_id}: {o['state']}, trigger -> run end {fmt_s(o['run_end'])} s, "
                      f"overhead {fmt_s(phases(o)['overhead'])} s, others {o['foreign_s']:.1f} CPU-s "
                      f"({time.monotonic() - t_begin:.0f} s so far)", flush=True)
    finally:
        dep.stop()
        shutil.rmtree(KEPT_LOGS, ignore_errors=True)
        if os.path.isdir(dep.logs):
            shutil.copytree(dep.logs, KEPT_LOGS, dirs_exist_ok=True)
        remove_workdir(workdir)
    total_s = time.monotonic() - t_begin
    with open(os.path.join(os.path.dirname(KEPT_LOGS), "observations.json"), "w") as f:  # the raw rows, kept
        json.dump({"training": train_obs, "floor": floor_obs, "warmups": warmups}, f, indent=1)
    ok = [o for o in train_obs if o["state"] == "success"]
    if not ok:
        print("no training run succeeded: nothing to report (logs: .airflow/bench-celery/logs)", flush=True)
        return 1
    write_section("celery_overhead", report(args, conf, train_obs, floor_obs, warmups, dep.started_in_s, ready_s,
                                            total_s, busy_before))
    return 0 if len(ok) == len(train_obs) and all(o["state"] == "success" for o in floor_obs) else 1


ROWS = [  # (label, phases() key); "=" rows are sums of the rows above them
    ("trigger -> run end", "total"),
    ("node span (first node up -> last node exit)", "span"),
    ("**trigger -> run end minus node span**", "overhead"),
    ("trigger -> plan start", "to_plan"),
    ("plan task", "plan"),
    ("plan end -> first launch start", "plan_to_launch"),
    ("= trigger -> first launch start", "to_launch"),
    ("first launch start -> first node up", "launch_to_node"),
    ("= trigger -> first node up", "to_node"),
    ("last launch end -> wait deferred (overlaps the training)", "launch_to_deferred"),
    ("node exit -> wait task end", "exit_to_wait_end"),
    ("node exit -> trigger event (wait scheduled)", "exit_to_fired"),
    ("trigger event -> resumed wait queued", "fired_to_queued"),
    ("resumed wait queued -> wait end", "queued_to_wait_end"),
    ("wait end -> teardown/report end", "wait_to_last_task"),
    ("teardown/report end -> run end", "last_task_to_run_end"),
    ("= trigger event -> run end", "fired_to_run_end"),
    ("= last node exit -> run end", "after_exit"),
    ("trigger -> first launch start + trigger event -> run end", "critical"),
]


def table(tp: list[dict], fp: list[dict], train_obs: list[dict], floor_obs: list[dict]) -> str:
    n = len(tp)
    runs = " | ".join(f"run {i + 1}" for i in range(n))
    lines = [f"| phase (s) | {runs} | median (min-max) | floor median (min-max) |",
             "|---|" + "---|" * (n + 2)]

    def floor(values) -> str:
        return spread(values) if fp else "not run"

    for label, key in ROWS:
        cells = " | ".join(fmt_s(p[key]) for p in tp)
        lines.append(f"| {label} | {cells} | {spread([p[key] for p in tp])} | {floor([p[key] for p in fp])} |")

    def launch_cells(ps) -> str:
        return " / ".join(spread([p["launches"][i] for p in ps if len(p["launches"]) > i]) for i in range(2))

    cells = " | ".join(" / ".join(fmt_s(v) for v in p["launches"]) for p in tp)
    lines.append(f"| launch tasks [0] / [1] | {cells} | {launch_cells(tp)} | {launch_cells(fp) if fp else 'not run'} |")
    cells = " | ".join(f"{o['foreign_s']:.1f}" for o in train_obs)
    floor_cpu = " / ".join(f"{o['foreign_s']:.1f}" for o in floor_obs) or "not run"
    lines.append(f"| others' CPU-s during the run | {cells} | | {floor_cpu} |")
    return "\n".join(lines)


def report(args, conf, train_obs, floor_obs, warmups, start_s, ready_s, total_s, busy_before) -> str:
    tp = [phases(o) for o in train_obs]
    fp = [phases(o) for o in floor_obs]

    def med(ps, key):
        values = [p[key] for p in ps if p[key] is not None]
        return median(values) if values else None

    m_over, m_pre, m_post = med(tp, "overhead"), med(tp, "to_node"), med(tp, "after_exit")
    if fp:
        # The floor has no training: all of its trigger -> run end is Airflow's own cost of the
        # shape; only part of it is on a training run's critical path (the wait's start, deferral
        # and trigger pickup happen while the nodes train).
        m_floor, m_critical = med(fp, "total"), med(fp, "critical")
        floor_lines = f"""- floor (job_overhead's control DAG, same queue and shape, no training): trigger -> run end
  **{fmt_s(m_floor)} s** median ({minmax([p["total"] for p in fp])}); of it, wait deferred -> trigger event
  {spread([p["exit_to_fired"] for p in fp])} s (the triggerer picking up a trigger that fires at once) and trigger
  event -> wait end {spread([p["fired_to_wait_end"] for p in fp])} s (the resume of a deferred task). On a training
  run's critical path lie only trigger -> first launch start and trigger event -> run end: **{fmt_s(m_critical)} s**
  ({minmax([p["critical"] for p in fp])})
- **overhead minus floor: {m_over - m_critical:+.2f} s** (median training overhead {fmt_s(m_over)} s - the floor's
  critical-path part {fmt_s(m_critical)} s): what airflow_tf adds to Airflow's own steps here (the plan's and launch's
  work up to the first node, node exit -> trigger event, the wait's resume and the teardown's work); against the
  floor's whole trigger -> run end: {m_over - m_floor:+.2f} s"""
    else:
        floor_lines = "- floor: not run (--quick)"
    task_hosts = ", ".join(sorted({h for o in train_obs + floor_obs for h in o["hosts"]}))
    warm = "; ".join(f"{o['dag_id']} {o['state']} {fmt_s(o['run_end'])} s" for o in warmups)
    alternating = f", alternating with {len(floor_obs)} floor run(s)" if floor_obs else ""
    states = (f"training {', '.join(o['state'] for o in train_obs)}; "
              f"floor {', '.join(o['state'] for o in floor_obs) or 'not run'}")
    return f"""
## CeleryExecutor deployment: orchestration overhead around a training run, and Airflow's floor

{machine_facts()}
- command: `{command_line()}` (CPU busy before the deployment started: {busy_before:.0%}); wall time in all
  {total_s:.0f} s: the deployment healthy after {fmt_s(start_s, 1)} s, the DAGs parsed after {ready_s:.0f} s
- deployment: tests/distributed/deployment.py (CeleryExecutor, PostgreSQL 15, Redis 7, api-server, scheduler,
  dag-processor, 3 triggerers, 2 Celery worker hosts of concurrency 4, each host a network namespace; scheduler
  and triggerer heartbeats 1 s), with benchmarks/dags and the floor's folder as two more DAG bundles
- training: bench_celery_mwms (benchmarks/dags/celery_bench.py): tf_mwms_example's training step, 2 nodes
  MultiWorkerMirrored on LocalBackend, operator defaults, conf `{json.dumps(conf)}`, every task pinned to
  queue `{QUEUE}` (host-b's worker and triggerer); task hosts seen: {task_hosts}
- floor: bench_celery_floor, benchmarks/job_overhead.py's control DAG (plan -> 2 mapped launches -> a deferring
  wait whose trigger fires at once -> teardown + report, all no-ops), every task on `{QUEUE}`
- protocol: one warm-up run of each ({warm}), then {len(train_obs)} training run(s){alternating}; no run
  dropped. Times are REST task-instance and run dates, the launch handles' `started_at` and the wait result's
  `duration_s` (one clock: every host is this machine), in seconds after the POST dagRuns request was sent.
  "wait deferred" is the task runner's "Pausing task as DEFERRED" log record; "trigger event" is the resumed
  wait's `scheduled_when` (written with the trigger's event); the floor, without nodes, counts "node exit"
  rows from its deferral
- states: {states}; job processes left after each training run: {[o["leftover"] for o in train_obs]}
- others' CPU-s: CPU seconds used during the run by processes this benchmark did not start (sampled every
  0.5 s, a lower bound; near 0 = undisturbed); busiest: {"; ".join(o["foreign_top"] for o in train_obs + floor_obs)}

{table(tp, fp, train_obs, floor_obs)}

- training: trigger -> run end minus node span, median **{fmt_s(m_over)} s**
  ({minmax([p["overhead"] for p in tp])}): {fmt_s(m_pre)} s before the first node is up, {fmt_s(m_post)} s after
  the last node exits
{floor_lines}
"""


if __name__ == "__main__":
    sys.exit(main())
