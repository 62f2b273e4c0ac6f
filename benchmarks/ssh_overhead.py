"""What SSHBackend costs over LocalBackend for the same 2-node job, and how long a node launch takes.

Two real ssh "hosts" (network namespaces with sshd, tests/ssh/hosts.py; needs root) on this
machine, so the network is a veth pair and the numbers are the SSH/SFTP protocol and process
costs, not a LAN's latency.

(a) The same 2-worker MultiWorkerMirrored job (dags/mwms_example/train.py, --epochs 3) through
    ``dag.test()`` in a fresh process, once with LocalBackend and once with SSHBackend (one
    worker per host), alternating; phases from the task-instance rows (benchmarks/job_overhead.py).
(b) Backend calls timed in-process: plan inputs (hosts + free_ports, with SSH pre-flight), one
    node's start with a fresh backend object (as in a launch task: a new connection), one poll +
    read_log with a warm connection (the trigger's cost per node per poll), stop_job of 2
    running nodes with a fresh backend (the teardown). Workload: tests/dags/long_train.

Writes the ``ssh`` section of docs/benchmarks.md. Usage: python benchmarks/ssh_overhead.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, bench_env, command_line, fmt_s, machine_facts, median, wait_for_quiet, write_section  # noqa: E402
from job_overhead import breakdown, run_dag_test  # noqa: E402

sys.path.insert(0, REPO)
from tests.ssh.hosts import SSHHosts  # noqa: E402

AIRFLOW_HOME = os.path.join(REPO, ".airflow", "bench-ssh")
DAG_DIR = os.path.join(AIRFLOW_HOME, "dags")
LONG_TRAIN = os.path.join(REPO, "tests", "dags", "long_train")
BENCH_DAG = '''
"""Benchmark DAGs: the example's training with LocalBackend and with SSHBackend."""
import json, os
from airflow.sdk import DAG
from airflow_tf import LocalBackend, SSHBackend, TensorFlowTrainOperator

SETTINGS = json.loads(os.environ.get("AIRFLOW_TF_BENCH_SSH", "{{}}"))
for dag_id, backend in (
    ("bench_local_mwms", LocalBackend(job_root=os.path.join({home!r}, "jobs"))),
    ("bench_ssh_mwms", SSHBackend(**SETTINGS) if SETTINGS else None),
):
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        TensorFlowTrainOperator(
            task_id="train", source_directory={src!r}, entry_script="train.py",
            script_params={{"--epochs": "{{{{ dag_run.conf['epochs'] }}}}", "--learning-rate": 0.05, "--batch-size": 64}},
            node_count=2, backend=backend,
        )
    globals()[dag_id] = dag
