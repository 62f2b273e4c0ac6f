"""One ssh host of an SSHBackend: its connection (the ssh provider's hook), an SFTP session,
its resolved root, the node-ops helper uploaded there, and the free ports its pre-flight found.

Also a ``node_io.FileReader`` over SFTP, so polling and log reads run no remote shell.
"""

from __future__ import annotations

import io
import json
import posixpath
import shlex
import shutil
from typing import Any, Callable

from airflow_tf.backends import bundle

# What a failure of the connection itself looks like (a missing remote file is FileNotFoundError).
_LOST_CONNECTION = (EOFError, ConnectionError, TimeoutError)
# The node-side modules node_ops needs; uploaded once per host and version.
OPS_MODULES = ("node_ops", "procfs", "node_files")


class SSHBackendError(RuntimeError):
    """A host could not be reached or refused an operation; the message names the host."""


class SSHHost:
    def __init__(self, conn_id: str, setting: str, remote_root: str, python: str, *, connect_attempts: int,
                 connect_timeout: float, ops_files: dict[str, bytes], ops_dirname: str):
        from airflow_tf.backends.ssh_connections import make_hook  # paramiko: only when used

        self.conn_id = conn_id
        self.python = python
        self.hook = make_hook(conn_id, setting=setting, connect_attempts=connect_attempts,
                              connect_timeout=connect_timeout)
        self.address = self.hook.remote_host
        self._remote_root = remote_root
        self._root: str | None = None
        self._sftp = None
        self._ops_files = ops_files
        self._ops_dirname = ops_dirname
        self._ops_ready = False
        self.prefetched_ports: list[int] = []
        self.clock_offset_s = 0.0  # host clock - ours, learnt at launch (exit-code mtimes)

    def where(self) -> str:
        return f"{self.conn_id!r} ({self.hook.remote_host}:{self.hook.port})"

    # -- connection ---------------------------------------------------------------------------
    def sftp(self):
        if self._sftp is None or self._sftp.sock.closed:
            self._sftp = self.hook.get_conn().open_sftp()
            # Without it a read on a link that went silent blocks until TCP gives up (~15 min),
            # holding the trigger's thread; with it, it fails like a refused connection would.
            self._sftp.get_channel().settimeout(self.hook.conn_timeout or 10.0)
        return self._sftp

    def close(self) -> None:
        """Drop the connection (after a failure, so the next call reconnects)."""
        self._sftp = None
        if self.hook.client is not None:
            try:
                self.hook.client.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
            self.hook.client = None

    def _connected(self) -> bool:
        transport = self.hook.client.get_transport() if self.hook.client is not None else None
        return bool(transport and transport.is_active())

    def remote(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` against this host; errors name the host.

        A connection that dropped since the last call gets one fresh try; a host that cannot be
        reached at all does not (the hook already retried ``connect_attempts`` times).
        """
        import paramiko

        fatal = (paramiko.AuthenticationException, paramiko.BadHostKeyException, PermissionError)
        for may_retry in (self._connected(), False):
            try:
                return fn()
            except FileNotFoundError:
                raise  # callers treat a missing remote file as an answer
            except (paramiko.SSHException, *_LOST_CONNECTION, OSError) as exc:
                self.close()
                if not may_retry or isinstance(exc, fatal):
                    raise SSHBackendError(f"{self.where()}: {what} failed: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")

    def exec(self, argv: list[str], timeout: float, what: str) -> str:
        """Run one command (an argv, quoted for the remote shell) and return its stdout."""
        command = shlex.join(argv)

        def run():
            return self.hook.exec_ssh_client_command(self.hook.get_conn(), command, get_pty=False, environment=None,
                                                     timeout=timeout)

        try:
            status, out, err = self.remote(what, run)
        except SSHBackendError:
            raise
        except Exception as exc:  # the hook's own errors (e.g. "SSH command timed out") do not name the host
            raise SSHBackendError(f"{self.where()}: {what} failed: {exc}") from exc
        if status != 0:
            detail = (err or out).decode(errors="replace").strip()[-1000:]
            raise SSHBackendError(f"{self.where()}: {what} failed (exit {status}): {detail}")
        return out.decode(errors="replace")

    # -- files (node_io.FileReader) -------------------------------------------------------------
    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        def read():
            try:
                with self.sftp().open(path, "rb") as f:
                    f.seek(offset)
                    return f.read() if limit is None else f.read(limit)
            except FileNotFoundError:
                return None

        return self.remote(f"reading {path}", read)

    def stat(self, path: str) -> tuple[int, float] | None:
        def stat():
            try:
                st = self.sftp().stat(path)
            except FileNotFoundError:
                return None
            # SFTP mtimes are whole seconds on the host's clock: the midpoint, in our clock.
            return st.st_size, st.st_mtime + 0.5 - self.clock_offset_s

        return self.remote(f"stat {path}", stat)

    def write(self, path: str, data, what: str, mode: int | None = None) -> None:
        """Write bytes or a file object's content (streamed) to ``path``."""

        def write():
            source = io.BytesIO(data) if isinstance(data, bytes) else data
            source.seek(0)  # from the start again when a dropped connection is retried
            sftp = self.sftp()
            if mode is None:
                sftp.putfo(source, path)
                return
            # The mode is set before any byte is written: the content is never readable by others.
            with sftp.open(path, "wb") as f:
                f.chmod(mode)
                f.set_pipelined(True)
                shutil.copyfileobj(source, f, 1 << 20)

        self.remote(what, write)

    def write_atomic(self, path: str, data: bytes) -> None:
        """Write a temporary file, then rename it over ``path``: readers see old or new, whole."""
        tmp = f"{path}.tmp"
        self.write(tmp, data, f"writing {path}", mode=0o600)
        self.remote(f"renaming {tmp}", lambda: self.sftp().posix_rename(tmp, path))

    def read_json(self, path: str) -> dict | None:
        data = self.read(path)
        try:
            return json.loads(data) if data else None
        except ValueError:
            return None

    # -- the root and the ops helper -----------------------------------------------------------
    def root(self) -> str:
        if self._root is None:
            root = self._remote_root
            if root.startswith("~/"):
                home = self.remote("resolving ~", lambda: self.sftp().normalize("."))
                root = posixpath.join(home, root[2:])
                from airflow_tf.cluster.checks import SHELL_SAFE

                if not set(root) <= SHELL_SAFE:  # the home directory reaches the launch wrapper's shell too
                    raise SSHBackendError(f"{self.where()}: remote_root {self._remote_root!r} resolves to {root!r}, "
                                          "which a shell would interpret; give remote_root as an absolute path")
            self._root = root
        return self._root

    def _makedirs(self, path: str) -> None:
        sftp = self.sftp()
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            current = "/" + "/".join(parts[:depth])
            try:
                sftp.stat(current)
            except FileNotFoundError:
                sftp.mkdir(current, mode=0o700)

    def _ensure_ops(self) -> str:
        """Upload the node-ops modules once per host and version; return their package root."""
        ops_dir = posixpath.join(self.root(), self._ops_dirname)
        if self._ops_ready:
            return ops_dir
        marker = "airflow_tf/runtime/node_ops.py"

        def upload():
            sftp = self.sftp()
            try:
                sftp.stat(posixpath.join(ops_dir, marker))
                return
            except FileNotFoundError:
                pass
            # node_ops.py last: its presence (checked above) means the helper is complete.
            for name in sorted(self._ops_files, key=lambda name: name == marker):
                target = posixpath.join(ops_dir, name)
                self._makedirs(posixpath.dirname(target))
                tmp = f"{target}.{id(self)}.tmp"
                sftp.putfo(io.BytesIO(self._ops_files[name]), tmp)
                sftp.posix_rename(tmp, target)  # atomic: racing uploads agree

        self.remote("uploading the node-ops helper", upload)
        self._ops_ready = True
        return ops_dir

    def op(self, name: str, timeout: float = 60.0, **kwargs) -> Any:
        """Run one ``runtime.node_ops`` operation on the host; its JSON answer."""
        # -S: the helper is stdlib-only; skip site-packages (and a big venv's .pth hooks) at start.
        argv = ["env", f"PYTHONPATH={self._ensure_ops()}", self.python, "-S", "-m", "airflow_tf.runtime.node_ops",
                name, json.dumps(kwargs)]
        out = self.exec(argv, timeout, f"node_ops {name}")
        try:
            reply = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise SSHBackendError(f"{self.where()}: node_ops {name}: unexpected output {out[-500:]!r}") from None
        if not reply.get("ok"):
            raise SSHBackendError(f"{self.where()}: node_ops {name}: {reply.get('error')}")
        return reply["result"]


def ops_package() -> tuple[dict[str, bytes], str]:
    """The helper's files and a directory name that changes with their content."""
    import hashlib

    files = bundle.runtime_files(OPS_MODULES)
    digest = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:12]
    return files, f".ops-{digest}"
