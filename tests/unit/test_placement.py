"""LocalBackend on a multi-host executor: pinned to one host, or refused by the plan task with a
message that says what to do (operators/placement.py). The deployment test runs both for real
(tests/distributed/test_local_backend.py); these cover every combination quickly."""

import os

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from airflow_tf import SSHBackend, TensorFlowTrainOperator
from airflow_tf.operators.placement import check_single_host, executor_name

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dags",
                      "mwms_example")


def group(**kwargs):
    with DAG("placement", schedule=None):
        return TensorFlowTrainOperator(task_id="train", source_directory=SOURCE, entry_script="train.py", **kwargs)


@pytest.fixture
def celery(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    monkeypatch.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "True")
    return monkeypatch


def test_single_machine_executor_needs_nothing(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "LocalExecutor")
    check_single_host(group().plan_task, "LocalBackend")


@pytest.mark.parametrize("pin", [{"queue": "gpu_host_1"}, {"default_args": {"queue": "gpu_host_1"}}])
def test_pinned_group_passes(celery, pin):
    check_single_host(group(**pin).plan_task, "LocalBackend")


@pytest.mark.parametrize("case, expected", [
    ("default queue", "default queue 'default'"),
    ("split queues", "different queues"),
    ("queues off", "queues_enabled is off"),
])
def test_unpinned_group_is_refused_with_what_to_do(celery, case, expected):
    train = group(default_args={"queue": "gpu_host_1"}) if case != "default queue" else group()
    if case == "split queues":
        train.wait_task.queue = "gpu_host_2"
    if case == "queues off":
        celery.setenv("AIRFLOW__TRIGGERER__QUEUES_ENABLED", "False")
    with pytest.raises(AirflowFailException) as info:
        check_single_host(train.plan_task, "LocalBackend")
    message = str(info.value)
    assert expected in message
    assert "CeleryExecutor" in message and "airflow triggerer --queues" in message and "SSHBackend" in message


def test_executor_names(monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "my_alias:airflow.providers.celery.executors.celery_executor."
                       "CeleryExecutor,LocalExecutor")
    assert executor_name(object()) == "CeleryExecutor"


def test_multi_host_backends_are_not_single_host():
    assert not SSHBackend.single_host
