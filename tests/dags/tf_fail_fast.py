"""Test DAG: worker 1 fails after its first epoch while worker 0 sits in a 600-s epoch."""

import os

from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator

LONG_EPOCH_S = 600

with DAG(dag_id="tf_fail_fast", schedule=None, catchup=False) as dag:
    TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail_fast"),
        entry_script="train.py",
        node_count=2,
        environment_variables={"LONG_EPOCH_S": str(LONG_EPOCH_S)},
        poll_interval=0.5,
    )
