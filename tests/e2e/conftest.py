import os
import shutil

import pytest

from tests.e2e.server import AirflowServer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="package")
def airflow_server():
    """One real Airflow for the e2e tests, in its own home (never the dag.test() one).

    Package scope: it stops (freeing ~1 GiB) once the e2e tests are done, not at session end."""
    server = AirflowServer(
        # Per test session (pid), like the dag.test() home: concurrent sessions must not share one.
        home=os.path.join(REPO, ".airflow", f"e2e-{os.getpid()}"),
        bundles={"dags-folder": os.path.join(REPO, "dags"), "test-dags": os.path.join(REPO, "tests", "dags")},
    )
    server.start(timeout=240)  # a loaded 2-core machine needs more than the default 120 s at times
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.home, ignore_errors=True)
