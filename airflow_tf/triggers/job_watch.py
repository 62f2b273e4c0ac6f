"""What the wait trigger has streamed of each node, one poll of every node, and the budget of
backend errors it rides out.

Offsets, not line counts: each poll reads the log and every metrics file from where the last
one stopped (``Backend.read_log`` / ``read_from``), so a poll costs the bytes written since,
whatever the run's length. The offsets are kept in node 0's directory (``WATCH_STATE``), where
any triggerer that can reach the nodes finds them after a restart; a trigger cannot rewrite its
own kwargs. See docs/reliability.md for why there and in what order (lines out first, then the
offsets), which makes a restart stream every line exactly once.

Everything here is synchronous and runs in the trigger's worker thread, except ``accept`` (the
event loop's, between two awaits: a cancelled trigger cannot stop half-way through it).
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from airflow_tf.backends.base import Backend, Handle, NodeState
from airflow_tf.results.progress import progress_lines, read_records
from airflow_tf.runtime import node_files

STATE_VERSION = 1
MAX_STATE_BYTES = 1 << 20
MIN_FAILED_POLLS = 3  # a budget is spent only after this many failed polls, however slow each one was


@dataclasses.dataclass
class Cursor:
    """Where one node's next reads start: its log and each of its metrics files (bytes)."""

    log: int = 0
    metrics: dict[str, int] = dataclasses.field(default_factory=dict)

    def copy(self) -> "Cursor":
        return Cursor(self.log, dict(self.metrics))


@dataclasses.dataclass
class NodeNews:
    """What one poll saw of one node. With ``error`` set nothing else counts: no offset moves."""

    cursor: Cursor
    log: str = ""
    progress: list[str] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    state: NodeState | None = None
    error: BaseException | None = None

    @property
    def anything(self) -> bool:
        return bool(self.log or self.progress or self.problems)


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class JobWatch:
    """The offsets of every node, restored from and saved to node 0's directory."""

    def __init__(self, backend: Backend, handles: list[Handle], metrics_files: list[list[str]]):
        self.backend = backend
        self.handles = handles
        self.cursors = [Cursor(0, {name: 0 for name in files}) for files in metrics_files]
        # Which node incarnations these offsets are for: a relaunched node starts from zero.
        self.key = [[h["node_index"], h.get("started_at")] for h in handles]
        self.restored = False
        self.restore_note: str | None = None
        self.saved: bytes | None = None
        self.can_save = True

    # -- the state file ------------------------------------------------------------------------
    def state(self) -> bytes:
        return json.dumps({
            "version": STATE_VERSION, "nodes": self.key,
            "cursors": [{"log": c.log, "metrics": c.metrics} for c in self.cursors],
        }, sort_keys=True).encode()

    def restore(self) -> str | None:
        """Load the offsets a previous trigger saved (raises on a backend error: retried next
        poll, nothing is streamed before). Returns a note for the log, or None."""
        data = self.backend.read_from(self.handles[0], node_files.WATCH_STATE, 0, MAX_STATE_BYTES)
        self.restored = True
        if not data:
            return None
        try:
            saved = json.loads(data)
            if saved.get("version") != STATE_VERSION or saved.get("nodes") != self.key:
                return "an earlier trigger's offsets are for other nodes (a relaunch): streaming from the start"
            cursors = [Cursor(int(c["log"]), {name: int(o) for name, o in c["metrics"].items()})
                       for c in saved["cursors"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            return "an earlier trigger's offsets could not be read: streaming from the start"
        for mine, theirs in zip(self.cursors, cursors):
            mine.log = theirs.log
            for name in mine.metrics:
                mine.metrics[name] = theirs.metrics.get(name, 0)
        self.saved = self.state()
        return (f"resuming where an earlier trigger stopped: log offsets {[c.log for c in self.cursors]} "
                "(lines before them were streamed already)")

    def save(self) -> None:
        """Write the offsets to node 0's directory when they moved (after their lines went out)."""
        data = self.state()
        if data == self.saved or not self.can_save:
            return
        try:
            self.backend.write_file(self.handles[0], node_files.WATCH_STATE, data)
        except NotImplementedError:
            self.can_save = False  # a backend without it: a restart streams from the start
            raise
        self.saved = data

    # -- one poll ------------------------------------------------------------------------------
    def observe_node(self, index: int, poll: bool = True) -> NodeNews:
        """Read what node ``index`` wrote since its cursor, then (``poll``) its state."""
        handle, news = self.handles[index], NodeNews(self.cursors[index].copy())
        try:
            news.log, news.cursor.log = self.backend.read_log(handle, news.cursor.log)
            for name, offset in news.cursor.metrics.items():
                batch = read_records(lambda at, limit, name=name: self.backend.read_from(handle, name, at, limit),
                                     offset)
                news.cursor.metrics[name] = batch.offset
                news.progress += progress_lines(handle["node_index"], batch.records)
                news.problems += [f"node {handle['node_index']} {name}: {problem}" for problem in batch.problems]
            if poll:
                news.state = self.backend.poll(handle)
        except Exception as exc:  # noqa: BLE001 - any backend failure is one failed poll of this node
            return NodeNews(self.cursors[index].copy(), error=exc)
        return news

    def observe(self, poll: bool = True) -> list[NodeNews]:
        """One poll of every node (restoring saved offsets first, on the first poll that can)."""
        if not self.restored:
            try:
                self.restore_note = self.restore()
            except Exception as exc:  # noqa: BLE001 - node 0 unreachable: read nothing, try again
                return [NodeNews(c.copy(), error=exc) for c in self.cursors]
        return [self.observe_node(i, poll) for i in range(len(self.handles))]

    def accept(self, news: list[NodeNews]) -> None:
        """Move the offsets of every node whose news came without an error."""
        for i, item in enumerate(news):
            if item.error is None:
                self.cursors[i] = item.cursor


class ErrorBudget:
    """Consecutive failed polls, tolerated for ``seconds`` (and at least MIN_FAILED_POLLS polls)."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.first: float | None = None
        self.failures = 0

    def fail(self) -> bool:
        """Count one failed poll; True when the budget is spent."""
        now = self.clock()
        if self.first is None:
            self.first = now
        self.failures += 1
        return self.failures >= MIN_FAILED_POLLS and now - self.first >= self.seconds

    @property
    def elapsed(self) -> float:
        return 0.0 if self.first is None else self.clock() - self.first

    def recover(self) -> tuple[int, float] | None:
        """Reset after a clean poll; (failed polls, seconds) of the streak that ended, if any."""
        if self.first is None:
            return None
        streak = (self.failures, self.elapsed)
        self.first, self.failures = None, 0
        return streak


def failed_nodes(handles: list[Handle], news: list[NodeNews]) -> dict[int, str]:
    """node index -> ``host: error`` for every node this poll could not read."""
    return {h["node_index"]: f"{h.get('host', '?')}: {describe(n.error)}" for h, n in zip(handles, news) if n.error}


def known_states(news: list[NodeNews]) -> list[dict[str, Any]]:
    """Each node's state; a node that could not be polled counts as running (never as ended)."""
    return [n.state if n.state is not None else NodeState.running_now() for n in news]
