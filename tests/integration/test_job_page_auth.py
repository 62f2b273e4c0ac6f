"""The job page asks Airflow's auth manager, per DAG: the real api-server application (Airflow's
``create_app``, with this package's plugin mounted the way the api-server mounts it) under an auth
manager that refuses one user one DAG (tests/integration/auth_manager.py), after a real run."""

import os

import pytest

from tests.integration.auth_manager import HIDDEN_DAG, OUTSIDER

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def api(airflow_db, monkeypatch):
    from airflow.api_fastapi import app as api_app
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__AUTH_MANAGER", "tests.integration.auth_manager.DagHidingAuthManager")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"admin:admin,{OUTSIDER}:viewer")
    api_app.purge_cached_app()
    try:
        app = api_app.create_app(apps="core")
        yield TestClient(app), api_app.get_auth_manager()
    finally:
        api_app.purge_cached_app()


def test_a_user_who_cannot_read_the_dag_cannot_read_its_job_page(api, monkeypatch):
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.dag_processing.dagbag import DagBag

    client, auth = api
    dag = DagBag(dag_folder=os.path.join(REPO, "tests", "dags", "tf_job_page.py")).get_dag(HIDDEN_DAG)
    monkeypatch.setenv("AIRFLOW_VAR_JOB_PAGE_TOKEN", "job-page-secret-4711")  # the DAG's secret reference
    run = dag.test(run_conf={"epochs": 2, "seconds": 0.1})
    assert run.state == "success"
    page = f"/airflow-tf/jobs/{HIDDEN_DAG}/{run.run_id}"
    routes = [page, page.replace("/jobs/", "/api/jobs/"), page.replace("/jobs/", "/api/jobs/") + "/curves.png?group=train"]

    def get(path, user):
        token = auth.generate_jwt(SimpleAuthManagerUser(username=user, role="viewer"))
        return client.get(path, headers={"Authorization": f"Bearer {token}"})

    # A viewer who may read the DAG reads the page, its data and its picture.
    answers = [get(path, "viewer") for path in routes]
    assert [a.status_code for a in answers] == [200, 200, 200]
    nodes = answers[1].json()["jobs"][0]["nodes"]
    assert [(n["roles"], n["state"], n["exit_code"]) for n in nodes] == [(f"worker {i}", "exited", 0) for i in range(3)]
    # The outsider, refused this DAG by the auth manager (as the REST API refuses it), gets none of it.
    assert get(f"/api/v2/dags/{HIDDEN_DAG}", OUTSIDER).status_code == 403
    assert [get(path, OUTSIDER).status_code for path in routes] == [403, 403, 403]
    # Per DAG: the same outsider may read another DAG's jobs.
    assert get("/airflow-tf/api/jobs/tf_mwms_example/no-such-run", OUTSIDER).status_code == 200
