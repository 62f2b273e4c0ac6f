"""ParameterServerTrainOperator through real Airflow (dag.test) with real TensorFlow processes."""

import glob
import json
import os
import signal
import threading
import time

import pytest

from tests.helpers import job_pids, process_env
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration


def test_seed_example_trains_and_leaves_nothing(airflow_db, capfd):
    dag = load_dag(os.path.join(REPO, "dags", "tf_ps_example.py"), "tf_ps_example")
    run = dag.test(run_conf={"epochs": 3})
    output = capfd.readouterr().out
    assert run.state == "success"

    for group in ("ps_tf_keras_fit", "ps_keras3_loop"):
        plan = xcom(dag.dag_id, run.run_id, f"{group}.plan", key="plan")
        envs = {rank["label"]: process_env(plan, n, r) for n, node in enumerate(plan["nodes"])
                for r, rank in enumerate(node["processes"])}
        chief_config = json.loads(envs["node 0 chief"]["TF_CONFIG"])
        assert {role: len(addrs) for role, addrs in chief_config["cluster"].items()} == {"chief": 1, "worker": 2, "ps": 1}
        results = xcom(dag.dag_id, run.run_id, f"{group}.wait")
        assert results["nodes"][0]["exit_code"] == 0
        assert os.path.exists(results["model_path"])
        assert results["metrics"]["holdout_accuracy"] > 0.5  # 10 classes: chance is 0.1
        assert job_pids(results["job_id"]) == []  # ps, workers and evaluator were all stopped

    # The evaluator ran alongside, outside the training cluster, on the chief's checkpoints.
    plan = xcom(dag.dag_id, run.run_id, "ps_tf_keras_fit.plan", key="plan")
    [evaluator] = [process_env(plan, n, r) for n, node in enumerate(plan["nodes"])
                   for r, rank in enumerate(node["processes"]) if rank["role"] == "evaluator"]
    assert "evaluator" not in json.loads(evaluator["TF_CONFIG"])["cluster"]
    assert "[node 0 evaluator 0]" in output and "accuracy:" in output.split("[node 0 evaluator 0]", 1)[1]
    assert "[node 1 ps 0] ps 0: serving at" in output


def kill_mid_training(dag_id: str, role: str, rank: int, *, after_epochs: int = 2) -> threading.Thread:
    """In the background: once the chief logged ``after_epochs`` epochs, SIGKILL the task."""
    job_root = os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs")
    marker = (f"AIRFLOW_TF_ROLE={role}".encode(), f"AIRFLOW_TF_RANK={rank}".encode())
    killed = []

    def victim():
        for metrics in glob.glob(os.path.join(job_root, f"{dag_id}.*", "node-0", "try-*", "metrics-rank0.jsonl")):
            with open(metrics) as f:
                if sum(1 for _ in f) < after_epochs:
                    continue
            job_id = metrics.split(os.sep)[-4]  # <job>/node-0/try-<k>/metrics-rank0.jsonl
            for pid in job_pids(job_id):
                try:
                    with open(f"/proc/{pid}/environ", "rb") as f:
                        env = f.read().split(b"\0")
                except OSError:
                    continue
                if all(m in env for m in marker):
                    return pid
        return None

    def run():
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            pid = victim()
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.1)

    thread = threading.Thread(target=run, daemon=True)
    thread.killed = killed
    thread.start()
    return thread


@pytest.fixture
def fresh_jobs(airflow_db):
    """Earlier runs of the same DAG must not leave metrics files the killer would act on."""
    for path in glob.glob(os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs", "tf_ps_*")):
        import shutil

        shutil.rmtree(path)


# worker 1 is rank 3 (chief 0, ps 1, worker 0 = 2, worker 1 = 3), on node 1.
def test_killed_worker_is_restarted_and_training_succeeds(fresh_jobs, capfd):
    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_ps_faults.py"), "tf_ps_worker_restart")
    killer = kill_mid_training(dag.dag_id, "worker", 3)
    run = dag.test()
    output = capfd.readouterr().out
    assert killer.killed, "the worker was never killed"
    assert run.state == "success"
    assert "node 1 worker 1 exited with -9; restarting it (1/2)" in output
    # The restarted worker came back (40 epochs leave it time to rejoin before the chief ends).
    assert output.count("[node 1 worker 1] worker 1: serving at") == 2
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert results["metrics"]["steps"] == 40 * 30  # every scheduled step ran despite the loss
    assert job_pids(results["job_id"]) == []


def test_killed_worker_without_restarts_fails_the_job(fresh_jobs, capfd):
    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_ps_faults.py"), "tf_ps_no_restart")
    killer = kill_mid_training(dag.dag_id, "worker", 3)
    run = dag.test()
    output = capfd.readouterr().out
    assert killer.killed
    assert run.state == "failed"
    assert task_states(dag.dag_id, run.run_id)[("train.wait", -1)] == "failed"
    assert "node 1 exited with code 137" in output
    assert "node 1 worker 1 exited with -9; stopping the other ranks" in output.split("Last lines of node 1")[1]
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == []


def test_killed_ps_fails_the_job_fast(fresh_jobs, capfd):
    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_ps_faults.py"), "tf_ps_worker_restart")
    killer = kill_mid_training(dag.dag_id, "ps", 1)
    run = dag.test()
    output = capfd.readouterr().out
    assert killer.killed
    # Worker restarts do not cover the ps: its death fails the job at once, with its tail.
    assert run.state == "failed"
    assert "node 1 ps 0 exited with -9; stopping the other ranks" in output.split("Last lines of node 1")[1]
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == []
