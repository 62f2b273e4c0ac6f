"""The job page's FastAPI app, mounted by the api-server at ``/airflow-tf`` (ui/plugin.py).

    GET /airflow-tf/jobs/{dag_id}/{run_id}[?group=...|?task_id=...]    the page (HTML + script)
    GET /airflow-tf/api/jobs/{dag_id}/{run_id}[?group=...|?task_id=...] what it shows, as JSON
    GET /airflow-tf/api/jobs/{dag_id}/{run_id}/curves.png?group=...    the loss / accuracy curves

Authorisation is Airflow's: every route depends on the api-server's own ``requires_access_dag``
(the auth manager's ``is_authorized_dag`` for the path's DAG), with the user taken from the
bearer token or the UI's session cookie, as for the REST API. The page reads node log lines and
XComs, so its data route also needs the DAG's task-log and XCom read permissions.
"""

from __future__ import annotations

import os
import tempfile

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import DagAccessEntity, requires_access_dag

from airflow_tf.ui.names import group_of
from airflow_tf.ui.page import PAGE_HTML

MAX_TAIL_LINES = 200

app = FastAPI(title="airflow-tf job page", description="Distributed training jobs of airflow-tf, per node.")

READ_RUN = [Depends(requires_access_dag("GET", DagAccessEntity.TASK_INSTANCE))]
READ_JOB = READ_RUN + [Depends(requires_access_dag("GET", DagAccessEntity.TASK_LOGS)),
                       Depends(requires_access_dag("GET", DagAccessEntity.XCOM))]


@app.get("/jobs/{dag_id}/{run_id}", response_class=HTMLResponse, dependencies=READ_RUN)
def job_page(dag_id: str, run_id: str) -> HTMLResponse:
    # Static: the script fetches the data route next to it (and refreshes while the job runs).
    return HTMLResponse(PAGE_HTML, headers={"Cache-Control": "no-store"})


def _chosen_groups(session, dag_id: str, run_id: str, group: str | None, task_id: str | None):
    from airflow_tf.ui.job_state import find_groups

    groups = find_groups(session, dag_id, run_id)
    if group:
        return [group], None if group in groups else f"no training job {group!r} in this run (yet)"
    if task_id:
        wanted = group_of(task_id)
        if wanted in groups:
            return [wanted], None
        note = f"task {task_id!r} is not a task of an airflow-tf training group"
        return groups, note + ("; the training jobs of this run follow" if groups else "")
    return groups, None if groups else "no airflow-tf training job in this run (yet)"


@app.get("/api/jobs/{dag_id}/{run_id}", dependencies=READ_JOB)
def job_data(dag_id: str, run_id: str, session: SessionDep, group: str | None = None, task_id: str | None = None,
             tail_lines: int = Query(20, ge=0, le=MAX_TAIL_LINES)) -> dict:
    from airflow_tf.ui.job_state import job_snapshot

    groups, note = _chosen_groups(session, dag_id, run_id, group, task_id)
    jobs = [job for job in (job_snapshot(session, dag_id, run_id, g, tail_lines=tail_lines) for g in groups) if job]
    return {"dag_id": dag_id, "run_id": run_id, "note": note, "jobs": jobs}


@app.get("/api/jobs/{dag_id}/{run_id}/curves.png", dependencies=READ_JOB)
def curves_png(dag_id: str, run_id: str, session: SessionDep, group: str = Query(...)) -> Response:
    """The curves drawn from the job's metrics (the picture the wait wrote may be on another host)."""
    from airflow_tf.results.curves import write_curves
    from airflow_tf.ui.job_state import job_snapshot

    job = job_snapshot(session, dag_id, run_id, group, tail_lines=0)
    if job is None:
        raise HTTPException(404, f"no training job {group!r} in run {run_id!r} of {dag_id!r}")
    with tempfile.TemporaryDirectory(prefix="airflow-tf-curves-") as folder:
        path = write_curves(job["history"], os.path.join(folder, "curves.png"), title=job["job_id"])
        if path is None:
            raise HTTPException(404, "no curves: fewer than two epochs of metrics, or matplotlib is not installed "
                                     '(pip install "airflow-tf[plots]")')
        with open(path, "rb") as f:
            return Response(f.read(), media_type="image/png", headers={"Cache-Control": "no-store"})
