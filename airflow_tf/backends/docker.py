"""DockerBackend: one container per node, on that node's Docker daemon.

Node i runs on daemon ``i % len(daemons)``; several nodes may share one daemon. Containers use
host networking, so the TF_CONFIG / rendezvous addresses the planner generates (the daemon
hosts' addresses) work unchanged.

Bring your own image: the image needs a Python (``python=``) with TensorFlow, nothing of
airflow_tf. The launch copies the stdlib-only node runtime (``airflow_tf/runtime``), the user's
source directory and the node plan into the created container with ``put_archive`` and only then
starts it, so remote daemons work the same as a local one. Outputs go to a bind-mounted directory
(local daemons, or ``output_dir``) or a named volume per job (remote daemons), so they outlive
the containers, which are always removed.

Client handling is the docker provider's ``DockerHook`` (ping, TLS, API-version detection); this
module only adds what a training job needs on top of its low-level ``APIClient``. The docker SDK
is imported inside methods: DAG files construct this backend at every parse.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import posixpath
import tarfile
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

import airflow_tf
from airflow_tf.backends.base import Backend, Handle, NodeState
from airflow_tf.backends.docker_gpus import gpu_devices, wants_gpu
from airflow_tf.backends.docker_logs import LogCursor, parse_timestamp, take_lines
from airflow_tf.backends.local import LocalBackend, default_job_root, safe_job_id
from airflow_tf.cluster.errors import SpecError

# Fixed layout inside every node container.
ROOT = "/airflow_tf"
LIB_DIR = f"{ROOT}/lib"  # the node runtime package (PYTHONPATH)
SRC_DIR = f"{ROOT}/src"  # the user's source directory (the ranks' working directory)
JOB_DIR = f"{ROOT}/job"  # node-<i>/{node.json, exit_code, metrics-rank<r>.jsonl, model_path}
OUTPUT_DIR = f"{ROOT}/outputs"  # the chief's outputs: bind mount or named volume

LABEL_JOB = "airflow_tf.job_id"
LABEL_NODE = "airflow_tf.node_index"
NODE_SPEC_FILE = "node.json"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}
MAX_FILE_BYTES = 16 << 20  # read_file is for small files (metrics, model path)
TAIL_KEPT = 200  # log lines kept in memory from a container stop() removed
# The runtime package is stdlib-only at import; this stub stands in for airflow_tf/__init__.py,
# whose lazy exports would reach for airflow.
PACKAGE_STUB = b'"""airflow_tf node runtime only (shipped into the container by DockerBackend)."""\n'


@dataclasses.dataclass(frozen=True)
class Daemon:
    """One configured Docker daemon: where it is, how to connect, which address nodes use."""

    setting: str  # how the user named it, for messages: "docker_urls[1]", "docker_conn_ids[0] ('gpu1')"
    url: str
    conn_id: str | None = None
    tls: dict[str, Any] | None = None  # DockerHook.construct_tls_config kwargs (from a connection)
    address: str | None = None  # host_addresses override

    @property
    def is_local(self) -> bool:
        """Runs on this machine: a unix socket or a loopback TCP address."""
        parts = urlsplit(self.url)
        return parts.scheme in ("unix", "npipe") or (parts.hostname or "") in LOCAL_HOSTS

    @property
    def host(self) -> str:
        """The address other nodes reach this daemon's containers at (host networking)."""
        if self.address:
            return self.address
        return "127.0.0.1" if self.is_local else urlsplit(self.url).hostname


def _url_from_connection(conn) -> str:
    """A daemon URL from an Airflow connection: ``host`` is a URL or a host name (+ ``port``)."""
    host = (conn.host or "").strip()
    if not host:
        raise SpecError(f"docker_conn_ids: connection {conn.conn_id!r} has no host (the Docker daemon URL)")
    if "://" not in host:
        return f"tcp://{host}:{conn.port or 2375}"
    parts = urlsplit(host)
    if conn.port and parts.port is None and parts.scheme in ("tcp", "http", "https"):
        return f"{parts.scheme}://{parts.hostname}:{conn.port}{parts.path}"
    return host


