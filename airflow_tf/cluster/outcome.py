"""Is the job still running, done, or failed? A pure decision over node states per success rule."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from airflow_tf.cluster.plan import SuccessRule

RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"


@dataclasses.dataclass(frozen=True)
class Outcome:
    status: str
    failed_node: int | None = None
    exit_code: int | None = None


def decide(success_rule: str, states: Sequence[Mapping]) -> Outcome:
    """``states[i]`` is node i's ``{"running": bool, "exit_code": int | None}``.

    Under both rules the first node that ended non-zero (or vanished without a code) fails the
    job at once. See ``SuccessRule`` for when it succeeds.
    """
    try:
        rule = SuccessRule(success_rule)
    except ValueError:
        raise ValueError(f"unknown success rule {success_rule!r}") from None
    for index, state in enumerate(states):
        if not state["running"] and state["exit_code"] != 0:
            return Outcome(FAILED, failed_node=index, exit_code=state["exit_code"])
    if rule is SuccessRule.CHIEF_ZERO:
        return Outcome(SUCCESS) if not states[0]["running"] else Outcome(RUNNING)
    if all(not state["running"] for state in states):
        return Outcome(SUCCESS)
    return Outcome(RUNNING)
