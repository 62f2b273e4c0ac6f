"""What a pod's status says about its node: pure functions over the pod's wire form (the dict
``kubernetes_models.to_dict`` makes of the ``V1Pod`` the API returned).

The node's state is its ``node`` container's: terminated → the launcher's exit code (the node's);
running → running. A node container that never ran ends the node without an exit code when the
pod is over (phase Failed/Succeeded: evicted, an init container failed), when a waiting reason
cannot resolve by waiting (an invalid image name), or when the pod is still not running after the
start timeout (Pending: unschedulable for want of GPUs, quota, a matching node). ``explain``
gives the lines that say which of these happened; the backend hands them out with the node's log
tail, so the wait task's failure message names the cause, never a hang.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from airflow_tf.backends import kubernetes_names as names
from airflow_tf.backends.base import NodeState

# Waiting reasons that no amount of waiting fixes: fail at once instead of at the start timeout.
FATAL_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
DISRUPTIONS = {
    "PreemptionByScheduler": "preempted by the scheduler for a higher-priority pod",
    "PreemptionByKubeScheduler": "preempted by the scheduler for a higher-priority pod",
    "EvictionByEvictionAPI": "evicted through the Eviction API (a node drain?)",
    "DeletionByTaintManager": "deleted because its node got a NoExecute taint",
    "DeletionByPodGC": "deleted by the pod garbage collector (its node is gone)",
    "TerminationByKubelet": "terminated by the kubelet (node pressure or shutdown)",
}


def timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def container_status(pod: Mapping[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in (pod.get("status") or {}).get(key) or []:
        if status.get("name") == name:
            return status
    return {}


def _state(status: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    for kind in ("terminated", "running", "waiting"):
        value = (status.get("state") or {}).get(kind)
        if value is not None:
            return kind, value
    return None, {}


def started(pod: Mapping[str, Any]) -> bool:
    """Whether the node container has run (it is running or has ended)."""
    return _state(container_status(pod, names.NODE_CONTAINER))[0] in ("running", "terminated")


def is_pending(pod: Mapping[str, Any]) -> bool:
    """Not started and not over: still waiting to be scheduled, pulled or initialised."""
    phase = (pod.get("status") or {}).get("phase")
    return not started(pod) and phase not in ("Failed", "Succeeded")


def node_state(pod: Mapping[str, Any] | None, started_at: float, start_timeout: float, now: float) -> NodeState:
    if pod is None:
        return NodeState.ended(None, now)  # deleted under us: lost
    kind, state = _state(container_status(pod, names.NODE_CONTAINER))
    if kind == "terminated":
        return NodeState.ended(state.get("exitCode"), timestamp(state.get("finishedAt")) or now)
    if kind == "running":
        return NodeState.running_now()
    if (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded"):
        return NodeState.ended(None, now)  # over before the node ran: evicted, or the init container failed
    if waiting_reasons(pod) & FATAL_WAITING:
        return NodeState.ended(None, now)
    if now - started_at > start_timeout:
        return NodeState.ended(None, now)
    return NodeState.running_now()


def waiting_reasons(pod: Mapping[str, Any]) -> set[str]:
    status = pod.get("status") or {}
    reasons = set()
    for item in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        kind, state = _state(item)
        if kind == "waiting" and state.get("reason"):
            reasons.add(state["reason"])
    return reasons


def _pending_lines(pod: Mapping[str, Any]) -> list[str]:
    name = (pod.get("metadata") or {}).get("name")
    status = pod.get("status") or {}
    lines = []
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") != "True":
            lines.append(f"pod {name} is not scheduled: {condition.get('reason')}: {condition.get('message')}")
    for item in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        kind, state = _state(item)
        if kind == "waiting" and state.get("reason") not in (None, "PodInitializing"):
            lines.append(f"pod {name} container {item.get('name')} is waiting: {state.get('reason')}: "
                         f"{state.get('message') or ''}".rstrip(": "))
    if not lines:
        lines.append(f"pod {name} is {status.get('phase') or 'Pending'} (its init container or image pull has not "
                     "finished)")
    return lines


def explain(pod: Mapping[str, Any] | None, name: str, *, started_at: float, start_timeout: float, now: float,
            pending: list[str] | None = None) -> list[str]:
    """Lines saying why the node ended or has not started (empty when there is nothing to add)."""
    prefix = "[airflow-tf kubernetes]"
    if pod is None:
        return [f"{prefix} pod {name} no longer exists: it was deleted (preemption, a node drain, a person or the "
                "teardown) before its node container recorded an exit code"]
    status = pod.get("status") or {}
    lines = []
    if status.get("reason") == "Evicted":
        lines.append(f"pod {name} was evicted: {status.get('message') or 'node pressure'}")
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            what = DISRUPTIONS.get(condition.get("reason"), condition.get("reason"))
            lines.append(f"pod {name} was {what}: {condition.get('message') or ''}".rstrip(": "))
    kind, state = _state(container_status(pod, names.NODE_CONTAINER))
    if kind == "terminated" and state.get("reason") == "OOMKilled":
        lines.append(f"pod {name}: the node container was OOMKilled (exit {state.get('exitCode')}): raise "
                     "resources['limits']['memory'] or lower the batch size")
    init_kind, init_state = _state(container_status(pod, names.INIT_CONTAINER, init=True))
    if init_kind == "terminated" and init_state.get("exitCode"):
        lines.append(f"pod {name}: the init container {names.INIT_CONTAINER} failed with exit "
                     f"{init_state.get('exitCode')} ({init_state.get('reason')}); its last lines are above")
    if not started(pod) and status.get("phase") not in ("Failed", "Succeeded"):
        reasons = waiting_reasons(pod) & FATAL_WAITING
        if reasons:
            lines.append(f"pod {name} cannot start: {', '.join(sorted(reasons))}")
        elif now - started_at > start_timeout:
            still = f"; pods of this job still Pending: {', '.join(pending)}" if pending else ""
            lines.append(f"pod {name} did not start within start_timeout={start_timeout:g} s{still}. Every node "
                         "must be running for the job to start (a gang): check GPU capacity, quotas, node "
                         "selectors and taints")
        lines += _pending_lines(pod)
    elif status.get("phase") in ("Failed", "Succeeded") and not started(pod) and not lines:
        lines.append(f"pod {name} ended ({status.get('phase')}: {status.get('reason') or ''} "
                     f"{status.get('message') or ''}) before its node container ran".replace("  ", " "))
    return [f"{prefix} {line}" for line in lines]
