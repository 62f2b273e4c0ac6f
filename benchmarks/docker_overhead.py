"""What DockerBackend costs over LocalBackend: starting one node, and a whole 2-node job.

Against a private dockerd started here exactly like the tests' (tests/docker/engine.py): a ~10 kB
image, the host's /usr, Python and the project's venv bind-mounted read-only.

(a) node start, REPEATS times per backend, alternating: a 1-node job whose script only prints.
    ``start()`` wall (Docker: create + put_archive of runtime/source/plan + start; local: spawn),
    start() called -> node ended (poll every 10 ms: container + launcher + script), and the
    ``stop_job()`` that removes it. Reference: a bare ``create + start + wait + remove`` of
    ``python -c pass`` with the same mounts, without airflow_tf.
(b) the same 2-node training job, ROUNDS times per backend, alternating: ``dag.test()`` of
    dags/tf_mwms_example.py (LocalBackend) and of tests/dags/tf_docker.py's tf_docker_mwms (the
    same DAG with ``backend=DockerBackend(...)``), run_conf {"epochs": 3, "node_count": 2}, each in
    a fresh process (benchmarks/job_overhead.py's child), phases from task rows and handles.
Usage: python benchmarks/docker_overhead.py [--repeats N] [--rounds N] [--epochs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, bench_env, command_line, fmt_s, machine_facts, median, wait_for_quiet, write_section  # noqa: E402

sys.path.insert(0, REPO)
import job_overhead  # noqa: E402

AIRFLOW_HOME = os.path.join(REPO, ".airflow", "bench-docker")
DOCKER_DAGS = os.path.join(REPO, "tests", "dags", "tf_docker.py")


def airflow_env(engine_env: dict[str, str]) -> dict[str, str]:
    import json

    env = bench_env(AIRFLOW_HOME)
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([
        {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": path}}
        for name, path in (("dags-folder", os.path.join(REPO, "dags")), ("test-dags", os.path.join(REPO, "tests", "dags")))
    ])
    env.update(engine_env)
    env["AIRFLOW_TF_JOB_ROOT"] = os.path.join(AIRFLOW_HOME, "jobs")
    return env


# -- (a) one node ---------------------------------------------------------------------------------
def one_node(backend, source_dir: str) -> dict[str, float]:
    from airflow_tf.cluster.tensorflow import plan_tensorflow_job
    from airflow_tf.cluster.spec import TrainingSpec

    job_id = f"bench-{uuid.uuid4().hex[:8]}"
    spec = TrainingSpec(source_directory=source_dir, entry_script="train.py")
    launch = plan_tensorflow_job(spec, job_id=job_id, hosts=backend.hosts(1)).launch(0)
    t0 = time.perf_counter()
    handle = backend.start(launch, source_dir)
    t1 = time.perf_counter()
    while (state := backend.poll(handle))["running"]:
        time.sleep(0.01)
    t2 = time.perf_counter()
    if state["exit_code"] != 0:
        raise RuntimeError(f"node failed: {backend.read_tail(handle, 20)}")
    backend.stop_job(job_id, 1)
    t3 = time.perf_counter()
    return {"start_s": t1 - t0, "to_exit_s": t2 - t0, "stop_job_s": t3 - t2}


def bare_container(client, engine: dict) -> float:
    """create + start + wait + remove of ``python -c pass``: Docker's own floor."""
    t0 = time.perf_counter()
    host_config = client.create_host_config(network_mode="host", binds=engine["mounts"])
    container = client.create_container(engine["image"], command=[engine["python"], "-c", "pass"], host_config=host_config)
    client.start(container)
    client.wait(container)
    client.remove_container(container, force=True)
    return time.perf_counter() - t0


