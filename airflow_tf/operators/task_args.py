"""Airflow's task-level arguments on a training group, and which of its tasks get each.

A group is four kinds of task (plan -> launch[n] -> wait -> teardown); an argument users pass
"to the operator" means something on some of them only. The table is the documentation
(docs/reliability.md, "Which knob does what"):

- scheduling (``queue``, ``pool``, ``pool_slots``, ``priority_weight``, ``weight_rule``,
  ``owner``, ``email*``): every task — a queue pins the whole job's tasks to one set of workers.
- ``retries`` / ``retry_delay`` / ``retry_exponential_backoff`` / ``max_retry_delay``: every task.
  They retry the *task*, never the job: a re-run launch re-attaches to its running node
  (``restarts.reattach``), a re-run wait resumes watching, and a training failure fails the wait
  without a retry (restarting the job is ``max_restarts``, owned by the wait task).
- ``execution_timeout``: plan and launch (each takes seconds). The job's own limits are
  ``timeout`` (the wait) and ``max_run_duration_seconds`` (the job's wall clock).
- ``on_failure_callback`` / ``on_retry_callback``: plan, launch and wait (the teardown fails
  *because* the wait did: called there too it would report one failure twice).
- ``on_success_callback``: the wait (the job succeeded). ``on_execute_callback``: the plan
  (the job starts).
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow_tf.cluster.errors import SpecError

ALL, PLAN, LAUNCH, WAIT, TEARDOWN = "all", "plan", "launch", "wait", "teardown"
TASKS = (PLAN, LAUNCH, WAIT, TEARDOWN)

# argument -> the tasks it applies to
APPLIES_TO: dict[str, tuple[str, ...]] = {
    **{name: TASKS for name in ("queue", "pool", "pool_slots", "priority_weight", "weight_rule", "owner", "email",
                                "email_on_failure", "email_on_retry", "retries", "retry_delay",
                                "retry_exponential_backoff", "max_retry_delay")},
    "execution_timeout": (PLAN, LAUNCH),
    "on_failure_callback": (PLAN, LAUNCH, WAIT),
    "on_retry_callback": (PLAN, LAUNCH, WAIT),
    "on_success_callback": (WAIT,),
    "on_execute_callback": (PLAN,),
}
TASK_ARGS = frozenset(APPLIES_TO)
# A retried launch must come back within Horovod's start timeout (120 s) for the job to form:
# Airflow's default retry_delay (300 s) never does. Used unless the user or default_args set one.
LAUNCH_RETRY_DELAY = datetime.timedelta(seconds=10)
# Names users bring from Airflow 2 that Airflow 3 removed, and what to use instead.
REMOVED = {"sla": "Airflow 3 removed task SLAs: use a DAG-level deadline (airflow.sdk.definitions.deadline) or "
                  "timeout= / max_run_duration_seconds= on the training step"}


def _seconds_or_delta(name: str, value: Any) -> datetime.timedelta:
    if isinstance(value, datetime.timedelta) and value.total_seconds() >= 0:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return datetime.timedelta(seconds=value)
    raise SpecError(f"{name} must be a datetime.timedelta or a number of seconds >= 0, got {value!r}")


def _callbacks(name: str, value: Any):
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(callable(item) for item in items):
        raise SpecError(f"{name} must be a callable or a list of callables (Airflow's task callbacks), got {value!r}")
    return value


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SpecError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{name} must be True or False, got {value!r}")
    return value


def _emails(name: str, value: Any):
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.strip() for v in value):
        return list(value)
    raise SpecError(f"{name} must be an address or a list of addresses, got {value!r}")


CHECKS = {
    "queue": _text, "pool": _text, "owner": _text, "weight_rule": _text, "email": _emails,
    "pool_slots": lambda n, v: _int(n, v, 1), "priority_weight": lambda n, v: _int(n, v, -(2**31)),
    "retries": lambda n, v: _int(n, v, 0), "email_on_failure": _flag, "email_on_retry": _flag,
    "retry_exponential_backoff": lambda n, v: v if isinstance(v, (bool, int, float)) else _flag(n, v),
    "retry_delay": _seconds_or_delta, "max_retry_delay": _seconds_or_delta, "execution_timeout": _seconds_or_delta,
    "on_failure_callback": _callbacks, "on_retry_callback": _callbacks, "on_success_callback": _callbacks,
    "on_execute_callback": _callbacks,
}
assert set(CHECKS) == TASK_ARGS


def split_task_args(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(task_args, rest)``: the task-level arguments, checked, and every other option."""
    for name, why in REMOVED.items():
        if name in options:
            raise SpecError(f"{name}: {why}")
    task_args = {name: CHECKS[name](name, value) for name, value in options.items() if name in TASK_ARGS}
    return task_args, {k: v for k, v in options.items() if k not in TASK_ARGS}


def for_task(task: str, task_args: dict[str, Any], default_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The keyword arguments one task of the group gets."""
    kwargs = {name: value for name, value in task_args.items() if task in APPLIES_TO[name]}
    inherited = default_args or {}
    if task == LAUNCH and "retry_delay" not in kwargs and "retry_delay" not in inherited:
        kwargs["retry_delay"] = LAUNCH_RETRY_DELAY
    return kwargs
