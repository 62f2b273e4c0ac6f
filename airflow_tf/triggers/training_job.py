"""TrainingJobTrigger: watch every node of a job from the triggerer.

It streams each node's new log lines and progress lines into the task log, decides the outcome
by the plan's success rule, stops every other node the moment one fails, and hands back
per-node results. Backend calls are blocking file/network I/O, so they run in a thread, off the
event loop.

It never kills a healthy job: a backend error (a host that stopped answering, a daemon being
restarted) is a warning, tolerated for ``error_budget_s`` of consecutive failed polls, and an
outcome is only ever decided from states actually read, never from an error. Offsets live in
node 0's directory (``job_watch``), so a restarted triggerer streams each line exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_tf.backends.base import Backend
from airflow_tf.cluster.outcome import FAILED, SUCCESS, decide
from airflow_tf.operators.secrets import redact, resolve
from airflow_tf.results.curves import preload_in_background as preload_curves_in_background
from airflow_tf.results.curves import write_job_curves
from airflow_tf.results.progress import newest, read_all_records
from airflow_tf.runtime import node_files
from airflow_tf.triggers.job_watch import ErrorBudget, JobWatch, NodeNews, describe, failed_nodes, known_states
from airflow_tf.triggers.node_exits import NodeExits

CHIEF_METRICS = node_files.metrics_file(0)
DEFAULT_ERROR_BUDGET_S = 60.0
HISTORY_READ_CHUNK = 64 << 20  # the chief's whole metrics file at the end: few reads (Docker streams each)
MAX_DRAIN_POLLS = 64  # after the end, read on until nothing is new (a read is at most 1 MiB of log)


class TrainingJobTrigger(BaseTrigger):
    def __init__(
        self,
        backend: dict[str, Any],
        job_id: str,
        handles: list[dict[str, Any]],
        success_rule: str,
        poll_interval: float = 1.0,
        tail_lines: int = 50,  # a peer's shutdown traceback (~35 lines) must not hide the failing rank's line
        stop_grace_s: float = 10.0,
        metrics_files: list[list[str]] | None = None,
        secret_references: dict[str, str] | None = None,
        error_budget_s: float = DEFAULT_ERROR_BUDGET_S,
        max_run_duration_s: float | None = None,
        job_started_at: float | None = None,
        resume: dict[str, Any] | None = None,
    ):
        super().__init__()
        # What the wait task needs back with the event (attempt number, earlier attempts): carried
        # in the event itself, as dag.test() resumes a task with the event alone (no next_kwargs).
        self.resume = resume
        # When the job's first attempt started (None: its nodes' start): max_run_duration_s counts
        # from there, so a restarted job keeps its wall clock.
        self.job_started_at = job_started_at
        # The job's wall-clock limit, counted from its first node's start (handles carry it, so
        # a restarted trigger counts from the same instant).
        self.max_run_duration_s = max_run_duration_s
        # Seconds of consecutive failed polls ridden out before the wait fails (see ErrorBudget).
        self.error_budget_s = float(error_budget_s)
        # secret_environment_variables' references (never values): looked up in the triggerer,
        # so node lines that print a secret are masked before they reach the task log.
        self.secret_references = dict(secret_references or {})
        self._secrets: list[str] = []
        # Per node, the metrics files its ranks write (progress lines come from these).
        self.metrics_files = metrics_files or [[CHIEF_METRICS]] + [[] for _ in handles[1:]]
        self.backend = backend
        self.job_id = job_id
        self.handles = handles
        self.success_rule = success_rule
        self.poll_interval = poll_interval
        self.tail_lines = tail_lines
        self.stop_grace_s = stop_grace_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "backend": self.backend,
                "job_id": self.job_id,
                "handles": self.handles,
                "success_rule": self.success_rule,
                "poll_interval": self.poll_interval,
                "tail_lines": self.tail_lines,
                "stop_grace_s": self.stop_grace_s,
                "metrics_files": self.metrics_files,
                "secret_references": self.secret_references,
                "error_budget_s": self.error_budget_s,
                "max_run_duration_s": self.max_run_duration_s,
                "job_started_at": self.job_started_at,
                "resume": self.resume,
            },
        )

    def _event(self, payload: dict[str, Any]) -> TriggerEvent:
        if self.resume is not None:
            payload = {**payload, "resume": {**self.resume, "handles": self.handles, "job_started_at": self.job_started_at}}
        return TriggerEvent(payload)

    def _backend(self) -> Backend:
        return Backend.deserialize(self.backend)

    def _emit(self, watch: JobWatch, news: list[NodeNews]) -> None:
        """Log what this poll read (node lines, then ``node 0 rank 0: epoch 3/10 loss=...``
        progress lines, then a warning per metrics line passed over) and move the offsets past it.

        Synchronous on purpose: no await between the lines going out and the offsets moving, so
        a trigger cancelled by a triggerer restart has either done both or neither."""
        for item in news:
            if item.error is not None:
                continue
            for line in item.log.splitlines():
                self.log.info("%s", redact(line, self._secrets))
            for line in item.progress:
                self.log.info("%s", redact(line, self._secrets))
            for problem in item.problems:
                self.log.warning("%s", redact(problem, self._secrets))
        watch.accept(news)

    async def _save(self, watch: JobWatch) -> None:
        """Persist the offsets after their lines went out. Shielded: a cancellation (triggerer
        shutdown) while the write runs lets it finish, so the saved offsets match the log."""
        try:
            await asyncio.shield(asyncio.to_thread(watch.save))
        except NotImplementedError:
            self.log.warning("%s cannot keep the trigger's offsets with the job: after a triggerer restart, "
                             "node logs are streamed again from the start", type(watch.backend).__name__)
        except Exception as exc:  # noqa: BLE001 - the next save carries the same offsets
            self.log.warning("could not save the streamed offsets to node 0 (%s); retried next poll", describe(exc))

    def _stop_all(self, backend: Backend) -> None:
        """Stop every node; one that cannot be reached does not keep the others running."""
        for handle in self.handles:
            try:
                backend.stop(handle, self.stop_grace_s)
            except Exception as exc:  # noqa: BLE001 - the teardown task stops it once it can
                self.log.warning("could not stop node %s on %s (%s); the teardown task will", handle["node_index"],
                                 handle.get("host"), describe(exc))

    async def _drain(self, watch: JobWatch) -> dict[int, str]:
        """After the outcome: stream on until no node has anything new (each read is bounded).
        Returns the nodes that could not be read (their last lines stay in their log file)."""
        news: list[NodeNews] = []
        for _ in range(MAX_DRAIN_POLLS):
            news = await asyncio.to_thread(watch.observe, False)
            self._emit(watch, news)
            await self._save(watch)
            if not any(item.anything for item in news):
                break
        return failed_nodes(self.handles, news)

    def _results(self, backend: Backend, states: list[dict]) -> dict[str, Any]:
        nodes = []
        for handle, state in zip(self.handles, states):
            ended_at = state.get("ended_at")
            nodes.append({
                "node_index": handle["node_index"],
                "host": handle["host"],
                "exit_code": state["exit_code"],
                "duration_s": round(ended_at - handle["started_at"], 3) if ended_at else None,
            })
        chief = self.handles[0]
        # The same reader as the progress lines (complete JSON lines only), from the start.
        records = read_all_records(lambda at, limit: backend.read_from(chief, CHIEF_METRICS, at, limit),
                                   HISTORY_READ_CHUNK).records
        tensorboard = backend.read_file(chief, node_files.TENSORBOARD_DIR)
        model_path = backend.read_file(chief, node_files.MODEL_PATH)
        output_dir = backend.output_location(self.job_id)
        return {
            "job_id": self.job_id,
            "nodes": nodes,
            "metrics": records[-1] if records else {},
            "epochs_logged": len(records),
            "history": newest(records),  # an XCom: the newest HISTORY_MAX_BYTES of it (all, usually)
            "tensorboard_dir": backend.host_path(chief, tensorboard.strip()) if tensorboard else None,
            "model_path": backend.host_path(chief, model_path.strip()) if model_path else None,
            "output_dir": output_dir,
            "curves_png": self._curves(records, output_dir),
        }

    def _curves(self, records: list[dict], output_dir: str) -> str | None:
        """curves.png in the outputs, drawn here when they are on this machine (the wait task
        draws it otherwise, and again when earlier attempts' epochs must be merged in)."""
        try:
            return write_job_curves(newest(records), output_dir, self.job_id)
        except Exception as exc:  # noqa: BLE001 - a picture is never worth failing a finished job
            self.log.warning("could not draw the curves (%s); the wait task tries again", describe(exc))
            return None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.secret_references:
            self._secrets = list((await asyncio.to_thread(resolve, self.secret_references)).values())
        backend = self._backend()
        problems = await asyncio.to_thread(self._watch_problems, backend, range(len(self.handles)))
        if problems:
            yield self._cannot_see(problems)
            return
        # A node's exit ends the pause between two polls at once (LocalBackend: a pidfd), so a
        # finished job is reported without waiting for the next poll.
        exits = await asyncio.to_thread(NodeExits.open, backend, self.handles)
        # matplotlib imported while the job runs, so the curves drawn when it ends cost ~0.1 s,
        # not the ~1 s import, between the last node's exit and the wait's end.
        preload_curves_in_background()
        try:
            async for event in self._watch(backend, exits):
                yield event
                return
        finally:
            exits.close()

    async def _watch(self, backend: Backend, exits: NodeExits) -> AsyncIterator[TriggerEvent]:
        """Poll every node until the job's outcome is known; yields exactly one event."""
        watch = JobWatch(backend, self.handles, self.metrics_files)
        budget = ErrorBudget(self.error_budget_s)
        while True:
            news = await asyncio.to_thread(watch.observe)
            if watch.restore_note:
                self.log.info("%s", watch.restore_note)
                watch.restore_note = None
            self._emit(watch, news)
            if news[0].error is None:  # else node 0's directory is out of reach too (and warned about)
                await self._save(watch)
            errors = failed_nodes(self.handles, news)
            outcome = decide(self.success_rule, known_states(news))
            # A failure read from a node is real even while another node cannot be read; a success
            # needs every node read, and a node that could not be read is never "ended".
            if errors and outcome.status != FAILED:
                if budget.fail():
                    yield self._out_of_budget(budget, errors)
                    return
                self._warn(budget, errors)
                await asyncio.sleep(self.poll_interval)
                continue
            if not errors and (streak := budget.recover()):
                self.log.info("every node answers again, after %d failed poll(s) over %.1f s", *streak)
            if outcome.status == FAILED:
                if news[outcome.failed_node].state["exit_code"] is None:  # "lost": or is it out of sight?
                    problems = await asyncio.to_thread(self._watch_problems, backend, [outcome.failed_node])
                    if problems:
                        yield self._cannot_see(problems)
                        return
                # Stop the survivors first: a collective whose peer died only hangs.
                await asyncio.to_thread(self._stop_all, backend)
                await self._drain(watch)
                failed = self.handles[outcome.failed_node]
                try:
                    tail = await asyncio.to_thread(backend.read_tail, failed, self.tail_lines)
                except Exception as exc:  # noqa: BLE001 - the failure itself was read; its tail is a bonus
                    tail = [f"<its last lines could not be read: {describe(exc)}>"]
                yield self._event({
                    "status": FAILED,
                    "job_id": self.job_id,
                    "failed_node": outcome.failed_node,
                    "exit_code": outcome.exit_code,
                    "tail": [redact(line, self._secrets) for line in tail],
                })
                return
            if outcome.status == SUCCESS:
                # The job did succeed; its last lines and results must be read before it is reported.
                errors, results = await self._drain(watch), None
                if not errors:
                    try:
                        results = await asyncio.to_thread(self._results, backend, known_states(news))
                    except Exception as exc:  # noqa: BLE001 - read them again next poll
                        errors = {0: f"reading the results: {describe(exc)}"}
                if errors:
                    if budget.fail():
                        yield self._out_of_budget(budget, errors)
                        return
                    self._warn(budget, errors)
                    await asyncio.sleep(self.poll_interval)
                    continue
                yield self._event({"status": SUCCESS, **results})
                return
            if self._over_time():
                await asyncio.to_thread(self._stop_all, backend)
                await self._drain(watch)
                yield self._over_time_event()
                return
            await exits.pause(self.poll_interval)

    def _watch_problems(self, backend: Backend, indexes) -> list[str]:
        problems = []
        for i in indexes:
            try:
                problem = backend.watch_problem(self.handles[i])
            except Exception:  # noqa: BLE001 - an advisory check: its own failure proves nothing
                problem = None
            if problem:
                problems.append(problem)
        return problems

    def _cannot_see(self, problems: list[str]) -> TriggerEvent:
        return self._event({
            "status": FAILED, "job_id": self.job_id, "retryable": False,
            "message": (f"training job {self.job_id}: this trigger cannot see its node(s), so it cannot tell how "
                        f"they are doing: {'; '.join(problems)}. Nothing was stopped: nodes out of this trigger's "
                        "sight may still be running where they were started."),
        })

    def _over_time(self) -> bool:
        if self.max_run_duration_s is None:
            return False
        started = self.job_started_at or min(h["started_at"] for h in self.handles)
        return time.time() - started > self.max_run_duration_s

    def _over_time_event(self) -> TriggerEvent:
        return self._event({
            "status": FAILED, "job_id": self.job_id, "retryable": False,
            "message": (f"training job {self.job_id} ran longer than max_run_duration_seconds "
                        f"({self.max_run_duration_s:g} s, counted from its first node's start): every node was "
                        "stopped"),
        })

    def _warn(self, budget: ErrorBudget, errors: dict[int, str]) -> None:
        self.log.warning("could not read node(s) %s (%s); failed poll %d in a row, %.1f s since the first: nothing "
                         "is decided meanwhile, the wait gives up after %g s of this", sorted(errors),
                         "; ".join(errors.values()), budget.failures, budget.elapsed, self.error_budget_s)

    def _out_of_budget(self, budget: ErrorBudget, errors: dict[int, str]) -> TriggerEvent:
        return self._event({
            "status": FAILED, "job_id": self.job_id, "retryable": True,
            "message": (f"training job {self.job_id}: its backend failed on {budget.failures} consecutive polls over "
                        f"{budget.elapsed:.1f} s (error_budget {self.error_budget_s:g} s); last errors, by node: "
                        + "; ".join(f"node {i}: {error}" for i, error in sorted(errors.items()))
                        + ". Its outcome is unknown and nothing was stopped by the wait: the nodes may still be "
                        "running (the teardown task stops what it can reach; a retry of the wait task resumes "
                        "watching where this one stopped)."),
        })

    async def on_kill(self) -> None:
        # Mark-failed / clear of the waiting task: the user wants the job gone.
        # (Not cleanup(): that also runs on a triggerer restart, which must not stop training.)
        self.log.info("stopping all %d node(s) of job %s", len(self.handles), self.job_id)
        await asyncio.to_thread(self._stop_all, self._backend())
