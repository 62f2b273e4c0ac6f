"""Parameter-server training: the spec, and plans with one chief (coordinator), workers and ps
tasks, plus an optional evaluator, spread over the nodes, each task with its own port.

Placement is round-robin in the order chief, ps..., workers..., evaluator: task i goes to node
i % node_count, so the chief is on node 0 and ps and workers alternate across nodes. The seed's
example (node_count=2, worker_count=2, parameter_server_count=1) gives node 0: chief, worker 0;
node 1: ps 0, worker 1.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_tf.cluster.checks import (
    check_bool,
    check_choice,
    check_hosts,
    check_non_negative_int,
    check_positive_int,
    check_source,
)
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.layout import job_plan, node_plan
from airflow_tf.cluster.limits import check_limit
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.plan import ClusterPlan, JobPlan, ProcessPlan, Role, Strategy, SuccessRule
from airflow_tf.cluster.ports import assign_ports
from airflow_tf.cluster.spec import TrainingSpec

# The module a node runtime runs to serve a ps/worker task itself (server_mode="runtime").
RUNTIME_SERVER = ["-m", "airflow_tf.runtime.tf_server"]


class ServerMode(enum.StrEnum):
    SCRIPT = "script"  # the entry script runs on every task (ps/workers call serve_unless_chief())
    RUNTIME = "runtime"  # the entry script runs on the chief only; the runtime serves ps/workers


def check_ps_layout(fields: Mapping[str, Any]) -> None:
    """Cross-field checks: the process count is implied by the roles, and tasks must fit."""
    if fields.get("process_count_per_node", 1) != 1:
        raise SpecError(
            "process_count_per_node must be 1 for parameter-server training (tasks per node follow from "
            f"worker_count, parameter_server_count and node_count), got {fields['process_count_per_node']!r}"
        )
    limit, node_count = fields.get("max_tasks_per_node"), fields.get("node_count")
    if not isinstance(node_count, int):
        return  # templated: checked again once rendered
    # The operator passes only the options a user gave: fall back to ParameterServerSpec's defaults.
    workers, ps = fields.get("worker_count", 1), fields.get("parameter_server_count", 1)
    tasks = 1 + workers + ps + (1 if fields.get("evaluator") else 0)
    described = (f"{tasks} tasks (chief + {workers} workers + {ps} ps"
                 f"{' + evaluator' if fields.get('evaluator') else ''})")
    check_limit(f"the job's task count, {described},", tasks, "max_world_size")
    if node_count > tasks:
        raise SpecError(f"node_count is {node_count} but there are only {described}; lower node_count or add workers")
    if limit is not None and -(-tasks // node_count) > limit:
        raise SpecError(
            f"max_tasks_per_node is {limit}, but {described} over node_count={node_count} put "
            f"{-(-tasks // node_count)} on one node; raise node_count or the limit"
        )


def check_evaluator_script(source_directory: Any, evaluator: bool, evaluator_script: Any) -> None:
    if evaluator_script is None:
        return
    if not evaluator:
        raise SpecError("evaluator_script is set but evaluator is False; set evaluator=True or drop evaluator_script")
    check_source(source_directory, evaluator_script, field="evaluator_script")


@dataclasses.dataclass(frozen=True)
class ParameterServerSpec(TrainingSpec):
    """A chief (coordinator) + ``worker_count`` workers + ``parameter_server_count`` ps tasks.

    ``evaluator`` adds a sidecar evaluator kept out of the training cluster. ``server_mode``:
    see ``ServerMode``.
    """

    worker_count: int = 1
    parameter_server_count: int = 1
    evaluator: bool = False
    server_mode: ServerMode = ServerMode.SCRIPT
    max_worker_restarts: int = 0
    max_tasks_per_node: int | None = None
    evaluator_script: str | None = None

    FIELD_CHECKS = {
        "worker_count": lambda v: check_positive_int("worker_count", v, "max_world_size"),
        "parameter_server_count": lambda v: check_positive_int("parameter_server_count", v, "max_world_size"),
        "evaluator": lambda v: check_bool("evaluator", v),
        "max_worker_restarts": lambda v: check_non_negative_int("max_worker_restarts", v),
        "server_mode": lambda v: check_choice("server_mode", v, ServerMode),
        "max_tasks_per_node": lambda v: None if v is None else check_positive_int("max_tasks_per_node", v),
    }

    @classmethod
    def check_together(cls, fields: Mapping[str, Any]) -> None:
        super().check_together(fields)
        check_ps_layout(fields)
        if "source_directory" in fields:
            check_evaluator_script(fields["source_directory"], fields.get("evaluator", False),
                                   fields.get("evaluator_script"))


def task_list(spec: ParameterServerSpec) -> list[tuple[Role, int]]:
    """(role, index) in placement order."""
    tasks = [(Role.CHIEF, 0)]
    tasks += [(Role.PS, i) for i in range(spec.parameter_server_count)]
    tasks += [(Role.WORKER, i) for i in range(spec.worker_count)]
    if spec.evaluator:
        tasks.append((Role.EVALUATOR, 0))
    return tasks


def _command(spec: ParameterServerSpec, role: Role) -> list[str] | None:
    if role in (Role.PS, Role.WORKER) and spec.server_mode is ServerMode.RUNTIME:
        return list(RUNTIME_SERVER)
    if role is Role.EVALUATOR and spec.evaluator_script:
        return [spec.evaluator_script, *script_argv(spec.script_params)]
    return None


def plan_parameter_server_job(
    spec: ParameterServerSpec,
    *,
    job_id: str,
    hosts: Sequence[str],
    free_ports: Mapping[str, Sequence[int]] | None = None,
) -> JobPlan:
    hosts = check_hosts(spec.node_count, hosts)
    tasks = task_list(spec)
    placement = [i % spec.node_count for i in range(len(tasks))]
    # The evaluator is not a member of the training cluster: TF hangs waiting for it otherwise
    # (tensorflow/tensorflow#46169). It needs no port; it is last, so the others' ports do not move.
    members = [i for i, (role, _) in enumerate(tasks) if role is not Role.EVALUATOR]
    ports = dict(zip(members, assign_ports([hosts[placement[i]] for i in members], free_ports=free_ports)))
    tf_cluster = {
        role.value: [f"{hosts[placement[i]]}:{ports[i]}" for i in members if tasks[i][0] is role]
        for role in (Role.CHIEF, Role.WORKER, Role.PS)
    }
    per_node: list[list[ProcessPlan]] = [[] for _ in hosts]
    for rank, ((role, index), node) in enumerate(zip(tasks, placement)):
        per_node[node].append(ProcessPlan(
            label=f"node {node} chief" if role is Role.CHIEF else f"node {node} {role} {index}",
            rank=rank, local_rank=len(per_node[node]), role=role, task_index=index, port=ports.get(rank),
            # ps tasks hold variables, they need no GPU; the others see the node's GPUs.
            gpus="" if not spec.use_gpu or role is Role.PS else None,
            command=_command(spec, role), daemon=role is not Role.CHIEF,
            max_restarts=spec.max_worker_restarts if role is Role.WORKER else 0,
        ))
    nodes = [
        node_plan(spec, job_id, node, host, per_node[node],
                  gpus=1 if spec.use_gpu and any(p.role is not Role.PS for p in per_node[node]) else 0)
        for node, host in enumerate(hosts)
    ]
    return job_plan(spec, job_id, Strategy.PARAMETER_SERVER, SuccessRule.CHIEF_ZERO,
                    ClusterPlan(world_size=len(tasks), tf_cluster=tf_cluster), nodes)
