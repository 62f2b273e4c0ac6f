"""LocalBackend: every node is a detached process on this machine (the embedded default).

Each job gets a directory; each node a sub-directory holding its plan (node.json), log
(node.log), handle (handle.json) and, once it ends, its exit code. Training nodes run in their
own session, so they outlive the launch task and the task supervisor's process-group kill, and
one ``killpg`` stops a node with all its ranks.

This is a single-host backend: the trigger reads these files, so it must run on this machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

import airflow_tf
from airflow_tf.backends import processes
from airflow_tf.backends.base import Backend, Handle, NodeState

EXIT_CODE_FILE = "exit_code"
LOG_FILE = "node.log"
HANDLE_FILE = "handle.json"
NODE_SPEC_FILE = "node.json"
# Environment the training processes must not inherit from the Airflow task: its config secrets
# (fernet key, JWT secret, DB URL) and connections/variables given through the environment.
SECRET_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
MAX_LOG_CHUNK = 1 << 20


def default_job_root() -> str:
    if os.environ.get("AIRFLOW_TF_JOB_ROOT"):
        return os.environ["AIRFLOW_TF_JOB_ROOT"]
    airflow_home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return os.path.join(airflow_home, "airflow_tf_jobs")


def safe_job_id(job_id: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", job_id):
        raise ValueError(f"job_id must match [A-Za-z0-9._-] (1-200 chars), got {job_id!r}")
    return job_id


class LocalBackend(Backend):
    """Run nodes as detached local processes.

    :param job_root: where job directories go (default ``$AIRFLOW_TF_JOB_ROOT`` or
        ``$AIRFLOW_HOME/airflow_tf_jobs``).
    :param python: interpreter for the node runtime and the training script (default: the one
        running Airflow).
    :param host: the address nodes use to reach each other.
    """

    def __init__(self, job_root: str | None = None, python: str | None = None, host: str = "127.0.0.1"):
        self.job_root = job_root
        self.python = python
        self.host = host

    def settings(self) -> dict[str, Any]:
        return {"job_root": self.job_root, "python": self.python, "host": self.host}

    # -- layout -------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> str:
        return os.path.join(os.path.abspath(self.job_root or default_job_root()), safe_job_id(job_id))

    def node_dir(self, job_id: str, node_index: int) -> str:
        return os.path.join(self.job_dir(job_id), f"node-{node_index}")

    def output_location(self, job_id: str) -> str:
        return os.path.join(self.job_dir(job_id), "outputs")

    # -- planning inputs ----------------------------------------------------------------------
    def hosts(self, node_count: int) -> list[str]:
        return [self.host] * node_count

    def free_ports(self, host: str, count: int) -> list[int]:
        return processes.free_ports(count)

    # -- node lifecycle -----------------------------------------------------------------------
    def start(self, job_id: str, node: dict[str, Any], source_directory: str) -> Handle:
        node_index = int(node["node_index"])
        node_dir = self.node_dir(job_id, node_index)
        if os.path.isdir(node_dir):
            # A retried launch: stop what the previous try started before reusing the directory.
            previous = self._load_handle(node_dir)
            if previous:
                self.stop(previous, grace_s=5)
            shutil.rmtree(node_dir)
        os.makedirs(node_dir)
        with open(os.path.join(node_dir, NODE_SPEC_FILE), "w") as f:
            json.dump(node, f, indent=1)

        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(airflow_tf.__file__)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIXES)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        argv = [
            self.python or sys.executable, "-m", "airflow_tf.runtime.launcher", node_dir,
            "--workdir", source_directory, "--output-dir", self.output_location(job_id),
        ]
        with open(os.path.join(node_dir, LOG_FILE), "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=node_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        handle = {
            "backend": "local",
            "job_id": job_id,
            "node_index": node_index,
            "host": node.get("host", self.host),
            "node_dir": node_dir,
            "pid": proc.pid,
            "start_ticks": processes.start_ticks(proc.pid),
            "started_at": time.time(),
        }
        with open(os.path.join(node_dir, HANDLE_FILE), "w") as f:
            json.dump(handle, f)
        return handle

    def poll(self, handle: Handle) -> NodeState:
        code = self._exit_code(handle)
        if code is not None:
            return code
        if processes.is_alive(handle["pid"], handle["start_ticks"]):
            return NodeState.running_now()
        # It may have written its code between the two checks.
        return self._exit_code(handle) or NodeState.ended(None, time.time())

    def _exit_code(self, handle: Handle) -> NodeState | None:
        path = os.path.join(handle["node_dir"], EXIT_CODE_FILE)
        try:
            with open(path) as f:
                return NodeState.ended(int(f.read().strip()), os.path.getmtime(path))
        except (OSError, ValueError):
            return None

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        try:
            with open(os.path.join(handle["node_dir"], LOG_FILE), "rb") as f:
                f.seek(offset)
                chunk = f.read(MAX_LOG_CHUNK)
        except OSError:
            return "", offset
        end = chunk.rfind(b"\n") + 1  # hand out whole lines only; the rest comes next time
        return chunk[:end].decode(errors="replace"), offset + end

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        path = os.path.join(handle["node_dir"], LOG_FILE)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, os.path.getsize(path) - 64 * 1024))
                return f.read().decode(errors="replace").splitlines()[-lines:]
        except OSError:
            return []

    def read_file(self, handle: Handle, name: str) -> str | None:
        if os.sep in name or name.startswith("."):
            raise ValueError(f"read_file takes a plain file name, got {name!r}")
        try:
            with open(os.path.join(handle["node_dir"], name)) as f:
                return f.read()
        except OSError:
            return None

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        pid, ticks = handle["pid"], handle["start_ticks"]
        if processes.is_alive(pid, ticks):
            # The launcher forwards TERM to its ranks and records their exit code.
            processes.signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s + 2
            while time.monotonic() < deadline and processes.is_alive(pid, ticks):
                time.sleep(0.1)
            if processes.is_alive(pid, ticks):
                processes.signal_group(pid, signal.SIGKILL)
                # SIGKILL is delivered asynchronously: wait, so a poll() after stop() sees it ended.
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and processes.is_alive(pid, ticks):
                    time.sleep(0.05)
        # Whatever escaped the group (or outlived a launcher killed hard) still carries the job id.
        processes.kill_all(processes.job_processes(handle["job_id"], handle["node_index"]))

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        were_running = []
        for node_index in range(node_count):
            handle = self._load_handle(self.node_dir(job_id, node_index))
            if handle is None:
                continue
            if self.poll(handle)["running"]:
                were_running.append(node_index)
            self.stop(handle, grace_s)
        processes.kill_all(processes.job_processes(job_id))
        return were_running

    @staticmethod
    def _load_handle(node_dir: str) -> Handle | None:
        try:
            with open(os.path.join(node_dir, HANDLE_FILE)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
