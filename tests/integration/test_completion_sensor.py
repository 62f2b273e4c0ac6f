"""TrainingCompletionSensor against real runs of the example (dag.test)."""

import os

import pytest

from tests.integration.dagrun import xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration
SENSORS = os.path.join(REPO, "tests", "dags", "tf_sensor.py")


@pytest.fixture(scope="module")
def trained_run(airflow_db):
    dag = load_dag(os.path.join(REPO, "dags", "tf_mwms_example.py"), "tf_mwms_example")
    run = dag.test(run_conf={"epochs": 1, "node_count": 2})
    assert run.state == "success"
    return run


def test_sensor_returns_the_latest_runs_results(trained_run):
    dag = load_dag(SENSORS, "tf_sensor_latest")
    run = dag.test()
    assert run.state == "success"
    results = xcom(dag.dag_id, run.run_id, "trained")
    expected = xcom("tf_mwms_example", trained_run.run_id, "train.wait")
    assert results == expected and results["model_path"]
    assert xcom(dag.dag_id, run.run_id, "trained", key="external_run_id") == trained_run.run_id


@pytest.mark.parametrize(("dag_id", "message"), [
    ("tf_sensor_no_dag", "external_dag_id 'no_such_dag': no such DAG"),
    ("tf_sensor_no_group", "training_group_id 'trian': DAG 'tf_mwms_example' run"),
])
def test_sensor_pointed_at_nothing_fails_naming_the_setting(trained_run, capfd, dag_id, message):
    run = load_dag(SENSORS, dag_id).test()
    assert run.state == "failed"
    assert message in capfd.readouterr().out


def test_sensor_settings_are_checked_at_parse_time():
    from airflow_tf import TrainingCompletionSensor
    from airflow_tf.cluster.errors import SpecError

    with pytest.raises(SpecError, match=r"external_dag_id must be a DAG / task group id"):
        TrainingCompletionSensor(task_id="t", external_dag_id="")
