"""Operations on a node's host: stop a node, sweep a job's leftovers, prepare and clean up
node directories, pre-flight. LocalBackend calls these functions directly; SSHBackend runs
them on its hosts as ``python -S -m airflow_tf.runtime.node_ops OP 'JSON'`` (one JSON line
answers), so the one stop algorithm serves both.

Why not the ssh provider's shell one-liners (``utils/remote_job.py``)? They cover
kill-by-pid-file, but not what a training node needs: the pid-reuse guard (process start time),
zombies counting as dead, TERM -> grace -> KILL of the whole group, a sweep by the job's
environment marker, and removing a job's directories without ever leaving the root.
Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time

from airflow_tf.runtime import node_files, procfs


def inside(root: str, path: str) -> str:
    """``path`` resolved, refused unless strictly below ``root`` (never rm -rf outside it)."""
    root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or real == root:
        raise ValueError(f"{path!r} is not inside {root!r}")
    return real


def _wait_gone(pid: int, ticks: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while procfs.is_alive(pid, ticks):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_node(pid: int, ticks: int | None, job_id: str, node_index: int, grace_s: float) -> dict:
    """TERM the node's process group, KILL it after the grace period, then sweep its leftovers.

    ``ticks`` is the launcher's start time recorded at launch: a recycled pid is never signalled
    (and an unknown start time means the launcher was gone when it was recorded).
    """
    was_running = ticks is not None and procfs.is_alive(pid, ticks)
    if was_running:
        # The launcher forwards TERM to its ranks and records their exit code.
        procfs.signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, ticks, grace_s + 2):
            procfs.signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, ticks, 5)  # KILL is asynchronous: a poll right after must see it gone
    # Whatever escaped the group (or outlived a launcher killed hard) still carries the job id.
    leftovers = procfs.job_processes(job_id, node_index)
    procfs.kill_all(leftovers)
    return {"was_running": was_running, "swept": leftovers}


def sweep(job_id: str, node_index: int | None = None) -> dict:
    """Kill every process of the job on this host (of one of its nodes, when given)."""
    pids = procfs.job_processes(job_id, node_index)
    procfs.kill_all(pids)
    return {"swept": pids}


def prepare(root: str, node_root: str, ports: list) -> dict:
    """The node's next try directory (empty, private; earlier tries' stay), and which of the
    node's planned ports are taken. The caller stopped the earlier tries first."""
    number, node_dir = node_files.make_try_dir(inside(root, node_root))
    os.chmod(os.path.dirname(node_root), node_files.DIR_MODE)
    return {"try": number, "node_dir": node_dir, "busy": procfs.busy_ports(ports)}


def cleanup(root: str, job_dir: str, node_dirs: list) -> dict:
    """Remove the nodes' working directories; keep a non-empty ``outputs/`` (the user's model)."""
    job_dir = inside(root, job_dir)
    for node_dir in node_dirs:
        shutil.rmtree(inside(job_dir, node_dir), ignore_errors=True)
    for leftover in (os.path.join(job_dir, node_files.OUTPUTS), job_dir):
        try:
            os.rmdir(leftover)  # only when empty: other hosts' nodes or the chief's outputs stay
        except OSError:
            pass
    return {"job_dir_left": os.path.isdir(job_dir)}


def preflight(root: str, ports: int = 0) -> dict:
    """Can this host run nodes: a writable root and a Linux /proc (for liveness).

    Also hands out ``ports`` free ports, so planning needs no second round trip per host.
    """
    os.makedirs(root, mode=node_files.DIR_MODE, exist_ok=True)
    probe = os.path.join(root, f".probe-{os.getpid()}")
    with open(probe, "w") as f:
        f.write("ok")
    os.remove(probe)
    if not os.path.isdir("/proc/self"):
        raise RuntimeError("no /proc on this host: node liveness cannot be checked")
    return {"python": sys.version.split()[0], "root": os.path.realpath(root), "free_ports": procfs.free_ports(ports)}


OPS = {
    "free_ports": procfs.free_ports, "busy_ports": procfs.busy_ports, "preflight": preflight, "prepare": prepare,
    "stop_node": stop_node, "sweep": sweep, "cleanup": cleanup,
}


def main(argv: list[str]) -> int:
    op, kwargs = argv[0], json.loads(argv[1])
    try:
        result = {"ok": True, "result": OPS[op](**kwargs)}
    except Exception as exc:  # reported to the backend as data, with the host named there
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
