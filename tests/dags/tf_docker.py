"""Test DAGs: the example training and the fail-fast job on DockerBackend, changing only ``backend=``.

The daemon, image, interpreter and mounts come from the environment the Docker tests' fixture
sets (tests/docker/conftest.py). Without it (another session parsing this bundle) the DAGs still
parse, pointing at the default daemon socket; they are only run by the Docker tests.
"""

import json
import os

from airflow.sdk import DAG, Param, task

from airflow_tf import DockerBackend, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def docker_backend() -> DockerBackend:
    return DockerBackend(
        image=os.environ.get("AIRFLOW_TF_TEST_DOCKER_IMAGE", "localhost/airflow-tf-test:latest"),
        docker_urls=[os.environ.get("AIRFLOW_TF_TEST_DOCKER_URL", "unix:///var/run/docker.sock")],
        mounts=json.loads(os.environ.get("AIRFLOW_TF_TEST_DOCKER_MOUNTS", "[]")),
        python=os.environ.get("AIRFLOW_TF_TEST_DOCKER_PYTHON", "python3"),
        environment={"TF_CPP_MIN_LOG_LEVEL": "2"},
    )


# dags/tf_mwms_example.py with backend=DockerBackend(...) (same shape: the benchmark compares the two).
with DAG(
    dag_id="tf_docker_mwms",
    schedule=None,
    catchup=False,
    params={
        "epochs": Param(4, type="integer", minimum=1, maximum=100),
        "learning_rate": Param(0.05, type="number", exclusiveMinimum=0),
        "node_count": Param(2, type="integer", minimum=1, maximum=8),
    },
):
    train = TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(REPO, "dags", "mwms_example"),
        entry_script="train.py",
        script_params={
            "--epochs": "{{ params.epochs }}",
            "--learning-rate": "{{ params.learning_rate }}",
            "--batch-size": 64,
        },
        node_count="{{ params.node_count }}",
        backend=docker_backend(),
    )

    @task
    def report(results: dict) -> dict:
        print(f"model:   {results['model_path']}")
        return {"model_path": results["model_path"], "accuracy": results["metrics"].get("accuracy")}

    train >> report(train.output)

# tests/dags/tf_fail_fast.py with backend=DockerBackend(...).
with DAG(dag_id="tf_docker_fail_fast", schedule=None, catchup=False):
    TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(HERE, "fail_fast"),
        entry_script="train.py",
        node_count=2,
        environment_variables={"LONG_EPOCH_S": "600"},
        backend=docker_backend(),
        poll_interval=0.5,
    )

# The other two operators on DockerBackend: the seed's parameter-server shape and Horovod/Gloo.
from airflow_tf import HorovodTrainOperator, ParameterServerTrainOperator  # noqa: E402

with DAG(dag_id="tf_docker_ps", schedule=None, catchup=False):
    ParameterServerTrainOperator(
        task_id="train",
        source_directory=os.path.join(REPO, "dags", "ps_example"),
        entry_script="train_keras3.py",
        script_params={"--epochs": 2},
        node_count=2,
        worker_count=2,
        parameter_server_count=1,
        server_mode="runtime",
        backend=docker_backend(),
        poll_interval=0.5,
    )

with DAG(dag_id="tf_docker_horovod", schedule=None, catchup=False):
    HorovodTrainOperator(
        task_id="train",
        source_directory=os.path.join(REPO, "dags", "horovod_example"),
        entry_script="train_tf2.py",
        script_params={"--epochs": 2, "--steps-per-epoch": 20},
        node_count=2,
        distributed_backend="gloo",
        backend=docker_backend(),
        poll_interval=0.5,
    )
