"""The re-run launch rule on a real scheduler: a launch task killed right after its node started
(before it returned the handle) is retried by Airflow, and the retry re-attaches to the running
node: never a second copy, nothing left afterwards (docs/reliability.md)."""

import json
import os
import signal
import time

import pytest

from airflow_tf.operators.nodes import job_id_for
from airflow_tf.runtime import procfs
from tests.e2e.server import wait_until
from tests.helpers import job_pids

pytestmark = pytest.mark.e2e


def _launchers(job_id: str, node_index: int) -> list[int]:
    """The node's launcher processes (each try has one; ranks are their children)."""
    found = []
    for pid in procfs.job_processes(job_id, node_index):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"airflow_tf.runtime.launcher" in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_a_launch_task_killed_after_its_node_started_is_retried_and_reattaches(airflow_server):
    dag_id = "tf_launch_killed"
    airflow_server.wait_for_dag(dag_id)
    run_id = airflow_server.trigger(dag_id)
    job_id = job_id_for(dag_id, run_id, "train")
    job_dir = os.path.join(airflow_server.home, "airflow_tf_jobs", job_id)

    handles, installing = {}, {}
    for node in (0, 1):
        path = os.path.join(job_dir, f"node-{node}", "handle.json")
        wait_until(lambda: os.path.exists(path), 240, what=f"node {node} to start")
        handles[node] = json.load(open(path))
        task_pid = int(procfs.stat_fields(handles[node]["pid"])[1])  # the launcher's parent: the launch task
        log = open(os.path.join(handles[node]["node_dir"], "node.log")).read()
        installing[node] = "started 1 rank(s)" not in log
        os.kill(task_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    print(f"killed both launch tasks; nodes still installing pip_packages then: {installing}")
    # The kill landed while the nodes installed pip_packages (the server's package cache is fresh).
    assert all(installing.values()), installing

    both_up = []
    deadline = time.monotonic() + 180
    while (state := airflow_server.run_state(dag_id, run_id)) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run still {state}"
        for node in (0, 1):
            # Never two copies of a node, at any moment of the retry.
            assert len(_launchers(job_id, node)) <= 1, f"node {node} runs twice: {_launchers(job_id, node)}"
        tis = airflow_server.task_instances(dag_id, run_id)
        if not both_up and all(tis[("train.launch", n)]["state"] == "success" for n in (0, 1)):
            both_up.append(time.monotonic() - killed_at)
        time.sleep(0.3)

    tis = airflow_server.task_instances(dag_id, run_id)
    if state != "success":
        summary = {key: (ti["state"], ti["try_number"]) for key, ti in tis.items()}
        logs = {task: airflow_server.task_log(dag_id, run_id, task, tis[(task, -1)]["try_number"])[-3000:]
                for task in ("train.plan", "train.wait") if (task, -1) in tis}
        logs.update({f"launch {n}": airflow_server.task_log(dag_id, run_id, "train.launch",
                                                          tis[("train.launch", n)]["try_number"], map_index=n)[-3000:]
                     for n in (0, 1) if ("train.launch", n) in tis})
        raise AssertionError(f"run {state}: {summary}\n" + "\n".join(f"--- {k}:\n{v}" for k, v in logs.items()))
    for node in (0, 1):
        ti = tis[("train.launch", node)]
        assert (ti["state"], ti["try_number"]) == ("success", 2)
        assert "re-attached, nothing started" in airflow_server.task_log(dag_id, run_id, "train.launch", 2,
                                                                         map_index=node)
        # One try only: the retry started nothing; the first try's launcher ran the node to its end.
        assert sorted(e for e in os.listdir(os.path.join(job_dir, f"node-{node}")) if e.startswith("try-")) == ["try-1"]
        assert json.load(open(os.path.join(job_dir, f"node-{node}", "handle.json")))["pid"] == handles[node]["pid"]
        log = open(os.path.join(handles[node]["node_dir"], "node.log")).read()
        assert log.count("started 1 rank(s)") == 1 and "exit code 0" in log
    print(f"killed -> both launch retries re-attached: {both_up[0] if both_up else None:.1f} s")
    assert job_pids(job_id) == []
