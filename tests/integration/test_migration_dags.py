"""Migrating users' scripts and estimator calls, unchanged, through real Airflow (dag.test),
real TensorFlow, real Horovod over MPI and a real conda install (py-rattler, local channel):
the seed's three estimator examples plus a tf.keras MultiWorkerMirrored script with no
airflow_tf import. Their metrics come from the node runtime's autolog, not from the scripts."""

import os

import pytest

from tests.helpers import job_pids, process_env
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration

DAGS = os.path.join(REPO, "tests", "dags", "seed_examples.py")


def why(output: str) -> str:
    """The wait task's failure (with the failed node's last lines), else the output's end."""
    at = output.find("training job ")
    return output[at:at + 6000] if at >= 0 else output[-3000:]


def run_dag(dag_id: str, capfd):
    dag = load_dag(DAGS, dag_id)
    run = dag.test()
    output = capfd.readouterr().out
    results = xcom(dag_id, run.run_id, "train.wait")
    return dag, run, output, results


def test_seed_horovod_mpi_two_nodes_keras2_script(airflow_db, capfd):
    dag, run, output, results = run_dag("seed_horovod_mpi", capfd)

    assert run.state == "success", why(output)
    assert "[rank 0] Epoch 1: finished gradual learning rate warmup" in output  # LearningRateWarmupCallback
    assert "[rank 0] rank 0 of 2: final accuracy" in output and "[rank 1] rank 1 of 2: final accuracy" in output
    # MetricAverageCallback averaged the metrics: both ranks logged the same epoch records.
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert {"checkpoint-1.h5", "checkpoint-2.h5"} <= set(os.listdir(results["output_dir"]))  # rank 0's
    assert "epoch 2/2 accuracy=" in output
    assert job_pids(results["job_id"]) == []


def test_keras2_horovod_script_over_gloo(airflow_db, capfd):
    dag, run, output, results = run_dag("keras2_horovod_gloo", capfd)

    assert run.state == "success", why(output)
    assert "[node 0 rank 0] Epoch 1: finished gradual learning rate warmup" in output
    assert "[node 0 rank 1] rank 1 of 2: final accuracy" in output
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert job_pids(results["job_id"]) == []


def test_seed_parameter_server_two_workers_one_ps(airflow_db, capfd):
    dag, run, output, results = run_dag("seed_parameter_server", capfd)

    assert run.state == "success", why(output)
    assert "chief: done" in output
    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.launch", 0)] == states[("train.launch", 1)] == "success"
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert sorted(plan["cluster"]["tf_cluster"]) == ["chief", "ps", "worker"]
    assert len(plan["cluster"]["tf_cluster"]["worker"]) == 2 and len(plan["cluster"]["tf_cluster"]["ps"]) == 1
    assert process_env(plan, 0)["TF_USE_LEGACY_KERAS"] == "1"  # keras_version="auto" under PS
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert job_pids(results["job_id"]) == []


def test_unchanged_tf_keras_mwms_script_shows_progress(airflow_db, capfd):
    dag, run, output, results = run_dag("unchanged_mwms", capfd)

    assert run.state == "success", why(output)
    print("\n".join(line for line in output.splitlines() if ": epoch " in line))  # for the closing note
    for epoch in (1, 2, 3):
        assert f"node 0 rank 0: epoch {epoch}/3 accuracy=" in output
        assert f"node 1 rank 1: epoch {epoch}/3 accuracy=" in output
    assert [h["epoch"] for h in results["history"]] == [1, 2, 3]
    assert results["metrics"]["epoch"] == 3 and "loss" in results["metrics"]
    assert os.listdir(results["tensorboard_dir"])
    assert job_pids(results["job_id"]) == []
