"""The DAGs the distributed tests trigger through the REST API (tests/distributed/).

The deployment's components get ``ATFD_*`` variables naming the training hosts (Airflow
connections to sshd and to TLS dockerd on gpu-0 / gpu-1), the shared path and the sftp target;
the defaults only keep this file parseable elsewhere. Queues: ``host_a`` and ``host_b`` are each
served by one worker host (and a triggerer there); ``default`` by both workers and the control
host's triggerer.
"""

import json
import os
import socket

from airflow.sdk import DAG, task

from airflow_tf import (
    DockerBackend,
    HorovodTrainOperator,
    LocalBackend,
    OnnxExportOperator,
    ParameterServerTrainOperator,
    SSHBackend,
    TensorFlowTrainOperator,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
HERE = os.path.join(REPO, "tests", "dags")
SSH_CONNS = os.environ.get("ATFD_SSH_CONNS", "atfd_ssh_3,atfd_ssh_4").split(",")
DOCKER_CONNS = os.environ.get("ATFD_DOCKER_CONNS", "atfd_docker_0,atfd_docker_1").split(",")
PYTHON = os.environ.get("ATFD_PYTHON", "python3")
SHARED = os.environ.get("ATFD_SHARED", "/tmp/atfd-shared")
SFTP_ROOT = os.environ.get("ATFD_SFTP_ROOT", "/tmp/atfd-sftp")
MWMS = os.path.join(REPO, "dags", "mwms_example")


def ssh() -> SSHBackend:
    return SSHBackend(ssh_conn_ids=SSH_CONNS, python=PYTHON, connect_attempts=1,
                      remote_root=os.environ.get("ATFD_SSH_ROOT", "~/.airflow_tf/jobs"))


@task
def where(results: dict) -> dict:
    """A downstream task: the host it ran on and the model it found at the results' URI."""
    from airflow.sdk import ObjectStoragePath

    model = ObjectStoragePath(results["model_path"])
    with model.open("rb") as f:
        head = f.read(4)
    return {"hostname": socket.gethostname(), "model_path": results["model_path"], "zip": head == b"PK\x03\x04",
            "size": model.stat().st_size}


# MWMS on DockerBackend across the two remote TLS daemons. The launches run on host-a, the wait
# (and its trigger) on host-b; the model goes to sftp:// on gpu-0 and the ONNX export on host-b
# reads it from there.
with DAG(dag_id="atfd_docker_mwms", schedule=None, catchup=False):
    train = TensorFlowTrainOperator(
        task_id="train", source_directory=MWMS, entry_script="train.py",
        script_params={"--epochs": 2, "--samples": 1024, "--batch-size": 64}, node_count=2,
        backend=DockerBackend(
            image="localhost/airflow-tf-test:latest", docker_conn_ids=DOCKER_CONNS, python=PYTHON,
            mounts=json.loads(os.environ.get("ATFD_DOCKER_MOUNTS", "[]")), environment={"TF_CPP_MIN_LOG_LEVEL": "2"},
        ),
        output_uri=f"sftp://atfd_sftp@{SFTP_ROOT}", poll_interval=0.5,
        model_asset="airflow-tf://models/atfd-docker-mwms",
    )
    train.launch_task.queue = "host_a"
    train.wait_task.queue = "host_b"
    onnx = OnnxExportOperator(task_id="onnx", model_path=train.output, queue="host_b")
    train >> onnx >> where.override(queue="host_a")(train.output)

# LocalBackend pinned to host-b (all four tasks, and so its trigger, on host_b); the outputs go
# to a path every host sees, and host-a reads the model from there.
with DAG(dag_id="atfd_local_pinned", schedule=None, catchup=False):
    local = TensorFlowTrainOperator(
        task_id="train", source_directory=MWMS, entry_script="train.py", node_count=2,
        script_params={"--epochs": 1, "--samples": 512}, backend=LocalBackend(), poll_interval=0.5,
        default_args={"queue": "host_b"}, output_uri=f"file://{SHARED}/models",
    )
    where.override(queue="host_a")(local.output)

# The same job left on the default queue: the plan must refuse it, before any node starts.
with DAG(dag_id="atfd_local_unpinned", schedule=None, catchup=False):
    TensorFlowTrainOperator(task_id="train", source_directory=os.path.join(HERE, "long_train"), entry_script="train.py",
                            node_count=2, backend=LocalBackend())

# The seed's parameter-server example (Keras 3 coordinator) on the two ssh hosts.
with DAG(dag_id="atfd_ssh_ps", schedule=None, catchup=False):
    ParameterServerTrainOperator(
        task_id="train", source_directory=os.path.join(REPO, "dags", "ps_example"), entry_script="train_keras3.py",
        script_params={"--epochs": 2, "--steps-per-epoch": 10}, node_count=2, worker_count=1,
        parameter_server_count=1, server_mode="runtime", backend=ssh(), poll_interval=0.5,
    )

# Horovod over Gloo across the two ssh hosts; the chief's outputs are read over SFTP and copied
# to the shared path.
with DAG(dag_id="atfd_ssh_horovod", schedule=None, catchup=False):
    HorovodTrainOperator(
        task_id="train", source_directory=os.path.join(REPO, "dags", "horovod_example"), entry_script="train_tf2.py",
        script_params={"--epochs": 1, "--steps-per-epoch": 10}, node_count=2, distributed_backend="gloo",
        backend=ssh(), poll_interval=0.5, output_uri=f"file://{SHARED}/models",
    )

# Sleeping ranks on the ssh hosts, launched from host-a; the wait on the default queue.
# The faults (mark-failed, a worker host killed) are injected into its runs.
with DAG(dag_id="atfd_ssh_sleep", schedule=None, catchup=False):
    sleep = TensorFlowTrainOperator(
        task_id="train", source_directory=os.path.join(HERE, "long_train"), entry_script="train.py",
        script_params={"--seconds": "{{ dag_run.conf.get('seconds', 600) }}"}, node_count=2, backend=ssh(),
        poll_interval=0.5,
    )
    sleep.launch_task.queue = "host_a"

# The smallest check of the deployment itself: one task on each worker host's queue.
with DAG(dag_id="atfd_hello", schedule=None, catchup=False):

    @task(queue="host_a")
    def on_a() -> str:
        return socket.gethostname()

    @task(queue="host_b")
    def on_b() -> str:
        return socket.gethostname()

    on_a() >> on_b()
