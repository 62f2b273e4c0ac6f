"""TrainingJobTrigger: watch every node of a job from the triggerer.

It streams each node's new log lines into the task log, decides the outcome by the plan's
success rule, stops every other node the moment one fails, and hands back per-node results.
Backend calls are blocking file/network I/O, so they run in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_tf.backends.base import Backend
from airflow_tf.cluster.outcome import FAILED, SUCCESS, decide
from airflow_tf.results.progress import progress_line
from airflow_tf.runtime import node_files

CHIEF_METRICS = node_files.metrics_file(0)


class TrainingJobTrigger(BaseTrigger):
    def __init__(
        self,
        backend: dict[str, Any],
        job_id: str,
        handles: list[dict[str, Any]],
        success_rule: str,
        poll_interval: float = 1.0,
        tail_lines: int = 30,
        stop_grace_s: float = 10.0,
        metrics_files: list[list[str]] | None = None,
    ):
        super().__init__()
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
            },
        )

    def _backend(self) -> Backend:
        return Backend.deserialize(self.backend)

    def _stream_logs(self, backend: Backend, offsets: list[int]) -> None:
        for i, handle in enumerate(self.handles):
            text, offsets[i] = backend.read_log(handle, offsets[i])
            for line in text.splitlines():
                self.log.info("%s", line)

    def _report_progress(self, backend: Backend, seen: dict[str, int]) -> None:
        """Log each new epoch record as ``node 0 rank 0: epoch 3/10 loss=0.1234 ...``."""
        for handle, files in zip(self.handles, self.metrics_files):
            for name in files:
                records = backend.read_file(handle, name)
                lines = [line for line in (records or "").splitlines() if line.strip()]
                key = f"{handle['node_index']}/{name}"
                for line in lines[seen.get(key, 0):]:
                    self.log.info("node %s %s", handle["node_index"], progress_line(json.loads(line)))
                seen[key] = len(lines)

    def _stop_all(self, backend: Backend) -> None:
        for handle in self.handles:
            backend.stop(handle, self.stop_grace_s)

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
        metrics_text = backend.read_file(chief, CHIEF_METRICS) or ""
        history = [json.loads(line) for line in metrics_text.splitlines() if line.strip()]
        tensorboard = backend.read_file(chief, node_files.TENSORBOARD_DIR)
        model_path = backend.read_file(chief, node_files.MODEL_PATH)
        return {
            "job_id": self.job_id,
            "nodes": nodes,
            "metrics": history[-1] if history else {},
            "epochs_logged": len(history),
            "history": history,
            "tensorboard_dir": backend.host_path(chief, tensorboard.strip()) if tensorboard else None,
            "model_path": backend.host_path(chief, model_path.strip()) if model_path else None,
            "output_dir": backend.output_location(self.job_id),
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        backend = self._backend()
        offsets = [0] * len(self.handles)
        seen_metrics: dict[str, int] = {}
        while True:
            await asyncio.to_thread(self._stream_logs, backend, offsets)
            await asyncio.to_thread(self._report_progress, backend, seen_metrics)
            states = await asyncio.to_thread(lambda: [backend.poll(h) for h in self.handles])
            outcome = decide(self.success_rule, states)
            if outcome.status == FAILED:
                # Stop the survivors first: a collective whose peer died only hangs.
                await asyncio.to_thread(self._stop_all, backend)
                await asyncio.to_thread(self._stream_logs, backend, offsets)
                failed = self.handles[outcome.failed_node]
                tail = await asyncio.to_thread(backend.read_tail, failed, self.tail_lines)
                yield TriggerEvent({
                    "status": FAILED,
                    "job_id": self.job_id,
                    "failed_node": outcome.failed_node,
                    "exit_code": outcome.exit_code,
                    "tail": tail,
                })
                return
            if outcome.status == SUCCESS:
                await asyncio.to_thread(self._stream_logs, backend, offsets)
                results = await asyncio.to_thread(self._results, backend, states)
                yield TriggerEvent({"status": SUCCESS, **results})
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        # Mark-failed / clear of the waiting task: the user wants the job gone.
        # (Not cleanup(): that also runs on a triggerer restart, which must not stop training.)
        self.log.info("stopping all %d node(s) of job %s", len(self.handles), self.job_id)
        await asyncio.to_thread(self._stop_all, self._backend())
