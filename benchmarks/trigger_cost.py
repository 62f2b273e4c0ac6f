"""Triggerer CPU seconds per node-hour: the wait trigger watching 64 simulated nodes, before and
after the offset reader (issue: "the trigger ... costs O(new bytes)").

64 LocalBackend nodes (real launchers) each run one sleeping rank that prints a line a second and
appends a metrics record every EPOCH_S seconds. The trigger runs alone in a child process, as the
triggerer runs it (``run()`` on an asyncio loop, backend calls in threads, its log to a file), for
MEASURE_S seconds; its CPU time (user + system, every thread, imports excluded) per node-hour is
the figure. "before" is the trigger of commit ``--before`` (it read every metrics file in full
on every poll); "after" is this working tree's. Both watch the same nodes, alternately, at two
run ages: just started, and with AGES_H hours of metrics history already in each file (written
before measuring: what a run that long has). Writes the ``trigger_cost`` section of
docs/benchmarks.md. Measures; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import common

BEFORE = "822ce34"
NODES = 64
EPOCH_S = 30  # a metrics record per rank every 30 s (a short epoch, or logging every N steps)
AGES_H = (0.0, 8.0, 48.0)  # run ages measured: metrics history already in each file
MEASURE_S = 30.0
WARMUP_POLLS = 2  # poll rounds before measuring: the first streams the backlog (see CHILD)
ROUNDS = 2

RANK = r'''
import json, os, time
rank = int(os.environ["AIRFLOW_TF_RANK"])
path = os.path.join(os.environ["AIRFLOW_TF_NODE_DIR"], f"metrics-rank{rank}.jsonl")
step = epoch = 0
while True:
    print(f"rank {rank} step {step} loss={1 / (step + 1):.4f}", flush=True)
    step += 1
    if step % EPOCH_S == 0:
        epoch += 1
        with open(path, "a") as f:
            f.write(json.dumps({"epoch": epoch, "rank": rank, "loss": 1 / (epoch + 1), "accuracy": 0.5,
                                "time": time.time()}) + "\n")
    time.sleep(1)
'''.replace("EPOCH_S", str(EPOCH_S))

# The measured child: one trigger instance, as the triggerer runs it; its log goes to stdout (a file).
CHILD = r'''
WARMUP_POLLS, NODES = __WARMUP__
import asyncio, importlib.util, json, resource, sys, time
from airflow_tf.backends.local import LocalBackend
polls = 0
real_poll = LocalBackend.poll

def counted_poll(self, handle):  # both triggers poll every node once per round
    global polls
    polls += 1
    return real_poll(self, handle)

LocalBackend.poll = counted_poll
variant, kwargs_path, seconds, before_path = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
if variant == "before":
    spec = importlib.util.spec_from_file_location("before_training_job", before_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Trigger = module.TrainingJobTrigger
else:
    from airflow_tf.triggers.training_job import TrainingJobTrigger as Trigger
with open(kwargs_path) as f:
    trigger = Trigger(**json.load(f))
trigger.log.info("warm-up")  # the logger's setup is not the trigger's cost

async def consume():
    async for event in trigger.run():
        return event.payload

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

async def main():
    # The first poll streams the backlog (lines and records written before this trigger started),
    # which every trigger does once: measured from the end of the warm-up rounds, the steady state.
    task = asyncio.create_task(consume())
    started = time.monotonic()
    while polls < WARMUP_POLLS * NODES and time.monotonic() - started < 300:
        await asyncio.sleep(0.05)
    warmup_s = time.monotonic() - started
    c0, w0 = cpu(), time.monotonic()
    await asyncio.sleep(seconds)
    c1, w1 = cpu(), time.monotonic()
    event = task.result() if task.done() else None
    task.cancel()
    return c1 - c0, w1 - w0, warmup_s, event

cpu_s, wall_s, warmup_s, event = asyncio.run(main())
print(json.dumps({"cpu_s": cpu_s, "wall_s": wall_s, "warmup_s": warmup_s, "event": event}), file=sys.stderr)
'''.replace("__WARMUP__", repr((WARMUP_POLLS, NODES)))


def before_trigger(commit: str, directory: str) -> str:
    path = os.path.join(directory, "before_training_job.py")
    source = subprocess.run(["git", "-C", common.REPO, "show", f"{commit}:airflow_tf/triggers/training_job.py"],
                            capture_output=True, text=True, check=True).stdout
    with open(path, "w") as f:
        f.write(source)
    return path


def start_nodes(backend, source: str, job_id: str):
    from airflow_tf.cluster.spec import TrainingSpec
    from airflow_tf.cluster.tensorflow import plan_tensorflow_job
    from airflow_tf.results.progress import metrics_files

    spec = TrainingSpec(source_directory=source, entry_script="train.py", node_count=NODES)
    hosts = backend.hosts(NODES)
    plan = plan_tensorflow_job(spec, job_id=job_id, hosts=hosts, free_ports={hosts[0]: backend.free_ports(hosts[0], NODES)})
    handles = [backend.start(plan.launch(i), source) for i in range(NODES)]
    return plan, handles, [metrics_files(node.to_json(), plan.world_size) for node in plan.nodes]


def prefill(handles, hours: float) -> int:
    """``hours`` of metrics history in every rank's file (what a run that old has written)."""
    records = int(hours * 3600 / EPOCH_S)
    for rank, handle in enumerate(handles):
        lines = "".join(json.dumps({"epoch": -records + e, "rank": rank, "loss": 0.5, "accuracy": 0.5, "time": 0.0})
                        + "\n" for e in range(records))
        with open(os.path.join(handle["node_dir"], f"metrics-rank{rank}.jsonl"), "a") as f:
            f.write(lines)
    return records