def measure_start(engine: dict, repeats: int) -> dict:
    from airflow_tf.backends.docker import DockerBackend
    from airflow_tf.backends.local import LocalBackend

    source_dir = tempfile.mkdtemp(prefix="bench-src-")
    with open(os.path.join(source_dir, "train.py"), "w") as f:
        f.write("print('ok')\n")
    docker_backend = DockerBackend(image=engine["image"], docker_urls=[engine["url"]], mounts=engine["mounts"],
                                   python=engine["python"])
    local_backend = LocalBackend(job_root=os.path.join(AIRFLOW_HOME, "jobs"))
    runs = {"docker": [], "local": [], "bare": []}
    one_node(docker_backend, source_dir)  # warm-up: first client, first container, page cache
    one_node(local_backend, source_dir)
    bare_container(engine["client"], engine)
    for _ in range(repeats):
        runs["docker"].append(one_node(docker_backend, source_dir))
        runs["local"].append(one_node(local_backend, source_dir))
        runs["bare"].append(bare_container(engine["client"], engine))
    shutil.rmtree(source_dir, ignore_errors=True)
    return runs


# -- (b) a 2-node job -------------------------------------------------------------------------------
def measure_jobs(env: dict[str, str], rounds: int, epochs: int) -> dict:
    import subprocess

    log_dir = os.path.join(AIRFLOW_HOME, "bench-logs")
    os.makedirs(log_dir, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = {"local": [], "docker": []}
    cases = {"local": ("tf_mwms_example", os.path.join(REPO, "dags", "tf_mwms_example.py")),
             "docker": ("tf_docker_mwms", DOCKER_DAGS)}
    for i in range(rounds):
        for name, (dag_id, path) in cases.items():
            busy = wait_for_quiet()
            result = job_overhead.run_dag_test(dag_id, path, epochs, 2, env, os.path.join(log_dir, f"{name}-{i + 1}.log"))
            result["phases"] = job_overhead.breakdown(result)
            result["busy_before"] = busy
            runs[name].append(result)
            print(f"round {i + 1}: {name} dag.test() {result['dag_test_s']:.2f} s", flush=True)
    return runs


def cgroup_note() -> str:
    """Why containers can be slower than local processes on a busy machine (cgroup v1 only)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        return "CPU cgroups: v2 (containers and local processes are weighted alike)."
    return ("CPU cgroups: v1. All containers share the `docker` group's one weight (cpu.shares 1024) against every "
            "thread outside it, so while other multi-threaded work runs (CPU busy column, load average above) the "
            "containers get less CPU than the same processes started locally: the node span difference then measures "
            "that competition as much as the backend. Rounds that started with the CPUs idle are the fair comparison.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="node starts per backend")
    parser.add_argument("--rounds", type=int, default=3, help="2-node jobs per backend")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from tests.docker.engine import private_dockerd

    os.makedirs(AIRFLOW_HOME, exist_ok=True)
    os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME  # job roots for the in-process backends
    with private_dockerd() as engine:
        print("(a) node starts ...", flush=True)
        starts = measure_start(engine, args.repeats)
        print("(b) 2-node jobs ...", flush=True)
        jobs = measure_jobs(airflow_env(engine["env"]), args.rounds, args.epochs)

    def med(name, key):
        return median([r[key] for r in starts[name]])

    def job_med(name, key):
        values = [r["phases"][key] for r in jobs[name] if r["phases"][key] is not None]
        return median(values) if values else None

    def launch_med(name):
        return median([max(r["phases"]["launch_task_s"]) for r in jobs[name]])

    wall = {name: median([r["dag_test_s"] for r in jobs[name]]) for name in jobs}
    rows = "\n".join(
        f"| {i + 1} | {fmt_s(jobs['local'][i]['dag_test_s'])} | {fmt_s(jobs['docker'][i]['dag_test_s'])} | "
        f"{fmt_s(jobs['docker'][i]['dag_test_s'] - jobs['local'][i]['dag_test_s'])} | "
        f"{fmt_s(jobs['local'][i]['phases']['node_span_s'])} | {fmt_s(jobs['docker'][i]['phases']['node_span_s'])} | "
        f"{jobs['local'][i]['busy_before']:.0%}, {jobs['docker'][i]['busy_before']:.0%} |"
        for i in range(args.rounds)
    )
    body = f"""
## DockerBackend: container start and job overhead vs. LocalBackend

{machine_facts()}
- command: `{command_line()}`
- engine: Debian docker.io (dockerd on a private socket, overlay2, host networking), image of ~10 kB with the
  host's /usr, Python and `.venv` bind-mounted read-only (tests/docker/engine.py); the backend copies the node
  runtime, the source directory and the node plan into each container (`put_archive`) before starting it

### (a) One node: start, run a `print('ok')` script, remove ({args.repeats} runs each, after a warm-up; medians, seconds)

| | `start()` returns | start -> node ended | `stop_job()` (remove) |
|---|---|---|---|
| LocalBackend (detached process) | {fmt_s(med('local', 'start_s'), 3)} | {fmt_s(med('local', 'to_exit_s'), 3)} | {fmt_s(med('local', 'stop_job_s'), 3)} |
| DockerBackend (container) | {fmt_s(med('docker', 'start_s'), 3)} | {fmt_s(med('docker', 'to_exit_s'), 3)} | {fmt_s(med('docker', 'stop_job_s'), 3)} |
| bare Docker: create + start + wait + remove of `python -c pass` | - | {fmt_s(median(starts['bare']), 3)} (incl. remove) | - |

- container start cost over a local process: **{med('docker', 'start_s') - med('local', 'start_s'):+.3f} s** per
  `start()`, **{med('docker', 'to_exit_s') - med('local', 'to_exit_s'):+.3f} s** until the node has run.

### (b) The same 2-node MultiWorkerMirrored job (`dag.test()`, --epochs {args.epochs}; {args.rounds} rounds, alternating; seconds)

| round | LocalBackend dag.test() | DockerBackend dag.test() | difference | local node span | docker node span | CPU busy before (local, docker) |
|---|---|---|---|---|---|---|
{rows}
| **median** | **{fmt_s(wall['local'])}** | **{fmt_s(wall['docker'])}** | **{fmt_s(wall['docker'] - wall['local'])}** | {fmt_s(job_med('local', 'node_span_s'))} | {fmt_s(job_med('docker', 'node_span_s'))} | |

Medians, LocalBackend / DockerBackend:

- job overhead of DockerBackend over LocalBackend: **{wall['docker'] - wall['local']:+.2f} s** end to end
  ({wall['docker'] / wall['local']:.2f}x).
- dag.test() start -> first node up: {fmt_s(job_med('local', 'to_first_node_start_s'))} / {fmt_s(job_med('docker', 'to_first_node_start_s'))} s
  (plan task {fmt_s(job_med('local', 'plan_task_s'))} / {fmt_s(job_med('docker', 'plan_task_s'))} s: Docker's plan also checks the
  daemon and the image); slowest launch task {fmt_s(launch_med('local'))} / {fmt_s(launch_med('docker'))} s;
  node start skew {fmt_s(job_med('local', 'node_start_skew_s'), 3)} / {fmt_s(job_med('docker', 'node_start_skew_s'), 3)} s.
- node span (first node up -> last node exit): {fmt_s(job_med('local', 'node_span_s'))} / {fmt_s(job_med('docker', 'node_span_s'))} s.
- last node exit -> end of dag.test(): {fmt_s(job_med('local', 'after_last_exit_s'))} / {fmt_s(job_med('docker', 'after_last_exit_s'))} s
  (teardown task {fmt_s(job_med('local', 'teardown_task_s'))} / {fmt_s(job_med('docker', 'teardown_task_s'))} s: Docker's removes the containers).
- {cgroup_note()}
- logs of each dag.test(): .airflow/bench-docker/bench-logs/
"""
    write_section("docker", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
