"""Job-level restarts (``max_restarts``): when a node fails and restarts remain, the wait task
stops every node and starts the whole job again as the next attempt, then watches it again.

Why the wait task and not Airflow retries: Airflow has no group-level retry, and retrying the
launch tasks alone cannot restart a distributed job (the survivors would wait for a peer that
re-joins a cluster they already left). The wait task is the one place that sees the failure, holds
every node's handle, and runs on a worker (where launches run: source bundle, secrets). So a
restart is: the trigger stopped the survivors (it does on any failure) -> the wait stops every
node once more through the backend -> starts every node from the same plan with
``NodeLaunch.attempt`` + 1 (each node's next try directory / container; the job directory and its
``outputs/``, where checkpoints live, stay) -> defers again. Like Kubeflow's ``backoffLimit`` with
its ExitCode restart policy, and Ray Train's ``FailureConfig(max_failures)``.

Also here: which try of a node is the current one, for a re-run launch (``reattach``) and a
re-run wait (``current_tries``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_tf.backends.base import Backend, Handle
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import ClusterPlan, NodeLaunch, NodePlan

MAX_PARALLEL_STARTS = 16


def _exit_codes(name: str, value: Any) -> list[int] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 255 for v in value):
        raise SpecError(f"{name} must be a list of exit codes, each an int 1-255 (e.g. [137, 143]: killed, "
                        f"terminated), got {value!r}")
    return sorted(set(value))


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """:param max_restarts: how many times the whole job is restarted after a node fails (0: never).
    :param restart_on_exit_codes: restart only for these node exit codes (None: any failure that is
        not permanent). A node lost without an exit code (its host or runtime killed) counts as 137.
    :param permanent_exit_codes: never restart for these (a bug in the script will not go away).
    """

    max_restarts: int = 0
    restart_on_exit_codes: list[int] | None = None
    permanent_exit_codes: list[int] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.max_restarts, bool) or not isinstance(self.max_restarts, int) or self.max_restarts < 0:
            raise SpecError(f"max_restarts must be an int >= 0 (0: a failed job is not restarted), "
                            f"got {self.max_restarts!r}")
        restart_on = _exit_codes("restart_on_exit_codes", self.restart_on_exit_codes)
        permanent = _exit_codes("permanent_exit_codes", self.permanent_exit_codes)
        if restart_on and permanent and set(restart_on) & set(permanent):
            raise SpecError(f"exit code(s) {sorted(set(restart_on) & set(permanent))} are in both "
                            "restart_on_exit_codes and permanent_exit_codes")
        object.__setattr__(self, "restart_on_exit_codes", restart_on)
        object.__setattr__(self, "permanent_exit_codes", permanent)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def decide(self, exit_code: int | None, restarts_done: int) -> str | None:
        """Why the job is not restarted (None: restart it)."""
        code = 137 if exit_code is None else exit_code  # lost: killed from outside, like a preemption
        if restarts_done >= self.max_restarts:
            return (f"no restart left (max_restarts={self.max_restarts})" if self.max_restarts
                    else "max_restarts is 0")
        if self.permanent_exit_codes and code in self.permanent_exit_codes:
            return f"exit code {code} is in permanent_exit_codes {self.permanent_exit_codes}"
        if self.restart_on_exit_codes is not None and code not in self.restart_on_exit_codes:
            return f"exit code {code} is not in restart_on_exit_codes {self.restart_on_exit_codes}"
        return None


def restart_job(backend: Backend, plan: Mapping[str, Any], handles: list[Handle], *, source_directory: str,
                environment: Mapping[str, str], secrets: Mapping[str, str], attempt: int,
                grace_s: float) -> list[Handle]:
    """Stop every node of the failed attempt, then start all of them as ``attempt`` (in parallel:
    Horovod's rendezvous and TF's cluster wait only so long for the last node)."""
    for handle in handles:
        backend.stop(handle, grace_s)
    cluster = ClusterPlan.from_json(plan["cluster"])
    launches = [NodeLaunch(NodePlan.from_json(node), cluster, dict(environment), attempt) for node in plan["nodes"]]
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_STARTS, len(launches))) as pool:
        futures = [pool.submit(backend.start, launch, source_directory, secrets) for launch in launches]
        started, errors = [], []
        for future in futures:
            try:
                started.append(future.result())
            except Exception as exc:  # noqa: BLE001 - every node is tried; then nothing half-started is left
                errors.append(exc)
    if errors:
        for handle in started:
            backend.stop(handle, grace_s)
        raise errors[0]
    return sorted(started, key=lambda h: h["node_index"])


def current_tries(backend: Backend, handles: list[dict[str, Any]], log) -> list[dict[str, Any]]:
    """Each node's latest try: the launches' handles, unless a restart (an earlier try of this
    wait task) started newer ones: a retried wait must watch the attempt that runs now."""
    try:
        found = [backend.find_node(h["job_id"], h["node_index"]) for h in handles]
    except Exception as exc:  # noqa: BLE001 - the launches' handles are still right unless a restart happened
        log.warning("could not look up the nodes' current tries (%s); watching the launched ones", exc)
        return handles
    return [new if new and int(new.get("attempt", 1)) > int(old.get("attempt", 1)) else old
            for old, new in zip(handles, found)]


def reattach(backend: Backend, launch: NodeLaunch) -> dict[str, Any] | None:
    """The rule for a re-run launch (docs/reliability.md): the node's latest try still healthy and
    running this job attempt -> its handle (never a duplicate); anything else is left to
    ``Backend.start``, which stops what earlier tries left before the new try starts."""
    node = launch.node
    current = backend.find_node(node.job_id, node.node_index)
    if current is None or int(current.get("attempt", 1)) != launch.attempt:
        return None
    return current if backend.poll(current)["running"] else None
