"""A sweep on a real scheduler + triggerer: the controller defers between its steps (the
triggerer watches the trials), is resumed on every trial event, terminates the bad trial, and
no worker slot is held while trials train."""

import time

import pytest

from airflow_tf.operators.nodes import job_id_for
from tests.helpers import job_pids

pytestmark = pytest.mark.e2e


def test_sweep_controller_defers_between_steps_on_a_real_triggerer(airflow_server):
    dag_id = "tf_sweep_scheduler"
    airflow_server.wait_for_dag(dag_id)
    run_id = airflow_server.trigger(dag_id)
    sweep_id = job_id_for(dag_id, run_id, "sweep")
    seen, held = set(), []
    deadline = time.monotonic() + 300
    state = None
    while state not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run still {state}"
        try:
            state = airflow_server.run_state(dag_id, run_id)
            tis = airflow_server.task_instances(dag_id, run_id)
        except TimeoutError:  # the api-server of a loaded 2-core machine: ask again next poll
            continue
        controller = tis.get(("sweep.controller", -1), {}).get("state")
        seen.add(controller)
        if controller == "deferred" and any(job_pids(f"{sweep_id}.trial-{n}") for n in range(3)):
            held.append(sorted(k for k, ti in tis.items() if ti["state"] == "running"))
        time.sleep(0.5)
    if state != "success":
        states = {k: ti["state"] for k, ti in airflow_server.task_instances(dag_id, run_id).items()}
        tries = airflow_server.task_instances(dag_id, run_id)[("sweep.controller", -1)]["try_number"]
        logs = airflow_server.task_log(dag_id, run_id, "sweep.controller", try_number=max(tries, 1))[-6000:]
        raise AssertionError(f"run {state}: {states}\n{logs}")
    assert "deferred" in seen and held, "never saw trials training while the controller was deferred"
    assert all(running == [] for running in held), held  # no worker slot held while trials train
    log = airflow_server.task_log(dag_id, run_id, "sweep.controller")
    assert "woken by: trial" in log
    assert "terminated: terminated by median_stopping at epoch" in log
    assert "best of 3 trial(s) by loss (minimize): trial" in log
    assert all(job_pids(f"{sweep_id}.trial-{n}") == [] for n in range(3))
