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
- ``wide``: WIDE below, what docs/deployment.md recommends for jobs of many nodes.

Per run it reports, from the REST API's task instances and the nodes' own files: plan end ->
first launch start, -> the last handle's ``started_at`` (the last launcher spawned) and -> the last
rank's own "up" time; launch task durations; how many launch tasks ran at once (from their
start/end dates); plan end -> wait seen deferred, -> the trigger's first poll (its offsets file
first written); release -> last node exit -> teardown -> run end; memory; the machine's CPU
seconds per node launched; processes of the job left after the run (target 0).

Usage: python benchmarks/fan_out.py [--quick] [--counts 8,64,256] [--settings defaults,wide]
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
import signal
import statistics
import sys
import time
import urllib.error
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, ForeignCpu, command_line, fmt_s, machine_facts, wait_for_quiet, write_section  # noqa: E402

sys.path.insert(0, REPO)
from tests.e2e.server import AirflowServer  # noqa: E402
from tests.helpers import job_pids  # noqa: E402

HOME = os.path.join(REPO, ".airflow", "bench-fanout")
BENCH_DAGS = os.path.join(REPO, "benchmarks", "dags")
JOB_ROOT = os.path.join(HOME, "airflow_tf_jobs")  # LocalBackend's default there: $AIRFLOW_HOME/airflow_tf_jobs
DAG_ID = "bench_fan_out"
POLL_S = 0.25  # hold-directory / files sampling; the REST API every second sample
HOLD_S = 3.0  # every node up for this long before the release
MEM_FLOOR_GIB = 2.0  # release the nodes early if the machine gets this close to running out
SETTINGS = {
    "defaults": {"AIRFLOW__CORE__PARALLELISM": "32", "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "16",
                 "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "16"},
    "wide": {"AIRFLOW__CORE__PARALLELISM": "64", "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "64",
             "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": "64"},
}


def ts(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def meminfo() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}


def mem_used() -> int:
    info = meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (every CPU, idle/iowait excluded)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


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


def sweep(job_ids: list[str], wait_s: float = 15.0) -> int:
    """After a server stopped: the job processes still alive (released sleepers end within a
    second); what is left after ``wait_s`` is killed by pid (ours: the job's marker). Returns how
    many were left."""
    deadline = time.monotonic() + wait_s
    left = [pid for job_id in job_ids for pid in job_pids(job_id)]
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [pid for job_id in job_ids for pid in job_pids(job_id)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 nodes, defaults only (a smoke run)")
    parser.add_argument("--counts", default="8,64,256", help="node counts, comma-separated")
    parser.add_argument("--settings", default="defaults,wide", help=f"of {', '.join(SETTINGS)}")
    parser.add_argument("--warmup", action="store_true", help="a 2-node warm-up run first on each server")
    parser.add_argument("--budget-s", type=float, default=600.0, help="the whole benchmark's wall-time budget")
    args = parser.parse_args()
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
        finally:
            server.stop()
            swept[setting] = sweep(job_ids)
    total_s = time.time() - t_start
    write_section("fan_out", report(settings, results, boots, warmups, swept, busy_before, total_s))
    return 0 if all(r.get("state") == "success" for rows in results.values() for r in rows if "skipped" not in r) else 1


def report(settings, results, boots, warmups, swept, busy_before, total_s) -> str:
    def s(v, digits=1):
        return fmt_s(v, digits)

    lines = [
        "## Launch fan-out: plan end -> all nodes up (real scheduler, LocalBackend, sleeping ranks)",
        "",
        machine_facts(),
        f"- command: `{command_line()}` ({total_s:.0f} s in all; CPU busy before it started: {busy_before:.0%})",
        "- `airflow standalone` (LocalExecutor, SQLite, scheduler/triggerer heartbeats 1 s) in .airflow/bench-fanout via "
        "tests/e2e/server.py, restarted per setting; DAG bench_fan_out (benchmarks/dags/bench_fan_out.py): one "
        "TensorFlowTrainOperator step, one sleeping rank per node (no TensorFlow), released "
        f"{HOLD_S:g} s after every node is up",
        "- settings: " + "; ".join(f"**{name}** = " + ", ".join(f"`{k.split('__', 1)[1].replace('__', '.').lower()}` {v}"
                                                                 for k, v in SETTINGS[name].items()) for name in settings)
        + "; server start -> DAG unpaused: " + ", ".join(f"{n} {boots.get(n, 0):.0f} s" for n in settings)
        + "; a 2-node warm-up run first on each server (not in the tables): "
        + (", ".join(f"{n} {w}" for n, w in warmups.items()) or "none (the first run on a server is a cold one: its "
                                                                  "trigger -> plan end shows it)")
        + "; job processes alive 15 s after each server stopped: " + ", ".join(f"{n} {c}" for n, c in swept.items()),
        "- times in seconds after the plan task's end_date (REST API), except where a row says otherwise; \"all started\" = "
        "the last handle's started_at (its launcher spawned), \"all up\" = the last rank's own start time",
        "",
        "| setting | nodes | first launch start | all started | **all up** | launch task median / max | launch tasks at "
        "once (max) | queued -> running median | CPU-s per node (machine) | trigger -> plan end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    after = ["", "| setting | nodes | last launch end | wait seen deferred | trigger's first poll | release -> last node "
             "exit | last exit -> wait end | teardown task | last exit -> run end | trigger -> run end | peak memory "
             "(GiB, machine) | PSS per node (MiB) | processes left | run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in settings:
        for r in results.get(name, []):
            if "skipped" in r:
                lines.append("| " + " | ".join([name, str(r["nodes"]), r["skipped"]] + [""] * 7) + " |")
                continue
            lines.append(f"| {name} | {r['nodes']} | {s(r['first_launch'])} | {s(r['all_started'])} | **{s(r['all_up'])}** "
                         f"| {s(r['launch_median'])} / {s(r['launch_max'])} | {r['concurrency']} | {s(r['queued_median'])} "
                         f"| {s(r['cpu_per_node'], 2)} | {s(r['trigger_to_plan_end'])} |")
            after.append(f"| {name} | {r['nodes']} | {s(r['last_launch_end'])} | {s(r['deferred'])} | {s(r['first_poll'])} "
                         f"| {s(r['release_to_exit'])} | {s(r['exit_to_wait_end'])} | {s(r['teardown'])} "
                         f"| {s(r['exit_to_run_end'])} | {s(r['trigger_to_end'])} | {s(r['mem_peak_gib'], 2)} "
                         f"| {s(r['pss_node_mib'])} ({r['pids_up']} processes) | **{r['leftover']}** | {r['state']}"
                         f"{'; ' + '; '.join(r['notes']) if r['notes'] else ''}; others used {r['foreign_s']:.1f} CPU-s "
                         f"({r['foreign_top']}) |")
    lines += after
    lines += ["", recommendation(settings, results)]
    return "\n".join(lines)


def recommendation(settings, results) -> str:
    """The limit, in this run's numbers: N launch tasks of c CPU-s each on P CPUs take at least
    N*c/P; with S slots and tasks of d s each at least N*d/S; whichever is larger binds."""
    cpus = len(os.sched_getaffinity(0))
    parts = []
    for name in settings:
        rows = [r for r in results.get(name, []) if "skipped" not in r and r.get("all_up")]
        if not rows:
            continue
        r = max(rows, key=lambda x: x["nodes"])
        config = SETTINGS[name]
        slots = min(int(config["AIRFLOW__CORE__PARALLELISM"]), int(config["AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG"]))
        cpu_bound = r["nodes"] * (r["cpu_per_node"] or 0) / cpus
        slot_bound = r["nodes"] * (r["launch_median"] or 0) / slots
        parts.append(f"**{name}** at {r['nodes']} nodes: all up {r['all_up']:.1f} s = {r['all_up'] / r['nodes']:.2f} s per "
                     f"node; {r['cpu_per_node'] or 0:.2f} CPU-s per node x {r['nodes']} / {cpus} CPUs = {cpu_bound:.1f} s "
                     f"(CPU bound) vs {r['nodes']} x {r['launch_median'] or 0:.1f} s median launch / {slots} slots = "
                     f"{slot_bound:.1f} s (slot bound); at most {r['concurrency']} launch tasks ran at once")
    return ("Where the limit is (this run): " + "; ".join(parts) + ". The larger of the two bounds is the limit; "
            "docs/deployment.md, \"Wide jobs (many nodes)\", says what to set.") if parts else "No complete run."


if __name__ == "__main__":
    sys.exit(main())
