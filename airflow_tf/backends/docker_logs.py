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
import posixpath
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
    """``node_io.FileReader`` over a container's archive API (GET answers with a tar, HEAD with
    the file's stat only, PUT extracts a tar).

    The API has no byte ranges, so a read from ``offset`` streams the tar and drops the first
    ``offset`` bytes as they pass, holding at most ``limit`` in memory (a metrics file of any
    size is fine), and asks HEAD first, so a file that has not grown moves no bytes at all.
    The response is closed as soon as the wanted bytes are in: the rest is never transferred.
    """

    SKIP_CHUNK = 1 << 20

    def __init__(self, api, container_id: str):
        self.api, self.container_id = api, container_id

    def _request(self, method: str, path: str):
        """The archive endpoint's response, or None for no such container or file (404)."""
        url = self.api._url("/containers/{0}/archive", self.container_id)  # docker-py's own URL builder
        response = self.api.request(method, url, params={"path": path}, stream=method == "GET",
                                    headers={"Accept-Encoding": "identity"}, timeout=self.api.timeout)
        if response.status_code == 404:
            response.close()
            return None
        self.api._raise_for_status(response)  # docker's APIError, as every other call raises
        return response

    def stat(self, path: str) -> tuple[int, float] | None:
        from docker.utils import decode_json_header

        response = self._request("HEAD", path)
        if response is None:
            return None
        header = response.headers.get("X-Docker-Container-Path-Stat")
        return (int(decode_json_header(header).get("size", 0)) if header else 0), time.time()

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        if offset > 0:
            st = self.stat(path)
            if st is None:
                return None
            if st[0] <= offset:
                return b""  # nothing new: no transfer
        response = self._request("GET", path)
        if response is None:
            return None
        try:
            with tarfile.open(fileobj=response.raw, mode="r|") as tar:
                member = tar.next()
                source = tar.extractfile(member) if member is not None else None
                if source is None:
                    return b""
                left = offset
                while left > 0:
                    skipped = len(source.read(min(left, self.SKIP_CHUNK)))
                    if not skipped:
                        return b""
                    left -= skipped
                return source.read() if limit is None else source.read(limit)
        finally:
            response.close()

    def write_atomic(self, path: str, data: bytes) -> None:
        """Extract a one-file tar into the file's directory (PUT archive)."""
        directory, name = posixpath.split(path)
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self.api.put_archive(self.container_id, directory, buf.getvalue())
