"""Machine-side helpers of benchmarks/fan_out.py: memory, CPU and the processes a run leaves
(a module of their own so the benchmark stays one job; bench.sh skips names starting with "_")."""

from __future__ import annotations

import os
import signal
import time

from tests.helpers import job_pids


def meminfo() -> dict[str, int]:
    with open("/proc/meminfo") as f:
        return {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}


def mem_used() -> int:
    info = meminfo()
    return info["MemTotal"] - info["MemAvailable"]


def busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (every CPU, idle/iowait excluded)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def pss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


def session_pids(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except (OSError, ValueError):
            continue
        if fields and fields[0] != "Z" and int(fields[3]) == sid:
            found.append(int(entry))
    return found


def stop_server(server, grace_s: float = 10.0) -> list[str]:
    """server.stop(), then whatever of its session is still there ``grace_s`` later (seen here: a
    scheduler with 64 LocalExecutor workers still shutting down 10 minutes after standalone had
    exited) TERMed, then KILLed, by pid. Returns those processes' names."""
    sid = server.proc.pid if server.proc else None
    server.stop()
    if sid is None:
        return []
    deadline = time.monotonic() + grace_s
    left = session_pids(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = session_pids(sid)
    names = []
    for pid in left:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                names.append(f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:60] or str(pid))
        except OSError:
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = session_pids(sid)
    return names


def sweep(job_ids: list[str], wait_s: float = 15.0) -> int:
    """After a server stopped: the job processes still alive (released sleepers end within a
    second); what is left after ``wait_s`` is killed by pid (ours: the job's marker). Returns how
    many were left."""
    deadline = time.monotonic() + wait_s
    left = [pid for job_id in job_ids for pid in job_pids(job_id)]
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = [pid for job_id in job_ids for pid in job_pids(job_id)]
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(left)
