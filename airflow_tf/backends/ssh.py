"""SSHBackend: one detached node per ssh host, from Airflow SSH connections.

Node i runs on ``ssh_conn_ids[i]``. A launch uploads the one source bundle (``bundle``: the
stdlib-only node runtime, the user's source directory, the node's ``node.json``) with SFTP into
``<remote_root>/<job_id>/node-<i>/`` and starts ``python -m airflow_tf.runtime.launcher`` there
detached, with the ssh provider's remote-job wrapper (``setsid``, ``nohup`` fallback, pid file,
log file). Afterwards everything is read over SFTP (``node_io`` over ``SSHHost``), so a trigger
polling every second runs no remote shell. Stopping, the leftover sweep and clean-up run
``runtime.node_ops`` on the host: the same code LocalBackend calls in-process.

Layout on each host (``remote_root`` defaults to ``~/.airflow_tf/jobs``)::

    <remote_root>/.ops-<hash>/airflow_tf/runtime/...   node-ops helper, uploaded once per version
    <remote_root>/<job_id>/node-<i>/                   the node directory (runtime.node_files),
                                                       plus runtime/ and src/ from the bundle
    <remote_root>/<job_id>/outputs/                    the chief's model and files

Nothing here imports paramiko or the provider at module level: DAG files import this class.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import shlex
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow_tf import extras
from airflow_tf.backends import bundle, node_io
from airflow_tf.backends.base import Backend, Handle, NodeState, cache, secrets_payload
from airflow_tf.backends.local import safe_job_id
from airflow_tf.backends.ssh_host import SSHBackendError, SSHHost, ops_package
from airflow_tf.backends.ssh_settings import CleanupPolicy, check_conn_ids, check_python, check_root
from airflow_tf.cluster.checks import check_bool, check_choice, check_positive_int, check_positive_number
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodeLaunch
from airflow_tf.runtime import node_files, procfs

__all__ = ["CleanupPolicy", "SSHBackend", "SSHBackendError"]

BUNDLE_FILE = "bundle.tar.gz"
LAUNCH_SCRIPT = "launch.sh"
PREFETCHED_PORTS = 16  # free ports the pre-flight asks each host for (see free_ports)


@dataclasses.dataclass(frozen=True, eq=False)
class SSHBackend(node_io.NodeDirectoryFiles, Backend):
    """Run each node on its own ssh host, given as Airflow SSH connections.

    :param ssh_conn_ids: one Airflow SSH connection per node (node i -> ``ssh_conn_ids[i]``). The
        connection's host is also the address the other nodes reach the node at (TF_CONFIG).
    :param remote_root: per-host directory for job directories (absolute, or ``~/...``).
    :param python: the interpreter on the hosts that runs the node runtime and the training
        script (one executable: a name on the remote PATH or an absolute path).
    :param cleanup: when stop_job (the teardown) removes the nodes' working directories (see
        ``CleanupPolicy``). The chief's ``outputs/`` directory is never removed.
    :param allow_shared_hosts: allow more nodes than connections (round-robin placement).
    :param preflight: check every host before any node starts (reachable, host key, Python,
        writable ``remote_root``); see ``hosts()``.
    :param connect_attempts: SSH connection attempts (the hook retries refused connections, e.g.
        sshd's MaxStartups throttling).
    :param connect_timeout: seconds per connection attempt, unless the connection sets
        ``conn_timeout``.
    """

    ssh_conn_ids: list[str]
    remote_root: str = "~/.airflow_tf/jobs"
    python: str = "python3"
    cleanup: CleanupPolicy = CleanupPolicy.ON_SUCCESS
    allow_shared_hosts: bool = False
    preflight: bool = True
    connect_attempts: int = 3
    connect_timeout: float = 10.0
    _hosts: dict[str, SSHHost] = cache()
    _ops: dict[str, Any] = cache()  # the node-ops helper's files, read once per object

    def __post_init__(self) -> None:
        extras.require("ssh", "airflow.providers.ssh", "SSHBackend")  # at parse, naming the extra
        check_conn_ids(self.ssh_conn_ids)
        object.__setattr__(self, "ssh_conn_ids", list(self.ssh_conn_ids))
        object.__setattr__(self, "remote_root", check_root(self.remote_root))
        check_python(self.python)
        object.__setattr__(self, "cleanup", check_choice("cleanup", self.cleanup, CleanupPolicy))
        check_bool("allow_shared_hosts", self.allow_shared_hosts)
        check_bool("preflight", self.preflight)
        check_positive_int("connect_attempts", self.connect_attempts)
        object.__setattr__(self, "connect_timeout", float(check_positive_number("connect_timeout",
                                                                                self.connect_timeout)))

    # -- hosts ---------------------------------------------------------------------------------
    def conn_id_for(self, node_index: int) -> str:
        if node_index >= len(self.ssh_conn_ids) and not self.allow_shared_hosts:
            raise SpecError(self._too_few_hosts(node_index + 1))
        return self.ssh_conn_ids[node_index % len(self.ssh_conn_ids)]

    def _too_few_hosts(self, node_count: int) -> str:
        return (f"node_count is {node_count} but SSHBackend has {len(self.ssh_conn_ids)} ssh_conn_ids "
                f"{self.ssh_conn_ids}: give one connection per node, or set allow_shared_hosts=True to place "
                f"several nodes on one host (round-robin)")

    def host(self, conn_id: str) -> SSHHost:
        """The per-host object (connection lookup on first use; SpecError when it is bad)."""
        if conn_id not in self._hosts:
            if not self._ops:
                self._ops["files"], self._ops["dirname"] = ops_package()
            self._hosts[conn_id] = SSHHost(
                conn_id, f"ssh_conn_ids[{self.ssh_conn_ids.index(conn_id)}]", self.remote_root, self.python,
                connect_attempts=self.connect_attempts, connect_timeout=self.connect_timeout,
                ops_files=self._ops["files"], ops_dirname=self._ops["dirname"],
            )
        return self._hosts[conn_id]

    def close(self) -> None:
        """Close this object's SSH connections (they also close when it is garbage-collected)."""
        for host in self._hosts.values():
            host.close()

    def _job_dir(self, host: SSHHost, job_id: str) -> str:
        return posixpath.join(host.root(), safe_job_id(job_id))

    def _node_dir(self, host: SSHHost, job_id: str, node_index: int) -> str:
        return posixpath.join(self._job_dir(host, job_id), node_files.node_dirname(node_index))

    # -- planning inputs ----------------------------------------------------------------------
    def hosts(self, node_count: int) -> list[str]:
        """One address per node, after the pre-flight check of every host the job will use.

        The plan task calls this before any launch task runs, so a host that is down, refuses
        our key or its host key, or lacks a usable Python fails the job here, naming every such
        host, with no node started anywhere (the planned ports are checked in ``free_ports`` and
        once more right before each node starts).
        """
        if node_count > len(self.ssh_conn_ids) and not self.allow_shared_hosts:
            raise SpecError(self._too_few_hosts(node_count))
        conns = [self.conn_id_for(i) for i in range(node_count)]
        used = list(dict.fromkeys(conns))
        for conn_id in used:
            self.host(conn_id)  # connection lookups here, in the calling thread
        if self.preflight:
            self._preflight(used)
        return [self.host(conn_id).address for conn_id in conns]

    def _preflight(self, conn_ids: list[str]) -> None:
        def check(conn_id: str) -> str | None:
            host = self.host(conn_id)
            try:
                host.remote("connecting", host.hook.get_conn)
                host.prefetched_ports = host.op("preflight", root=host.root(), ports=PREFETCHED_PORTS)["free_ports"]
                return None
            except Exception as exc:  # noqa: BLE001 - every host is checked, all problems reported together
                return str(exc) if isinstance(exc, SSHBackendError) else f"{host.where()}: {exc!r}"

        with ThreadPoolExecutor(max_workers=min(16, len(conn_ids))) as pool:
            problems = dict(zip(conn_ids, pool.map(check, conn_ids)))
        failing = [conn_id for conn_id, problem in problems.items() if problem]
        if failing:
            raise SSHBackendError(
                f"SSHBackend pre-flight failed for {len(failing)} of {len(conn_ids)} host(s), no node was started; "
                f"failing: {', '.join(self.host(c).where() for c in failing)}\n- "
                + "\n- ".join(problems[c] for c in failing)
            )

    def free_ports(self, host: str, count: int) -> list[int]:
        """Ports free on ``host`` now, asked of the host itself (the pre-flight's first, each once)."""
        for conn_id in dict.fromkeys(self.ssh_conn_ids):
            ssh_host = self.host(conn_id)
            if ssh_host.address != host:
                continue
            if len(ssh_host.prefetched_ports) >= count:
                ports, ssh_host.prefetched_ports = ssh_host.prefetched_ports[:count], ssh_host.prefetched_ports[count:]
                return ports
            return [int(p) for p in ssh_host.op("free_ports", count=count)]
        raise SSHBackendError(f"no connection of SSHBackend {self.ssh_conn_ids} has host {host!r}")

    def output_location(self, job_id: str) -> str:
        host = self.host(self.conn_id_for(0))
        return f"ssh://{host.address}{posixpath.join(self._job_dir(host, job_id), node_files.OUTPUTS)}"

    def output_files(self, handle: Handle):
        """The chief host's ``<job>/outputs`` over SFTP (regular files only; links are not followed)."""
        import stat

        host = self._handle_host(handle)
        root = posixpath.join(self._job_dir(host, handle["job_id"]), node_files.OUTPUTS)
        pending = [root]
        while pending:
            folder = pending.pop()
            try:
                entries = host.remote(f"listing {folder}", lambda: host.sftp().listdir_attr(folder))
            except FileNotFoundError:
                continue
            for entry in sorted(entries, key=lambda e: e.filename):
                path = posixpath.join(folder, entry.filename)
                if stat.S_ISDIR(entry.st_mode):
                    pending.append(path)
                elif stat.S_ISREG(entry.st_mode):
                    source = host.remote(f"opening {path}", lambda: host.sftp().open(path, "rb"))
                    source.prefetch(entry.st_size)  # pipelined reads: a model copies at link speed
                    yield posixpath.relpath(path, root), source

    def host_path(self, handle: Handle, path: str) -> str:
        """A path on the node's host, as ``ssh://host/path`` (it is not on the Airflow worker)."""
        return f"ssh://{handle['host']}{path}"

    # -- node lifecycle -----------------------------------------------------------------------
    def _launch_script(self, job_id: str, node_index: int, try_number: int, job_dir: str, node_dir: str) -> str:
        from airflow.providers.ssh.utils.remote_job import RemoteJobPaths, build_posix_wrapper_command

        class NodePaths(RemoteJobPaths):
            @property
            def log_file(self) -> str:  # node.log, like every other backend's node directory
                return posixpath.join(self.job_dir, node_files.LOG)

        # The provider's job directory is the try's: <job>/node-<i>/try-<k>.
        paths = NodePaths(job_id=node_files.try_dirname(try_number), remote_os="posix",
                          base_dir=posixpath.dirname(node_dir))
        # exec: the launcher replaces the wrapper's shell, so it is the session and group leader
        # (one killpg stops the node; its leftover sweep works) and writes the exit code itself.
        launcher = "exec " + shlex.join([
            self.python, "-m", "airflow_tf.runtime.launcher", node_dir,
            "--workdir", posixpath.join(node_dir, "src"), "--output-dir", posixpath.join(job_dir, node_files.OUTPUTS),
        ])
        env = {"PYTHONPATH": posixpath.join(node_dir, "runtime"), **procfs.markers(job_id, node_index, try_number)}
        # umask first: the node's log and every file of the node are private to the job's user.
        unpack = ("umask 077\n" f"cd {shlex.quote(node_dir)} && tar -xzf {BUNDLE_FILE} --no-same-owner && rm -f {BUNDLE_FILE} "
                  "|| exit 1\n")
        # The provider's wrapper writes the pid file asynchronously; wait for it here, in the same
        # round trip, and report the pid, its start time (the pid-reuse guard) and the host clock.
        report = """
for _ in $(seq 200); do [ -s "$pid_file" ] && break; sleep 0.05; done
p="$(cat "$pid_file" 2>/dev/null || true)"
echo "AIRFLOW_TF_PID=$p"
echo "AIRFLOW_TF_STAT=$(cat "/proc/$p/stat" 2>/dev/null || true)"
echo "AIRFLOW_TF_CLOCK=$(date +%s.%N)"
"""
        return unpack + build_posix_wrapper_command(launcher, paths, env) + report

    def start(self, launch: NodeLaunch, source_directory: str, secrets: Mapping[str, str] | None = None) -> Handle:
        node = launch.node
        host = self.host(self.conn_id_for(node.node_index))
        job_dir = self._job_dir(host, node.job_id)
        node_root = self._node_dir(host, node.job_id, node.node_index)
        previous = host.read_json(posixpath.join(node_root, node_files.HANDLE))
        if previous:  # an earlier try of this node: stopped (its files stay) before the next one starts
            self.stop(previous, grace_s=5)
        host.op("sweep", job_id=node.job_id, node_index=node.node_index)  # also a try whose handle was never written
        prepared = host.op("prepare", root=host.root(), node_root=node_root, ports=node.ports)
        if prepared["busy"]:
            raise SSHBackendError(f"node {node.node_index}: port(s) {prepared['busy']} planned for it are already in "
                                  f"use on {host.where()}; re-run the job to plan with ports free now")
        try_number, node_dir = int(prepared["try"]), prepared["node_dir"]
        script = self._launch_script(node.job_id, node.node_index, try_number, job_dir, node_dir).encode()
        spec = json.dumps(launch.to_json(), indent=1).encode()
        with bundle.build(source_directory, runtime_at="runtime", source_at="src", gzip=True, private=True,
                          files={node_files.NODE_SPEC: (spec, node_files.FILE_MODE)}) as data:
            host.write(posixpath.join(node_dir, BUNDLE_FILE), data, "uploading the node bundle",
                       mode=node_files.FILE_MODE)
        if secrets:  # over the SSH channel into the 0700 node directory, 0600; the launcher deletes it
            host.write(posixpath.join(node_dir, node_files.SECRETS), secrets_payload(secrets), "uploading secrets",
                       mode=node_files.FILE_MODE)
        # The script stays in the node directory: what exactly started the node, for debugging.
        host.write(posixpath.join(node_dir, LAUNCH_SCRIPT), script, "uploading the launch script",
                   mode=node_files.FILE_MODE)
        out = host.exec(["bash", posixpath.join(node_dir, LAUNCH_SCRIPT)], timeout=60,
                        what=f"starting node {node.node_index}")
        now = time.time()
        report = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("AIRFLOW_TF_"))
        if not report.get("AIRFLOW_TF_PID", "").isdigit():
            raise SSHBackendError(f"node {node.node_index} on {host.where()} did not start (no pid file); "
                                  f"see {posixpath.join(node_dir, node_files.LOG)} there")
        fields = procfs.parse_stat(report.get("AIRFLOW_TF_STAT", ""))
        handle = {
            "backend": "ssh",
            "conn_id": host.conn_id,
            "host": host.address,
            "job_id": node.job_id,
            "node_index": node.node_index,
            "try": try_number,
            "attempt": launch.attempt,
            "job_dir": job_dir,
            "node_dir": node_dir,
            "pid": int(report["AIRFLOW_TF_PID"]),
            # None: the launcher was already gone when we looked (poll then trusts the exit code only).
            "start_ticks": procfs.ticks_of(fields) if fields else None,
            "started_at": now,
            # host clock - ours (read just before the answer left): turns exit-code mtimes into our time.
            "clock_offset_s": float(report.get("AIRFLOW_TF_CLOCK", now)) - now,
        }
        for where in (node_dir, node_root):  # the try's, and the node's current try
            host.write(posixpath.join(where, node_files.HANDLE), json.dumps(handle).encode(), "writing handle.json",
                       mode=node_files.FILE_MODE)
        return handle

    def find_node(self, job_id: str, node_index: int) -> Handle | None:
        host = self.host(self.conn_id_for(node_index))
        return host.read_json(posixpath.join(self._node_dir(host, job_id, node_index), node_files.HANDLE))

    def _handle_host(self, handle: Handle) -> SSHHost:
        host = self.host(handle["conn_id"])
        host.clock_offset_s = handle.get("clock_offset_s", 0.0)
        return host

    def poll(self, handle: Handle) -> NodeState:
        return node_io.poll(self._handle_host(handle), handle["node_dir"], handle["pid"], handle.get("start_ticks"),
                            handle["started_at"])

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        return node_io.read_log(self._handle_host(handle), handle["node_dir"], offset)

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        return node_io.read_tail(self._handle_host(handle), handle["node_dir"], lines)

    def _files(self, handle: Handle) -> tuple[SSHHost, str]:
        return self._handle_host(handle), handle["node_dir"]

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        self.host(handle["conn_id"]).op(
            "stop_node", timeout=grace_s + 30, pid=int(handle["pid"]), ticks=handle.get("start_ticks"),
            job_id=handle["job_id"], node_index=int(handle["node_index"]), grace_s=grace_s,
        )

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        """Stop every node of the job (from the handle.json each launch left on its host), sweep
        each host for the job's processes, then clean up per the ``cleanup`` policy.

        A host that cannot be reached is reported after every other host was dealt with.
        """
        by_conn: dict[str, list[int]] = {}
        for node_index in range(node_count):
            by_conn.setdefault(self.conn_id_for(node_index), []).append(node_index)
        for conn_id in by_conn:
            self.host(conn_id)  # connection lookups in this thread

        def stop_host(conn_id: str) -> dict[int, NodeState | None]:
            host, states = self.host(conn_id), {}
            for node_index in by_conn[conn_id]:
                handle = host.read_json(posixpath.join(self._node_dir(host, job_id, node_index), node_files.HANDLE))
                states[node_index] = self.poll(handle) if handle else None
                if handle and states[node_index]["running"]:
                    self.stop(handle, grace_s)
            host.op("sweep", job_id=job_id)  # also nodes whose handle.json was never written
            return states

        def clean_host(conn_id: str) -> None:
            host = self.host(conn_id)
            host.op("cleanup", root=host.root(), job_dir=self._job_dir(host, job_id),
                    node_dirs=[self._node_dir(host, job_id, i) for i in by_conn[conn_id]])

        states: dict[int, NodeState | None] = {}
        errors = self._each_host(by_conn, stop_host, states.update)
        if not errors and self._should_clean(states, node_count):
            errors = {c: f"cleanup: {e}" for c, e in self._each_host(by_conn, clean_host, lambda _: None).items()}
        if errors:
            raise SSHBackendError(f"could not stop or clean up job {job_id} on {len(errors)} host(s); its nodes "
                                  "there may still run:\n- " + "\n- ".join(errors.values()))
        return sorted(i for i, state in states.items() if state and state["running"])

    @staticmethod
    def _each_host(by_conn: dict[str, list[int]], fn, collect) -> dict[str, str]:
        """``fn(conn_id)`` on every host at once; every host gets its turn, errors are collected."""
        errors = {}
        with ThreadPoolExecutor(max_workers=min(16, len(by_conn))) as pool:
            futures = {conn_id: pool.submit(fn, conn_id) for conn_id in by_conn}
            for conn_id, future in futures.items():
                try:
                    collect(future.result())
                except Exception as exc:  # noqa: BLE001
                    errors[conn_id] = str(exc)
        return errors

    def _should_clean(self, states: dict[int, NodeState | None], node_count: int) -> bool:
        if self.cleanup is not CleanupPolicy.ON_SUCCESS:
            return self.cleanup is CleanupPolicy.ALWAYS
        # Success, seen from the teardown: every node was launched, the chief (node 0) ended with 0
        # and no node ended otherwise. Nodes still running are parameter-server daemons the chief's
        # end made redundant (a failed or killed job has a non-zero or missing code somewhere).
        if any(states.get(i) is None for i in range(node_count)):
            return False
        chief = states[0]
        return (not chief["running"] and chief["exit_code"] == 0
                and all(s["running"] or s["exit_code"] == 0 for s in states.values()))
