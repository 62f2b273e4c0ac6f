"""MLflow tracking against a real ``mlflow server`` (tests/mlflow_server.py): a real two-worker
Keras job run through dag.test(), tracked through an Airflow connection, read back over MLflow's
REST API."""

import json
import os

import pytest

from tests.integration.dagrun import xcom

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_job_is_one_mlflow_run_with_epochs_model_and_curves(airflow_db, mlflow_server, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MLFLOW_TEST", json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": mlflow_server.port}))
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.path.join(REPO, "tests", "dags", "tf_tracking.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("tf_tracking")
    run = dag.test()
    assert run.state == "success"
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    tracked = results["mlflow"]
    assert "error" not in tracked, tracked
    assert tracked["tracking_uri"] == mlflow_server.uri and tracked["status"] == "FINISHED"

    # One run, found by the job's tag, carrying the Airflow ids, the params and the status.
    experiment = mlflow_server.api("experiments/get-by-name", experiment_name="airflow-tf tests")["experiment"]
    assert experiment["experiment_id"] == tracked["experiment_id"]
    runs = mlflow_server.search_runs(tracked["experiment_id"], f"tags.`airflow_tf.job_id` = '{results['job_id']}'")
    assert [r["info"]["run_id"] for r in runs] == [tracked["run_id"]]
    data = mlflow_server.api("runs/get", run_id=tracked["run_id"])["run"]
    assert data["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in data["data"]["tags"]}
    assert (tags["airflow.dag_id"], tags["airflow.run_id"], tags["airflow.task_id"]) == (
        "tf_tracking", run.run_id, "train.wait")
    assert tags["airflow_tf.strategy"] == "multi_worker_mirrored"
    params = {p["key"]: p["value"] for p in data["data"]["params"]}
    assert {k: params[k] for k in ("epochs", "learning-rate", "samples", "node_count", "world_size", "strategy",
                                   "entry_script")} == {
        "epochs": "3", "learning-rate": "0.05", "samples": "1024", "node_count": "2", "world_size": "2",
        "strategy": "multi_worker_mirrored", "entry_script": "train.py"}

    # Per-epoch metrics: rank 0 under the plain names, rank 1 (mlflow_ranks="all") under rank1/.
    history = results["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for key, rank in (("loss", 0), ("accuracy", 0), ("rank1/loss", 1)):
        points = mlflow_server.api("metrics/get-history", run_id=tracked["run_id"], metric_key=key)["metrics"]
        assert [p["step"] for p in points] == [1, 2, 3], key
        if rank == 0:
            assert [p["value"] for p in points] == pytest.approx([r[key] for r in history]), key

    # The model the chief saved, the curves picture and the metrics history, uploaded to the server.
    def listed(path):
        return {os.path.basename(f["path"]) for f in
                mlflow_server.api("artifacts/list", run_id=tracked["run_id"], path=path).get("files", [])}

    assert "model.keras" in listed("model")
    assert listed("curves") == {"curves.png"} and listed("metrics") == {"history.json"}
    assert os.path.getsize(os.path.join(mlflow_server.root, "artifacts", tracked["experiment_id"], tracked["run_id"],
                                        "artifacts", "model", "model.keras")) > 1000

    # The wait task's "MLflow run" extra link points at that run on the server.
    assert xcom(dag.dag_id, run.run_id, "train.wait", key="_link_MlflowRunLink") == (
        f"{mlflow_server.uri}/#/experiments/{tracked['experiment_id']}/runs/{tracked['run_id']}")

    # A retried wait task logs into the same run again: still one run, no duplicated epochs.
    from airflow_tf.results.tracking import Tracking, log_job

    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    again = log_job(Tracking(tracking_uri=mlflow_server.uri, experiment_name="airflow-tf tests"), uri=mlflow_server.uri,
                    ids={"dag_id": "tf_tracking", "run_id": run.run_id, "task_id": "train.wait", "group": "train"},
                    plan=plan, results=results, records={0: history}, failed=False)
    assert again["run_id"] == tracked["run_id"]
    points = mlflow_server.api("metrics/get-history", run_id=tracked["run_id"], metric_key="loss")["metrics"]
    assert [p["step"] for p in points] == [1, 2, 3]
