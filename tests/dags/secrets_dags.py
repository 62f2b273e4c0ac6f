"""Test DAGs for secret_environment_variables: a marker in environment_variables and two secrets
by reference (a Connection's password and a Variable), on LocalBackend and on the SSH hosts.

The Connection and the Variable are given by the tests (AIRFLOW_CONN_* / AIRFLOW_VAR_*, which a
LocalBackend node never inherits: the values can only arrive through airflow-tf's own path).
"""

import os

from airflow.sdk import DAG

from airflow_tf import LocalBackend, SSHBackend, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
PLAIN_MARKER = "plain-marker-7f3c9e1d5b"  # in the DAG file, like any operator argument
SECRETS = {"CONN_SECRET": "conn:aftf_secret_conn", "VAR_SECRET": "var:aftf_secret_var"}
SSH_CONNS = os.environ.get("AIRFLOW_TF_TEST_SSH_CONNS", "aftf_ssh_0,aftf_ssh_1").split(",")


def secrets_dag(dag_id: str, backend) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        TensorFlowTrainOperator(
            task_id="train", source_directory=os.path.join(HERE, "secret_job"), entry_script="train.py",
            node_count=2, backend=backend, poll_interval=0.5,
            environment_variables={"PLAIN_MARKER": PLAIN_MARKER}, secret_environment_variables=SECRETS,
        )
    return dag


secrets_local = secrets_dag("secrets_local", LocalBackend())
secrets_ssh = secrets_dag("secrets_ssh", SSHBackend(
    ssh_conn_ids=SSH_CONNS, python=os.environ.get("AIRFLOW_TF_TEST_SSH_PYTHON", "python3"),
    remote_root=os.environ.get("AIRFLOW_TF_TEST_SSH_ROOT", "~/.airflow_tf/jobs"), connect_attempts=1,
    cleanup="never",  # the test inspects the node directories the job left on the hosts
))
