"""Linux process facts read from /proc: start time (guards kill-by-pid against pid reuse),
zombie state, and which processes belong to a training job (by the job id in their environment);
and free ports. Standard library only: SSHBackend ships this file to its hosts.
"""

from __future__ import annotations

import os
import signal
import socket


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            # the command name may hold spaces and parentheses: split after the last ')'
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_ticks(pid: int) -> int | None:
    """Process start time in clock ticks since boot (field 22 of /proc/PID/stat)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_alive(pid: int, ticks: int | None) -> bool:
    """True if ``pid`` is the same process (same start time) and not a zombie.

    A node started from an in-process ``dag.test()`` is never reaped: its zombie still answers
    ``kill(pid, 0)``, so liveness must come from /proc, not from signals.
    """
    fields = _stat_fields(pid)
    if not fields or fields[0] == "Z":
        return False
    return ticks is None or int(fields[19]) == ticks


def job_processes(job_id: str, node_index: int | None = None) -> list[int]:
    """Pids whose environment carries ``AIRFLOW_TF_JOB_ID=job_id`` (every rank of the job has it)."""
    marker = f"AIRFLOW_TF_JOB_ID={job_id}".encode()
    node_marker = f"AIRFLOW_TF_NODE_INDEX={node_index}".encode() if node_index is not None else None
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if marker in env and (node_marker is None or node_marker in env) and is_alive(int(entry), None):
            found.append(int(entry))
    return found


def kill_all(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
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
