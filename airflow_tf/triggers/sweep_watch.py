"""SweepTrigger: watch a sweep's running trials from the triggerer, without a worker slot.

It decides nothing. It returns as soon as there is something for the controller to act on:
a trial's node ended (a slot is free, or the trial failed), a trial wrote a new complete
metrics record (an epoch the early-termination policy may judge), or the sweep's deadline
passed. The controller then reads the news itself through the same backend methods, tells
Optuna, starts the next trials and defers again.

It never fires sooner than ``min_wait_s`` after it started (news waits, and piles up): a trigger
that fires within seconds of the deferral hits an open Airflow 3.3 scheduler race, where the
executor's stale "success" for the deferring process arrives after the resumed attempt is
already running and the scheduler fails the task (apache/airflow#72716, #71580). The sweep's
``decision_interval`` sets it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_tf.backends.base import Backend
from airflow_tf.runtime import node_files
from airflow_tf.triggers.job_watch import ErrorBudget, describe

CHIEF_METRICS = node_files.metrics_file(0)
PEEK_BYTES = 64 << 10


class SweepTrigger(BaseTrigger):
    """``trials``: ``[{"number", "handles", "metrics_offset"}]`` of the running trials."""

    def __init__(self, backend: dict[str, Any], trials: list[dict[str, Any]], deadline: float,
                 watch_metrics: bool = True, poll_interval: float = 1.0, error_budget_s: float = 60.0,
                 stop_grace_s: float = 10.0, min_wait_s: float = 0.0):
        super().__init__()
        self.backend = backend
        self.trials = trials
        self.deadline = deadline
        self.watch_metrics = watch_metrics
        self.poll_interval = poll_interval
        self.error_budget_s = error_budget_s
        self.stop_grace_s = stop_grace_s
        self.min_wait_s = min_wait_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "backend": self.backend, "trials": self.trials, "deadline": self.deadline,
            "watch_metrics": self.watch_metrics, "poll_interval": self.poll_interval,
            "error_budget_s": self.error_budget_s, "stop_grace_s": self.stop_grace_s,
            "min_wait_s": self.min_wait_s,
        })

    def _news(self, backend: Backend) -> list[str]:
        news = []
        for trial in self.trials:
            for handle in trial["handles"]:
                if not backend.poll(handle)["running"]:
                    news.append(f"trial {trial['number']}: node {handle['node_index']} ended")
                    break
            if self.watch_metrics and trial["handles"]:
                data = backend.read_from(trial["handles"][0], CHIEF_METRICS, trial["metrics_offset"], PEEK_BYTES)
                if data and b"\n" in data:
                    news.append(f"trial {trial['number']}: new metrics")
        return news

    async def run(self) -> AsyncIterator[TriggerEvent]:
        backend = Backend.deserialize(self.backend)
        budget = ErrorBudget(self.error_budget_s)
        started = time.monotonic()
        while True:
            try:
                news = await asyncio.to_thread(self._news, backend)
                budget.recover()
            except Exception as exc:  # noqa: BLE001 - a backend hiccup: the trials may be fine
                if budget.fail():
                    yield TriggerEvent({"news": [], "message": f"the trials' backend failed for {budget.elapsed:.1f} s "
                                                                f"({describe(exc)})"})
                    return
                self.log.warning("could not read the running trials (%s); polling on", describe(exc))
                news = []
            if news and time.monotonic() - started >= self.min_wait_s:
                yield TriggerEvent({"news": news})
                return
            if time.time() >= self.deadline:
                yield TriggerEvent({"news": ["max_duration_minutes reached"]})
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        # Mark-failed / clear of the controller while it waits: the user wants the trials gone.
        # (Not cleanup(): that also runs on a triggerer restart, which must not stop training.)
        backend = Backend.deserialize(self.backend)

        def stop() -> None:
            for trial in self.trials:
                for handle in trial["handles"]:
                    try:
                        backend.stop(handle, self.stop_grace_s)
                    except Exception as exc:  # noqa: BLE001 - the teardown task stops it once it can
                        self.log.warning("could not stop trial %s node %s (%s)", trial["number"],
                                         handle["node_index"], describe(exc))

        await asyncio.to_thread(stop)
