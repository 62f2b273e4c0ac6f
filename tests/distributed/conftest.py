"""One real multi-host Airflow deployment per test session (tests/distributed/deployment.py).

A piece that cannot start fails the session's distributed tests (never a skip). The start time
is written to ``.airflow/distributed/report.json`` (a measurement for docs/deployment.md, not
an assertion).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import pytest

from tests.distributed.deployment import REPO, Deployment, DeploymentError, remove_workdir

REPORT = os.path.join(REPO, ".airflow", "distributed", "report.json")


def record(key: str, value) -> None:
    """Keep a measurement of this session for the closing report (never asserted on)."""
    os.makedirs(os.path.dirname(REPORT), exist_ok=True)
    data = {}
    if os.path.exists(REPORT):
        with open(REPORT) as f:
            data = json.load(f)
    data[key] = value
    with open(REPORT, "w") as f:
        json.dump(data, f, indent=1)


@pytest.fixture(scope="session")
def deployment():
    if os.path.exists(REPORT):
        os.remove(REPORT)
    workdir = tempfile.mkdtemp(prefix=f"atfd-{os.getpid()}-")
    os.chmod(workdir, 0o755)  # postgres (its own user) must reach its directory
    dep = Deployment(workdir)
    try:
        dep.start()
    except DeploymentError as exc:
        remove_workdir(workdir)
        pytest.fail(f"the distributed deployment did not start: {exc}", pytrace=False)
    record("deployment_start_s", dep.started_in_s)
    try:
        yield dep
    finally:
        dep.stop()
        # The components' logs outlive the deployment (CI artifacts, debugging).
        kept = os.path.join(os.path.dirname(REPORT), "logs")
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(dep.logs, kept, dirs_exist_ok=True)
        remove_workdir(workdir)
