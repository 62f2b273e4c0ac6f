"""Test DAG for the job page, the launch tasks' names and the extra links: a 3-node
MultiWorkerMirrored-shaped job of sleeping ranks (tests/dags/job_page/train.py)."""

import os

from airflow.sdk import DAG, Param

from airflow_tf import TensorFlowTrainOperator

with DAG(dag_id="tf_job_page", schedule=None, catchup=False,
         params={"epochs": Param(3, type="integer", minimum=1), "seconds": Param(1.0, type="number")}) as dag:
    TensorFlowTrainOperator(
        task_id="train",
        source_directory="job_page",  # next to this file
        entry_script="train.py",
        script_params={"--epochs": "{{ params.epochs }}", "--seconds": "{{ params.seconds }}"},
        node_count=3,
        poll_interval=0.5,
        # The test creates the Variable; every rank prints its value, which the page must mask.
        secret_environment_variables={"JOB_PAGE_TOKEN": "var:job_page_token"},
    )
