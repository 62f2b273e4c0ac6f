"""Test DAG: a job whose script needs a package installed per job (pip_packages)."""

import os

from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator

with DAG(dag_id="tf_pip_packages", schedule=None, catchup=False) as dag:
    TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip_job"),
        entry_script="train.py",
        node_count=2,
        pip_packages=["pyjokes==0.8.3"],
        poll_interval=0.5,
    )
