"""LocalBackend: every node is a detached process on this machine (the embedded default).

Each job gets a private directory and each node a sub-directory (the node-directory contract in
``runtime.node_files``). Training nodes run in their own session, so they outlive the launch
task and the task supervisor's process-group kill, and one ``killpg`` stops a node with all its
ranks (``runtime.node_ops.stop_node``, the same algorithm SSH hosts run).

This is a single-host backend: the trigger reads these files, so it must run on this machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any

import airflow_tf
from airflow_tf.backends import node_io
from airflow_tf.backends.base import Backend, Handle, NodeState
from airflow_tf.cluster.checks import check_name
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodeLaunch
from airflow_tf.runtime import node_files, node_ops, procfs

# Environment the training processes must not inherit from the Airflow task: its config secrets
# (fernet key, JWT secret, DB URL) and connections/variables given through the environment.
SECRET_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
FILES = node_io.LocalFiles()


def default_job_root() -> str:
    """``[airflow_tf] job_root`` (or the 0.1 ``AIRFLOW_TF_JOB_ROOT``), else ``$AIRFLOW_HOME/airflow_tf_jobs``."""
    from airflow_tf import config  # reads Airflow's config: at run time, never at DAG parse

    return config.job_root()


def safe_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}", job_id):
        raise ValueError(f"job_id must match [A-Za-z0-9._-] (1-200 chars), got {job_id!r}")
    return job_id


def _optional_path(field: str, value: Any) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
        raise SpecError(f"{field} must be a path or None, got {value!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class LocalBackend(Backend):
    """Run nodes as detached local processes.

    :param job_root: where job directories go (default ``[airflow_tf] job_root``, i.e.
        ``AIRFLOW__AIRFLOW_TF__JOB_ROOT``, or the 0.1 ``$AIRFLOW_TF_JOB_ROOT``, else
        ``$AIRFLOW_HOME/airflow_tf_jobs``).
    :param python: interpreter for the node runtime and the training script (default: the one
        running Airflow).
    :param host: the address nodes use to reach each other.
    """

    job_root: str | None = None
    python: str | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        _optional_path("job_root", self.job_root)
        _optional_path("python", self.python)
        check_name("host", self.host, "a host name or IPv4 address without port", allowed="._-")

    # -- layout -------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> str:
        return os.path.join(os.path.abspath(self.job_root or default_job_root()), safe_job_id(job_id))

    def node_dir(self, job_id: str, node_index: int) -> str:
        return os.path.join(self.job_dir(job_id), node_files.node_dirname(node_index))

    def output_location(self, job_id: str) -> str:
        return os.path.join(self.job_dir(job_id), node_files.OUTPUTS)

    # -- planning inputs ----------------------------------------------------------------------
    def hosts(self, node_count: int) -> list[str]:
        return [self.host] * node_count

    def free_ports(self, host: str, count: int) -> list[int]:
        return procfs.free_ports(count)

    # -- node lifecycle -----------------------------------------------------------------------
    def start(self, launch: NodeLaunch, source_directory: str) -> Handle:
        node = launch.node
        node_dir = self.node_dir(node.job_id, node.node_index)
        if os.path.isdir(node_dir):
            # A retried launch: stop what the previous try started before reusing the directory.
            previous = self._load_handle(node_dir)
            if previous:
                self.stop(previous, grace_s=5)
            shutil.rmtree(node_dir)
        os.makedirs(node_dir, mode=node_files.DIR_MODE)
        os.chmod(self.job_dir(node.job_id), node_files.DIR_MODE)
        node_files.write_atomic(os.path.join(node_dir, node_files.NODE_SPEC), json.dumps(launch.to_json(), indent=1))

        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(airflow_tf.__file__)))
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_ENV_PREFIXES)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
        argv = [
            self.python or sys.executable, "-m", "airflow_tf.runtime.launcher", node_dir,
            "--workdir", source_directory, "--output-dir", self.output_location(node.job_id),
        ]
        log_fd = os.open(os.path.join(node_dir, node_files.LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                         node_files.FILE_MODE)
        with os.fdopen(log_fd, "ab") as log:
            proc = subprocess.Popen(
                argv, cwd=node_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        handle = {
            "backend": "local",
            "job_id": node.job_id,
            "node_index": node.node_index,
            "host": node.host,
            "node_dir": node_dir,
            "pid": proc.pid,
            "start_ticks": procfs.start_ticks(proc.pid),
            "started_at": time.time(),
        }
        node_files.write_atomic(os.path.join(node_dir, node_files.HANDLE), json.dumps(handle))
        return handle

    def poll(self, handle: Handle) -> NodeState:
        return node_io.poll(FILES, handle["node_dir"], handle["pid"], handle["start_ticks"])

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        return node_io.read_log(FILES, handle["node_dir"], offset)

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        return node_io.read_tail(FILES, handle["node_dir"], lines)

    def read_file(self, handle: Handle, name: str) -> str | None:
        return node_io.read_file(FILES, handle["node_dir"], name)

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        node_ops.stop_node(handle["pid"], handle["start_ticks"], handle["job_id"], handle["node_index"], grace_s)

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        were_running = []
        for node_index in range(node_count):
            handle = self._load_handle(self.node_dir(job_id, node_index))
            if handle is None:
                continue
            if self.poll(handle)["running"]:
                were_running.append(node_index)
            self.stop(handle, grace_s)
        node_ops.sweep(job_id)
        return were_running

    @staticmethod
    def _load_handle(node_dir: str) -> Handle | None:
        data = FILES.read(os.path.join(node_dir, node_files.HANDLE))
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None
