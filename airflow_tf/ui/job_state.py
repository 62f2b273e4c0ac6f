"""What the job page shows, read in the api-server: the run's XComs (plan, launch handles, the
wait's results) and task instances from Airflow's database, and the nodes themselves through
their backend (state, last log lines, the chief's metrics) while they can be read.

Node files are only ever reached through the launch handles and ``Backend`` methods (``poll``,
``read_tail``, ``read_from``): their layout on a node (per-try directories...) is the backend's
business. After the job, when a backend can no longer read its nodes (Docker containers removed
by the teardown, an ssh host gone), the wait's results fill in exit codes, durations and the
metrics history.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from airflow_tf.operators.nodes import ATTEMPT_XCOM_KEY, CLUSTER_XCOM_KEY, PAGE_XCOM_KEY, PLAN_XCOM_KEY
from airflow_tf.operators.secrets import redact
from airflow_tf.runtime import node_files
from airflow_tf.runtime.rank_env import process_env
from airflow_tf.ui.names import node_roles, node_title, process_name

SHOWN_ENV_PREFIXES = ("TF_CONFIG", "HOROVOD_", "CUDA_VISIBLE_DEVICES", "NCCL_", "AIRFLOW_TF_")
METRICS_READ_CHUNK = 4 << 20
TERMINAL = {"success", "failed", "upstream_failed", "skipped", "removed"}

__all__ = ["find_groups", "job_snapshot", "CLUSTER_XCOM_KEY"]


def _xcoms(session, dag_id: str, run_id: str, task_ids: Iterable[str], key: str) -> dict[tuple[str, int], Any]:
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    rows = session.scalars(select(XComModel).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id.in_(list(task_ids)),
        XComModel.key == key,
    )).all()
    return {(row.task_id, row.map_index): XComModel.deserialize_value(row) for row in rows}


def find_groups(session, dag_id: str, run_id: str) -> list[str]:
    """The training groups of a run: the tasks that pushed a job plan (``<group>.plan``)."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    task_ids = session.scalars(select(XComModel.task_id).where(
        XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.key == PLAN_XCOM_KEY,
        XComModel.task_id.like("%.plan"),
    )).all()
    return sorted({task_id.rpartition(".")[0] for task_id in task_ids})


def _task_instances(session, dag_id: str, run_id: str, group: str) -> dict[tuple[str, int], Any]:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    ids = [f"{group}.{name}" for name in ("plan", "launch", "wait", "teardown")]
    rows = session.scalars(select(TaskInstance).where(
        TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id.in_(ids))).all()
    return {(ti.task_id, ti.map_index): ti for ti in rows}


def _secret_values(references: dict[str, str]) -> list[str]:
    """The values of secret_environment_variables, looked up here (the api-server) through
    Airflow's configured secrets backends, only to mask them in the log lines shown."""
    from airflow.models.connection import Connection
    from airflow.models.variable import Variable

    from airflow_tf.cluster.secrets import parse_reference

    values = []
    for name, text in (references or {}).items():
        try:
            ref = parse_reference(name, text)
            if ref.kind == "var":
                value = Variable.get(ref.key, default_var=None)
            else:
                conn = Connection.get_connection_from_secrets(ref.key)
                value = (conn.get_uri() if ref.field == "uri" else conn.extra_dejson.get(ref.field[len("extra."):])
                         if ref.field.startswith("extra.") else getattr(conn, ref.field))
        except Exception:  # noqa: BLE001 - unresolvable: its value cannot be in the log either
            continue
        if value:
            values.append(str(value))
    return values


def _state_name(ti) -> str | None:
    return str(ti.state.value if hasattr(ti.state, "value") else ti.state) if ti is not None and ti.state else None


def _shown_env(node: dict, cluster: dict) -> list[dict[str, Any]]:
    processes = []
    for process in node["processes"]:
        env = process_env(node, process, cluster)
        processes.append({
            "label": process["label"], "name": process_name(process) or process["kind"], "rank": process["rank"],
            "env": {k: v for k, v in sorted(env.items()) if k.startswith(SHOWN_ENV_PREFIXES)},
        })
    return processes


