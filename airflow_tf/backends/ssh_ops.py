"""Small operations SSHBackend runs ON an ssh host: free ports, stop a node, sweep, clean up.

Standard library only. The backend uploads this file with a copy of ``processes.py`` next to it
(``<remote_root>/.ops-<hash>/``) and runs ``PYTHON ssh_ops.py OP 'JSON'``; the answer is one JSON
line on stdout. Why not the ssh provider's shell one-liners (``utils/remote_job.py``)? They
cover kill-by-pid-file, but not what a training node needs: the pid-reuse guard (process start
time), zombies counting as dead, TERM -> grace -> KILL of the whole group, a sweep by the job's
environment marker, and removing a job's directories without ever leaving the remote root.
"""

import json
import os
import shutil
import signal
import socket
import sys
import time

if __package__:  # imported as airflow_tf.backends.ssh_ops (the unit tests)
    from airflow_tf.backends import processes
else:  # run as a script on the ssh host: the backend put processes.py next to this file
    import processes


free_ports = processes.free_ports


def busy_ports(ports: list) -> list:
    """The ports of ``ports`` something on this host already listens on (or holds)."""
    busy = []
    for port in ports:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("", int(port)))
        except OSError:
            busy.append(int(port))
        finally:
            sock.close()
    return busy


def inside(root: str, path: str) -> str:
    """``path`` resolved, refused unless strictly below ``root`` (never rm -rf outside it)."""
    root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([root, real]) != root or real == root:
        raise ValueError(f"{path!r} is not inside the remote root {root!r}")
    return real


def preflight(root: str, ports: int = 0) -> dict:
    """Can this host run nodes: a writable remote root and a Linux /proc (for liveness).

    Also hands out ``ports`` free ports, so planning needs no second round trip per host.
    """
    os.makedirs(root, mode=0o700, exist_ok=True)
    probe = os.path.join(root, f".probe-{os.getpid()}")
    with open(probe, "w") as f:
        f.write("ok")
    os.remove(probe)
    if not os.path.isdir("/proc/self"):
        raise RuntimeError("no /proc on this host: node liveness cannot be checked")
    return {"python": sys.version.split()[0], "root": os.path.realpath(root), "free_ports": free_ports(ports)}


def prepare(root: str, node_dir: str, ports: list) -> dict:
    """A fresh, empty node directory, and which of the node's planned ports are taken."""
    node_dir = inside(root, node_dir)
    shutil.rmtree(node_dir, ignore_errors=True)  # a retried launch: its previous try was stopped
    os.makedirs(node_dir, mode=0o700)
    return {"busy": busy_ports(ports)}


def _wait_gone(pid: int, ticks, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while processes.is_alive(pid, ticks):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop(pid: int, ticks, job_id: str, node_index: int, grace_s: float) -> dict:
    """TERM the node's process group, KILL it after the grace period, then sweep its leftovers.

    ``ticks`` is the launcher's start time recorded at launch: a recycled pid is never signalled.
    """
    was_running = ticks is not None and processes.is_alive(pid, ticks)
    if was_running:
        # The launcher forwards TERM to its ranks and records their exit code.
        processes.signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, ticks, grace_s + 2):
            processes.signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, ticks, 5)  # KILL is asynchronous: a poll right after must see it gone
    leftovers = processes.job_processes(job_id, node_index)
    processes.kill_all(leftovers)
    return {"was_running": was_running, "swept": leftovers}


def sweep(job_id: str) -> dict:
    """Kill every process of the job on this host, whatever node it belonged to."""
    pids = processes.job_processes(job_id)
    processes.kill_all(pids)
    return {"swept": pids}


def cleanup(root: str, job_dir: str, node_dirs: list) -> dict:
    """Remove the nodes' working directories; keep a non-empty ``outputs/`` (the user's model)."""
    job_dir = inside(root, job_dir)
    for node_dir in node_dirs:
        shutil.rmtree(inside(job_dir, node_dir), ignore_errors=True)
    for leftover in (os.path.join(job_dir, "outputs"), job_dir):
        try:
            os.rmdir(leftover)  # only when empty: other hosts' nodes or the chief's outputs stay
        except OSError:
            pass
    return {"job_dir_left": os.path.isdir(job_dir)}


OPS = {"free_ports": free_ports, "busy_ports": busy_ports, "preflight": preflight, "prepare": prepare,
       "stop": stop, "sweep": sweep, "cleanup": cleanup}


def main(argv: list) -> int:
    op, kwargs = argv[0], json.loads(argv[1])
    try:
        result = {"ok": True, "result": OPS[op](**kwargs)}
    except Exception as exc:  # reported to the backend as data, with the host named there
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
