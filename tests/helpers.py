"""Shared test helpers. Deliberately independent of airflow_tf.runtime.procfs, so a bug there
cannot hide a leftover process from the tests."""

import os
import time


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def pid_gone(pid) -> bool:
    """No such process, or only its zombie (nodes started in-process are never reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def job_pids(job_id: str) -> list[int]:
    """Live processes of a job: ranks (job id in their environment) and node launchers (job id in argv)."""
    marker = f"AIRFLOW_TF_JOB_ID={job_id}".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if (marker in env or job_id.encode() in cmdline) and not pid_gone(pid):
            found.append(int(pid))
    return found


def process_env(plan: dict, node_index: int, process_index: int = 0) -> dict:
    """The environment a plan (the ``plan`` XCom) gives one process: built from the job's cluster
    and the process's fields by the node runtime's own builder, as the node will."""
    from airflow_tf.runtime.rank_env import process_env as build

    node = plan["nodes"][node_index]
    return build(node, node["processes"][process_index], plan["cluster"])
