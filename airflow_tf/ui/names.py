"""One readable name per node, ``node 1 · worker 1 @ 10.0.0.2``: the launch tasks' map index
(``map_index_template``) and the job page's rows say the same thing. Pure: JSON of a NodePlan in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SHOWN_PROCESSES = 3  # past this many, "worker 0, worker 1, … (8 processes)"


def process_name(process: Mapping[str, Any]) -> str | None:
    """``chief 0`` / ``worker 1`` / ``ps 0`` for a rank; ``mpirun`` for MPI's launcher; None for a
    helper that is not a task of the training cluster (the Horovod rendezvous)."""
    if process["kind"] == "mpirun":
        return "mpirun"
    if process["kind"] != "rank":
        return None
    role = process.get("role") or "rank"
    index = process.get("task_index")
    if index is None:
        index = process.get("rank")
    return f"{role} {index}" if index is not None else role


def node_roles(node: Mapping[str, Any]) -> str:
    names = [name for name in (process_name(p) for p in node.get("processes") or []) if name]
    if not names:
        return "no processes (reachable for mpirun)"
    if len(names) > SHOWN_PROCESSES:
        return f"{', '.join(names[:2])}, … ({len(names)} processes)"
    return ", ".join(names)


def node_title(node: Mapping[str, Any]) -> str:
    """``node 1 · worker 1 @ 10.0.0.2``."""
    return f"node {node['node_index']} · {node_roles(node)} @ {node['host']}"


# Where the plugin's FastAPI app is mounted on the api-server (airflow_tf/ui/plugin.py).
URL_PREFIX = "/airflow-tf"


def job_page_path(dag_id: str, run_id: str, group_id: str | None = None) -> str:
    """The job page of a DAG run (every training group in it), or of one group."""
    from urllib.parse import quote, urlencode

    path = f"{URL_PREFIX}/jobs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}"
    return path + (f"?{urlencode({'group': group_id})}" if group_id else "")


def curves_path(dag_id: str, run_id: str, group_id: str) -> str:
    from urllib.parse import quote, urlencode

    return (f"{URL_PREFIX}/api/jobs/{quote(dag_id, safe='')}/{quote(run_id, safe='')}/curves.png?"
            + urlencode({"group": group_id}))


def group_of(task_id: str) -> str:
    """The training group of one of its tasks: ``outer.train.wait`` -> ``outer.train``
    (the group's tasks are ``<group>.plan/launch/wait/teardown``, operators/group.py)."""
    return task_id.rpartition(".")[0]
