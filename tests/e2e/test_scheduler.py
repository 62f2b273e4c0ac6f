"""The deferrable design on a real scheduler + triggerer + api-server (dag.test() runs triggers
inline, so only this proves the wait holds no worker slot and the triggerer streams the logs)."""

import time

import pytest

from airflow_tf.operators.nodes import job_id_for
from tests.e2e.server import wait_until
from tests.helpers import job_pids

pytestmark = pytest.mark.e2e

TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}


def test_example_triggered_with_params_runs_deferred(airflow_server):
    dag_id = "tf_mwms_example"
    airflow_server.wait_for_dag(dag_id)
    run_id = airflow_server.trigger(dag_id, {"epochs": 2, "node_count": 3, "learning_rate": 0.05})

    seen_states, running_while_deferred = set(), []
    deadline = time.monotonic() + 240
    while (state := airflow_server.run_state(dag_id, run_id)) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run still {state}"
        tis = airflow_server.task_instances(dag_id, run_id)
        wait_state = tis[("train.wait", -1)]["state"]
        seen_states.add(wait_state)
        if wait_state == "deferred" and job_pids(job_id_for(dag_id, run_id, "train")):
            running_while_deferred.append(sorted(k for k, ti in tis.items() if ti["state"] == "running"))
        time.sleep(0.3)

    assert state == "success"
    tis = airflow_server.task_instances(dag_id, run_id)
    # node_count=3 from the trigger form became three launch tasks.
    assert sorted(map_index for (task_id, map_index) in tis if task_id == "train.launch") == [0, 1, 2]
    assert all(tis[("train.launch", i)]["state"] == "success" for i in range(3))
    assert tis[("train.wait", -1)]["try_number"] == 1
    # The wait was deferred while the nodes trained, and no task held a worker slot meanwhile.
    assert "deferred" in seen_states
    assert running_while_deferred, "never observed the nodes training while the wait was deferred"
    assert all(running == [] for running in running_while_deferred), running_while_deferred

    log = airflow_server.task_log(dag_id, run_id, "train.wait")
    for label in ("node 0 rank 0", "node 1 rank 1", "node 2 rank 2"):
        assert f"[{label}] Epoch 2/2" in log
    assert job_pids(job_id_for(dag_id, run_id, "train")) == []


def _start_long_run(server):
    dag_id = "tf_long_train"
    server.wait_for_dag(dag_id)
    run_id = server.trigger(dag_id)
    job_id = job_id_for(dag_id, run_id, "train")

    def training():
        tis = server.task_instances(dag_id, run_id)
        # 2 node launchers + 2 ranks
        return tis[("train.wait", -1)]["state"] == "deferred" and len(job_pids(job_id)) == 4

    wait_until(training, 120, what="both nodes training under a deferred wait")
    return dag_id, run_id, job_id


def _assert_stopped_and_failed(server, dag_id, run_id, job_id):
    wait_until(lambda: job_pids(job_id) == [], 60, what=f"every process of {job_id} to be gone")
    wait_until(lambda: server.task_instances(dag_id, run_id)[("train.teardown", -1)]["state"] in TERMINAL, 60,
               what="the teardown to finish")
    wait_until(lambda: server.run_state(dag_id, run_id) in ("success", "failed"), 60, what="the run to end")
    assert server.run_state(dag_id, run_id) == "failed"
    assert server.task_instances(dag_id, run_id)[("after.plan", -1)]["state"] != "success"


def test_marking_the_run_failed_stops_every_node(airflow_server):
    dag_id, run_id, job_id = _start_long_run(airflow_server)
    airflow_server.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", {"state": "failed"})
    _assert_stopped_and_failed(airflow_server, dag_id, run_id, job_id)


def test_killing_the_wait_task_stops_every_node(airflow_server):
    dag_id, run_id, job_id = _start_long_run(airflow_server)
    airflow_server.request(
        "PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train.wait", {"new_state": "failed"}
    )
    _assert_stopped_and_failed(airflow_server, dag_id, run_id, job_id)
