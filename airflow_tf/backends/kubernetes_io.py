"""Reading a node's pod through the cncf provider's ``KubernetesHook``: its log by byte offset
over the log API's ``sinceTime``, and its node directory through exec in the ``files`` container.

Logs. The pod log API has no byte offsets, only ``sinceTime`` (whole seconds on the way to the
kubelet: the API server re-encodes it as RFC 3339 without fractions), ``limitBytes`` and
``timestamps``. The rule, shared with DockerBackend (``docker_logs.take_lines``): every line is
read with its timestamp; a cursor keeps the newest timestamp handed out and the (timestamp,
digest) of the lines of its last two seconds; the next read asks ``sinceTime`` = one second
before that newest line, rounded down to the second, and drops every line it already handed out.
Rounding moves the start back by less than a second more, so every re-read line is within the
remembered two seconds. A read whose offset is not the cursor's (a fresh trigger) reads the whole
log and skips ``offset`` bytes. A resumed read asks at most ``LOG_LIMIT`` bytes; when a burst
fills that window with lines already handed out, it asks again with four times the limit.
(Kubelet log rotation is outside this rule: ``kubectl logs`` serves the current file only.)

Files. The node directory lives in the pod's emptyDir; the ``files`` keeper container holds it
readable after the node container ended. Each read is one exec of a tiny ``python -S -c`` in that
container that prints the wanted bytes as base64 JSON (the exec stream is text); a write sends
the bytes (base64) on stdin and replaces the file atomically. The websocket is the client's
``kubernetes.stream.stream`` over the hook's ``core_v1_client`` — the provider's own exec path.
"""

from __future__ import annotations

import base64
import json
import posixpath
import time
from typing import Any

from airflow_tf.backends import kubernetes_names as names
from airflow_tf.backends.docker_logs import LogCursor, take_lines

LOG_LIMIT = 4 << 20
LOG_LIMIT_MAX = 256 << 20
EXEC_TIMEOUT_S = 60

READ_SCRIPT = """\
import base64, json, os, sys
path, offset, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    st = os.stat(path)
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read() if limit < 0 else f.read(limit)
except FileNotFoundError:
    print("null")
else:
    print(json.dumps({"size": st.st_size, "mtime": st.st_mtime, "data": base64.b64encode(data).decode()}))
"""

WRITE_SCRIPT = """\
import base64, os, sys
path, length = sys.argv[1], int(sys.argv[2])
data = base64.b64decode(sys.stdin.read(length))
fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "wb") as f:
    f.write(data)
os.replace(path + ".tmp", path)
print("ok")
"""

STOP_SCRIPT = "import os, signal; os.kill(1, signal.SIGTERM)"  # the launcher is PID 1 of its container


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of a kubernetes client ``ApiException`` or one of its subclasses
    (``NotFoundException``, ``ForbiddenException``, ...); None for anything else."""
    from kubernetes.client.exceptions import ApiException

    return exc.status if isinstance(exc, ApiException) else None


def exec_stream():
    """The client's websocket exec (tests replace it: no API server runs here)."""
    from kubernetes.stream import stream

    return stream


def run_exec(hook, namespace: str, pod: str, container: str, command: list[str], stdin: str | None = None,
             timeout: float = EXEC_TIMEOUT_S) -> tuple[int | None, str, str]:
    """Run ``command`` in ``container``: (exit code, stdout, stderr)."""
    resp = exec_stream()(
        hook.core_v1_client.connect_get_namespaced_pod_exec, pod, namespace, container=container, command=command,
        stdin=stdin is not None, stdout=True, stderr=True, tty=False, _preload_content=False,
    )
    try:
        if stdin is not None:
            resp.write_stdin(stdin)
        resp.run_forever(timeout=timeout)
        return resp.returncode, resp.read_stdout(), resp.read_stderr()
    finally:
        resp.close()


