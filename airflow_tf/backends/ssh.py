"""SSHBackend: one detached node per ssh host, from Airflow SSH connections.

Node i runs on ``ssh_conn_ids[i]``. A launch uploads one tarball (the stdlib-only node runtime,
the user's source directory, the node's plan) with SFTP into ``<remote_root>/<job_id>/node-<i>/``
and starts ``python -m airflow_tf.runtime.launcher`` there detached, with the ssh provider's
remote-job wrapper (``setsid``, ``nohup`` fallback, pid file, log file). Afterwards everything
is read over SFTP (exit code, ``/proc/PID/stat`` for liveness, the log from an offset), so a
trigger polling every second runs no remote shell. Stopping, the leftover sweep and cleanup run
``ssh_ops.py`` on the host (see there for why not the provider's shell one-liners).

Layout on each host (``remote_root`` defaults to ``~/.airflow_tf/jobs``)::

    <remote_root>/.ops-<hash>/{ssh_ops.py, processes.py}     helper, uploaded once per version
    <remote_root>/<job_id>/node-<i>/{node.json, node.log, pid, handle.json, exit_code,
                                     metrics-rank<r>.jsonl, runtime/airflow_tf/..., src/...}
    <remote_root>/<job_id>/outputs/                          the chief's model and files

Nothing here imports paramiko or the provider at module level: DAG files import this class.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import shlex
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

import airflow_tf.runtime
from airflow_tf.backends import processes, ssh_ops
from airflow_tf.backends.base import Backend, Handle, NodeState
from airflow_tf.backends.local import HANDLE_FILE, LOG_FILE, MAX_LOG_CHUNK, NODE_SPEC_FILE, safe_job_id
from airflow_tf.cluster.errors import SpecError

CLEANUP_POLICIES = ("on_success", "always", "never")
EXIT_CODE_FILE = "exit_code"
BUNDLE_FILE = "bundle.tar.gz"
LAUNCH_SCRIPT = "launch.sh"
PREFETCHED_PORTS = 16  # free ports the pre-flight asks each host for (see free_ports)
RUNTIME_STUB = '"""airflow_tf node runtime, shipped by SSHBackend (the Airflow side is not installed here)."""\n'
# What a failure of the connection itself looks like (a missing remote file is FileNotFoundError).
_LOST_CONNECTION = (EOFError, ConnectionError, TimeoutError)


class SSHBackendError(RuntimeError):
    """A host could not be reached or refused an operation; the message names the host."""


def _ops_files() -> dict[str, bytes]:
    files = {}
    for module in (ssh_ops, processes):
        with open(module.__file__, "rb") as f:
            files[os.path.basename(module.__file__)] = f.read()
    return files


def planned_ports(node: dict[str, Any]) -> list[int]:
    """The ports this node's ranks will listen on: its own TF_CONFIG address and, on node 0,
    the Horovod Gloo rendezvous port. Checked free on the host just before the node starts."""
    ports = set()
    for rank in node.get("ranks", []):
        env = {**node.get("env", {}), **rank.get("env", {})}
        if env.get("TF_CONFIG"):
            config = json.loads(env["TF_CONFIG"])
            task = config.get("task", {})
            addresses = config.get("cluster", {}).get(task.get("type"), [])
            index = task.get("index", 0)
            if isinstance(addresses, list) and index < len(addresses):
                host, _, port = addresses[index].rpartition(":")
                if host == node["host"] and port.isdigit():
                    ports.add(int(port))
        if env.get("HOROVOD_GLOO_RENDEZVOUS_ADDR") == node["host"] and env.get("HOROVOD_GLOO_RENDEZVOUS_PORT", "").isdigit():
            ports.add(int(env["HOROVOD_GLOO_RENDEZVOUS_PORT"]))
    return sorted(ports)


def _stat_fields(text: str) -> list[str] | None:
    try:
        return text.rsplit(")", 1)[1].split()  # the command name may hold spaces and parentheses
    except IndexError:
        return None


class SSHBackend(Backend):
    """Run each node on its own ssh host, given as Airflow SSH connections.

    :param ssh_conn_ids: one Airflow SSH connection per node (node i -> ``ssh_conn_ids[i]``). The
        connection's host is also the address the other nodes reach the node at (TF_CONFIG).
    :param remote_root: per-host directory for job directories (absolute, or ``~/...``).
    :param python: the interpreter on the hosts that runs the node runtime and the training
        script (one executable: a name on the remote PATH or an absolute path).
    :param cleanup: when stop_job (the teardown) removes the nodes' working directories:
        ``"on_success"`` (default: a failed job's logs stay for debugging), ``"always"``, ``"never"``.
        The chief's ``outputs/`` directory is never removed.
    :param allow_shared_hosts: allow more nodes than connections (round-robin placement).
    :param preflight: check every host before any node starts (reachable, host key, Python,
        writable ``remote_root``); see ``hosts()``.
    :param connect_attempts: SSH connection attempts (the hook retries refused connections, e.g.
        sshd's MaxStartups throttling).
    :param connect_timeout: seconds per connection attempt, unless the connection sets
        ``conn_timeout``.
    """

    multi_host = True

    def __init__(
        self,
        ssh_conn_ids: list[str],
        remote_root: str = "~/.airflow_tf/jobs",
        python: str = "python3",
        cleanup: str = "on_success",
        allow_shared_hosts: bool = False,
        preflight: bool = True,
        connect_attempts: int = 3,
        connect_timeout: float = 10.0,
    ):
        if isinstance(ssh_conn_ids, str) or not isinstance(ssh_conn_ids, (list, tuple)) or not ssh_conn_ids:
            raise SpecError(f"ssh_conn_ids must be a non-empty list of Airflow SSH connection ids, got {ssh_conn_ids!r}")
        for i, conn_id in enumerate(ssh_conn_ids):
            if not isinstance(conn_id, str) or not conn_id.strip():
                raise SpecError(f"ssh_conn_ids[{i}] must be a connection id (a non-empty string), got {conn_id!r}")
        root = remote_root.rstrip("/") if isinstance(remote_root, str) else None
        if not root or not (root.startswith("/") or root.startswith("~/")) or any(c in root for c in "\n\0") \
                or ".." in root.split("/"):
            raise SpecError(f"remote_root must be an absolute path or start with '~/' (no '..'), got {remote_root!r}")
        if not isinstance(python, str) or not python.strip() or any(c.isspace() for c in python):
            raise SpecError(f"python must be one executable (a name on the hosts' PATH or an absolute path), got {python!r}")
        if cleanup not in CLEANUP_POLICIES:
            raise SpecError(f"cleanup must be one of {list(CLEANUP_POLICIES)}, got {cleanup!r}")
        if not isinstance(connect_attempts, int) or connect_attempts < 1:
            raise SpecError(f"connect_attempts must be an integer >= 1, got {connect_attempts!r}")
        if not isinstance(connect_timeout, (int, float)) or connect_timeout <= 0:
            raise SpecError(f"connect_timeout must be a number of seconds > 0, got {connect_timeout!r}")
        self.ssh_conn_ids = list(ssh_conn_ids)
        self.remote_root = root
        self.python = python
        self.cleanup = cleanup
        self.allow_shared_hosts = bool(allow_shared_hosts)
        self.preflight = bool(preflight)
        self.connect_attempts = connect_attempts
        self.connect_timeout = float(connect_timeout)
        # Per-process caches, never serialized: hooks (with their paramiko clients), SFTP
        # sessions, resolved remote roots, hosts where the ops helper is known to be uploaded.
        self._hooks: dict[str, Any] = {}
        self._sftps: dict[str, Any] = {}
        self._roots: dict[str, str] = {}
        self._ops_ready: set[str] = set()
        self._free_ports: dict[str, list[int]] = {}  # host -> ports the pre-flight found free
        self._ops = _ops_files()
        self._ops_dirname = ".ops-" + hashlib.sha256(b"".join(self._ops[k] for k in sorted(self._ops))).hexdigest()[:12]

    def settings(self) -> dict[str, Any]:
        return {
            "ssh_conn_ids": list(self.ssh_conn_ids), "remote_root": self.remote_root, "python": self.python,
            "cleanup": self.cleanup, "allow_shared_hosts": self.allow_shared_hosts, "preflight": self.preflight,
            "connect_attempts": self.connect_attempts, "connect_timeout": self.connect_timeout,
        }

    # -- connections ---------------------------------------------------------------------------
    def conn_id_for(self, node_index: int) -> str:
        if node_index >= len(self.ssh_conn_ids) and not self.allow_shared_hosts:
            raise SpecError(self._too_few_hosts(node_index + 1))
        return self.ssh_conn_ids[node_index % len(self.ssh_conn_ids)]

    def _too_few_hosts(self, node_count: int) -> str:
        return (f"node_count is {node_count} but SSHBackend has {len(self.ssh_conn_ids)} ssh_conn_ids "
                f"{self.ssh_conn_ids}: give one connection per node, or set allow_shared_hosts=True to place "
                f"several nodes on one host (round-robin)")

    def _hook(self, conn_id: str):
        if conn_id not in self._hooks:
            from airflow_tf.backends.ssh_connections import make_hook  # paramiko: only when used

            index = self.ssh_conn_ids.index(conn_id)
            self._hooks[conn_id] = make_hook(conn_id, setting=f"ssh_conn_ids[{index}]",
                                             connect_attempts=self.connect_attempts,
                                             connect_timeout=self.connect_timeout)
        return self._hooks[conn_id]

    def _where(self, conn_id: str) -> str:
        hook = self._hooks.get(conn_id)
        return f"{conn_id!r} ({hook.remote_host}:{hook.port})" if hook else repr(conn_id)

    def _sftp(self, conn_id: str):
        sftp = self._sftps.get(conn_id)
        if sftp is None or sftp.sock.closed:
            sftp = self._sftps[conn_id] = self._hook(conn_id).get_conn().open_sftp()
        return sftp

    def _forget(self, conn_id: str) -> None:
        """Drop a connection that failed, so the next call reconnects."""
        self._sftps.pop(conn_id, None)
        hook = self._hooks.get(conn_id)
        if hook is not None and hook.client is not None:
            try:
                hook.client.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            hook.client = None

    def _connected(self, conn_id: str) -> bool:
        hook = self._hooks.get(conn_id)
        transport = hook.client.get_transport() if hook is not None and hook.client is not None else None
        return bool(transport and transport.is_active())

    def _remote(self, conn_id: str, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` against ``conn_id``; errors name the host.

        A connection that dropped since the last call gets one fresh try; a host that cannot be
        reached at all does not (the hook already retried ``connect_attempts`` times).
        """
        import paramiko

        fatal = (paramiko.AuthenticationException, paramiko.BadHostKeyException)
        for may_retry in (self._connected(conn_id), False):
            try:
                return fn()
            except FileNotFoundError:
                raise  # callers treat a missing remote file as an answer
            except (paramiko.SSHException, *_LOST_CONNECTION, OSError) as exc:
                self._forget(conn_id)
                if not may_retry or isinstance(exc, (*fatal, PermissionError)):
                    raise SSHBackendError(f"{self._where(conn_id)}: {what} failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close this object's SSH connections (they also close when it is garbage-collected)."""
        for conn_id in list(self._hooks):
            self._forget(conn_id)

    # -- remote helpers -----------------------------------------------------------------------
    def _root(self, conn_id: str) -> str:
        if conn_id not in self._roots:
            root = self.remote_root
            if root.startswith("~/"):
                home = self._remote(conn_id, "resolving ~", lambda: self._sftp(conn_id).normalize("."))
                root = posixpath.join(home, root[2:])
            self._roots[conn_id] = root
        return self._roots[conn_id]

    def _job_dir(self, conn_id: str, job_id: str) -> str:
        return posixpath.join(self._root(conn_id), safe_job_id(job_id))

    def _makedirs(self, sftp, path: str) -> None:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            current = "/" + "/".join(parts[:depth])
            try:
                sftp.stat(current)
            except FileNotFoundError:
                sftp.mkdir(current, mode=0o700)

    def _ensure_ops(self, conn_id: str) -> str:
        """Upload ssh_ops.py + processes.py once per host and version; return their directory."""
        ops_dir = posixpath.join(self._root(conn_id), self._ops_dirname)
        if conn_id in self._ops_ready:
            return ops_dir

        def upload():
            sftp = self._sftp(conn_id)
            try:
                sftp.stat(posixpath.join(ops_dir, "ssh_ops.py"))
                return
            except FileNotFoundError:
                pass
            self._makedirs(sftp, ops_dir)
            # ssh_ops.py last: its presence (checked above) means the helper is complete.
            for name in sorted(self._ops, key=lambda name: name == "ssh_ops.py"):
                data = self._ops[name]
                tmp = posixpath.join(ops_dir, f".{name}.{os.getpid()}.tmp")
                sftp.putfo(io.BytesIO(data), tmp)
                sftp.posix_rename(tmp, posixpath.join(ops_dir, name))  # atomic: racing uploads agree

        self._remote(conn_id, "uploading the ssh_ops helper", upload)
        self._ops_ready.add(conn_id)
        return ops_dir

    def _exec(self, conn_id: str, command: str, timeout: float, what: str) -> str:
        def run():
            hook = self._hook(conn_id)
            return hook.exec_ssh_client_command(hook.get_conn(), command, get_pty=False, environment=None,
                                                timeout=timeout)

        try:
            status, out, err = self._remote(conn_id, what, run)
        except SSHBackendError:
            raise
        except Exception as exc:  # the hook's own errors (e.g. "SSH command timed out") do not name the host
            raise SSHBackendError(f"{self._where(conn_id)}: {what} failed: {exc}") from exc
        if status != 0:
            detail = (err or out).decode(errors="replace").strip()[-1000:]
            raise SSHBackendError(f"{self._where(conn_id)}: {what} failed (exit {status}): {detail}")
        return out.decode(errors="replace")

    def _op(self, conn_id: str, op: str, timeout: float = 60.0, **kwargs) -> Any:
        """Run one ssh_ops operation on the host; its JSON answer, or SSHBackendError naming the host."""
        script = posixpath.join(self._ensure_ops(conn_id), "ssh_ops.py")
        # -S: the helper is stdlib-only; skip site-packages (and a big venv's .pth hooks) at start.
        command = shlex.join([self.python, "-S", script, op, json.dumps(kwargs)])
        out = self._exec(conn_id, command, timeout, f"ssh_ops {op}")
        try:
            reply = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SSHBackendError(f"{self._where(conn_id)}: ssh_ops {op}: unexpected output {out[-500:]!r}") from None
        if not reply.get("ok"):
            raise SSHBackendError(f"{self._where(conn_id)}: ssh_ops {op}: {reply.get('error')}")
        return reply["result"]

    def _read_bytes(self, conn_id: str, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        """Bytes of a remote file from ``offset`` (at most ``limit``), or None when it does not exist."""

        def read():
            try:
                with self._sftp(conn_id).open(path, "rb") as f:
                    if limit is None:
                        return f.read()
                    f.seek(offset)
                    return f.read(limit)
            except FileNotFoundError:
                return None

        return self._remote(conn_id, f"reading {path}", read)

    def _read_json(self, conn_id: str, path: str) -> dict | None:
        data = self._read_bytes(conn_id, path)
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None

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
        for conn_id in dict.fromkeys(conns):
            self._hook(conn_id)  # connection lookups here, in the calling thread; SpecError when bad
        if self.preflight:
            self._preflight(list(dict.fromkeys(conns)))
        return [self._hooks[conn_id].remote_host for conn_id in conns]

    def _preflight(self, conn_ids: list[str]) -> None:
        def check(conn_id) -> str | None:
            try:
                self._remote(conn_id, "connecting", lambda: self._hook(conn_id).get_conn())
                found = self._op(conn_id, "preflight", root=self._root(conn_id), ports=PREFETCHED_PORTS)
                self._free_ports[self._hooks[conn_id].remote_host] = found["free_ports"]
                return None
            except Exception as exc:  # noqa: BLE001 - every host is checked, all problems reported together
                return str(exc) if isinstance(exc, SSHBackendError) else f"{self._where(conn_id)}: {exc!r}"

        with ThreadPoolExecutor(max_workers=min(16, len(conn_ids))) as pool:
            problems = dict(zip(conn_ids, pool.map(check, conn_ids)))
        failing = [conn_id for conn_id, problem in problems.items() if problem]
        if failing:
            raise SSHBackendError(
                f"SSHBackend pre-flight failed for {len(failing)} of {len(conn_ids)} host(s), no node was started; "
                f"failing: {', '.join(self._where(c) for c in failing)}\n- "
                + "\n- ".join(problems[c] for c in failing)
            )

    def free_ports(self, host: str, count: int) -> list[int]:
        """Ports free on ``host`` now, asked of the host itself (a socket bound to port 0).

        The pre-flight in ``hosts()`` already fetched some (one round trip less per host in
        the plan task); each is handed out once.
        """
        prefetched = self._free_ports.get(host, [])
        if len(prefetched) >= count:
            self._free_ports[host] = prefetched[count:]
            return prefetched[:count]
        # Connections hosts() already opened first: an unused connection is not looked up.
        for conn_id in [*self._hooks, *dict.fromkeys(self.ssh_conn_ids)]:
            if self._hook(conn_id).remote_host == host:
                return [int(p) for p in self._op(conn_id, "free_ports", count=count)]
        raise SSHBackendError(f"no connection of SSHBackend {self.ssh_conn_ids} has host {host!r}")

    def output_location(self, job_id: str) -> str:
        conn_id = self.conn_id_for(0)
        return f"ssh://{self._hook(conn_id).remote_host}{posixpath.join(self._job_dir(conn_id, job_id), 'outputs')}"

    def host_path(self, handle: Handle, path: str) -> str:
        """A path on the node's host, as ``ssh://host/path`` (it is not on the Airflow worker)."""
        return f"ssh://{handle['host']}{path}"

    # -- node lifecycle -----------------------------------------------------------------------
    def _bundle(self, node: dict[str, Any], source_directory: str):
        """node.json + the node runtime (stdlib only, under a stub package) + the source directory."""
        if not os.path.isdir(source_directory):
            raise SpecError(f"source_directory {source_directory!r} is not a directory on this Airflow worker")
        runtime_dir = os.path.dirname(os.path.abspath(airflow_tf.runtime.__file__))
        skip = ("__pycache__", ".git")

        def clean(info: tarfile.TarInfo):
            if any(part in skip for part in info.name.split("/")) or info.name.endswith(".pyc"):
                return None
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            return info

        def add_bytes(tar, name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), time.time(), 0o644
            tar.addfile(info, io.BytesIO(data))

        buf = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
            add_bytes(tar, NODE_SPEC_FILE, json.dumps(node, indent=1).encode())
            add_bytes(tar, "runtime/airflow_tf/__init__.py", RUNTIME_STUB.encode())
            for name in sorted(os.listdir(runtime_dir)):
                if name.endswith(".py"):
                    tar.add(os.path.join(runtime_dir, name), f"runtime/airflow_tf/runtime/{name}", filter=clean)
            tar.add(source_directory, "src", filter=clean)
        return buf

    def _launch_script(self, job_id: str, node_index: int, job_dir: str, node_dir: str) -> str:
        from airflow.providers.ssh.utils.remote_job import RemoteJobPaths, build_posix_wrapper_command

        class NodePaths(RemoteJobPaths):
            @property
            def log_file(self) -> str:  # node.log, like every other backend's node directory
                return posixpath.join(self.job_dir, LOG_FILE)

        paths = NodePaths(job_id=f"node-{node_index}", remote_os="posix", base_dir=job_dir)
        # exec: the launcher replaces the wrapper's shell, so it is the session and group leader
        # (one killpg stops the node; its leftover sweep works) and writes the exit code itself.
        launcher = "exec " + shlex.join([
            self.python, "-m", "airflow_tf.runtime.launcher", node_dir,
            "--workdir", posixpath.join(node_dir, "src"), "--output-dir", posixpath.join(job_dir, "outputs"),
        ])
        env = {"PYTHONPATH": posixpath.join(node_dir, "runtime"), "AIRFLOW_TF_JOB_ID": job_id,
               "AIRFLOW_TF_NODE_INDEX": str(node_index)}
        unpack = (f"cd {shlex.quote(node_dir)} && tar -xzf {BUNDLE_FILE} --no-same-owner && rm -f {BUNDLE_FILE} "
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

    def start(self, job_id: str, node: dict[str, Any], source_directory: str) -> Handle:
        node_index = int(node["node_index"])
        conn_id = self.conn_id_for(node_index)
        job_dir = self._job_dir(conn_id, job_id)
        node_dir = posixpath.join(job_dir, f"node-{node_index}")
        previous = self._read_json(conn_id, posixpath.join(node_dir, HANDLE_FILE))
        if previous:  # a retried launch: stop what the previous try started before reusing the directory
            self.stop(previous, grace_s=5)
        ports = planned_ports(node)
        busy = self._op(conn_id, "prepare", root=self._root(conn_id), node_dir=node_dir, ports=ports)["busy"]
        if busy:
            raise SSHBackendError(f"node {node_index}: port(s) {busy} planned for it are already in use on "
                                  f"{self._where(conn_id)}; re-run the job to plan with ports free now")
        script = self._launch_script(job_id, node_index, job_dir, node_dir).encode()
        with self._bundle(node, source_directory) as bundle:

            def upload():
                bundle.seek(0)
                sftp = self._sftp(conn_id)
                sftp.putfo(bundle, posixpath.join(node_dir, BUNDLE_FILE))
                sftp.putfo(io.BytesIO(script), posixpath.join(node_dir, LAUNCH_SCRIPT))

            self._remote(conn_id, "uploading the node bundle", upload)
        # The script stays in the node directory: what exactly started the node, for debugging.
        out = self._exec(conn_id, shlex.join(["bash", posixpath.join(node_dir, LAUNCH_SCRIPT)]), timeout=60,
                         what=f"starting node {node_index}")
        now = time.time()
        report = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("AIRFLOW_TF_"))
        if not report.get("AIRFLOW_TF_PID", "").isdigit():
            raise SSHBackendError(f"node {node_index} on {self._where(conn_id)} did not start (no pid file); "
                                  f"see {posixpath.join(node_dir, LOG_FILE)} there")
        fields = _stat_fields(report.get("AIRFLOW_TF_STAT", ""))
        handle = {
            "backend": "ssh",
            "conn_id": conn_id,
            "host": self._hook(conn_id).remote_host,
            "job_id": job_id,
            "node_index": node_index,
            "job_dir": job_dir,
            "node_dir": node_dir,
            "pid": int(report["AIRFLOW_TF_PID"]),
            # None: the launcher was already gone when we looked (poll then trusts the exit code only).
            "start_ticks": int(fields[19]) if fields else None,
            "started_at": now,
            # host clock - ours (the host's clock was read just before the answer left): turns the
            # exit code's mtime into our time.
            "clock_offset_s": float(report.get("AIRFLOW_TF_CLOCK", now)) - now,
        }
        data = json.dumps(handle).encode()
        self._remote(conn_id, "writing handle.json",
                     lambda: self._sftp(conn_id).putfo(io.BytesIO(data), posixpath.join(node_dir, HANDLE_FILE)))
        return handle

    def poll(self, handle: Handle) -> NodeState:
        code = self._exit_code(handle)
        if code is not None:
            return code
        if self._alive(handle):
            return NodeState.running_now()
        return self._exit_code(handle) or NodeState.ended(None, time.time())  # it may have just written it

    def _exit_code(self, handle: Handle) -> NodeState | None:
        conn_id, path = handle["conn_id"], posixpath.join(handle["node_dir"], EXIT_CODE_FILE)

        def read():
            sftp = self._sftp(conn_id)
            try:
                with sftp.open(path, "rb") as f:
                    text, mtime = f.read().decode().strip(), f.stat().st_mtime
            except FileNotFoundError:
                return None
            return text, mtime

        found = self._remote(conn_id, "polling", read)
        if not found or not found[0].lstrip("-").isdigit():
            return None
        # SFTP mtimes are whole seconds on the host's clock: the midpoint, in our clock, within bounds.
        ended_at = found[1] + 0.5 - handle.get("clock_offset_s", 0.0)
        return NodeState.ended(int(found[0]), min(max(ended_at, handle["started_at"]), time.time()))

    def _alive(self, handle: Handle) -> bool:
        if handle.get("start_ticks") is None:
            return False
        data = self._read_bytes(handle["conn_id"], f"/proc/{int(handle['pid'])}/stat")
        fields = _stat_fields(data.decode(errors="replace")) if data else None
        # Zombies count as dead; a different start time means the pid was reused.
        return bool(fields) and fields[0] != "Z" and int(fields[19]) == handle["start_ticks"]

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        data = self._read_bytes(handle["conn_id"], posixpath.join(handle["node_dir"], LOG_FILE), offset, MAX_LOG_CHUNK)
        if not data:
            return "", offset
        end = data.rfind(b"\n") + 1  # whole lines only; the rest comes next time
        return data[:end].decode(errors="replace"), offset + end

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        conn_id, path = handle["conn_id"], posixpath.join(handle["node_dir"], LOG_FILE)

        def tail():
            try:
                with self._sftp(conn_id).open(path, "rb") as f:
                    f.seek(max(0, f.stat().st_size - 64 * 1024))
                    return f.read()
            except FileNotFoundError:
                return b""

        return self._remote(conn_id, "reading the log tail", tail).decode(errors="replace").splitlines()[-lines:]

    def read_file(self, handle: Handle, name: str) -> str | None:
        if "/" in name or name.startswith("."):
            raise ValueError(f"read_file takes a plain file name, got {name!r}")
        data = self._read_bytes(handle["conn_id"], posixpath.join(handle["node_dir"], name))
        return None if data is None else data.decode(errors="replace")

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        self._op(handle["conn_id"], "stop", timeout=grace_s + 30, pid=int(handle["pid"]),
                 ticks=handle.get("start_ticks"), job_id=handle["job_id"], node_index=int(handle["node_index"]),
                 grace_s=grace_s)

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        """Stop every node of the job (from the handle.json each launch left on its host), sweep
        each host for the job's processes, then clean up per the ``cleanup`` policy.

        A host that cannot be reached is reported after every other host was dealt with.
        """
        by_conn: dict[str, list[int]] = {}
        for node_index in range(node_count):
            by_conn.setdefault(self.conn_id_for(node_index), []).append(node_index)
        for conn_id in by_conn:
            self._hook(conn_id)  # connection lookups in this thread

        def stop_host(conn_id: str) -> dict[int, NodeState | None]:
            states: dict[int, NodeState | None] = {}
            for node_index in by_conn[conn_id]:
                node_dir = posixpath.join(self._job_dir(conn_id, job_id), f"node-{node_index}")
                handle = self._read_json(conn_id, posixpath.join(node_dir, HANDLE_FILE))
                states[node_index] = self.poll(handle) if handle else None
                if handle and states[node_index]["running"]:
                    self.stop(handle, grace_s)
            self._op(conn_id, "sweep", job_id=job_id)  # also nodes whose handle.json was never written
            return states

        states: dict[int, NodeState | None] = {}
        errors: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=min(16, len(by_conn))) as pool:
            futures = {conn_id: pool.submit(stop_host, conn_id) for conn_id in by_conn}
            for conn_id, future in futures.items():
                try:
                    states.update(future.result())
                except Exception as exc:  # noqa: BLE001 - every host gets its turn first
                    errors[conn_id] = str(exc)
        if not errors and self._should_clean(states, node_count):
            def clean_host(conn_id: str) -> None:
                job_dir = self._job_dir(conn_id, job_id)
                self._op(conn_id, "cleanup", root=self._root(conn_id), job_dir=job_dir,
                         node_dirs=[posixpath.join(job_dir, f"node-{i}") for i in by_conn[conn_id]])

            with ThreadPoolExecutor(max_workers=min(16, len(by_conn))) as pool:
                futures = {conn_id: pool.submit(clean_host, conn_id) for conn_id in by_conn}
                for conn_id, future in futures.items():
                    try:
                        future.result()
                    except Exception as exc:  # noqa: BLE001
                        errors[conn_id] = f"cleanup: {exc}"
        if errors:
            raise SSHBackendError(f"could not stop or clean up job {job_id} on {len(errors)} host(s); its nodes "
                                  "there may still run:\n- " + "\n- ".join(errors.values()))
        return sorted(i for i, state in states.items() if state and state["running"])

    def _should_clean(self, states: dict[int, NodeState | None], node_count: int) -> bool:
        if self.cleanup != "on_success":
            return self.cleanup == "always"
        # Success, seen from the teardown: every node was launched, the chief (node 0) ended with 0
        # and no node ended otherwise. Nodes still running are parameter-server daemons the chief's
        # end made redundant (a failed or killed job has a non-zero or missing code somewhere).
        if any(states.get(i) is None for i in range(node_count)):
            return False
        chief = states[0]
        return (not chief["running"] and chief["exit_code"] == 0
                and all(s["running"] or s["exit_code"] == 0 for s in states.values()))
