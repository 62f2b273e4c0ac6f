"""Reading a node's directory, written once for every backend whose nodes write files: poll
(exit code, else is the launcher alive), whole lines of the log from an offset, the log's tail,
and the small files the runtime writes, all over a two-method reader (the local file system,
SFTP, a container's archive API). Growing files (metrics) are read from a byte offset
(``read_from``), so a poll costs the bytes written since the last one, not the file's length.
The wait trigger's own small state file goes back through ``write_file`` (readers that can
write: ``LocalFiles``, ``SSHHost``).
"""

from __future__ import annotations

import abc
import os
import posixpath
import time
from typing import Protocol

from airflow_tf.backends.base import NodeState
from airflow_tf.runtime import node_files, procfs

MAX_LOG_CHUNK = 1 << 20  # per read_log call: a burst of output is streamed over a few polls
TAIL_BYTES = 64 * 1024
MAX_FILE_BYTES = 16 << 20  # read_file is for small files (metrics, model path)


class FileReader(Protocol):
    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        """Bytes from ``offset`` (at most ``limit``), or None when the file does not exist."""

    def stat(self, path: str) -> tuple[int, float] | None:
        """(size, mtime in this machine's clock), or None when the file does not exist."""


class LocalFiles:
    """This machine's file system."""

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read() if limit is None else f.read(limit)
        except OSError:
            return None

    def stat(self, path: str) -> tuple[int, float] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime

    def write_atomic(self, path: str, data: bytes) -> None:
        tmp = f"{path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, node_files.FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)


def exit_state(files: FileReader, node_dir: str, started_at: float | None = None) -> NodeState | None:
    """The node's end, from its exit-code file; None while there is none."""
    path = posixpath.join(node_dir, node_files.EXIT_CODE)
    code = node_files.parse_exit_code(files.read(path))
    if code is None:
        return None
    st = files.stat(path)
    ended_at = st[1] if st else time.time()
    if started_at is not None:  # a coarse or skewed remote clock must not give negative durations
        ended_at = min(max(ended_at, started_at), time.time())
    return NodeState.ended(code, ended_at)


def launcher_alive(files: FileReader, pid: int, ticks: int | None) -> bool:
    """The launcher is still the process recorded at launch (a recycled pid is not it)."""
    if ticks is None:  # it was already gone when the launch looked
        return False
    return procfs.alive_from_stat(procfs.parse_stat(files.read(f"/proc/{int(pid)}/stat")), ticks)


def poll(files: FileReader, node_dir: str, pid: int, ticks: int | None, started_at: float | None = None) -> NodeState:
    state = exit_state(files, node_dir, started_at)
    if state is not None:
        return state
    if launcher_alive(files, pid, ticks):
        return NodeState.running_now()
    # It may have written its code between the two checks; else it was lost.
    return exit_state(files, node_dir, started_at) or NodeState.ended(None, time.time())


def read_log(files: FileReader, node_dir: str, offset: int) -> tuple[str, int]:
    data = files.read(posixpath.join(node_dir, node_files.LOG), offset, MAX_LOG_CHUNK)
    if not data:
        return "", offset
    end = data.rfind(b"\n") + 1  # hand out whole lines only; the rest comes next time
    if not end and len(data) >= MAX_LOG_CHUNK:
        end = len(data)  # one line longer than a chunk: hand it out in pieces, or the log would stall on it
    return data[:end].decode(errors="replace"), offset + end


def read_from(files: FileReader, node_dir: str, name: str, offset: int, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of a node file from byte ``offset`` (None: no such file yet).

    What the trigger reads growing files with: a poll moves the new bytes only."""
    return files.read(posixpath.join(node_dir, node_files.check_name(name)), offset, limit)


def write_file(files: FileReader, node_dir: str, name: str, data: bytes) -> None:
    """Replace a small node file at once (a reader sees the old or the new content)."""
    files.write_atomic(posixpath.join(node_dir, node_files.check_name(name)), data)  # type: ignore[attr-defined]


def read_tail(files: FileReader, node_dir: str, lines: int) -> list[str]:
    path = posixpath.join(node_dir, node_files.LOG)
    st = files.stat(path)
    if st is None:
        return []
    data = files.read(path, max(0, st[0] - TAIL_BYTES)) or b""
    return data.decode(errors="replace").splitlines()[-lines:]


def read_file(files: FileReader, node_dir: str, name: str) -> str | None:
    path = posixpath.join(node_dir, node_files.check_name(name))
    st = files.stat(path)
    if st is None:
        return None
    if st[0] > MAX_FILE_BYTES:
        raise ValueError(f"{path} is over {MAX_FILE_BYTES} bytes: node files read back are metrics and paths")
    data = files.read(path)
    return None if data is None else data.decode(errors="replace")


class NodeDirectoryFiles:
    """``read_file`` / ``read_from`` / ``write_file`` of a backend whose nodes write the node
    directory, written once: the backend only says how to reach a node's directory (``_files``:
    a reader and the directory's path) and node_io does the reading."""

    @abc.abstractmethod
    def _files(self, handle) -> tuple[FileReader, str]:
        """A reader for the node's directory, and the directory's path."""

    def read_file(self, handle, name: str) -> str | None:
        return read_file(*self._files(handle), name)

    def read_from(self, handle, name: str, offset: int, limit: int) -> bytes | None:
        return read_from(*self._files(handle), name, offset, limit)

    def write_file(self, handle, name: str, data: bytes) -> None:
        write_file(*self._files(handle), name, data)
