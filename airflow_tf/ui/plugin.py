"""The Airflow 3 UI plugin of airflow-tf: the job page (FastAPI app) and where the UI links it.

Registered through the ``airflow.plugins`` entry point (setup.cfg). Two external views open the
page inside the UI: a "Training job" tab on every DAG run (all training groups of the run) and
on every task instance (the group that task belongs to; any other task gets a one-line note).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_tf.ui.app import app
from airflow_tf.ui.names import URL_PREFIX


class AirflowTfPlugin(AirflowPlugin):
    name = "airflow_tf"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "airflow-tf job page"}]
    external_views = [
        {
            "name": "Training job",
            "href": URL_PREFIX + "/jobs/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "airflow-tf-job-run",
        },
        {
            "name": "Training job",
            "href": URL_PREFIX + "/jobs/{DAG_ID}/{RUN_ID}?task_id={TASK_ID}",
            "destination": "task_instance",
            "url_route": "airflow-tf-job-task",
        },
    ]
