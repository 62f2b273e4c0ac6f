"""A metrics file past 16 MiB on DockerBackend, through Airflow (dag.test of tests/dags/tf_watch_faults.py).

``read_file`` refuses files over 16 MiB (it is for small files) and the trigger used to read every
metrics file with it, in full, every poll: a rank logging per-step records failed its job after a
few hours. Now metrics come through ``read_from`` (the archive API streamed past the offset, HEAD
first), so the job succeeds, every epoch is reported once, and the results' history stays small.
"""

import json
import os

import pytest

from tests.docker.test_docker_dag import job_containers
from tests.helpers import job_pids
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import load_dag

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_FILE = os.path.join(REPO, "tests", "dags", "tf_watch_faults.py")


def test_a_metrics_file_past_16_mib_does_not_fail_the_job(dockerd, airflow_db, capfd):
    dag = load_dag(DAG_FILE, "tf_watch_docker_big")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]
    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.wait", -1)] == states[("train.teardown", -1)] == "success"

    steps = int(output.split("rank 0: wrote ", 1)[1].split()[0])  # the rank's own count of step records
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert results["epochs_logged"] == steps + 2  # every record of the 17 MiB, counted once
    assert results["metrics"]["epoch"] == 2  # the newest record
    # The history is an XCom: the newest records up to 1 MiB of JSON, ending with the epochs.
    assert len(json.dumps(results["history"])) <= 1 << 20 < 17 << 20
    assert [r["epoch"] for r in results["history"][-2:]] == [1, 2]
    # Per-step records arrive by the hundred thousand: summary lines, not one line each ...
    assert "new records since the last report; the newest 10 shown" in output
    # ... and the epochs that follow them, once each.
    for epoch in (1, 2):
        assert output.count(f"node 0 rank 0: epoch {epoch}/2 loss=") == 1
    assert "could not save the streamed offsets" not in output  # kept with the job on every poll
    assert job_containers(dockerd["client"], results["job_id"]) == []
    assert job_pids(results["job_id"]) == []