def _parse_mount(spec: Any, index: int) -> str:
    if not isinstance(spec, str):
        raise SpecError(f"mounts[{index}] must be a string 'host_path:container_path[:ro|rw]', got {spec!r}")
    parts = spec.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise SpecError(f"mounts[{index}] must be 'host_path:container_path[:ro|rw]', got {spec!r}")
    source, target = parts[0], parts[1]
    if not source.startswith("/") or not target.startswith("/"):
        raise SpecError(f"mounts[{index}]: both paths must be absolute, got {spec!r}")
    if target.rstrip("/") == ROOT or target.startswith(ROOT + "/"):
        raise SpecError(f"mounts[{index}]: {ROOT} is reserved for the node runtime, got {spec!r}")
    return spec if len(parts) == 3 else f"{spec}:rw"


def _string_list(name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"{name} must be a non-empty list of strings or None, got {value!r}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"{name}[{i}] must be a non-empty string, got {item!r}")
    return list(value)


class DockerBackend(Backend):
    """Run each node in a container on a Docker daemon (one per host; nodes may share one).

    :param image: the image every node runs (must already exist on each daemon: it is never
        pulled). It needs ``python`` with TensorFlow (and whatever the script imports).
    :param docker_urls: daemon URLs (``unix:///var/run/docker.sock``, ``tcp://gpu1:2375``); node i
        runs on ``docker_urls[i % len(docker_urls)]``.
    :param docker_conn_ids: instead of URLs: Airflow connections, one per daemon. ``host`` is the
        daemon URL (or a host name, with ``port``, default 2375); extra ``tls_ca_cert``,
        ``tls_client_cert``, ``tls_client_key`` (paths on the worker) turn on TLS.
    :param shm_size: /dev/shm size per container (``"2g"``); NCCL and big tf.data pipelines want more
        than Docker's 64 MB.
    :param environment: extra environment for every container (not secret-safe: ``docker inspect``
        shows it).
    :param mounts: extra bind mounts, ``"host_path:container_path[:ro|rw]"`` (data sets, caches).
    :param user: ``user[:group]`` the container runs as (default: the image's).
    :param python: the interpreter inside the image (a name on its PATH or an absolute path).
    :param gpus_per_host: GPUs per daemon host, to split them between nodes sharing a daemon.
        Without it a GPU node gets all GPUs of its host.
    :param allow_shared_hosts: may several nodes run on one daemon? (False: node_count must not
        exceed the number of daemons.)
    :param output_dir: a directory on the daemons' hosts; each job's outputs go to
        ``<output_dir>/<job_id>/outputs`` there. Default: ``$AIRFLOW_TF_JOB_ROOT`` or
        ``$AIRFLOW_HOME/airflow_tf_jobs`` for local daemons, a named volume
        ``airflow_tf-<job_id>-outputs`` on remote ones.
    :param host_addresses: the address nodes reach each daemon's host at, one per daemon, when
        the daemon URL's host is not it (SSH tunnels; a local daemon next to remote ones).
    :param timeout: seconds for one Docker API call.
    """

    multi_host = True

    def __init__(
        self,
        image: str,
        docker_urls: list[str] | None = None,
        docker_conn_ids: list[str] | None = None,
        shm_size: str | int | None = None,
        environment: dict[str, str] | None = None,
        mounts: list[str] | None = None,
        user: str | None = None,
        python: str = "python3",
        gpus_per_host: int | None = None,
        allow_shared_hosts: bool = True,
        output_dir: str | None = None,
        host_addresses: list[str] | None = None,
        timeout: int = 60,
    ):
        if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
            raise SpecError(f"image must be an image reference like 'tensorflow/tensorflow:2.21.0', got {image!r}")
        docker_urls = _string_list("docker_urls", docker_urls)
        docker_conn_ids = _string_list("docker_conn_ids", docker_conn_ids)
        if docker_urls is None and docker_conn_ids is None:
            raise SpecError("DockerBackend needs docker_urls (e.g. ['unix:///var/run/docker.sock']) or docker_conn_ids")
        if docker_urls is not None and docker_conn_ids is not None:
            raise SpecError("give docker_urls or docker_conn_ids, not both")
        for i, url in enumerate(docker_urls or []):
            parts = urlsplit(url)
            if parts.scheme not in ("unix", "tcp", "http", "https", "ssh") or not (parts.hostname or parts.path):
                raise SpecError(f"docker_urls[{i}] must be a URL like unix:///var/run/docker.sock or tcp://HOST:2375, "
                                f"got {url!r}")
        daemon_count = len(docker_urls or docker_conn_ids)
        host_addresses = _string_list("host_addresses", host_addresses)
        if host_addresses is not None and len(host_addresses) != daemon_count:
            raise SpecError(f"host_addresses must have one address per daemon ({daemon_count}), got {host_addresses!r}")
        if shm_size is not None and not (isinstance(shm_size, (int, str)) and str(shm_size).strip()):
            raise SpecError(f"shm_size must be bytes (int) or a size like '2g', got {shm_size!r}")
        if environment is not None and not (
            isinstance(environment, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in environment.items())
        ):
            raise SpecError("environment must be a dict of strings to strings")
        mounts = [_parse_mount(spec, i) for i, spec in enumerate(mounts)] if mounts is not None else None
        if user is not None and (not isinstance(user, str) or not user.strip()):
            raise SpecError(f"user must be 'name', 'uid' or 'uid:gid', got {user!r}")
        if not isinstance(python, str) or not python.strip():
            raise SpecError(f"python must be the interpreter's name or path in the image, got {python!r}")
        if gpus_per_host is not None and (isinstance(gpus_per_host, bool) or not isinstance(gpus_per_host, int)
                                          or gpus_per_host < 1):
            raise SpecError(f"gpus_per_host must be an integer >= 1 or None, got {gpus_per_host!r}")
        if not isinstance(allow_shared_hosts, bool):
            raise SpecError(f"allow_shared_hosts must be True or False, got {allow_shared_hosts!r}")
        if output_dir is not None and (not isinstance(output_dir, str) or not output_dir.startswith("/")):
            raise SpecError(f"output_dir must be an absolute path on the daemons' hosts, got {output_dir!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise SpecError(f"timeout must be an integer number of seconds >= 1, got {timeout!r}")
        self.image = image
        self.docker_urls = docker_urls
        self.docker_conn_ids = docker_conn_ids
        self.shm_size = shm_size
        self.environment = environment
        self.mounts = mounts
        self.user = user
        self.python = python
        self.gpus_per_host = gpus_per_host
        self.allow_shared_hosts = allow_shared_hosts
        self.output_dir = output_dir
        self.host_addresses = host_addresses
        self.timeout = timeout
        if docker_urls is not None:
            self._check_mixed(self._url_daemons())
        # Per-object caches (never serialized): clients, log cursors, what stop() removed.
        self._daemon_list: list[Daemon] | None = None
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._cursors: dict[str, LogCursor] = {}
        self._removed: dict[str, dict[str, Any]] = {}

    def settings(self) -> dict[str, Any]:
        return {
            "image": self.image, "docker_urls": self.docker_urls, "docker_conn_ids": self.docker_conn_ids,
            "shm_size": self.shm_size, "environment": self.environment, "mounts": self.mounts, "user": self.user,
            "python": self.python, "gpus_per_host": self.gpus_per_host, "allow_shared_hosts": self.allow_shared_hosts,
            "output_dir": self.output_dir, "host_addresses": self.host_addresses, "timeout": self.timeout,
        }

    # -- daemons --------------------------------------------------------------------------------
    def _address(self, i: int) -> str | None:
        return self.host_addresses[i] if self.host_addresses else None

    def _url_daemons(self) -> list[Daemon]:
        return [Daemon(f"docker_urls[{i}]", url, address=self._address(i)) for i, url in enumerate(self.docker_urls)]

    @staticmethod
    def _check_mixed(daemons: list[Daemon]) -> None:
        # 127.0.0.1 in TF_CONFIG would point a remote node at itself.
        local = [d for d in daemons if d.is_local and not d.address]
        if local and len(local) != len(daemons):
            raise SpecError(
                f"{local[0].setting} is a local Docker daemon next to remote ones: its containers' address 127.0.0.1 "
                "is not reachable from the other hosts; set host_addresses (one per daemon)"
            )

    def daemons(self) -> list[Daemon]:
        """The configured daemons in order (connections are looked up once per backend object)."""
        if self._daemon_list is None:
            if self.docker_urls is not None:
                self._daemon_list = self._url_daemons()
            else:
                self._daemon_list = [self._conn_daemon(i, conn_id) for i, conn_id in enumerate(self.docker_conn_ids)]
                self._check_mixed(self._daemon_list)
        return self._daemon_list

    def _conn_daemon(self, i: int, conn_id: str) -> Daemon:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        setting = f"docker_conn_ids[{i}] ({conn_id!r})"
        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise SpecError(f"{setting}: no Airflow connection with this id is defined") from None
        extra = conn.extra_dejson
        tls = None
        if extra.get("tls_ca_cert") or extra.get("tls_client_cert"):
            tls = {"ca_cert": extra.get("tls_ca_cert"), "client_cert": extra.get("tls_client_cert"),
                   "client_key": extra.get("tls_client_key"), "verify": extra.get("tls_verify", True)}
        return Daemon(setting, _url_from_connection(conn), conn_id=conn_id, tls=tls, address=self._address(i))

    def daemon_for(self, node_index: int) -> Daemon:
        daemons = self.daemons()
        return daemons[node_index % len(daemons)]

    def _handle_daemon(self, handle: Handle) -> Daemon:
        for daemon in self.daemons():
            if daemon.url == handle["daemon"] and daemon.conn_id == handle.get("docker_conn_id"):
                return daemon
        return Daemon("handle", handle["daemon"], conn_id=handle.get("docker_conn_id"))

    def client(self, daemon: Daemon):
        """The provider hook's low-level ``docker.APIClient`` for a daemon (cached per backend object)."""
        key = (daemon.url, daemon.conn_id)
        if key not in self._clients:
            from airflow.providers.docker.hooks.docker import DockerHook

            tls = DockerHook.construct_tls_config(**daemon.tls) if daemon.tls else None
            # docker_conn_id=None: the provider's Docker connection is a registry login, and
            # nothing is ever pulled here; our connections only locate the daemon.
            hook = DockerHook(docker_conn_id=None, base_url=daemon.url, tls=tls, timeout=self.timeout)
            try:
                self._clients[key] = hook.get_conn()
            except Exception as exc:  # the hook logs the cause and raises a generic error
                raise ConnectionError(f"DockerBackend cannot reach the Docker daemon {daemon.url} "
                                      f"({daemon.setting}): {exc}") from exc
        return self._clients[key]

    # -- planning inputs ----------------------------------------------------------------------
    def hosts(self, node_count: int) -> list[str]:
        """One address per node; also the pre-flight: every daemon used is up and has the image."""
        daemons = self.daemons()
        if not self.allow_shared_hosts and node_count > len(daemons):
            raise SpecError(
                f"node_count is {node_count} but only {len(daemons)} Docker daemon(s) are configured and "
                "allow_shared_hosts is False; add daemons or set allow_shared_hosts=True"
            )
        for daemon in daemons[:node_count]:
            self._check_image(daemon)
        return [self.daemon_for(i).host for i in range(node_count)]

    def free_ports(self, host: str, count: int) -> list[int] | None:
        # Only this machine can be probed; remote hosts get the planner's default ports.
        if any(d.is_local and d.host == host for d in self.daemons()):
            return LocalBackend().free_ports(host, count)
        return None

    def _check_image(self, daemon: Daemon) -> None:
        from docker.errors import ImageNotFound

        try:
            self.client(daemon).inspect_image(self.image)
        except ImageNotFound:
            raise SpecError(
                f"image {self.image!r} does not exist on the Docker daemon {daemon.url} ({daemon.setting}); "
                "DockerBackend never pulls: build or load it there first (docker build / docker load)"
            ) from None

    def _check_gpu_runtime(self, daemon: Daemon) -> None:
        runtimes = sorted(self.client(daemon).info().get("Runtimes") or {})
        if "nvidia" not in runtimes:
            raise SpecError(
                f"use_gpu=True, but the Docker daemon {daemon.url} ({daemon.setting}) has no 'nvidia' runtime "
                f"(its runtimes: {runtimes}); install the NVIDIA Container Toolkit on that host or set use_gpu=False"
            )

    # -- outputs ------------------------------------------------------------------------------
    def _output_root(self, daemon: Daemon) -> str | None:
        """The host directory job outputs go under on this daemon's host (None: a named volume)."""
        if self.output_dir:
            return self.output_dir
        return os.path.abspath(default_job_root()) if daemon.is_local else None

    def _outputs(self, daemon: Daemon, job_id: str) -> str:
        """A host path (bind mount) or the name of the job's volume on that daemon."""
        root = self._output_root(daemon)
        if root is not None:
            return posixpath.join(root, safe_job_id(job_id), "outputs")
        return f"airflow_tf-{safe_job_id(job_id)}-outputs"

    @staticmethod
    def _location(daemon_host: str, outputs: str) -> str:
        return outputs if outputs.startswith("/") else f"docker-volume://{daemon_host}/{outputs}"

    def output_location(self, job_id: str) -> str:
        daemon = self.daemon_for(0)  # the chief's
        return self._location(daemon.host, self._outputs(daemon, job_id))

    def host_path(self, handle: Handle, path: str) -> str:
        """Translate the chief's in-container output path to where it lives after the job."""
        if path == OUTPUT_DIR or path.startswith(OUTPUT_DIR + "/"):
            return self._location(handle["host"], handle["outputs"]) + path[len(OUTPUT_DIR):]
        return path

    # -- node lifecycle -----------------------------------------------------------------------
    @staticmethod
    def _archive(node: dict[str, Any], source_directory: str):
        """A tar of the runtime package, the source directory and the node plan, rooted at /."""
        runtime_dir = os.path.join(os.path.dirname(os.path.abspath(airflow_tf.__file__)), "runtime")
        node_dir = f"{JOB_DIR}/node-{node['node_index']}"[1:]
        # Spooled: a big source directory goes to disk instead of memory.
        data = tempfile.SpooledTemporaryFile(max_size=16 << 20)
        with tarfile.open(fileobj=data, mode="w") as tar:
            for name in ("airflow_tf", "airflow_tf/lib", "airflow_tf/lib/airflow_tf", "airflow_tf/job", node_dir):
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o777, int(time.time())
                tar.addfile(info)
            _add_bytes(tar, "airflow_tf/lib/airflow_tf/__init__.py", PACKAGE_STUB)
            tar.add(runtime_dir, arcname="airflow_tf/lib/airflow_tf/runtime", filter=_as_root)
            tar.add(source_directory, arcname=SRC_DIR[1:], filter=_as_root)
            _add_bytes(tar, f"{node_dir}/{NODE_SPEC_FILE}", json.dumps(node, indent=1).encode())
        data.seek(0)
        return data

    def _remove_previous(self, api, job_id: str, node_index: int) -> None:
        """A retried launch: remove what an earlier try of this node left on the daemon."""
        for info in api.containers(all=True, filters={"label": [f"{LABEL_JOB}={job_id}", f"{LABEL_NODE}={node_index}"]}):
            self._stop_remove(api, info["Id"], grace_s=0)  # a stale try: no graceful stop needed

    def _device_requests(self, node: dict[str, Any], daemon: Daemon) -> list | None:
        """GPU device requests (like ``docker run --gpus``) when the plan wants GPUs."""
        if not wants_gpu(node):
            return None
        from docker.types import DeviceRequest

        self._check_gpu_runtime(daemon)
        ids = gpu_devices(node, len(self.daemons()), self.gpus_per_host, daemon.url)
        if ids is None:
            return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]

    def _prepare_outputs(self, api, daemon: Daemon, job_id: str) -> str:
        """Create the job's output directory (local daemon) or volume (remote); return its bind source."""
        outputs = self._outputs(daemon, job_id)
        if not outputs.startswith("/"):  # remote daemon, no output_dir: a volume, labelled to be found later
            api.create_volume(outputs, labels={LABEL_JOB: job_id})
        elif daemon.is_local:
            os.makedirs(outputs, exist_ok=True)  # owned by this user, not by root via dockerd
        return outputs

    def start(self, job_id: str, node: dict[str, Any], source_directory: str) -> Handle:
        from docker.errors import APIError, ImageNotFound

        node_index = int(node["node_index"])
        safe_job_id(job_id)
        if not os.path.isdir(source_directory):
            raise SpecError(f"source_directory {source_directory!r} is not a directory on this worker")
        daemon = self.daemon_for(node_index)
        api = self.client(daemon)
        device_requests = self._device_requests(node, daemon)
        self._remove_previous(api, job_id, node_index)
        outputs = self._prepare_outputs(api, daemon, job_id)
        binds = [*(self.mounts or []), f"{outputs}:{OUTPUT_DIR}:rw"]
        env = dict(self.environment or {})
        env["PYTHONPATH"] = ":".join(filter(None, [LIB_DIR, env.get("PYTHONPATH")]))
        command = [self.python, "-m", "airflow_tf.runtime.launcher", f"{JOB_DIR}/node-{node_index}",
                   "--workdir", SRC_DIR, "--output-dir", OUTPUT_DIR]
        host_config = api.create_host_config(
            network_mode="host", binds=binds, shm_size=self.shm_size, device_requests=device_requests,
        )
        try:
            container = api.create_container(
                self.image, command=command, environment=env, user=self.user, working_dir=SRC_DIR,
                labels={LABEL_JOB: job_id, LABEL_NODE: str(node_index)}, host_config=host_config,
                name=f"airflow_tf-{job_id}-node-{node_index}"[:250], detach=True,
            )
        except ImageNotFound:
            self._check_image(daemon)  # raises the clear message
            raise
        except APIError as exc:
            raise RuntimeError(f"DockerBackend could not create node {node_index}'s container on {daemon.url}: "
                               f"{exc.explanation or exc}") from exc
        container_id = container["Id"]
        try:
            with self._archive(node, source_directory) as data:
                api.put_archive(container_id, "/", data)
            api.start(container_id)
        except BaseException as exc:
            self._stop_remove(api, container_id, grace_s=0)  # no half-started container is left behind
            if isinstance(exc, APIError) and "executable file not found" in str(exc.explanation or ""):
                raise SpecError(f"python={self.python!r} is not in the image {self.image!r}: {exc.explanation}") from None
            raise
        started = parse_timestamp(api.inspect_container(container_id)["State"].get("StartedAt") or "")
        return {
            "backend": "docker",
            "job_id": job_id,
            "node_index": node_index,
            "host": daemon.host,
            "daemon": daemon.url,
            "docker_conn_id": daemon.conn_id,
            "container_id": container_id,
            "outputs": outputs,
            # The daemon's clock, like ended_at in poll(): durations stay right on a remote host.
            "started_at": started / 1e9 if started else time.time(),
        }

    def poll(self, handle: Handle) -> NodeState:
        from docker.errors import NotFound

        try:
            state = self.client(self._handle_daemon(handle)).inspect_container(handle["container_id"])["State"]
        except NotFound:
            removed = self._removed.get(handle["container_id"])
            return removed["state"] if removed else NodeState.ended(None, time.time())
        return self._state(state)

    @staticmethod
    def _state(state: dict[str, Any]) -> NodeState:
        # "created" counts as running: start() returns only after the container started.
        if state.get("Status") in ("created", "running", "restarting", "paused"):
            return NodeState.running_now()
        finished = parse_timestamp(state.get("FinishedAt") or "")
        # The launcher is the container's command: its exit code is the node's.
        return NodeState.ended(state.get("ExitCode"), finished / 1e9 if finished else time.time())

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        from docker.errors import NotFound

        container_id = handle["container_id"]
        cursor = self._cursors.get(container_id)
        if cursor is not None and cursor.offset != offset:
            cursor = None
        try:
            raw = self.client(self._handle_daemon(handle)).logs(
                container_id, stdout=True, stderr=True, timestamps=True, since=cursor.since() if cursor else None,
            )
        except NotFound:
            kept = self._removed.get(container_id, {})
            if kept.get("log_offset") == offset and kept.get("log"):  # what stop() saved before removing it
                text = kept.pop("log")
                kept["log_offset"] = offset + len(text)
                return text.decode(errors="replace"), offset + len(text)
            return "", offset
        text, self._cursors[container_id] = take_lines(raw, offset, cursor)
        return text.decode(errors="replace"), offset + len(text)

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        from docker.errors import NotFound

        try:
            raw = self.client(self._handle_daemon(handle)).logs(handle["container_id"], stdout=True, stderr=True, tail=lines)
        except NotFound:
            return self._removed.get(handle["container_id"], {}).get("tail", [])[-lines:]
        return raw.decode(errors="replace").splitlines()[-lines:]

    def read_file(self, handle: Handle, name: str) -> str | None:
        from docker.errors import NotFound

        if "/" in name or name.startswith("."):
            raise ValueError(f"read_file takes a plain file name, got {name!r}")
        path = f"{JOB_DIR}/node-{handle['node_index']}/{name}"
        try:
            stream, stat = self.client(self._handle_daemon(handle)).get_archive(handle["container_id"], path)
        except NotFound:  # no such container, or no such file
            return None
        if stat.get("size", 0) > MAX_FILE_BYTES:
            raise ValueError(f"{path} in node {handle['node_index']}'s container is over {MAX_FILE_BYTES} bytes")
        with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
            member = tar.extractfile(tar.getmembers()[0])
            return member.read().decode(errors="replace") if member else None

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        container_id = handle["container_id"]
        self._stop_remove(self.client(self._handle_daemon(handle)), container_id, grace_s, keep=True)

    def _stop_remove(self, api, container_id: str, grace_s: float, keep: bool = False) -> bool:
        """Stop (TERM, KILL after the grace; KILL at once for grace 0) and remove a container.

        Returns whether it was running.

        ``keep``: first save its final state, log tail and (when this object has been reading
        its log) the rest of the log, for the poll/read_log/read_tail calls that follow a stop in
        the same process: removal deletes the log, and the trigger reads the failed node's last
        lines after stopping every node.
        """
        from docker.errors import APIError, NotFound

        try:
            was_running = api.inspect_container(container_id)["State"].get("Status") == "running"
            # The launcher gets TERM, stops its ranks within its own grace (10 s) and records the
            # exit code; Docker's KILL comes only after that. (In its first moments, before the
            # launcher installed its handlers, PID 1 ignores TERM: then only the KILL ends it.)
            api.stop(container_id, timeout=int(grace_s) + 2 if grace_s > 0 else 0)
            if keep:
                self._keep(api, container_id)
            api.remove_container(container_id, force=True, v=True)
            return was_running
        except NotFound:
            return False  # already gone
        except APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc.explanation):
                return False  # another stop path is removing it
            raise

    def _keep(self, api, container_id: str) -> None:
        kept = {
            "state": self._state(api.inspect_container(container_id)["State"]),
            "tail": api.logs(container_id, stdout=True, stderr=True, tail=TAIL_KEPT).decode(errors="replace").splitlines(),
        }
        cursor = self._cursors.pop(container_id, None)
        if cursor is not None:
            raw = api.logs(container_id, stdout=True, stderr=True, timestamps=True, since=cursor.since())
            kept["log"], kept["log_offset"] = take_lines(raw, cursor.offset, cursor)[0], cursor.offset
        self._removed[container_id] = kept

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        """Stop and remove every container labelled with the job, on every configured daemon."""
        were_running, unreachable = set(), []
        seen = set()
        for daemon in self.daemons():
            if (daemon.url, daemon.conn_id) in seen:
                continue
            seen.add((daemon.url, daemon.conn_id))
            try:
                api = self.client(daemon)
                for info in api.containers(all=True, filters={"label": f"{LABEL_JOB}={job_id}"}):
                    if self._stop_remove(api, info["Id"], grace_s):
                        were_running.add(int(info["Labels"].get(LABEL_NODE, -1)))
            except ConnectionError as exc:
                unreachable.append(str(exc))  # stop what can be reached, then say what could not
        if unreachable:
            raise ConnectionError(f"job {job_id}: containers on unreachable daemons may still run: {unreachable}")
        return sorted(were_running)


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """tar filter: no bytecode caches; root-owned; directories writable by whatever ``user`` runs
    the node (it writes its exit code and metrics there; the container is private to the node)."""
    if "__pycache__" in info.name.split("/"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if info.isdir():
        info.mode = 0o777
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(payload), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(payload))