def _read_node(backend, handle: dict, tail_lines: int, secrets: list[str]) -> dict[str, Any]:
    """State and last lines of one node, each read on its own (one failure does not hide the other)."""
    out: dict[str, Any] = {}
    try:
        out["poll"] = dict(backend.poll(handle))
    except Exception as exc:  # noqa: BLE001 - shown on the page, read again next refresh
        out["poll_error"] = f"{type(exc).__name__}: {exc}"
    try:
        out["tail"] = [redact(line, secrets) for line in backend.read_tail(handle, tail_lines)]
    except Exception as exc:  # noqa: BLE001
        out["tail_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _history(backend, chief: dict | None, results: dict | None) -> tuple[list[dict], str]:
    from airflow_tf.results.progress import read_all_records

    if chief is not None and backend is not None:
        try:
            records = read_all_records(
                lambda at, limit: backend.read_from(chief, node_files.metrics_file(0), at, limit), METRICS_READ_CHUNK,
            ).records
            if records or not results:
                return records, "node 0 (live)"
        except Exception:  # noqa: BLE001 - after the job the results hold the history
            pass
    return list((results or {}).get("history") or []), "the wait task's results"


def job_snapshot(session, dag_id: str, run_id: str, group: str, *, tail_lines: int = 20) -> dict[str, Any] | None:
    """Everything the page shows of one training group of a run; None: no such job (yet)."""
    from airflow_tf.backends.base import Backend

    plan_task, launch_task, wait_task = f"{group}.plan", f"{group}.launch", f"{group}.wait"
    plan = _xcoms(session, dag_id, run_id, [plan_task], PLAN_XCOM_KEY).get((plan_task, -1))
    if not isinstance(plan, dict) or "nodes" not in plan:
        return None
    handles = {index: value for (_, index), value in
               _xcoms(session, dag_id, run_id, [launch_task], "return_value").items() if isinstance(value, dict)}
    results = _xcoms(session, dag_id, run_id, [wait_task], "return_value").get((wait_task, -1))
    page = _xcoms(session, dag_id, run_id, [wait_task], PAGE_XCOM_KEY).get((wait_task, -1)) or {}
    # After a job-level restart (max_restarts) the wait started new nodes: those are the ones to show.
    attempt = _xcoms(session, dag_id, run_id, [wait_task], ATTEMPT_XCOM_KEY).get((wait_task, -1)) or {}
    if attempt.get("handles"):
        handles = {h["node_index"]: h for h in attempt["handles"] if isinstance(h, dict)}
    tis = _task_instances(session, dag_id, run_id, group)
    wait_state = _state_name(tis.get((wait_task, -1)))
    backend = None
    if page.get("backend"):
        try:
            backend = Backend.deserialize(page["backend"])
        except Exception:  # noqa: BLE001 - e.g. a backend's provider missing in the api-server
            backend = None
    secrets = _secret_values(page.get("secret_references") or {})
    ended = {n["node_index"]: n for n in (results or {}).get("nodes") or []}
    now = time.time()
    nodes = []
    for node in plan["nodes"]:
        index = node["node_index"]
        handle = next((h for h in handles.values() if h.get("node_index") == index), None)
        launch_ti = next((ti for (task_id, _), ti in tis.items() if task_id == launch_task
                          and ti.map_index == index), None)
        row: dict[str, Any] = {
            "node_index": index, "title": node_title(node), "roles": node_roles(node), "host": node["host"],
            "launch_state": _state_name(launch_ti), "task_name": getattr(launch_ti, "rendered_map_index", None),
            "processes": _shown_env(node, plan["cluster"]), "try": (handle or {}).get("try"),
            "state": "planned", "exit_code": None, "duration_s": None, "tail": [],
        }
        if handle is not None:
            row["state"] = "started"
            read = _read_node(backend, handle, tail_lines, secrets) if backend is not None else {}
            poll = read.get("poll")
            if poll is not None:
                row["state"] = "running" if poll["running"] else ("exited" if poll["exit_code"] is not None else "lost")
                row["exit_code"] = poll["exit_code"]
                end = poll.get("ended_at") or (None if not poll["running"] else now)
                if end and handle.get("started_at"):
                    row["duration_s"] = round(end - handle["started_at"], 1)
            row["tail"] = read.get("tail") or []
            row["read_error"] = read.get("poll_error") or read.get("tail_error")
        if index in ended and row["exit_code"] is None:  # the results: what the wait saw at the end
            row.update(state="exited", exit_code=ended[index]["exit_code"], duration_s=ended[index]["duration_s"])
        nodes.append(row)
    chief = next((h for h in handles.values() if h.get("node_index") == 0), None)
    history, history_source = _history(backend, chief, results)
    return {
        "dag_id": dag_id, "run_id": run_id, "group": group, "job_id": plan["job_id"], "strategy": plan["strategy"],
        "success_rule": plan["success_rule"], "world_size": plan["cluster"]["world_size"],
        "state": wait_state or "planned", "finished": wait_state in TERMINAL, "attempt": attempt.get("attempt", 1),
        "nodes": nodes, "history": history, "history_source": history_source,
        "results": {k: v for k, v in (results or {}).items() if k not in ("history", "nodes")} or None,
        "read_at": now,
    }
