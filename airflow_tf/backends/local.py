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
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import airflow_tf
from airflow_tf.backends import node_io
from airflow_tf.backends.base import Backend, Handle, NodeState, secrets_payload
from airflow_tf.cluster.checks import check_name, check_string_list
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodeLaunch
from airflow_tf.runtime import node_files, node_ops, procfs
from airflow_tf.runtime.procfs import markers as procfs_markers

# What a node inherits from the Airflow worker's environment: what processes need to run, never
# the worker's credentials (cloud keys, tokens: user code must not see them by accident). More
# only through ``pass_environment``; the job's own values come from the plan and the launch.
INHERITED = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM", "LD_LIBRARY_PATH",
    "PYTHONPATH", "PYTHONDONTWRITEBYTECODE",
    # The machine's CA bundles: pip_packages installs and TLS from training code go through them.
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
})
# Locale, BLAS / OpenMP thread and CPU-type settings, TF logging, GPU libraries, and pip's own
# configuration (the node installs pip_packages with the worker's pip settings).
INHERITED_PREFIXES = ("LC_", "OPENBLAS_", "NVPL_", "OMP_", "KMP_", "MKL_", "TF_CPP_", "CUDA_", "NVIDIA_", "NCCL_",
                      "PIP_")
# Never passed, even when asked: Airflow's config secrets (fernet key, JWT secret, DB URL) and
# connections/variables given through the environment (use secret_environment_variables).
SECRET_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
FILES = node_io.LocalFiles()


def _check_pass_environment(value: Any) -> list[str]:
    names = check_string_list("pass_environment", value)
    for i, name in enumerate(names):
        if not all(c.isalnum() or c == "_" for c in name.removesuffix("*")) or name == "*":
            raise SpecError(f"pass_environment[{i}] must be a variable name or a prefix ending in '*' "
                            f"(e.g. 'HTTPS_PROXY', 'MYCOMPANY_*'), got {name!r}")
        if name.startswith(SECRET_ENV_PREFIXES):
            raise SpecError(f"pass_environment[{i}] = {name!r}: Airflow's own configuration, connections and "
                            "variables are never passed to nodes; use secret_environment_variables")
    return names


def inherited_environment(environ: Mapping[str, str], extra: list[str]) -> dict[str, str]:
    """The part of the worker's environment a node gets (INHERITED, plus what ``extra`` names)."""
    names = INHERITED | {n for n in extra if not n.endswith("*")}
    prefixes = INHERITED_PREFIXES + tuple(n[:-1] for n in extra if n.endswith("*"))
    return {k: v for k, v in environ.items()
            if (k in names or k.startswith(prefixes)) and not k.startswith(SECRET_ENV_PREFIXES)}