class PodFiles:
    """``node_io.FileReader`` (and writer) over exec in a pod's ``files`` container."""

    def __init__(self, hook, namespace: str, pod: str, python: str):
        self.hook, self.namespace, self.pod, self.python = hook, namespace, pod, python

    def _run(self, script: str, *args: str, stdin: str | None = None) -> str | None:
        """The script's stdout, or None when the container cannot be exec'd into (not started
        yet, or the pod is gone): to a reader, its files do not exist (yet)."""
        try:
            code, out, err = run_exec(self.hook, self.namespace, self.pod, names.FILES_CONTAINER,
                                      [self.python, "-S", "-c", script, *args], stdin=stdin)
        except Exception as exc:
            if api_status(exc) in (400, 404):  # container not running / pod not found
                return None
            raise
        if code not in (0, None) or not out.strip():
            raise OSError(f"reading files in pod {self.pod} failed (exit {code}): {err.strip()[-500:]}")
        return out

    def _read(self, path: str, offset: int, limit: int) -> dict[str, Any] | None:
        out = self._run(READ_SCRIPT, path, str(int(offset)), str(int(limit)))
        return None if out is None else json.loads(out.strip().splitlines()[-1])

    def read(self, path: str, offset: int = 0, limit: int | None = None) -> bytes | None:
        found = self._read(path, offset, -1 if limit is None else limit)
        return None if found is None else base64.b64decode(found["data"])

    def stat(self, path: str) -> tuple[int, float] | None:
        found = self._read(path, 0, 0)
        return None if found is None else (int(found["size"]), time.time())

    def write_atomic(self, path: str, data: bytes) -> None:
        text = base64.b64encode(data).decode()
        if self._run(WRITE_SCRIPT, path, str(len(text)), stdin=text) is None:
            raise ConnectionError(f"pod {self.pod}'s files container is not running: {posixpath.basename(path)} "
                                  "was not written")


def since_time(cursor: LogCursor) -> str:
    """``sinceTime`` for a resumed read: one second before the newest line, whole seconds."""
    seconds = max(cursor.newest_ns // 1_000_000_000 - 1, 0)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def pod_log(hook, namespace: str, pod: str, *, container: str = names.NODE_CONTAINER, timestamps: bool = True,
            since: str | None = None, limit_bytes: int | None = None, tail_lines: int | None = None,
            timeout: float = EXEC_TIMEOUT_S) -> bytes:
    """One read of a container's log (``GET .../pods/{name}/log``) through the hook's API client.

    The generated ``read_namespaced_pod_log`` has no ``sinceTime`` (only the relative
    ``sinceSeconds``, which would mix the kubelet's clock with ours), so the same endpoint is
    called with the client's ``call_api``.
    """
    query = [("container", container), ("timestamps", "true" if timestamps else "false")]
    if since is not None:
        query.append(("sinceTime", since))
    if limit_bytes is not None:
        query.append(("limitBytes", int(limit_bytes)))
    if tail_lines is not None:
        query.append(("tailLines", int(tail_lines)))
    response = hook.api_client.call_api(
        "/api/v1/namespaces/{namespace}/pods/{name}/log", "GET", path_params={"namespace": namespace, "name": pod},
        query_params=query, header_params={"Accept": "text/plain"}, response_types_map={200: "str"},
        auth_settings=["BearerToken"], _return_http_data_only=True, _preload_content=False, _request_timeout=timeout,
    )
    return response.data


def read_log(hook, namespace: str, pod: str, offset: int, cursor: LogCursor | None) -> tuple[bytes, LogCursor]:
    """Whole lines after byte ``offset`` of the node container's log, and the next cursor."""
    resume = cursor is not None and cursor.offset == offset and cursor.newest_ns > 0
    if not resume:
        return take_lines(pod_log(hook, namespace, pod), offset, None)
    limit = LOG_LIMIT
    while True:
        raw = pod_log(hook, namespace, pod, since=since_time(cursor), limit_bytes=limit)
        text, new = take_lines(raw, offset, cursor)
        if text or len(raw) < limit or limit >= LOG_LIMIT_MAX:
            return text, new
        limit *= 4  # a window full of lines handed out already: look further


def not_started(exc: BaseException) -> bool:
    """A log read of a container that has not started (400) or of a pod that is gone (404)."""
    return api_status(exc) in (400, 404)
