"""Test DAG: two nodes that would 'train' for 10 minutes, limited to a few seconds of wall clock."""

import os

from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator

with DAG(dag_id="tf_max_run_duration", schedule=None, catchup=False) as dag:
    TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_train"),
        entry_script="train.py",
        node_count=2,
        poll_interval=0.5,
        max_run_duration_seconds=4,
    )
