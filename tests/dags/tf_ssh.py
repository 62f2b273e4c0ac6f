"""Test DAGs for SSHBackend: the same training steps as the local tests, on real ssh hosts.

tests/ssh/conftest.py starts the hosts (sshd in network namespaces) and says which Airflow
connections, remote Python and remote root to use through environment variables; the defaults
only keep this file parseable without them.
"""

import os

from airflow.sdk import DAG

from airflow_tf import ParameterServerTrainOperator, SSHBackend, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CONNS = os.environ.get("AIRFLOW_TF_TEST_SSH_CONNS", "aftf_ssh_0,aftf_ssh_1").split(",")
DOWN = os.environ.get("AIRFLOW_TF_TEST_SSH_DOWN", "aftf_ssh_2")


def backend(conn_ids: list[str]) -> SSHBackend:
    return SSHBackend(
        ssh_conn_ids=conn_ids,
        python=os.environ.get("AIRFLOW_TF_TEST_SSH_PYTHON", "python3"),
        remote_root=os.environ.get("AIRFLOW_TF_TEST_SSH_ROOT", "~/.airflow_tf/jobs"),
        connect_attempts=1,  # a refused connection is final here: keeps the down-host test fast
    )


def training_dag(dag_id: str, conn_ids: list[str], source: str, **options) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        TensorFlowTrainOperator(
            task_id="train", source_directory=source, entry_script="train.py", node_count=2,
            backend=backend(conn_ids), poll_interval=0.5, **options,
        )
    return dag


# The example's MultiWorkerMirrored training, one worker per ssh host.
tf_ssh_mwms = training_dag("tf_ssh_mwms", CONNS, os.path.join(REPO, "dags", "mwms_example"),
                           script_params={"--epochs": 2, "--learning-rate": 0.05})
# The second host's sshd is not running: pre-flight must fail before any node starts.
tf_ssh_down = training_dag("tf_ssh_down", [CONNS[0], DOWN], os.path.join(HERE, "long_train"))
# Worker 1 fails after its first epoch while worker 0 sits in a 600-s epoch.
tf_ssh_fail_fast = training_dag("tf_ssh_fail_fast", CONNS, os.path.join(HERE, "fail_fast"),
                                environment_variables={"LONG_EPOCH_S": "600"})

# Parameter-server training (Keras 3 coordinator loop): chief + worker + ps over the two hosts.
with DAG(dag_id="tf_ssh_ps", schedule=None, catchup=False) as tf_ssh_ps:
    ParameterServerTrainOperator(
        task_id="train", source_directory=os.path.join(REPO, "dags", "ps_example"), entry_script="train_keras3.py",
        script_params={"--epochs": 2, "--steps-per-epoch": 10}, node_count=2, worker_count=1,
        parameter_server_count=1, server_mode="runtime", backend=backend(CONNS), poll_interval=0.5,
    )

# Horovod over Gloo across the two ssh hosts: no ssh between the nodes, node 0 hosts the rendezvous.
from airflow_tf import HorovodTrainOperator  # noqa: E402

with DAG(dag_id="tf_ssh_horovod", schedule=None, catchup=False) as tf_ssh_horovod:
    HorovodTrainOperator(
        task_id="train", source_directory=os.path.join(REPO, "dags", "horovod_example"), entry_script="train_tf2.py",
        script_params={"--epochs": 2, "--steps-per-epoch": 20}, node_count=2, distributed_backend="gloo",
        backend=backend(CONNS), poll_interval=0.5,
    )
