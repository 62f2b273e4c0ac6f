"""Extra links on a training group's wait task: the job page, TensorBoard dir, curves picture,
outputs and the MLflow run.

Airflow 3 computes an operator's links on the worker when the task ends and stores each as an
XCom (``_link_<class>``); the api-server only reads those back. So ``get_link`` runs next to the
task, reads the wait's own results (its return value) and returns "" where there is nothing to
link to yet (the button is then greyed out). Every class is listed in provider_info's
``extra-links``.
"""

from __future__ import annotations

import pathlib
from typing import Any, ClassVar

from airflow.sdk import BaseOperatorLink

from airflow_tf.ui.names import curves_path, group_of, job_page_path


def _base_url() -> str:
    """The api-server's public URL ([api] base_url); "" keeps links relative to the UI's origin."""
    try:
        from airflow.configuration import conf

        return (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    except Exception:  # noqa: BLE001 - a worker without core config: relative links still work
        return ""


def as_url(location: str | None) -> str:
    """A local path as a ``file://`` URL; a URI (``s3://``, ``sftp://``, ``http://``) as it is."""
    if not location:
        return ""
    if "://" in location:
        return location
    return pathlib.Path(location).as_uri() if location.startswith("/") else location


class _ResultLink(BaseOperatorLink):
    """A link built from the wait task's results (its return value XCom)."""

    result_key: ClassVar[str]

    def results(self, ti_key) -> dict[str, Any]:
        from airflow.sdk.bases.xcom import BaseXCom

        # At the end of the task run ``ti_key`` is the task instance: only a successful wait has
        # results (asking at deferral would log an "XCom not found" error per link).
        state = getattr(ti_key, "state", None)
        if state is not None and str(getattr(state, "value", state)) != "success":
            return {}

        value = BaseXCom.get_value(ti_key=ti_key, key="return_value")
        return value if isinstance(value, dict) else {}

    def get_link(self, operator, *, ti_key) -> str:
        return as_url(self.results(ti_key).get(self.result_key))


class JobPageLink(BaseOperatorLink):
    name = "Training job page"

    def get_link(self, operator, *, ti_key) -> str:
        return _base_url() + job_page_path(ti_key.dag_id, ti_key.run_id, group_of(ti_key.task_id))


class TensorBoardLink(_ResultLink):
    name = "TensorBoard logs"
    result_key = "tensorboard_dir"


class OutputsLink(_ResultLink):
    name = "Training outputs"
    result_key = "output_dir"


class CurvesLink(_ResultLink):
    """The curves picture, served by the job page's app (the PNG may sit on another host)."""

    name = "Training curves"

    def get_link(self, operator, *, ti_key) -> str:
        results = self.results(ti_key)
        if not results.get("history"):
            return ""
        return _base_url() + curves_path(ti_key.dag_id, ti_key.run_id, group_of(ti_key.task_id))


class MlflowRunLink(_ResultLink):
    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        tracked = self.results(ti_key).get("mlflow") or {}
        return tracked.get("url") or ""


RESULT_LINKS = (JobPageLink(), TensorBoardLink(), CurvesLink(), OutputsLink(), MlflowRunLink())
LINK_CLASSES = [f"{__name__}.{type(link).__name__}" for link in RESULT_LINKS]
