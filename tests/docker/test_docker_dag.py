"""The example DAG and the fail-fast job through real Airflow (dag.test) on DockerBackend.

Same DAGs as tests/integration/test_tensorflow_dag.py, only ``backend=`` differs
(tests/dags/tf_docker.py); the nodes are containers on the session's private dockerd.
"""

import json
import os
import time

import pytest

from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import load_dag, model_accuracy

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER_DAGS = os.path.join(REPO, "tests", "dags", "tf_docker.py")


def job_containers(client, job_id: str) -> list[dict]:
    return client.containers(all=True, filters={"label": f"airflow_tf.job_id={job_id}"})


def test_example_trains_on_two_containers(dockerd, airflow_db, capfd):
    dag = load_dag(DOCKER_DAGS, "tf_docker_mwms")
    run = dag.test(run_conf={"epochs": 3, "node_count": 2, "learning_rate": 0.05})
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]

    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.launch", 0)] == states[("train.launch", 1)] == "success"
    assert states[("train.wait", -1)] == states[("train.teardown", -1)] == "success"

    handles = [xcom(dag.dag_id, run.run_id, "train.launch", map_index=i) for i in (0, 1)]
    assert [h["backend"] for h in handles] == ["docker", "docker"]
    assert handles[0]["container_id"] != handles[1]["container_id"]

    # Host networking: the generated TF_CONFIG names the daemon's host, and it worked.
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    cluster = plan["cluster"]["tf_cluster"]["worker"]
    assert [address.split(":")[0] for address in cluster] == ["127.0.0.1", "127.0.0.1"]

    for label in ("node 0 rank 0", "node 1 rank 1"):
        assert f"[{label}] Epoch 3/3" in output
        assert f"[{label}] rank {label[-1]} of 2, replicas in sync: 2" in output

    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert [n["exit_code"] for n in results["nodes"]] == [0, 0]
    assert all(n["duration_s"] > 0 for n in results["nodes"])
    assert results["epochs_logged"] == 3 and results["metrics"]["epoch"] == 3
    # The chief saved /airflow_tf/outputs/model.keras inside its container; the result names the
    # bind-mounted host directory, which outlives the (removed) container.
    assert results["model_path"] == os.path.join(results["output_dir"], "model.keras")
    assert os.path.isfile(results["model_path"])
    assert model_accuracy(results["model_path"]) > 0.5

    assert job_containers(dockerd["client"], results["job_id"]) == []


def test_failing_node_fails_fast_and_removes_every_container(dockerd, airflow_db, capfd):
    dag = load_dag(DOCKER_DAGS, "tf_docker_fail_fast")
    started = time.monotonic()
    run = dag.test()
    elapsed = time.monotonic() - started
    output = capfd.readouterr().out

    assert run.state == "failed"
    assert elapsed < 600 / 4  # on node 1's exit, not when node 0's 600-s epoch would end
    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.wait", -1)] == "failed"
    assert states[("train.teardown", -1)] == "failed"
    assert "node 1 exited with code 3" in output
    # The tail is read after every container was stopped and removed: the backend kept it.
    tail = output.split("Last lines of node 1")[1]
    assert "[node 1 rank 1] worker 1: simulated failure: loss is NaN" in tail
    assert "[node 1] exit code 3" in tail

    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_containers(dockerd["client"], plan["job_id"]) == []


def test_parameter_server_job_in_containers(dockerd, airflow_db, capfd):
    dag = load_dag(DOCKER_DAGS, "tf_docker_ps")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]
    assert "[node 1 ps 0] ps 0: serving at" in output
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert results["metrics"]["holdout_accuracy"] > 0.5 and os.path.isfile(results["model_path"])
    # chief done -> the ps/worker containers were stopped and every container removed
    assert job_containers(dockerd["client"], results["job_id"]) == []


def test_horovod_gloo_job_in_containers(dockerd, airflow_db, capfd):
    import re

    dag = load_dag(DOCKER_DAGS, "tf_docker_horovod")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]
    assert sorted(re.findall(r"horovod rank (\d) of 2", output)) == ["0", "1"]
    checksums = re.findall(r"final weights checksum ([0-9a-f]{16})", output)
    assert len(checksums) == 2 and len(set(checksums)) == 1
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert job_containers(dockerd["client"], results["job_id"]) == []
