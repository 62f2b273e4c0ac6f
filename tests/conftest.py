"""Test-session setup: one Airflow home per session (SQLite), set before airflow is imported.

The end-to-end tests (real scheduler + triggerer) use a second, separate home: a triggerer must
never share a database with dag.test(), which leaves trigger rows behind.
"""

import json
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Per session (pid): concurrent sessions must not wipe each other's DB and job directories.
AIRFLOW_HOME = os.path.join(REPO, ".airflow", f"test-{os.getpid()}")

os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.join(REPO, "dags")
# Two bundles: the shipped examples and the tests' own DAGs (dag.test() finds a DAG only
# through a bundle).
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([
    {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": path}}
    for name, path in (("dags-folder", os.path.join(REPO, "dags")), ("test-dags", os.path.join(REPO, "tests", "dags")))
])
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


def pytest_sessionstart(session):
    # A fresh metadata DB per session; homes of sessions that are gone are removed.
    for name in os.listdir(os.path.join(REPO, ".airflow")) if os.path.isdir(os.path.join(REPO, ".airflow")) else []:
        pid = name.removeprefix("test-")
        if name.startswith("test-") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(REPO, ".airflow", name), ignore_errors=True)
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
    os.makedirs(AIRFLOW_HOME)


@pytest.fixture(scope="session")
def airflow_db():
    """Migrate the session's SQLite DB once (≈4 s) for the tests that run DAGs."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def mlflow_server():
    """One real MLflow tracking server per test session (tests/mlflow_server.py), ≈ 20 s to start."""
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(os.path.join(AIRFLOW_HOME, "mlflow"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
