"""Test DAGs: parameter-server jobs long enough to kill a worker or the ps mid-training."""

import os

from airflow.sdk import DAG

from airflow_tf import ParameterServerTrainOperator

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dags", "ps_example")

for dag_id, restarts in (("tf_ps_worker_restart", 2), ("tf_ps_no_restart", 0)):
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        ParameterServerTrainOperator(
            task_id="train",
            source_directory=SRC,
            entry_script="train_keras3.py",
            script_params={"--epochs": 40},
            node_count=2,
            worker_count=2,
            parameter_server_count=1,
            server_mode="runtime",
            max_worker_restarts=restarts,
            poll_interval=0.5,
        )
    globals()[dag_id] = dag
