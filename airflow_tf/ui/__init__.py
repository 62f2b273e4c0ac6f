"""What people see of a training job in the Airflow UI: node task names, the job page (an
Airflow 3 UI plugin: a FastAPI app plus external views) and what it reads.

Nothing here is imported by ``import airflow_tf`` or by DAG parsing except ``names`` (pure)."""
