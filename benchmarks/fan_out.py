"""Launch fan-out: plan end -> all nodes up, for 8 / 64 / 256 simulated nodes on a real scheduler.

Starts ``airflow standalone`` (tests/e2e/server.py's AirflowServer; home .airflow/bench-fanout,
its own ports, bundle benchmarks/dags/) once per setting, and triggers bench_fan_out
(benchmarks/dags/bench_fan_out.py: one TensorFlowTrainOperator step, LocalBackend, one rank per
node running benchmarks/dags/fan_out/sleeper.py, which imports no TensorFlow) with each node
count. A node's rank writes the time it came up to a hold directory and waits for the release
file there; the benchmark writes it HOLD_S after it saw every node up, so the nodes end by
themselves and the wait, teardown and run end follow as they do for a finished job.

Settings, set through the server's environment as a deployment sets them:
- ``defaults``: Airflow's own ``[core] parallelism`` 32, ``max_active_tasks_per_dag`` 16,
  ``[scheduler] max_tis_per_query`` 16 (the e2e helper's other settings: heartbeats 1 s);
- ``sized`` (recommended in docs/deployment.md, "Wide jobs"): 3 launch slots per CPU
  (``max_active_tasks_per_dag``), ``parallelism`` and ``max_tis_per_query`` not below that;
- ``wide`` (``--settings`` only): 64 / 64 / 64, more slots than the CPUs can serve.

Per run it reports, from the REST API's task instances and the nodes' own files: plan end ->
first launch start, -> the last handle's ``started_at`` (the last launcher spawned) and -> the last
rank's own "up" time; launch task durations; how many launch tasks ran at once (from their
start/end dates); plan end -> wait seen deferred, -> the trigger's first poll (its offsets file
first written); release -> last node exit -> teardown -> run end; memory; the machine's CPU
seconds per node launched; processes of the job left after the run (target 0).

Usage: python benchmarks/fan_out.py [--quick] [--counts 8,64,256] [--settings defaults,sized] [--warmup]
Measures; never asserts. The whole run stays within --budget-s (default 600): a node count whose
estimated time does not fit is reported as not run.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import shutil
import statistics
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, ForeignCpu, command_line, fmt_s, wait_for_quiet, write_section  # noqa: E402

sys.path.insert(0, REPO)
from tests.e2e.server import AirflowServer  # noqa: E402
from tests.helpers import job_pids  # noqa: E402
from _fan_out_machine import busy_s, meminfo, mem_used, pss_bytes, stop_server, sweep  # noqa: E402

HOME = os.path.join(REPO, ".airflow", "bench-fanout")
BENCH_DAGS = os.path.join(REPO, "benchmarks", "dags")
LAST = os.path.join(REPO, ".airflow", "bench-fanout-last.json")  # the last run's results (HOME is wiped per server)
JOB_ROOT = os.path.join(HOME, "airflow_tf_jobs")  # LocalBackend's default there: $AIRFLOW_HOME/airflow_tf_jobs
DAG_ID = "bench_fan_out"
POLL_S = 0.25  # hold-directory / files sampling; the REST API every second sample
HOLD_S = 3.0  # every node up for this long before the release
MEM_FLOOR_GIB = 2.0  # release the nodes early if the machine gets this close to running out
SLOTS = 3 * len(os.sched_getaffinity(0))  # launch slots that keep the CPUs busy (see recommendation())


def _setting(parallelism: int, per_dag: int, per_query: int) -> dict[str, str]:
    return {"AIRFLOW__CORE__PARALLELISM": str(parallelism), "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(per_dag),
            "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": str(per_query)}


SETTINGS = {
    "defaults": _setting(32, 16, 16),  # Airflow's own
    # Recommended (docs/deployment.md, "Wide jobs"): as many launch slots as keep the CPUs that run
    # task processes busy, ~3 per CPU (a launch task is ~1.8 s of which ~0.8 CPU-s), and no DAG-run
    # cap below that; never fewer executor slots than Airflow's default.
    "sized": _setting(max(32, SLOTS), SLOTS, max(16, SLOTS)),
    # What raising everything does: every launch task at once, each starting on a share of the CPUs.
    "wide": _setting(64, 64, 64),
}


def ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def all_task_instances(server: AirflowServer, run_id: str) -> dict[tuple[str, int], dict]:
    """Every task instance of the run: the API pages at 100 ([api] maximum_page_limit)."""
    found: dict[tuple[str, int], dict] = {}
    quoted = urllib.parse.quote(run_id, safe="")
    while True:
        page = server.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances"
                                     f"?limit=100&offset={len(found)}")["task_instances"]
        found.update({(ti["task_id"], ti["map_index"]): ti for ti in page})
        if len(page) < 100:
            return found


def read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rest(errors: list[str], call, *args):
    """One REST call while polling: a slow or refused answer (the api-server shares the CPUs
    with hundreds of starting processes) is counted and polled again, not fatal."""
    try:
        return call(*args)
    except (OSError, http.client.HTTPException) as exc:  # URLError and socket timeouts are OSErrors
        errors.append(f"{type(exc).__name__}: {exc}")
        return None


def observe(server: AirflowServer, nodes: int, timeout_s: float, job_ids: list[str]) -> dict:
    """Trigger one run of ``nodes`` nodes and follow it to its end (the nodes are always released)."""
    from airflow_tf.operators.nodes import job_id_for

    hold = os.path.join(HOME, "hold", f"{nodes}-{time.time_ns()}")
    os.makedirs(hold)
    out: dict = {"nodes": nodes, "mem_base": mem_used(), "notes": [], "rest_errors": [], "hold": hold}
    out["mem_peak"] = out["mem_base"]
    try:
        with ForeignCpu() as cpu:
            out["t_trigger"] = time.time()
            run_id = server.trigger(DAG_ID, {"node_count": nodes, "hold_dir": hold, "max_s": int(timeout_s + 60)})
            out.update(run_id=run_id, job_id=job_id_for(DAG_ID, run_id, "train"))
            job_ids.append(out["job_id"])
            print(f"{nodes} nodes: triggered {run_id}", flush=True)
            follow(server, out, timeout_s)
            out["leftover"] = job_pids(out["job_id"])
        out.update(foreign_s=cpu.foreign_s, foreign_top=cpu.top_foreign())
        collect(server, out)
    finally:
        open(os.path.join(hold, "release"), "w").close()  # whatever happened: the sleepers end now
    shutil.rmtree(hold, ignore_errors=True)
    return out


def follow(server: AirflowServer, out: dict, timeout_s: float) -> None:
    """Sample the nodes' files, the machine and (every second sample) the run until it ends."""
    from airflow_tf.backends.local import LocalBackend
    from airflow_tf.runtime import node_files

    nodes, job_id, hold, errors = out["nodes"], out["job_id"], out["hold"], out["rest_errors"]
    quoted = urllib.parse.quote(out["run_id"], safe="")
    node0 = os.path.join(LocalBackend(job_root=JOB_ROOT).node_dir(job_id, 0), node_files.HANDLE)
    out.update(samples=[], released_at=None, all_up_seen=None, deferred_seen=None, first_poll=None, state=None)
    watch_state = None  # node 0's trigger offsets file, once its handle says where
    i = 0
    while True:
        t = time.time()
        out["samples"].append((t, busy_s()))
        out["mem_peak"] = max(out["mem_peak"], mem_used())
        up = sum(1 for name in os.listdir(hold) if name.startswith("up-") and not name.endswith(".tmp"))
        if out["all_up_seen"] is None and up >= nodes:
            out["all_up_seen"] = t
            pids = job_pids(job_id)
            out.update(pids_up=len(pids), pss_up=pss_bytes(pids))
        if watch_state is None and (handle := read_json(node0)):
            watch_state = os.path.join(handle["node_dir"], node_files.WATCH_STATE)
        if out["first_poll"] is None and watch_state and os.path.exists(watch_state):
            out["first_poll"] = os.stat(watch_state).st_mtime  # written once: the sleepers print one line
        if out["released_at"] is None:
            why = ("all up" if out["all_up_seen"] is not None and t - out["all_up_seen"] >= HOLD_S
                   else "timeout" if t - out["t_trigger"] > timeout_s
                   else "memory" if meminfo()["MemAvailable"] < MEM_FLOOR_GIB * 2**30 else None)
            if why:
                open(os.path.join(hold, "release"), "w").close()
                out["released_at"] = time.time()
                if why != "all up":
                    out["notes"].append(f"released early ({why}) with {up} of {nodes} nodes up")
                    print(out["notes"][-1], flush=True)
        if i % 2 == 0:
            out["state"] = rest(errors, server.run_state, DAG_ID, quoted) or out["state"]
            wait = rest(errors, server.request, "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/train.wait")
            if out["deferred_seen"] is None and wait and wait["state"] == "deferred":
                out["deferred_seen"] = t
            if out["state"] in ("success", "failed"):
                return
            if out["released_at"] and t - out["released_at"] > 120:
                out["notes"].append(f"run still {out['state']} 120 s after the release: stopped waiting")
                return
        i += 1
        time.sleep(max(0.0, POLL_S - (time.time() - t)))


