"""Test DAG: two nodes that 'train' for 10 minutes, for the stop-while-training tests."""

import os

from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator

with DAG(dag_id="tf_long_train", schedule=None, catchup=False) as dag:
    train = TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_train"),
        entry_script="train.py",
        node_count=2,
        poll_interval=0.5,
    )
    # A downstream task: without the teardown's failure, a mark-failed run could end 'success'.
    after = TensorFlowTrainOperator(
        task_id="after",
        source_directory=os.path.join(os.path.dirname(os.path.abspath(__file__)), "long_train"),
        entry_script="train.py",
        script_params={"--seconds": 1},
    )
    train >> after
