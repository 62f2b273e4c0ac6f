"""DockerBackend: one container per node, on that node's Docker daemon.

Node i runs on daemon ``i % len(daemons)``; several nodes may share one daemon. Containers use
host networking, so the cluster and rendezvous addresses the planner generates (the daemon
hosts' addresses) work unchanged.

Bring your own image: the image needs a Python (``python=``) with TensorFlow, nothing of
airflow_tf. The launch copies the one source bundle (``bundle``: the stdlib-only node runtime,
the user's source directory, the node's ``node.json``) into the created container with
``put_archive`` and only then starts it, so remote daemons work the same as a local one.
Outputs go to a bind-mounted directory (local daemons, or ``output_dir``) or a named volume per
job (remote daemons), so they outlive the containers. ``stop()`` stops a container (its state,
log and files stay readable); ``stop_job`` (the teardown) removes the job's containers.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import time
from collections.abc import Mapping
from typing import Any

from airflow_tf import extras
from airflow_tf.backends import node_io
from airflow_tf.backends.base import Backend, Handle, NodeState, cache
from airflow_tf.backends.docker_daemons import Daemon, check_mixed, connect, from_connection
from airflow_tf.backends.docker_gpus import gpu_requests
from airflow_tf.backends.docker_layout import JOB_DIR, LIB_DIR, OUTPUT_DIR, SRC_DIR, node_archive
from airflow_tf.backends.docker_logs import ContainerFiles, LogCursor, parse_timestamp, take_lines
from airflow_tf.backends.docker_ports import probe_free_ports
from airflow_tf.backends.docker_settings import DEFAULT_CAP_DROP, check_settings
from airflow_tf.backends.local import default_job_root, safe_job_id
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodeLaunch
from airflow_tf.runtime import node_files, procfs

LABEL_JOB = "airflow_tf.job_id"
LABEL_NODE = "airflow_tf.node_index"
LABEL_TRY = "airflow_tf.try"  # one container per try of a node: earlier tries' stay (stopped) for their logs
LABEL_ATTEMPT = "airflow_tf.attempt"  # the job attempt it runs (NodeLaunch.attempt)
LABEL_PORTS = "airflow_tf.ports"  # the host ports its processes listen on: reserved on that daemon while it runs
LABEL_PROBE = "airflow_tf.port_probe"


@dataclasses.dataclass(frozen=True, eq=False)
class DockerBackend(node_io.NodeDirectoryFiles, Backend):
    """Run each node in a container on a Docker daemon (one per host; nodes may share one).

    :param image: the image every node runs (must already exist on each daemon: it is never
        pulled). It needs ``python`` with TensorFlow (and whatever the script imports).
    :param docker_urls: daemon URLs (``unix:///var/run/docker.sock``, ``https://gpu1:2376``,
        ``ssh://me@gpu1``); node i runs on ``docker_urls[i % len(docker_urls)]``.
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
    :param allow_privileged_mounts: allow ``mounts`` of ``/``, the Docker socket and other
        host-control paths (``docker_settings.HOST_CONTROL_PATHS``); refused otherwise.
    :param insecure_tcp: allow plaintext ``tcp://`` to daemons on other machines (TLS otherwise).
    :param cap_drop: Linux capabilities the containers drop (default ``DEFAULT_CAP_DROP``; ``[]``
        keeps Docker's default set). ``cap_add``: capabilities they get on top (e.g. ``IPC_LOCK``
        for RDMA). docs/security.md says what each strategy needs.
    """

    image: str
    docker_urls: list[str] | None = None
    docker_conn_ids: list[str] | None = None
    shm_size: str | int | None = None
    environment: dict[str, str] | None = None
    mounts: list[str] | None = None
    user: str | None = None
    python: str = "python3"
    gpus_per_host: int | None = None
    allow_shared_hosts: bool = True
    output_dir: str | None = None
    host_addresses: list[str] | None = None
    timeout: int = 60
    allow_privileged_mounts: bool = False
    insecure_tcp: bool = False
    cap_drop: list[str] | None = dataclasses.field(default_factory=lambda: list(DEFAULT_CAP_DROP))
    cap_add: list[str] | None = None
    # Per-object caches (never serialized): the daemon list, clients, log cursors.
    _daemons: dict[str, list[Daemon]] = cache()
    _clients: dict[tuple[str, str | None], Any] = cache()
    _cursors: dict[str, LogCursor] = cache()

    def __post_init__(self) -> None:
        extras.require("docker", "airflow.providers.docker", "DockerBackend")  # at parse, naming the extra
        for name, value in check_settings(self).items():  # every setting's rule: docker_settings
            object.__setattr__(self, name, value)
        if self.docker_urls is not None:
            self.daemons()  # plaintext TCP, a local daemon next to remote ones: refused at parse time

    # -- daemons --------------------------------------------------------------------------------
    def daemons(self) -> list[Daemon]:
        """The configured daemons in order (connections are looked up once per backend object)."""
        if "all" not in self._daemons:
            addresses = self.host_addresses or [None] * len(self.docker_urls or self.docker_conn_ids)
            if self.docker_urls is not None:
                daemons = [Daemon(f"docker_urls[{i}]", url, address=addresses[i]) for i, url in enumerate(self.docker_urls)]
            else:
                daemons = [from_connection(f"docker_conn_ids[{i}]", conn_id, addresses[i])
                           for i, conn_id in enumerate(self.docker_conn_ids)]
            self._daemons["all"] = check_mixed(daemons, insecure_tcp=self.insecure_tcp)
        return self._daemons["all"]

    def daemon_for(self, node_index: int) -> Daemon:
        daemons = self.daemons()
        return daemons[node_index % len(daemons)]

    def _handle_daemon(self, handle: Handle) -> Daemon:
        for daemon in self.daemons():
            if daemon.key == (handle["daemon"], handle.get("docker_conn_id")):
                return daemon
        return Daemon("handle", handle["daemon"], conn_id=handle.get("docker_conn_id"))

    def client(self, daemon: Daemon):
        """The provider hook's low-level ``docker.APIClient`` (cached per backend object)."""
        if daemon.key not in self._clients:
            self._clients[daemon.key] = connect(daemon, self.timeout)
        return self._clients[daemon.key]

    def _api(self, handle: Handle):
        return self.client(self._handle_daemon(handle))

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
        """Ports free on the daemon's host (host networking): this machine's for a local daemon;
        for a remote one, asked of that host by a throwaway container, never one that another
        job's container on that daemon has planned (``LABEL_PORTS``)."""
        for daemon in self.daemons():
            if daemon.host == host:
                return procfs.free_ports(count) if daemon.is_local else probe_free_ports(self, daemon, count)
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

    # -- outputs ------------------------------------------------------------------------------
    def _outputs(self, daemon: Daemon, job_id: str) -> str:
        """A host path (bind mount) or the name of the job's volume on that daemon."""
        root = self.output_dir or (os.path.abspath(default_job_root()) if daemon.is_local else None)
        if root is not None:
            return posixpath.join(root, safe_job_id(job_id), node_files.OUTPUTS)
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

    def _prepare_outputs(self, api, daemon: Daemon, job_id: str) -> str:
        outputs = self._outputs(daemon, job_id)
        if not outputs.startswith("/"):  # remote daemon, no output_dir: a volume, labelled to be found later
            api.create_volume(outputs, labels={LABEL_JOB: job_id})
        elif daemon.is_local:
            os.makedirs(outputs, exist_ok=True)  # owned by this user, not by root via dockerd
        return outputs

    # -- node lifecycle -----------------------------------------------------------------------
    def find_node(self, job_id: str, node_index: int) -> Handle | None:
        """The node's latest try that really started (a container created but never started, by
        a launch task that died in between, is not a node to re-attach to)."""
        daemon = self.daemon_for(node_index)
        api = self.client(daemon)
        tries = api.containers(all=True, filters={"label": [f"{LABEL_JOB}={job_id}", f"{LABEL_NODE}={node_index}"]})
        started = [c for c in tries if c.get("State") != "created"]
        if not started:
            return None
        latest = max(started, key=lambda c: int(c["Labels"].get(LABEL_TRY, 0)))
        return self._handle(api, daemon, latest["Id"], job_id, node_index, self._outputs(daemon, job_id))

    def _handle(self, api, daemon: Daemon, container_id: str, job_id: str, node_index: int, outputs: str) -> Handle:
        info = api.inspect_container(container_id)
        labels = info["Config"].get("Labels") or {}
        started = parse_timestamp(info["State"].get("StartedAt") or "")
        return {
            "backend": "docker", "job_id": job_id, "node_index": node_index, "host": daemon.host,
            "try": int(labels.get(LABEL_TRY, 1)), "attempt": int(labels.get(LABEL_ATTEMPT, 1)),
            "daemon": daemon.url, "docker_conn_id": daemon.conn_id, "container_id": container_id, "outputs": outputs,
            # The daemon's clock, like ended_at in poll(): durations stay right on a remote host.
            "started_at": started / 1e9 if started else time.time(),
        }

    def start(self, launch: NodeLaunch, source_directory: str, secrets: Mapping[str, str] | None = None) -> Handle:
        from docker.errors import APIError, ImageNotFound

        node = launch.node
        safe_job_id(node.job_id)
        if not os.path.isdir(source_directory):
            raise SpecError(f"source_directory {source_directory!r} is not a directory on this worker")
        daemon = self.daemon_for(node.node_index)
        api = self.client(daemon)
        device_requests = gpu_requests(launch.node, daemon, self.client(daemon).info, len(self.daemons()),
                                       self.gpus_per_host)
        # Earlier tries of this node: stopped (kept, for their logs, until the teardown removes
        # the job's containers) before this try starts.
        tries = api.containers(all=True, filters={"label": [f"{LABEL_JOB}={node.job_id}", f"{LABEL_NODE}={node.node_index}"]})
        for info in tries:
            self._stop(api, info["Id"], grace_s=5)
        try_number = max((int(c["Labels"].get(LABEL_TRY, 0)) for c in tries), default=0) + 1
        outputs = self._prepare_outputs(api, daemon, node.job_id)
        env = dict(self.environment or {})
        env["PYTHONPATH"] = ":".join(filter(None, [LIB_DIR, env.get("PYTHONPATH")]))
        command = [self.python, "-m", "airflow_tf.runtime.launcher", f"{JOB_DIR}/{node_files.node_dirname(node.node_index)}",
                   "--workdir", SRC_DIR, "--output-dir", OUTPUT_DIR]
        host_config = api.create_host_config(
            network_mode="host", binds=[*(self.mounts or []), f"{outputs}:{OUTPUT_DIR}:rw"], shm_size=self.shm_size,
            device_requests=device_requests, cap_drop=self.cap_drop or None, cap_add=self.cap_add or None,
        )
        try:
            container = api.create_container(
                self.image, command=command, environment=env, user=self.user, working_dir=SRC_DIR,
                labels={LABEL_JOB: node.job_id, LABEL_NODE: str(node.node_index), LABEL_TRY: str(try_number),
                        LABEL_ATTEMPT: str(launch.attempt), LABEL_PORTS: ",".join(map(str, node.ports))},
                host_config=host_config, detach=True,
                name=f"airflow_tf-{node.job_id}-{node_files.node_dirname(node.node_index)}-{node_files.try_dirname(try_number)}"[:250],
            )
        except ImageNotFound:
            self._check_image(daemon)  # raises the clear message
            raise
        except APIError as exc:
            raise RuntimeError(f"DockerBackend could not create node {node.node_index}'s container on {daemon.url}: "
                               f"{exc.explanation or exc}") from exc
        container_id = container["Id"]
        try:
            with node_archive(launch, source_directory, secrets, self.user) as data:
                api.put_archive(container_id, "/", data)
            api.start(container_id)
        except BaseException as exc:
            self._stop(api, container_id, grace_s=0, remove=True)  # no half-started container is left behind
            if isinstance(exc, APIError) and "executable file not found" in str(exc.explanation or ""):
                raise SpecError(f"python={self.python!r} is not in the image {self.image!r}: {exc.explanation}") from None
            raise
        return self._handle(api, daemon, container_id, node.job_id, node.node_index, outputs)

    def poll(self, handle: Handle) -> NodeState:
        from docker.errors import NotFound

        try:
            state = self._api(handle).inspect_container(handle["container_id"])["State"]
        except NotFound:
            return NodeState.ended(None, time.time())  # removed under us: lost
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
            raw = self._api(handle).logs(container_id, stdout=True, stderr=True, timestamps=True,
                                         since=cursor.since() if cursor else None)
        except NotFound:
            return "", offset
        text, self._cursors[container_id] = take_lines(raw, offset, cursor)
        return text.decode(errors="replace"), offset + len(text)

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        from docker.errors import NotFound

        try:
            raw = self._api(handle).logs(handle["container_id"], stdout=True, stderr=True, tail=lines)
        except NotFound:
            return []
        return raw.decode(errors="replace").splitlines()[-lines:]

    def output_files(self, handle: Handle):
        """The chief container's outputs folder (bind mount or volume) through the archive API,
        as one streamed tar: nothing is held in memory beyond one read."""
        import tarfile

        response = ContainerFiles(self._api(handle), handle["container_id"])._request("GET", OUTPUT_DIR)
        if response is None:
            return
        try:
            with tarfile.open(fileobj=response.raw, mode="r|") as tar:
                for member in tar:
                    relative = member.name.split("/", 1)[1] if "/" in member.name else ""
                    if member.isfile() and relative:
                        yield relative, tar.extractfile(member)
        finally:
            response.close()

    def _files(self, handle: Handle) -> tuple[ContainerFiles, str]:
        """The node's directory in its container, and a reader (and writer) for it."""
        dirname = node_files.node_dirname(handle["node_index"])
        return ContainerFiles(self._api(handle), handle["container_id"]), f"{JOB_DIR}/{dirname}"

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        self._stop(self._api(handle), handle["container_id"], grace_s)

    def _stop(self, api, container_id: str, grace_s: float, remove: bool = False) -> bool:
        """Stop (TERM, KILL after the grace; KILL at once for grace 0), and remove when asked.
        Returns whether it was running."""
        from docker.errors import APIError, NotFound

        try:
            was_running = api.inspect_container(container_id)["State"].get("Status") == "running"
            # The launcher gets TERM, stops its ranks within its own grace (10 s) and records the
            # exit code; Docker's KILL comes only after that. (In its first moments, before the
            # launcher installed its handlers, PID 1 ignores TERM: then only the KILL ends it.)
            api.stop(container_id, timeout=int(grace_s) + 2 if grace_s > 0 else 0)
            if remove:
                api.remove_container(container_id, force=True, v=True)
            return was_running
        except NotFound:
            return False  # already gone
        except APIError as exc:
            if exc.status_code == 409 and "already in progress" in str(exc.explanation):
                return False  # another stop path is removing it
            raise

    def _remove(self, api, filters: dict[str, Any], grace_s: float) -> set[int]:
        """Stop and remove the containers matching ``filters``; the node indexes that were running."""
        were_running = set()
        for info in api.containers(all=True, filters=filters):
            if self._stop(api, info["Id"], grace_s, remove=True):
                were_running.add(int(info["Labels"].get(LABEL_NODE, -1)))
        return were_running

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        """Stop and remove every container labelled with the job, on every configured daemon."""
        were_running, unreachable = set(), []
        for daemon in {d.key: d for d in self.daemons()}.values():
            try:
                were_running |= self._remove(self.client(daemon), {"label": f"{LABEL_JOB}={job_id}"}, grace_s)
            except ConnectionError as exc:
                unreachable.append(str(exc))  # stop what can be reached, then say what could not
        if unreachable:
            raise ConnectionError(f"job {job_id}: containers on unreachable daemons may still run: {unreachable}")
        return sorted(were_running)