'''


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def backend_calls(local_factory, ssh_factory, rounds: int) -> dict[str, dict[str, list[float]]]:
    """(b): per call, seconds for each backend."""
    from airflow_tf.cluster.tensorflow import plan_tensorflow_job
    from airflow_tf.cluster.spec import TrainingSpec

    spec = TrainingSpec(source_directory=LONG_TRAIN, entry_script="train.py", node_count=2,
                        script_params={"--seconds": 30})
    out: dict[str, dict[str, list[float]]] = {}

    def record(call, kind, seconds):
        out.setdefault(call, {}).setdefault(kind, []).append(seconds)

    for round_ in range(rounds):
        for kind, factory in (("local", local_factory), ("ssh", ssh_factory)):
            planner = factory()
            job_id = f"bench-{kind}-{os.getpid()}-{round_}"

            def plan_inputs():
                hosts = planner.hosts(2)
                return hosts, {h: planner.free_ports(h, hosts.count(h)) for h in set(hosts)}

            seconds, (hosts, free) = timed(plan_inputs)
            record("plan inputs: hosts(2) + free_ports", kind, seconds)
            plan = plan_tensorflow_job(spec, job_id=job_id, hosts=hosts, free_ports=free)
            handles = []
            for i in range(len(plan.nodes)):
                seconds, handle = timed(lambda i=i: factory().start(plan.launch(i), LONG_TRAIN))
                record("start one node (fresh backend, as a launch task)", kind, seconds)
                handles.append(handle)
            warm = factory()
            for handle in handles:
                warm.poll(handle)  # connect first: the trigger keeps its connections
            offsets = [0, 0]
            time.sleep(1.5)
            for _ in range(10):
                for i, handle in enumerate(handles):
                    seconds, (_, offsets[i]) = timed(lambda: (warm.poll(handle), warm.read_log(handle, offsets[i]))[1])
                    record("poll + read_log, one node (warm connection, per trigger poll)", kind, seconds)
                time.sleep(0.1)
            seconds, stopped = timed(lambda: factory().stop_job(job_id, 2, grace_s=5))
            record("stop_job, 2 running nodes (fresh backend, as the teardown)", kind, seconds)
            if stopped != [0, 1]:
                raise RuntimeError(f"{kind}: stop_job stopped {stopped}, expected [0, 1]")
            for backend in (planner, warm):
                getattr(backend, "close", lambda: None)()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--call-rounds", type=int, default=5)
    args = parser.parse_args()

    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
    os.makedirs(DAG_DIR)
    with open(os.path.join(DAG_DIR, "bench_ssh.py"), "w") as f:
        f.write(BENCH_DAG.format(home=AIRFLOW_HOME, src=os.path.join(REPO, "dags", "mwms_example")))
    workdir = tempfile.mkdtemp(prefix="aftf-bench-ssh-")
    hosts = SSHHosts(workdir, count=2, with_sshd=2).start()
    try:
        settings = {"ssh_conn_ids": [hosts.conn_id(0), hosts.conn_id(1)], "python": sys.executable,
                    "remote_root": os.path.join(workdir, "jobs")}
        env = bench_env(AIRFLOW_HOME)
        env.update(hosts.connection_env())
        env["AIRFLOW_TF_BENCH_SSH"] = json.dumps(settings)
        env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([
            {"name": "bench-ssh", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
             "kwargs": {"path": DAG_DIR}}])
        log_dir = os.path.join(AIRFLOW_HOME, "bench-logs")
        os.makedirs(log_dir)
        print("airflow db migrate ...", flush=True)
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        print("warm-up (not recorded): one run of each", flush=True)
        for dag_id in ("bench_local_mwms", "bench_ssh_mwms"):
            run_dag_test(dag_id, DAG_DIR, args.epochs, 2, env, os.path.join(log_dir, f"{dag_id}-warmup.log"))
        runs: dict[str, list[dict]] = {"local": [], "ssh": []}
        busy = []
        for i in range(args.repeats):
            for kind in ("local", "ssh"):
                busy.append(wait_for_quiet())
                result = run_dag_test(f"bench_{kind}_mwms", DAG_DIR, args.epochs, 2, env,
                                      os.path.join(log_dir, f"{kind}-{i + 1}.log"))
                result["phases"] = breakdown(result)
                runs[kind].append(result)
                print(f"round {i + 1}: {kind} dag.test() {result['dag_test_s']:.2f} s", flush=True)

        # (b) in this process: connections from the same environment variables.
        os.environ.update({k: v for k, v in env.items() if k.startswith("AIRFLOW_CONN_")})
        os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
        from airflow_tf import LocalBackend, SSHBackend

        busy.append(wait_for_quiet())
        calls = backend_calls(lambda: LocalBackend(job_root=os.path.join(AIRFLOW_HOME, "calls")),
                              lambda: SSHBackend(**settings), args.call_rounds)
    finally:
        hosts.close()
        shutil.rmtree(workdir, ignore_errors=True)

    def med(kind, key):
        values = [r["phases"][key] for r in runs[kind] if r["phases"][key] is not None]
        return median(values) if values else None

    def launch_med(kind):
        return median([s for r in runs[kind] for s in r["phases"]["launch_task_s"] if s is not None])

    wall = {kind: median([r["dag_test_s"] for r in runs[kind]]) for kind in runs}
    rows = []
    for i in range(args.repeats):
        lo, ss = runs["local"][i], runs["ssh"][i]
        rows.append(
            f"| {i + 1} | {fmt_s(lo['dag_test_s'])} | {fmt_s(ss['dag_test_s'])} | {ss['dag_test_s'] - lo['dag_test_s']:+.2f} | "
            f"{fmt_s(lo['phases']['plan_task_s'])} / {fmt_s(ss['phases']['plan_task_s'])} | "
            f"{', '.join(fmt_s(s) for s in lo['phases']['launch_task_s'])} / {', '.join(fmt_s(s) for s in ss['phases']['launch_task_s'])} | "
            f"{fmt_s(lo['phases']['node_span_s'])} / {fmt_s(ss['phases']['node_span_s'])} | "
            f"{fmt_s(lo['phases']['teardown_task_s'])} / {fmt_s(ss['phases']['teardown_task_s'])} |")
    call_rows = [
        f"| {call} | {fmt_s(1000 * median(values['local']), 1)} | {fmt_s(1000 * median(values['ssh']), 1)} | "
        f"{fmt_s(1000 * min(values['ssh']), 1)} - {fmt_s(1000 * max(values['ssh']), 1)} | {len(values['ssh'])} |"
        for call, values in calls.items()
    ]
    starts = calls["start one node (fresh backend, as a launch task)"]["ssh"]
    body = f"""
## SSHBackend: job overhead vs LocalBackend, launch time per node

{machine_facts()}
- command: `{command_line()}`
- hosts: 2 network namespaces on this machine, each with its own address (veth /30, routed through
  this machine) and a throwaway OpenSSH sshd; key login, host keys checked (pinned `host_key`);
  remote Python = this venv. Network latency is ~0: these are SSH/SFTP protocol and process costs.
- (a) `dag.test()` in a fresh process of the same 2-worker MultiWorkerMirrored job
  (dags/mwms_example/train.py, --epochs {args.epochs}), `LocalBackend()` vs `SSHBackend(two connections)`,
  {args.repeats} rounds alternating local, ssh (after one unrecorded warm-up of each); seconds
- CPU busy (all cores) in the second before each measurement: {", ".join(f"{b:.0%}" for b in busy)}

| round | local dag.test() | ssh dag.test() | ssh - local | plan task local / ssh | launch tasks local / ssh | node span local / ssh | teardown local / ssh |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""
| **median** | **{fmt_s(wall['local'])}** | **{fmt_s(wall['ssh'])}** | **{wall['ssh'] - wall['local']:+.2f}** | {fmt_s(med('local', 'plan_task_s'))} / {fmt_s(med('ssh', 'plan_task_s'))} | {fmt_s(launch_med('local'))} / {fmt_s(launch_med('ssh'))} (per node) | {fmt_s(med('local', 'node_span_s'))} / {fmt_s(med('ssh', 'node_span_s'))} | {fmt_s(med('local', 'teardown_task_s'))} / {fmt_s(med('ssh', 'teardown_task_s'))} |

- job overhead of SSHBackend over LocalBackend (median end-to-end `dag.test()`): **{wall['ssh'] - wall['local']:+.2f} s**
  ({wall['ssh'] / wall['local']:.2f}x).
- launch task per node (median): local {fmt_s(launch_med('local'))} s, **ssh {fmt_s(launch_med('ssh'))} s**;
  node start skew (launch 0 end -> launch 1 start) local {fmt_s(med('local', 'node_start_skew_s'), 3)} s,
  ssh {fmt_s(med('ssh', 'node_start_skew_s'), 3)} s.
- last node exit -> wait task done (trigger polls every 1 s): local {fmt_s(med('local', 'exit_to_wait_end_s'))} s,
  ssh {fmt_s(med('ssh', 'exit_to_wait_end_s'))} s.
  SSHBackend dates a node's end from its exit-code file's mtime, which SFTP gives in whole seconds
  (+0.5 s is used): its node ends, node span and this row are good to +-0.5 s only.

(b) Backend calls, in-process, {args.call_rounds} jobs per backend (tests/dags/long_train, 2 nodes); milliseconds

| call | LocalBackend median | SSHBackend median | SSHBackend min - max | n |
|---|---|---|---|---|
""" + "\n".join(call_rows) + f"""

- one node's start over SSH (new connection + key exchange, pre-launch check of the node's ports,
  one SFTP upload of runtime + source + plan, launch script, pid/start-time report):
  **{fmt_s(1000 * statistics.median(starts), 0)} ms** median.
- logs of each dag.test(): .airflow/bench-ssh/bench-logs/
"""
    write_section("ssh", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
