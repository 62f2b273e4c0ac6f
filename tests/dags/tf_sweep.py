"""Test DAG: a real TensorFlow sweep of the example over 3 learning rates, two trials at a time."""

import os

from airflow.sdk import DAG

from airflow_tf import HyperparameterSweep
from airflow_tf.tuning import GridParameterSampling, choice

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dags", "mwms_example")

with DAG(dag_id="tf_sweep", schedule=None, catchup=False) as dag:
    HyperparameterSweep(
        task_id="sweep",
        hyperparameter_sampling=GridParameterSampling({"--learning-rate": choice(0.0005, 0.05, 0.2)}),
        primary_metric_name="accuracy",
        primary_metric_goal="maximize",
        max_concurrent_runs=2,
        source_directory=EXAMPLE,
        entry_script="train.py",
        script_params={"--epochs": 2, "--samples": 2048},
        node_count=1,
        poll_interval=0.5,
        model_asset="airflow-tf://models/sweep-best",
    )
