"""Driving the deployment like a user: trigger through the REST API, wait, read the records."""

from __future__ import annotations

import datetime
import urllib.parse

from airflow_tf.operators.nodes import job_id_for
from airflow_tf.runtime import procfs
from tests.e2e.server import wait_until

FINAL = ("success", "failed")


def run_to_end(api, dag_id: str, conf: dict | None = None, timeout: float = 300) -> tuple[str, dict, dict]:
    """Trigger ``dag_id`` and wait for its end: (run id, the run record, task instances by (id, map index))."""
    api.wait_for_dag(dag_id)
    run_id = api.trigger(dag_id, conf)
    wait_until(lambda: api.run_state(dag_id, run_id) in FINAL, timeout, 1, what=f"{dag_id} to finish")
    return run_id, run_record(api, dag_id, run_id), api.task_instances(dag_id, run_id)


def run_record(api, dag_id: str, run_id: str) -> dict:
    return api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}")


def states(tis: dict) -> dict:
    return {f"{task}[{index}]" if index >= 0 else task: ti["state"] for (task, index), ti in tis.items()}


def hosts(tis: dict) -> dict:
    """Where each task instance ran (Airflow's record: the worker's host name)."""
    return {f"{task}[{index}]" if index >= 0 else task: ti["hostname"] for (task, index), ti in tis.items()}


def xcom(api, dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1):
    path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}&deserialize=true")
    return api.request("GET", path)["value"]


def job_id(dag_id: str, run_id: str, group: str = "train") -> str:
    return job_id_for(dag_id, run_id, group)


def job_processes(job: str) -> list[int]:
    """Every process anywhere on this machine (all "hosts" share its pid space) carrying the job's marker."""
    return procfs.job_processes(job)


def seconds_between(start: str, end: str) -> float:
    parse = datetime.datetime.fromisoformat
    return round((parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds(), 1)


def failure_logs(api, dag_id: str, run_id: str, tis: dict, limit: int = 4000) -> str:
    """The end of each failed task instance's log, for an assertion message."""
    out = []
    for (task, index), ti in tis.items():
        if ti["state"] == "failed":
            try:
                text = full_log(api, dag_id, run_id, task, index, ti["try_number"] or 1)
            except Exception as exc:  # noqa: BLE001 - a message helper
                text = f"<no log: {exc}>"
            out.append(f"--- {task}[{index}]\n{text[-limit:]}")
    return "\n".join(out) or str(states(tis))


def full_log(api, dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
    """A task log with the exception details (the structured records' error_detail) kept."""
    import json

    path = (f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/{task_id}/logs/{try_number}"
            f"?full_content=true&map_index={map_index}")
    content = api.request("GET", path)["content"]
    lines = []
    for item in content if isinstance(content, list) else [content]:
        if isinstance(item, dict):
            lines.append(str(item.get("event", "")))
            if item.get("error_detail"):
                lines.append(json.dumps(item["error_detail"])[-3000:])
        else:
            lines.append(str(item))
    return "\n".join(lines)