def machine_id() -> str:
    """This kernel's boot and this pid namespace: a LocalBackend pid is meaningful only where both match."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = "unknown"
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = "unknown"
    return f"{boot}/{namespace}"


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
class LocalBackend(node_io.NodeDirectoryFiles, Backend):
    """Run nodes as detached local processes.

    :param job_root: where job directories go (default ``[airflow_tf] job_root``, i.e.
        ``AIRFLOW__AIRFLOW_TF__JOB_ROOT``, or the 0.1 ``$AIRFLOW_TF_JOB_ROOT``, else
        ``$AIRFLOW_HOME/airflow_tf_jobs``).
    :param python: interpreter for the node runtime and the training script (default: the one
        running Airflow).
    :param host: the address nodes use to reach each other.
    :param pass_environment: more of the worker's environment for the nodes, by name or as a
        ``PREFIX*`` (e.g. ``PROXY_VARIABLES``). By default nodes inherit only ``INHERITED``
        (PATH, HOME, locale, thread and GPU library settings), not the worker's credentials.
    """

    single_host: ClassVar[bool] = True  # the trigger reads these files and pids: see operators/placement.py

    job_root: str | None = None
    python: str | None = None
    host: str = "127.0.0.1"
    pass_environment: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pass_environment", _check_pass_environment(self.pass_environment))
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

    def output_files(self, handle: Handle):
        root = self.output_location(handle["job_id"])
        for folder, dirs, names in os.walk(root):
            dirs.sort()
            for name in sorted(names):
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    yield os.path.relpath(path, root).replace(os.sep, "/"), open(path, "rb")

    # -- planning inputs ----------------------------------------------------------------------
    def hosts(self, node_count: int) -> list[str]:
        return [self.host] * node_count

    def free_ports(self, host: str, count: int) -> list[int]:
        return procfs.free_ports(count)

    # -- node lifecycle -----------------------------------------------------------------------
    def find_node(self, job_id: str, node_index: int) -> Handle | None:
        return self._load_handle(self.node_dir(job_id, node_index))

    def start(self, launch: NodeLaunch, source_directory: str, secrets: Mapping[str, str] | None = None) -> Handle:
        node = launch.node
        node_root = self.node_dir(node.job_id, node.node_index)
        # An earlier try of this node (a re-run launch, a job restart): stopped, with anything of
        # the node still running (a launcher whose handle was never written carries the marker).
        previous = self._load_handle(node_root)
        if previous:
            self.stop(previous, grace_s=5)
        procfs.kill_all(procfs.job_processes(node.job_id, node.node_index))
        try_number, node_dir = node_files.make_try_dir(node_root)
        os.chmod(self.job_dir(node.job_id), node_files.DIR_MODE)
        node_files.write_atomic(os.path.join(node_dir, node_files.NODE_SPEC), json.dumps(launch.to_json(), indent=1))
        if secrets:  # 0600 in a 0700 directory; the launcher deletes it before anything else
            node_files.write_atomic(os.path.join(node_dir, node_files.SECRETS), secrets_payload(secrets).decode())

        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(airflow_tf.__file__)))
        env = inherited_environment(os.environ, self.pass_environment)
        # The job's marker from the launcher's first instant (its pip install included): the
        # teardown's sweep finds every process of the node by it, whatever phase it is in.
        env.update(procfs_markers(node.job_id, node.node_index, try_number))
        from airflow_tf import config  # [airflow_tf] package_cache (or AIRFLOW_TF_PACKAGE_CACHE) for the node

        if cache := config.package_cache():
            env["AIRFLOW_TF_PACKAGE_CACHE"] = cache
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
            "try": try_number,
            "attempt": launch.attempt,
            "host": node.host,
            "node_dir": node_dir,
            "pid": proc.pid,
            "start_ticks": procfs.start_ticks(proc.pid),
            "started_at": time.time(),
            "machine": machine_id(),  # where this pid means something (the trigger checks it: watch_problem)
        }
        text = json.dumps(handle)
        node_files.write_atomic(os.path.join(node_dir, node_files.HANDLE), text)
        node_files.write_atomic(os.path.join(node_root, node_files.HANDLE), text)  # the current try
        return handle

    def poll(self, handle: Handle) -> NodeState:
        return node_io.poll(FILES, handle["node_dir"], handle["pid"], handle["start_ticks"])

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        return node_io.read_log(FILES, handle["node_dir"], offset)

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        return node_io.read_tail(FILES, handle["node_dir"], lines)

    def _files(self, handle: Handle) -> tuple[node_io.LocalFiles, str]:
        return FILES, handle["node_dir"]

    def watch_problem(self, handle: Handle) -> str | None:
        """LocalBackend is single-host: its nodes can be watched only from the machine (and pid
        namespace) they run on. Elsewhere their files are missing and their pids are someone
        else's, which must not read as "the node died" (and must stop nothing)."""
        where = f"this machine ({socket.gethostname()})"
        how = ("LocalBackend is single-host: its wait trigger must run on the machine its nodes run on "
               "(run the triggerer there), or use SSHBackend / DockerBackend for nodes on other machines")
        if handle.get("machine", machine_id()) != machine_id():
            return (f"node {handle['node_index']} was started on another machine or in another pid namespace "
                    f"than {where}; {how}")
        if not os.path.isfile(os.path.join(handle["node_dir"], node_files.HANDLE)):
            return f"node {handle['node_index']}'s directory {handle['node_dir']} is not on {where}; {how}"
        return None

    def exit_descriptor(self, handle: Handle) -> int | None:
        """A pidfd of the node's launcher (Linux >= 5.3): the trigger wakes the instant it exits
        instead of at its next poll, so a finished job is not held for up to poll_interval."""
        if handle.get("machine", machine_id()) != machine_id() or not hasattr(os, "pidfd_open"):
            return None
        try:
            fd = os.pidfd_open(handle["pid"])
        except OSError:  # already gone (the next poll reads its exit), or pidfds not allowed here
            return None
        # The pidfd is of whatever has that pid now: keep it only if that is still the launcher
        # (and not its zombie: the poll already reads that exit).
        if not procfs.is_alive(handle["pid"], handle["start_ticks"]):
            os.close(fd)
            return None
        return fd

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