def collect(server: AirflowServer, out: dict) -> None:
    """The run's task instances (REST) and the nodes' own times (handles, up files, exit codes)."""
    from airflow_tf.backends.local import LocalBackend
    from airflow_tf.runtime import node_files

    quoted = urllib.parse.quote(out["run_id"], safe="")
    for attempt in range(3):
        try:
            out["tis"] = all_task_instances(server, out["run_id"])
            out["run"] = server.request("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
            break
        except (OSError, http.client.HTTPException):
            if attempt == 2:
                raise
            time.sleep(5)
    backend = LocalBackend(job_root=JOB_ROOT)
    handles = [read_json(os.path.join(backend.node_dir(out["job_id"], n), node_files.HANDLE))
               for n in range(out["nodes"])]
    out["started"] = [h["started_at"] for h in handles if h]
    out["ups"], out["exits"] = [], []
    for n in range(out["nodes"]):
        try:
            with open(os.path.join(out["hold"], f"up-{n}")) as f:
                out["ups"].append(float(f.read()))
        except (OSError, ValueError):
            pass
    for h in handles:
        try:
            out["exits"].append(os.stat(os.path.join(h["node_dir"], node_files.EXIT_CODE)).st_mtime)
        except (OSError, TypeError):
            pass


def busy_between(samples: list[tuple[float, float]], a: float, b: float) -> float | None:
    def at(t: float) -> float | None:
        for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
            if t0 <= t <= t1:
                return v0 + (v1 - v0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0)
        return None

    va, vb = at(a), at(b)
    return None if va is None or vb is None else vb - va


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # an end before a start at a tie
    running = best = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def analyse(obs: dict) -> dict:
    tis, t0 = obs["tis"], obs["t_trigger"]

    def ti(task_id: str, key: str, index: int = -1) -> float | None:
        row = tis.get((task_id, index))
        return ts(row.get(key)) if row else None

    plan_end = ti("train.plan", "end_date")
    launches = [row for (task, _), row in tis.items() if task == "train.launch"]
    spans = [(ts(r["start_date"]), ts(r["end_date"])) for r in launches if r.get("start_date") and r.get("end_date")]
    queued = [ts(r["start_date"]) - ts(r["queued_when"])
              for r in launches if r.get("start_date") and r.get("queued_when")]

    def since_plan(t: float | None) -> float | None:
        return None if t is None or plan_end is None else t - plan_end

    def after_exit(t: float | None) -> float | None:
        return None if t is None or not obs["exits"] else t - max(obs["exits"])

    last_up = max(obs["ups"]) if len(obs["ups"]) == obs["nodes"] else None
    last_started = max(obs["started"]) if len(obs["started"]) == obs["nodes"] else None
    cpu = busy_between(obs["samples"], plan_end, last_up) if plan_end and last_up else None
    durations = [e - s for s, e in spans]
    return {
        "nodes": obs["nodes"], "state": obs["state"],
        "first_launch": since_plan(min((s for s, _ in spans), default=None)),
        "all_started": since_plan(last_started), "all_up": since_plan(last_up),
        "launch_median": statistics.median(durations) if durations else None,
        "launch_max": max(durations, default=None), "concurrency": max_overlap(spans) if spans else 0,
        "queued_median": statistics.median(queued) if queued else None,
        "last_launch_end": since_plan(max((e for _, e in spans), default=None)),
        "wait_start": since_plan(ti("train.wait", "start_date")), "deferred": since_plan(obs["deferred_seen"]),
        "first_poll": since_plan(obs["first_poll"]),
        "release_to_exit": (max(obs["exits"]) - obs["released_at"]) if obs["exits"] and obs["released_at"] else None,
        "exit_to_wait_end": after_exit(ti("train.wait", "end_date")),
        "teardown": (ti("train.teardown", "end_date") - ti("train.teardown", "start_date"))
        if ti("train.teardown", "start_date") and ti("train.teardown", "end_date") else None,
        "exit_to_run_end": after_exit(ts(obs["run"].get("end_date"))),
        "trigger_to_end": (ts(obs["run"]["end_date"]) - t0) if obs["run"].get("end_date") else None,
        "trigger_to_plan_end": None if plan_end is None else plan_end - t0,
        "mem_peak_gib": (obs["mem_peak"] - obs["mem_base"]) / 2**30,
        "pss_node_mib": obs["pss_up"] / obs["nodes"] / 2**20 if obs.get("pss_up") else None,
        "pids_up": obs.get("pids_up"), "cpu_per_node": cpu / obs["nodes"] if cpu is not None else None,
        "leftover": len(obs["leftover"]), "foreign_s": obs["foreign_s"], "foreign_top": obs["foreign_top"],
        "notes": obs["notes"] + ([f"{len(obs['rest_errors'])} REST polls failed (last: {obs['rest_errors'][-1]})"]
                                 if obs["rest_errors"] else []),
    }


def render(saved: dict) -> None:
    from _fan_out_report import report  # the tables and the limit, from the results

    write_section("fan_out", report(**saved))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 nodes, defaults only (a smoke run)")
    parser.add_argument("--counts", default="8,64,256", help="node counts, comma-separated")
    parser.add_argument("--settings", default="defaults,sized", help=f"comma-separated, of {', '.join(SETTINGS)}")
    parser.add_argument("--warmup", action="store_true", help="a 2-node warm-up run first on each server")
    parser.add_argument("--budget-s", type=float, default=600.0, help="the whole benchmark's wall-time budget")
    parser.add_argument("--from-json", metavar="PATH", help=f"only write the section from a saved run ({LAST})")
    args = parser.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            render(json.load(f))
        return 0
    counts = [8] if args.quick else sorted(int(c) for c in args.counts.split(","))
    settings = ["defaults"] if args.quick else args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"--settings: unknown {unknown}; have {list(SETTINGS)}")
    t_start = time.time()
    busy_before = wait_for_quiet(max_wait_s=60)
    results: dict[str, list[dict]] = {}
    boots: dict[str, float] = {}
    warmups: dict[str, str] = {}
    swept: dict[str, int] = {}  # job processes still alive after each server stopped (then killed)
    orphans: dict[str, list[str]] = {}  # the server's own processes that outlived its stop (then killed)
    for done, setting in enumerate(settings):
        # Each setting gets an equal share of what is left, so the last one is not starved.
        share_end = time.time() + (args.budget_s - (time.time() - t_start)) / (len(settings) - done)
        server = AirflowServer(home=HOME, bundles={"bench-dags": BENCH_DAGS}, env=SETTINGS[setting])
        rows = results[setting] = []
        job_ids: list[str] = []
        try:
            t_boot = time.time()
            server.start()
            server.wait_for_dag(DAG_ID)
            boots[setting] = time.time() - t_boot
            print(f"{setting}: server up and {DAG_ID} unpaused after {boots[setting]:.1f} s", flush=True)
            if args.warmup:  # the first run on a server is a cold one (first task processes)
                warm = analyse(observe(server, 2, timeout_s=120, job_ids=job_ids))
                warmups[setting] = f"{warm['state']}, trigger -> run end {fmt_s(warm['trigger_to_end'], 1)} s"
                print(f"{setting}: warm-up run (2 nodes): {warmups[setting]}", flush=True)
            per_node = None  # s per node seen so far (plan end -> all up), for the budget estimate
            for nodes in counts:
                left = share_end - time.time()
                estimate = 20 + (per_node or 1.0) * nodes * 1.15  # + the wait, teardown and run end
                if estimate > left:
                    rows.append({"nodes": nodes, "skipped": f"not run: estimated {estimate:.0f} s, {left:.0f} s of this "
                                                           f"setting's share of the {args.budget_s:.0f}-s budget left"})
                    print(f"{setting} {nodes}: {rows[-1]['skipped']}", flush=True)
                    continue
                wait_for_quiet(max_wait_s=15)
                row = analyse(observe(server, nodes, timeout_s=min(left, 60 + 3 * nodes), job_ids=job_ids))
                rows.append(row)
                if row["all_up"]:
                    per_node = row["all_up"] / nodes
                print(f"{setting} {nodes}: {json.dumps({k: v for k, v in row.items() if k != 'notes'}, default=str)}",
                      flush=True)
        except Exception as exc:  # noqa: BLE001 - reported in the section; the next setting still runs
            rows.append({"nodes": "-", "skipped": f"failed: {type(exc).__name__}: {exc}"[:300]})
            print(f"{setting}: {rows[-1]['skipped']}", flush=True)
        finally:
            orphans[setting] = stop_server(server)
            swept[setting] = sweep(job_ids)
    total_s = time.time() - t_start
    saved = {"command": command_line(), "settings": settings, "results": results, "settings_env": SETTINGS,
             "hold_s": HOLD_S, "boots": boots, "warmups": warmups, "swept": swept, "orphans": orphans,
             "busy_before": busy_before, "total_s": total_s}
    with open(LAST, "w") as f:  # a report that fails to render loses no measurement: --from-json
        json.dump(saved, f)
    render(saved)
    ok = all(r.get("state") == "success" for rows in results.values() for r in rows if "skipped" not in r)
    return 0 if ok and not any(str(r.get("skipped", "")).startswith("failed") for rows in results.values() for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
