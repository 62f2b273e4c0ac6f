"""TensorFlowTrainOperator through real Airflow (dag.test) with real TensorFlow processes."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import job_pids, process_env
from tests.integration.dagrun import task_states, xcom

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE_SRC = os.path.join(REPO, "dags", "mwms_example")


def load_dag(path: str, dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=path)
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def load_example_dag():
    return load_dag(os.path.join(REPO, "dags", "tf_mwms_example.py"), "tf_mwms_example")


def model_accuracy(model_path: str) -> float:
    """Load the chief's saved model in a fresh process and score it on unseen generated data."""
    code = (
        "import os, sys; os.environ['TF_USE_LEGACY_KERAS'] = '1'; sys.path.insert(0, sys.argv[2])\n"
        "import tensorflow as tf; from data import make_dataset\n"
        "x, y = make_dataset(2000, seed=99)\n"
        "model = tf.keras.models.load_model(sys.argv[1])\n"
        "print('ACCURACY', float((model.predict(x, verbose=0).argmax(axis=1) == y).mean()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, model_path, EXAMPLE_SRC], capture_output=True, text=True, check=True)
    line = [line for line in out.stdout.splitlines() if line.startswith("ACCURACY")][-1]
    return float(line.split()[1])


def test_example_trains_on_two_workers(airflow_db, capfd):
    dag = load_example_dag()
    run = dag.test(run_conf={"epochs": 3, "node_count": 2, "learning_rate": 0.05})
    output = capfd.readouterr().out
    assert run.state == "success"

    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.launch", 0)] == states[("train.launch", 1)] == "success"
    assert ("train.launch", 2) not in states  # node_count from the Params form drove the mapping
    assert states[("train.wait", -1)] == states[("train.teardown", -1)] == "success"

    # The generated cluster config is readable in the plan's XCom.
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    configs = [json.loads(process_env(plan, i)["TF_CONFIG"]) for i in range(len(plan["nodes"]))]
    # Stated once per job (linear plan size), rebuilt per rank by the node runtime.
    assert plan["cluster"]["tf_cluster"] == configs[0]["cluster"]
    assert "TF_CONFIG" not in json.dumps(plan)
    assert [c["task"] for c in configs] == [{"type": "worker", "index": 0}, {"type": "worker", "index": 1}]
    assert configs[0]["cluster"] == configs[1]["cluster"] and len(set(configs[0]["cluster"]["worker"])) == 2

    # Both workers' output reached the wait task's log, each line with its prefix.
    for label in ("node 0 rank 0", "node 1 rank 1"):
        assert f"[{label}] Epoch 3/3" in output
        assert f"[{label}] rank {label[-1]} of 2, replicas in sync: 2" in output

    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert [n["exit_code"] for n in results["nodes"]] == [0, 0]
    assert all(n["duration_s"] > 0 for n in results["nodes"])
    assert results["epochs_logged"] == 3 and results["metrics"]["epoch"] == 3
    assert results["model_path"] == os.path.join(results["output_dir"], "model.keras")
    assert model_accuracy(results["model_path"]) > 0.5  # 10 classes: chance is 0.1
    # Per-epoch progress from each node's metrics file, a TensorBoard dir and a curve picture.
    for epoch in (1, 2, 3):
        assert f"node 0 rank 0: epoch {epoch}/3 accuracy=" in output
        assert f"node 1 rank 1: epoch {epoch}/3 accuracy=" in output
    assert [h["epoch"] for h in results["history"]] == [1, 2, 3]
    assert os.listdir(results["tensorboard_dir"])
    with open(results["curves_png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # model_asset=: the trained model was announced as an Asset event with its path and metrics.
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "airflow-tf://models/mwms-example", AssetEvent.source_run_id == run.run_id)
        ).one()
        assert event.extra["model_path"] == results["model_path"] and event.extra["metrics"]["epoch"] == 3
    assert job_pids(results["job_id"]) == []


def test_failing_worker_fails_the_group_fast(airflow_db, capfd):
    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_fail_fast.py"), "tf_fail_fast")
    started = time.monotonic()
    run = dag.test()
    elapsed = time.monotonic() - started
    output = capfd.readouterr().out

    assert run.state == "failed"
    # Failed on worker 1's exit, not when worker 0 would have woken up (LONG_EPOCH_S = 600).
    assert elapsed < 600 / 4
    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.wait", -1)] == "failed"
    assert states[("train.teardown", -1)] == "failed"  # keeps the run failed
    assert "node 1 exited with code 3" in output
    assert "[node 1 rank 1] worker 1: simulated failure: loss is NaN" in output.split("Last lines of node 1")[1]
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == []
