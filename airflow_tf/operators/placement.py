"""Where a single-host backend's tasks may run when the executor spreads tasks over machines.

LocalBackend starts nodes on the worker that runs the launch task, and its wait trigger and
teardown read and stop them through that machine's files and pids. On CeleryExecutor (or any
executor with workers on several machines) the launch, the wait's trigger and the teardown
land wherever a worker or triggerer is free, so the nodes would be out of sight of the wait
and out of reach of the teardown. The plan task therefore refuses such a job before any node
starts, unless the group is pinned to one host:

- every task of the group on one queue, not ``[operators] default_queue`` (which, in a
  multi-host deployment, every worker serves), served by the workers of one host; and
- ``[triggerer] queues_enabled = True``, so the wait's trigger is registered with that queue
  and only a triggerer started with ``--queues <queue>`` (on that host) runs it.

Airflow cannot tell how many hosts serve a queue; that part is the deployment's promise
(docs/deployment.md). If it is broken, the trigger's ``watch_problem`` check reports the nodes
as out of its sight (and stops nothing) instead of calling them lost.
"""

from __future__ import annotations

from typing import Any

# Executors whose tasks all run on the machine of the scheduler (dag.test() uses none).
SINGLE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def executor_name(task: Any) -> str:
    """The class name of the executor that runs ``task``: its own ``executor=``, else the first of
    ``[core] executor`` (entries may be ``alias:module.Class``, ``module.Class`` or a short name)."""
    from airflow.configuration import conf

    name = getattr(task, "executor", None) or conf.get("core", "executor", fallback="LocalExecutor").split(",")[0]
    return name.strip().split(":")[-1].rsplit(".", 1)[-1]


def pinning_problems(tasks: dict[str, str], default_queue: str, queues_enabled: bool) -> list[str]:
    """What keeps a group's tasks (``{task_id: queue}``) from being pinned to one host."""
    problems = []
    queues = set(tasks.values())
    if len(queues) > 1:
        listed = ", ".join(f"{task}: {queue!r}" for task, queue in tasks.items())
        problems.append(f"its tasks are on different queues ({listed})")
    elif queues == {default_queue}:
        problems.append(f"its tasks are on the default queue {default_queue!r}, which any worker may serve")
    if not queues_enabled:
        problems.append("[triggerer] queues_enabled is off, so its wait trigger may run on any triggerer")
    return problems


def check_single_host(plan_task: Any, backend_name: str) -> None:
    """Raise (failing the plan task, before any node starts) when the group's tasks may land on
    different machines. ``plan_task`` is the running plan operator; its group holds the rest."""
    executor = executor_name(plan_task)
    if executor in SINGLE_MACHINE_EXECUTORS:
        return
    from airflow.configuration import conf
    from airflow.sdk.exceptions import AirflowFailException

    group = plan_task.task_group
    tasks = {task_id.rsplit(".", 1)[-1]: task.queue for task_id, task in group.children.items()}
    default_queue = conf.get("operators", "default_queue", fallback="default")
    queues_enabled = conf.getboolean("triggerer", "queues_enabled", fallback=False)
    problems = pinning_problems(tasks, default_queue, queues_enabled)
    if not problems:
        return
    raise AirflowFailException(
        f"{backend_name} runs the nodes of {group.group_id!r} on the worker that launches them, but {executor} "
        f"may run its launch, wait and teardown on different machines: {'; '.join(problems)}. Pin the group to "
        "one host: give it a queue that only that host's workers serve (queue='gpu_host_1' on the group), "
        "set [triggerer] queues_enabled = True and run a triggerer on that host with "
        "`airflow triggerer --queues gpu_host_1`; or run the nodes on other machines with SSHBackend, "
        "DockerBackend or KubernetesBackend, which any worker and triggerer can reach (docs/deployment.md)."
    )
