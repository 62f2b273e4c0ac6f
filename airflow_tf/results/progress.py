"""Metrics records (one JSON line per epoch, ``runtime.training.log_metrics``) turned into
progress lines for the task log, which metrics files a node's processes write, and the one
reader of those files: complete lines from a byte offset.

A rank may be in the middle of writing a record (a plain ``write()`` of part of a line) when the
trigger reads, and a line may be garbage: only newline-terminated lines are parsed, one that is
not a JSON object is reported once (its bytes are passed over, so it is never seen again), and
the offset after the last complete line is where the next read starts. The trigger's progress
lines and the results' ``history`` both come from ``read_records``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

from airflow_tf.runtime import node_files

HIDDEN_KEYS = frozenset({"epoch", "epochs", "rank", "time"})
RECORD_CHUNK = 4 << 20  # bytes of one metrics file read per poll: a backlog is caught up over polls
MAX_PROGRESS_LINES = 100  # per file and poll; past it, a summary line and the newest few
SHOWN_WHEN_MANY = 10
HISTORY_MAX_BYTES = 1 << 20  # the results' history: the newest records up to this much JSON (an XCom)

# (offset, limit) -> up to ``limit`` bytes of the file from ``offset``; None: no such file (yet).
ReadFrom = Callable[[int, int], "bytes | None"]


@dataclasses.dataclass
class Records:
    records: list[dict[str, Any]]
    problems: list[str]  # one per line passed over: what to warn about, once
    offset: int  # where the next read starts (after the last complete line)


def parse_lines(data: bytes, offset: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The JSON objects in ``data`` (complete lines, read at byte ``offset``); a line that is
    not one is passed over with a problem naming its byte position."""
    records, problems = [], []
    position = offset
    for line in data.split(b"\n")[:-1]:
        at, position = position, position + len(line) + 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            problems.append(f"line at byte {at} is not JSON ({exc}): {line[:80]!r}; skipped")
            continue
        if not isinstance(record, dict):
            problems.append(f"line at byte {at} is not a JSON object: {line[:80]!r}; skipped")
            continue
        records.append(record)
    return records, problems


def read_records(read: ReadFrom, offset: int, limit: int = RECORD_CHUNK) -> Records:
    """The records in the complete lines after ``offset`` (at most ``limit`` bytes of them)."""
    data = read(offset, limit) or b""
    end = data.rfind(b"\n") + 1
    if end:
        records, problems = parse_lines(data[:end], offset)
        return Records(records, problems, offset + end)
    if len(data) < limit:
        return Records([], [], offset)  # nothing new, or a record still being written
    # One line longer than ``limit``: pass over it, up to its newline once there is one.
    position = offset + len(data)
    while True:
        data = read(position, limit) or b""
        newline = data.find(b"\n")
        if newline >= 0:
            return Records([], [f"line at byte {offset} is longer than {limit} bytes; skipped"], position + newline + 1)
        if len(data) < limit:
            return Records([], [], offset)  # still being written: look again next time
        position += len(data)


def read_all_records(read: ReadFrom, limit: int = RECORD_CHUNK) -> Records:
    """Every record of a file, from its start (the results' history)."""
    records, problems, offset = [], [], 0
    while True:
        batch = read_records(read, offset, limit)
        records += batch.records
        problems += batch.problems
        if batch.offset == offset:
            return Records(records, problems, offset)
        offset = batch.offset


def newest(records: list[dict[str, Any]], max_bytes: int = HISTORY_MAX_BYTES) -> list[dict[str, Any]]:
    """The newest records whose JSON fits in ``max_bytes`` (all of them for any usual run)."""
    kept, size = [], 0
    for record in reversed(records):
        size += len(json.dumps(record)) + 2
        if size > max_bytes:
            break
        kept.append(record)
    return kept[::-1]


def merge_histories(attempts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One curve from the attempts of a restarted job: where records carry ``epoch``, an epoch a
    later attempt logged again (it resumed from the checkpoint before it) replaces the earlier
    one's; records without an epoch are kept in order."""
    by_epoch: dict[Any, dict[str, Any]] = {}
    loose: list[dict[str, Any]] = []
    for records in attempts:
        for record in records:
            if "epoch" in record:
                by_epoch[record["epoch"]] = record
            else:
                loose.append(record)
    ordered = [by_epoch[e] for e in sorted(by_epoch, key=lambda e: (not isinstance(e, (int, float)), e))]
    return newest(ordered + loose)


def progress_lines(node_index: int, records: list[dict[str, Any]]) -> list[str]:
    """``node 0 rank 0: epoch 3/10 loss=...`` per record; past MAX_PROGRESS_LINES (a script that
    logs per step), one line saying how many were left out, then the newest SHOWN_WHEN_MANY."""
    lines = [f"node {node_index} {progress_line(record)}" for record in records[-SHOWN_WHEN_MANY:]] \
        if len(records) > MAX_PROGRESS_LINES else [f"node {node_index} {progress_line(r)}" for r in records]
    if len(lines) < len(records):
        lines.insert(0, f"node {node_index}: {len(records)} new records since the last report; the newest "
                        f"{len(lines)} shown")
    return lines


def progress_line(record: Mapping[str, Any]) -> str:
    """``rank 0: epoch 3/10 loss=0.1234 accuracy=0.9876`` from one metrics record."""
    epoch = f"epoch {record.get('epoch')}" + (f"/{record['epochs']}" if record.get("epochs") else "")
    values = " ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(record.items()) if key not in HIDDEN_KEYS
    )
    return f"rank {record.get('rank', '?')}: {epoch} {values}".rstrip()


def metrics_files(node: Mapping[str, Any], world_size: int) -> list[str]:
    """The metrics files a node's processes write (JSON of a NodePlan). Under MPI every rank
    runs from node 0's directory, so node 0 holds all of them."""
    ranks: set[int] = set()
    for process in node["processes"]:
        if process["kind"] == "mpirun":
            ranks.update(range(world_size))
        elif process["kind"] == "rank":
            ranks.add(process["rank"])
    return [node_files.metrics_file(rank) for rank in sorted(ranks)]
