"""Linux process facts from /proc, in one place: start time (guards kill-by-pid against pid
reuse), zombie state, process-group members, and the processes of a job (by the job id every
process of a node carries in its environment); and free ports.

Standard library only: it runs on the nodes (the launcher, ``node_ops`` on ssh hosts) and on
the Airflow side (LocalBackend). SSHBackend reads ``/proc/PID/stat`` over SFTP and parses it
with ``parse_stat`` too.
"""

from __future__ import annotations

import os
import signal
import socket

JOB_ID_VAR = "AIRFLOW_TF_JOB_ID"
NODE_INDEX_VAR = "AIRFLOW_TF_NODE_INDEX"
TRY_VAR = "AIRFLOW_TF_TRY"


def markers(job_id: str, node_index: int, try_number: int | None = None) -> dict[str, str]:
    """The environment that marks a process as the job's (every launcher and rank has it, from
    the launcher's first instant): job id, node index and, where the backend knows it, the try."""
    found = {JOB_ID_VAR: job_id, NODE_INDEX_VAR: str(node_index)}
    if try_number is not None:
        found[TRY_VAR] = str(try_number)
    return found


def parse_stat(text: str | bytes | None) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, comes first).

    The command name may hold spaces and parentheses: split after the last ')'.
    """
    if not text:
        return None
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    head, sep, rest = text.rpartition(")")
    fields = rest.split() if sep else []
    return fields if len(fields) > 19 else None


def stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return parse_stat(f.read())
    except OSError:
        return None


def ticks_of(fields: list[str]) -> int:
    """Start time in clock ticks since boot (field 22 of stat)."""
    return int(fields[19])


def pgrp_of(fields: list[str]) -> int:
    return int(fields[2])  # field 5 of stat


def start_ticks(pid: int) -> int | None:
    fields = stat_fields(pid)
    return ticks_of(fields) if fields else None


def alive_from_stat(fields: list[str] | None, ticks: int | None) -> bool:
    """The same process (same start time, when known) and not a zombie."""
    if not fields or fields[0] == "Z":
        return False
    return ticks is None or ticks_of(fields) == ticks


def is_alive(pid: int, ticks: int | None) -> bool:
    """A node started from an in-process ``dag.test()`` is never reaped: its zombie still answers
    ``kill(pid, 0)``, so liveness must come from /proc, not from signals."""
    return alive_from_stat(stat_fields(pid), ticks)


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def group_members(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (other than this one)."""
    me = os.getpid()
    found = []
    for pid in _pids():
        fields = stat_fields(pid)
        if pid != me and fields and fields[0] != "Z" and pgrp_of(fields) == pgid:
            found.append(pid)
    return found


def job_processes(job_id: str, node_index: int | None = None) -> list[int]:
    """Pids whose environment carries the job's id (and the node's index, when given)."""
    marker = f"{JOB_ID_VAR}={job_id}".encode()
    node_marker = f"{NODE_INDEX_VAR}={node_index}".encode() if node_index is not None else None
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker in env and (node_marker is None or node_marker in env) and is_alive(pid, None):
            found.append(pid)
    return found


def kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free right now; all held open together, so distinct."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def busy_ports(ports: list[int]) -> list[int]:
    """The ports of ``ports`` something on this host already listens on (or holds)."""
    busy = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # As the TF / gRPC servers bind: a port whose old connections linger in TIME_WAIT (an
        # earlier try of the node) is free to listen on; one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", int(port)))
        except OSError:
            busy.append(int(port))
        finally:
            sock.close()
    return busy
