"""Test DAG: the MultiWorkerMirrored example (real Keras training on two workers) tracked in
MLflow through an Airflow connection (the test defines AIRFLOW_CONN_MLFLOW_TEST), every rank's
metrics logged."""

from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator

with DAG(dag_id="tf_tracking", schedule=None, catchup=False) as dag:
    TensorFlowTrainOperator(
        task_id="train",
        source_directory="../../dags/mwms_example",  # relative to this file
        entry_script="train.py",
        script_params={"--epochs": 3, "--learning-rate": 0.05, "--samples": 1024},
        node_count=2,
        poll_interval=0.5,
        mlflow_conn_id="mlflow_test",
        mlflow_experiment_name="airflow-tf tests",
        mlflow_ranks="all",
    )
