"""The scheduled retraining example end to end (dag.test), its Asset event and the downstream
DAG's schedule; ONNX export on real models with real onnxruntime."""

import os
import subprocess
import sys

import pytest

from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration


def test_retraining_pipeline_publishes_a_model_the_deployment_dag_is_queued_on(airflow_db, capfd):
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    # dag.test() syncs both DAGs of the file; the test home creates DAGs unpaused (conftest), as
    # paused DAGs are not queued on asset events.
    dag = load_dag(os.path.join(REPO, "dags", "tf_retraining_pipeline.py"), "tf_retraining_pipeline")
    run = dag.test(run_conf={"epochs": 3, "node_count": 2, "min_accuracy": 0.9})
    output = capfd.readouterr().out
    assert run.state == "success"
    assert set(task_states(dag.dag_id, run.run_id).values()) == {"success"}

    onnx = xcom(dag.dag_id, run.run_id, "export_onnx")
    assert os.path.exists(onnx["onnx_path"]) and onnx["max_abs_difference"] <= 1e-4
    assert "holdout accuracy of" in output

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "airflow-tf://models/blob-classifier", AssetEvent.source_run_id == run.run_id)
        ).one()
        assert event.extra["onnx_path"] == onnx["onnx_path"] and event.extra["holdout_accuracy"] > 0.9
        queued = session.scalars(select(AssetDagRunQueue.target_dag_id)).all()
    # The downstream DAG's asset schedule saw the event: a run of it is queued.
    assert "tf_model_deployment" in queued


MAKE_MODEL = """
import sys, keras
keras.utils.set_random_seed(int(sys.argv[2]))
model = keras.Sequential([keras.layers.Input(shape=(6,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)])
model.save(sys.argv[1])
"""


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (1, 2):
        path = str(directory / f"model{seed}.keras")
        subprocess.run([sys.executable, "-c", MAKE_MODEL, path, str(seed)], check=True, capture_output=True)
        paths.append(path)
    return paths


def export(*args):
    return subprocess.run([sys.executable, "-m", "airflow_tf.runtime.onnx_export", *args], capture_output=True, text=True)


def test_onnx_export_agrees_with_tensorflow(two_models, tmp_path):
    import json

    out = export(two_models[0], str(tmp_path / "m.onnx"))
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["max_abs_difference"] <= 1e-4 and os.path.exists(tmp_path / "m.onnx")


def test_onnx_export_fails_on_a_mismatched_model(two_models, tmp_path):
    out = export(two_models[0], str(tmp_path / "m.onnx"), "--reference", two_models[1])
    assert out.returncode == 3
    assert "ONNX Runtime disagrees with TensorFlow" in out.stderr


@pytest.mark.parametrize("tolerance", [0, -1e-3])
def test_onnx_tolerance_must_be_positive(tolerance):
    from airflow_tf import OnnxExportOperator
    from airflow_tf.cluster.errors import SpecError

    with pytest.raises(SpecError, match=r"tolerance must be a number > 0"):
        OnnxExportOperator(task_id="export", model_path="m.keras", tolerance=tolerance)
