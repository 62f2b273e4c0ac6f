import os

import pytest

from tests.e2e.server import AirflowServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="package")
def airflow_server():
    """One real Airflow for the e2e tests, in its own home (never the dag.test() one).

    Package scope: it stops (freeing ~1 GiB) once the e2e tests are done, not at session end."""
    server = AirflowServer(
        home=os.path.join(REPO, ".airflow", "e2e"),
        bundles={"dags-folder": os.path.join(REPO, "dags"), "test-dags": os.path.join(REPO, "tests", "dags")},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
