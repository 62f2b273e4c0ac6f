"""Reading from a container: its files (``ContainerFiles``, a ``node_io.FileReader``), and its log
by byte offset without downloading the whole log on every poll.

The trigger asks each backend for "whole lines after byte offset N" once a second for the whole
run. Docker's log API has no byte offsets, only timestamps (``since``), so each line is fetched
with its timestamp and a cursor remembers where the last read stopped: the next read asks for
lines since one second before the newest line handed out and drops the ones it already handed out
(by timestamp and content). The one-second overlap absorbs the rounding of ``since`` (a float)
and stdout/stderr lines whose timestamps arrive slightly out of order. A read whose offset is not
the cursor's (a fresh trigger, a new backend object) falls back to reading the whole log and
skipping ``offset`` bytes, which is what LocalBackend does with its log file.

The log functions are pure functions over bytes; ContainerFiles wraps a client it is given.
"""

from __future__ import annotations

import calendar
import dataclasses
import hashlib
import io
import tarfile
import time

OVERLAP_NS = 1_000_000_000  # re-read this much before the newest line handed out
KEEP_NS = 2 * OVERLAP_NS  # remember handed-out lines this far back (covers the overlap)


def parse_timestamp(text: str | bytes) -> int | None:
    """Docker's RFC 3339 UTC time (``2026-01-02T03:04:05.123456789Z``) as epoch nanoseconds.

    None for Docker's zero time (``0001-01-01T00:00:00Z``: never started/finished) or garbage.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    try:
        whole, _, fraction = text.rstrip("Z").partition(".")
        date, _, clock = whole.partition("T")
        year, month, day = (int(part) for part in date.split("-"))
        hour, minute, second = (int(part) for part in clock.split(":"))
        nanos = int((fraction + "000000000")[:9])
    except ValueError:
        return None
    if year < 1970:
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) * 1_000_000_000 + nanos


def split_timestamped(raw: bytes) -> list[tuple[int, bytes]]:
    """``(timestamp_ns, line)`` for every complete line of a ``timestamps=True`` log read.

    The last line is left out unless it ends with a newline: it may still be growing.
    """
    entries = []
    previous = 0
    for line in raw.split(b"\n")[:-1]:
        stamp, _, content = line.partition(b" ")
        ts = parse_timestamp(stamp)
        if ts is None:  # not a timestamp: keep the line whole, in order
            ts, content = previous, line
        entries.append((ts, content + b"\n"))
        previous = ts
    return entries


@dataclasses.dataclass
class LogCursor:
    """Where the last read of one container's log stopped."""

    offset: int = 0  # bytes of log text handed out so far
    newest_ns: int = 0  # timestamp of the newest line handed out
    recent: set[tuple[int, bytes]] = dataclasses.field(default_factory=set)  # (ts, digest) of recent lines

    def since(self) -> float | None:
        """The ``since`` to ask Docker for (seconds, > 0), or None to read the whole log."""
        if not self.newest_ns:
            return None
        return max((self.newest_ns - OVERLAP_NS) / 1e9, 1e-9)

    def _remember(self, ts: int, key: tuple[int, bytes]) -> None:
        self.newest_ns = max(self.newest_ns, ts)
        self.recent.add(key)


def _key(ts: int, content: bytes) -> tuple[int, bytes]:
    return ts, hashlib.blake2b(content, digest_size=8).digest()


def take_lines(raw: bytes, offset: int, cursor: LogCursor | None) -> tuple[bytes, LogCursor]:
    """The log text after ``offset`` in ``raw`` and the cursor for the next read.

    ``raw`` must have been read with ``since=cursor.since()`` when ``cursor`` is given and its
    offset equals ``offset``; otherwise with no ``since`` (the whole log).
    """
    resume = cursor is not None and cursor.offset == offset and cursor.newest_ns > 0
    new = LogCursor(offset, cursor.newest_ns, set(cursor.recent)) if resume else LogCursor(offset)
    out = []
    seen = 0  # bytes of text before this line (whole-log reads only)
    for ts, content in split_timestamped(raw):
        key = _key(ts, content)
        if resume:
            if key in new.recent:
                continue
        else:
            end = seen + len(content)
            if end <= offset:  # handed out before
                seen = end
                new._remember(ts, key)
                continue
            content = content[max(0, offset - seen):]
            seen = end
        out.append(content)
        new.offset += len(content)
        new._remember(ts, key)
    new.recent = {key for key in new.recent if key[0] >= new.newest_ns - KEEP_NS}
    return b"".join(out), new


class ContainerFiles:
    """``node_io.FileReader`` over a container's archive API (get_archive answers with a tar)."""

    def __init__(self, api, container_id: str):
        self.api, self.container_id = api, container_id

    def _get(self, path: str):
        from docker.errors import NotFound

        try:
            return self.api.get_archive(self.container_id, path)
        except NotFound:  # no such container, or no such file
            return None

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        found = self._get(path)
        if found is None:
            return None
        with tarfile.open(fileobj=io.BytesIO(b"".join(found[0]))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            data = member.read() if member else b""
        return data[offset:] if limit is None else data[offset:offset + limit]

    def stat(self, path: str) -> tuple[int, float] | None:
        found = self._get(path)
        return None if found is None else (int(found[1].get("size", 0)), time.time())
