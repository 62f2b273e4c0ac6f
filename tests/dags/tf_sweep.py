"""Test DAG: a 3-trial sweep of the example over learning rates, two trials at a time."""

import os

from airflow.sdk import DAG

from airflow_tf import HyperparameterSweep

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dags", "mwms_example")

with DAG(dag_id="tf_sweep", schedule=None, catchup=False) as dag:
    HyperparameterSweep(
        task_id="sweep",
        grid={"--learning-rate": [0.0005, 0.05, 0.2]},
        metric="accuracy",
        mode="max",
        max_parallel_trials=2,
        source_directory=EXAMPLE,
        entry_script="train.py",
        script_params={"--epochs": 2, "--samples": 2048},
        node_count=1,
        poll_interval=0.5,
    )