def measure(variant: str, kwargs_path: str, before_path: str, handles, workdir: str, env: dict,
            seconds: float) -> dict:
    from airflow_tf.runtime import node_files

    state = os.path.join(handles[0]["node_dir"], node_files.WATCH_STATE)
    if os.path.exists(state):
        os.remove(state)  # each run starts as a fresh trigger would: from offset 0, like "before"
    log_path = os.path.join(workdir, f"{variant}-{time.monotonic_ns()}.log")
    with open(log_path, "wb") as log:
        out = subprocess.run([sys.executable, "-c", CHILD, variant, kwargs_path, str(seconds), before_path],
                             stdout=log, stderr=subprocess.PIPE, text=True, env=env, timeout=seconds + 420)
    if out.returncode != 0:
        raise RuntimeError(f"{variant}: {out.stderr[-3000:]}")
    result = json.loads(out.stderr.strip().splitlines()[-1])
    with open(log_path, errors="replace") as f:
        text = f.read()
    result["lines"] = text.count("] rank ")  # node lines streamed (both variants stream the same)
    result["progress"] = text.count(": epoch ")
    result["per_node_hour"] = result["cpu_s"] * 3600 / (NODES * result["wall_s"])
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=BEFORE, help="commit whose trigger to compare against")
    parser.add_argument("--seconds", type=float, default=MEASURE_S, help="length of one measured run")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="runs per cell")
    args = parser.parse_args()
    busy = common.wait_for_quiet(max_wait_s=60)
    workdir = tempfile.mkdtemp(prefix="trigger-cost-")
    env = common.bench_env(os.path.join(workdir, "airflow"))
    env["PYTHONPATH"] = common.REPO
    os.environ.update({"AIRFLOW_HOME": env["AIRFLOW_HOME"], "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    from airflow_tf.backends.local import LocalBackend

    backend = LocalBackend(job_root=os.path.join(workdir, "jobs"))
    source = os.path.join(workdir, "src")
    os.makedirs(source)
    with open(os.path.join(source, "train.py"), "w") as f:
        f.write(RANK)
    before_path = before_trigger(args.before, workdir)
    job_id = f"trigger-cost-{os.getpid()}"
    plan, handles, files = start_nodes(backend, source, job_id)
    results: dict[tuple[float, str], list[dict]] = {}
    sizes: dict[float, tuple[int, int]] = {}  # age -> (records, bytes) in rank 0's file when measured
    try:
        kwargs_path = os.path.join(workdir, "kwargs.json")
        with open(kwargs_path, "w") as f:
            json.dump({"backend": backend.serialize(), "job_id": job_id, "handles": handles,
                       "success_rule": plan.success_rule, "poll_interval": 1.0, "metrics_files": files}, f)
        time.sleep(2)  # every node up and printing
        with common.ForeignCpu() as foreign:
            written_h = records = 0
            for age in AGES_H:
                records += prefill(handles, age - written_h) if age > written_h else 0
                written_h = age
                rank0 = os.path.join(handles[0]["node_dir"], "metrics-rank0.jsonl")
                sizes[age] = (records, os.path.getsize(rank0) if os.path.exists(rank0) else 0)
                for _ in range(args.rounds):
                    for variant in ("before", "after"):
                        result = measure(variant, kwargs_path, before_path, handles, workdir, env, args.seconds)
                        results.setdefault((age, variant), []).append(result)
                        print(f"age {age:g} h ({records} records/file): {variant}: {result['cpu_s']:.2f} CPU s in "
                              f"{result['wall_s']:.1f} s = {result['per_node_hour']:.1f} CPU s per node-hour (after a "
                              f"{result['warmup_s']:.1f}-s warm-up), "
                              f"{result['lines']} lines, {result['progress']} progress lines", flush=True)
    finally:
        backend.stop_job(job_id, NODES, grace_s=2)

    def cell(age: float, variant: str) -> str:
        values = [r["per_node_hour"] for r in results[(age, variant)]]
        return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

    def ratio(age: float) -> str:
        before = statistics.median(r["per_node_hour"] for r in results[(age, "before")])
        after = statistics.median(r["per_node_hour"] for r in results[(age, "after")])
        return f"{before / after:.1f}×" if after else "n/a"

    lines = [
        "## Trigger cost: triggerer CPU seconds per node-hour, 64 concurrent nodes",
        "",
        common.machine_facts(),
        f"- command: `{common.command_line()}`; {NODES} LocalBackend nodes, one sleeping rank each printing a line "
        f"a second and appending a metrics record every {EPOCH_S} s; the trigger alone in a child process (asyncio, "
        f"backend calls in threads, poll every 1 s, its log to a file) for {args.seconds:g} s per run, {args.rounds} runs "
        f"per cell alternating before/after; CPU = the child's user + system time, counted from the end of its "
        f"{WARMUP_POLLS}nd poll round (the first streams the backlog, once per trigger: the warm-up column)",
        f"- before = the trigger of commit {args.before} (every metrics file read in full on every poll); after = "
        "this tree's (logs and metrics by offset, offsets saved with the job every poll)",
        "- run age = hours of metrics history already in each rank's file when the trigger starts: "
        + ", ".join(f"{age:g} h = {sizes[age][0]} records ({sizes[age][1] / 1000:.0f} kB)" for age in AGES_H)
        + f"; CPU busy before measuring {busy:.0%}; other processes used {foreign.foreign_s:.1f} CPU s "
        f"meanwhile (top: {foreign.top_foreign()})",
        "",
        "| run age | before: CPU s / node-hour | after: CPU s / node-hour | before / after "
        "| warm-up (s) before / after |",
        "|---|---|---|---|---|",
    ]
    for age in AGES_H:
        warmups = [statistics.median(r["warmup_s"] for r in results[(age, v)]) for v in ("before", "after")]
        lines.append(f"| {age:g} h | {cell(age, 'before')} | {cell(age, 'after')} | {ratio(age)} "
                     f"| {warmups[0]:.1f} / {warmups[1]:.1f} |")
    lines += ["", "Median (min–max). Before, the cost grows with the run's length: every poll reads, decodes and "
              "splits every record written so far (and a fresh trigger logs them all again: the warm-up); after, it "
              "is flat: a poll reads the bytes written since the last one, and a restarted trigger resumes from its "
              "saved offsets (the warm-up above starts from offset 0: a first start)."]
    common.write_section("trigger_cost", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
