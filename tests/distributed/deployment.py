"""A real multi-host Airflow on one machine: CeleryExecutor + PostgreSQL 15 + Redis 7.

Topology (docs/deployment.md describes the same):

=========  =========  ===========================================================================
host       address    runs
=========  =========  ===========================================================================
control    10.250.b.2 PostgreSQL, Redis, api-server, scheduler, dag-processor, triggerer (queue default)
host-a     10.250.b.2 Celery worker (queues host_a, default), triggerer (--queues host_a)
host-b     10.250.b.2 Celery worker (queues host_b, default), triggerer (--queues host_b)
gpu-0/1    10.250.b.2 sshd and dockerd (TCP 2376, TLS with client certificates): the training hosts
=========  =========  ===========================================================================

Each Airflow host has its own network namespace, host name and private disk (tests/distributed/
hosts.py) with AIRFLOW_HOME and the LocalBackend job root on it. ``[triggerer] queues_enabled``
is on, so a deferred task's trigger runs on a triggerer of the task's queue: a job pinned to
host_a is launched, watched and torn down on host-a. Components start with ``setsid`` and stop
by process group. Nothing is mocked; a component that cannot start fails the session.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from tests.distributed.dockerd import TLSDaemon, make_ca
from tests.distributed.hosts import SUBNET_PREFIX as SUBNET
from tests.distributed.hosts import Hosts
from tests.e2e.server import AirflowServer, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.dirname(sys.executable)
HOST_NAMES = ["control", "host-a", "host-b", "gpu-0", "gpu-1"]
AIRFLOW_HOSTS = 3  # control, host-a, host-b: the first three names
GPU_HOSTS = ["gpu-0", "gpu-1"]
WORKER_QUEUES = {"host-a": "host_a", "host-b": "host_b"}
DEFAULT_QUEUE = "default"
PG_PORT, REDIS_PORT, API_PORT = 5432, 6379, 8080
PG_BIN = "/usr/lib/postgresql/15/bin"
WORKER_CONCURRENCY = 4


class DeploymentError(RuntimeError):
    """A piece of the deployment did not start (the session fails; never a skip)."""


class API(AirflowServer):
    """The REST API helpers of tests/e2e/server.py against the deployment's api-server (its
    simple auth manager makes every caller an admin: tests only, no token)."""

    def __init__(self, base: str):  # noqa: D107 - no local server to configure
        self.base = base
        self.token = None

    def request(self, method, path, body=None, *, auth=False, raw=False):
        # Reads are retried: on a busy CI machine one answer can take longer than the 30-s timeout.
        for attempt in range(3 if method == "GET" else 1):
            try:
                return super().request(method, path, body, auth=False, raw=raw)
            except (TimeoutError, urllib.error.URLError) as exc:
                if attempt == 2 or method != "GET" or isinstance(exc, urllib.error.HTTPError):
                    raise
                time.sleep(1)


class Deployment:
    def __init__(self, workdir: str):
        self.workdir = workdir
        self.disk = os.path.join(workdir, "disk")  # every Airflow host's private disk (same path)
        self.shared = os.path.join(workdir, "shared")  # a path every host sees (the file:// target)
        self.logs = os.path.join(workdir, "logs")
        self.hosts = Hosts(os.path.join(workdir, "hosts"), HOST_NAMES, AIRFLOW_HOSTS, self.disk)
        self.daemons: dict[str, TLSDaemon] = {}
        self.procs: dict[tuple[str, str], subprocess.Popen] = {}
        self.started_in_s: float | None = None
        self.tls: dict[str, str] = {}
        self.api: API | None = None

    # -- addresses and settings -------------------------------------------------------------
    @property
    def control(self) -> str:
        return self.hosts.address("control")

    def airflow_env(self) -> dict[str, str]:
        db = f"postgres@{self.control}:{PG_PORT}/airflow"
        bundles = [("dags-folder", os.path.join(REPO, "dags")),
                   ("distributed-dags", os.path.join(REPO, "tests", "distributed", "dags"))]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
        env.update({
            "PATH": os.pathsep.join([VENV_BIN, os.environ.get("PATH", "/usr/bin:/bin")]),
            "AIRFLOW_HOME": os.path.join(self.disk, "airflow"),
            # Each host's own home (its ~/.ssh/known_hosts: sftp:// outputs check host keys).
            "HOME": os.path.join(self.disk, "home"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://{db}",
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{self.control}:{REDIS_PORT}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql://{db}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
            # One message reserved per slot: a worker host that dies holds no queued task hostage.
            "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{self.control}:{API_PORT}/execution/",
            "AIRFLOW__API__BASE_URL": f"http://{self.control}:{API_PORT}",
            "AIRFLOW__API__PORT": str(API_PORT),
            "AIRFLOW__API_AUTH__JWT_SECRET": self._secret("jwt"),
            "AIRFLOW__API__SECRET_KEY": self._secret("api"),
            "AIRFLOW__CORE__FERNET_KEY": self._fernet(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(REPO, "dags"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([
                {"name": n, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": p}}
                for n, p in bundles]),
            "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            "AIRFLOW__CORE__PARALLELISM": "16",
            "AIRFLOW__AIRFLOW_TF__JOB_ROOT": os.path.join(self.disk, "jobs"),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            # What the test DAGs (tests/distributed/dags) read: the training hosts and paths.
            "ATFD_SSH_CONNS": ",".join(self.hosts.conn_id(self.hosts.names.index(g)) for g in GPU_HOSTS),
            "ATFD_DOCKER_CONNS": ",".join(f"atfd_docker_{i}" for i in range(len(GPU_HOSTS))),
            "ATFD_PYTHON": sys.executable,
            "ATFD_SSH_ROOT": os.path.join(self.workdir, "ssh-jobs"),
            "ATFD_SHARED": self.shared,
            "ATFD_SFTP_HOST": self.hosts.address(GPU_HOSTS[0]),
            "ATFD_SFTP_ROOT": os.path.join(self.workdir, "sftp-outputs"),
            "ATFD_DOCKER_MOUNTS": json.dumps(self._docker_mounts()),
        })
        for g in GPU_HOSTS:
            k = self.hosts.names.index(g)
            env[f"AIRFLOW_CONN_{self.hosts.conn_id(k).upper()}"] = json.dumps(self.hosts.connection(k))
        for i, g in enumerate(GPU_HOSTS):
            env[f"AIRFLOW_CONN_ATFD_DOCKER_{i}"] = json.dumps({
                "conn_type": "docker", "host": f"tcp://{self.hosts.address(g)}:2376",
                "extra": {"tls_ca_cert": self.tls["ca"], "tls_client_cert": self.tls["client_cert"],
                          "tls_client_key": self.tls["client_key"]},
            })
        # The sftp:// output target: an Airflow SFTP connection to gpu-0 (key login, host key pinned).
        sftp = self.hosts.connection(self.hosts.names.index(GPU_HOSTS[0]))
        env["AIRFLOW_CONN_ATFD_SFTP"] = json.dumps({
            "conn_type": "sftp", "host": sftp["host"], "port": 22, "login": "root",
            "extra": {"key_file": self.hosts.client_key, "host_key": sftp["extra"]["host_key"],
                      "no_host_key_check": "false"},
        })
        return env

    def _secret(self, name: str) -> str:
        path = os.path.join(self.workdir, f"{name}.secret")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(secrets.token_hex(32))
        with open(path) as f:
            return f.read()

    def _fernet(self) -> str:
        import base64

        return base64.urlsafe_b64encode(bytes.fromhex(self._secret("fernet"))).decode()

    @staticmethod
    def _docker_mounts() -> list[str]:
        from tests.docker.engine import python_mounts

        return python_mounts() + [f"{REPO}:{REPO}:ro"]

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> "Deployment":
        began = time.monotonic()
        for path in (self.shared, self.logs):
            os.makedirs(path, exist_ok=True)
        try:
            self.hosts.start()
            for g in GPU_HOSTS:
                self.hosts.start_sshd(self.hosts.names.index(g))
            self.tls = make_ca(os.path.join(self.workdir, "tls"))
            for g in GPU_HOSTS:
                self.daemons[g] = TLSDaemon(g, self.hosts.address(g), self.hosts.enter(g),
                                            os.path.join(self.workdir, f"dockerd-{g}"), os.path.dirname(self.tls["ca"]))
            for daemon in self.daemons.values():
                daemon.start()
            self._write_homes()
            self._start_postgres()
            self._start_redis()
            self._run("control", [os.path.join(VENV_BIN, "airflow"), "db", "migrate"], "db-migrate", timeout=300)
            self._spawn("control", ["api-server", "--port", str(API_PORT), "--host", self.control], "api-server")
            self._spawn("control", ["scheduler"], "scheduler")
            self._spawn("control", ["dag-processor"], "dag-processor")
            self._spawn("control", ["triggerer", "--queues", DEFAULT_QUEUE], "triggerer")
            for host, queue in WORKER_QUEUES.items():
                self._spawn(host, ["celery", "worker", "--queues", f"{queue},{DEFAULT_QUEUE}", "--celery-hostname",
                                   f"{host}@{host}", "--without-gossip", "--without-mingle"], "worker")
                self._spawn(host, ["triggerer", "--queues", queue], "triggerer")
            self.api = API(f"http://{self.control}:{API_PORT}")
            wait_until(self._healthy, 240, 1, what=f"the deployment to be healthy (logs: {self.logs})")
        except BaseException as exc:
            self.stop()
            if isinstance(exc, (AssertionError, RuntimeError, OSError, subprocess.SubprocessError)):
                raise DeploymentError(f"{exc}\n{self.log_tails()}") from exc
            raise
        self.started_in_s = round(time.monotonic() - began, 1)
        return self

    def _run(self, host: str, argv: list[str], name: str, timeout: float = 60, user: str | None = None) -> str:
        prefix = self.hosts.enter(host) + (["runuser", "-u", user, "--"] if user else [])
        out = subprocess.run(prefix + argv, env=self.airflow_env(), capture_output=True, text=True, timeout=timeout)
        with open(os.path.join(self.logs, f"{host}-{name}.log"), "a") as f:
            f.write(out.stdout + out.stderr)
        if out.returncode != 0:
            raise DeploymentError(f"{name} on {host} failed ({out.returncode}): {(out.stdout + out.stderr)[-3000:]}")
        return out.stdout

    def _spawn(self, host: str, argv: list[str], name: str, raw: bool = False, user: str | None = None) -> None:
        command = argv if raw else [os.path.join(VENV_BIN, "airflow"), *argv]
        prefix = self.hosts.enter(host) + (["runuser", "-u", user, "--"] if user else [])
        log = open(os.path.join(self.logs, f"{host}-{name}.log"), "ab")
        self.procs[(host, name)] = subprocess.Popen(
            prefix + command, env=self.airflow_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd="/",
        )

    def _write_homes(self) -> None:
        """Every Airflow host's home on its own disk, with the training hosts' keys in known_hosts."""
        known = "".join(f"{self.hosts.address(g)} {self.hosts.host_keys[self.hosts.names.index(g)]}\n"
                        for g in GPU_HOSTS)
        for host in self.hosts.names[:AIRFLOW_HOSTS]:
            ssh_dir = self.hosts.disk_path(host, os.path.join(self.disk, "home", ".ssh"))
            os.makedirs(ssh_dir, mode=0o700)
            with open(os.path.join(ssh_dir, "known_hosts"), "w") as f:
                f.write(known)

    def _start_postgres(self) -> None:
        data = os.path.join(self.disk, "pg")
        self._run("control", ["install", "-d", "-o", "postgres", "-m", "0700", data], "pg-dirs")
        self._run("control", [f"{PG_BIN}/initdb", "-D", f"{data}/data", "-A", "trust", "-U", "postgres"],
                  "pg-initdb", user="postgres")
        # The other hosts connect over the deployment's network (trust: a throwaway test cluster).
        with open(self.hosts.disk_path("control", f"{data}/data/pg_hba.conf"), "a") as f:
            f.write(f"host all all {SUBNET}.0.0/16 trust\n")
        self._spawn("control", [f"{PG_BIN}/postgres", "-D", f"{data}/data", "-p", str(PG_PORT), "-k", data,
                                "-c", f"listen_addresses={self.control}", "-c", "max_connections=300",
                                "-c", "fsync=off"], "postgres", raw=True, user="postgres")
        wait_until(lambda: self._pg_ready(data), 60, 0.2, what="PostgreSQL to accept connections")
        self._run("control", ["psql", "-h", self.control, "-p", str(PG_PORT), "-U", "postgres", "-c",
                              "create database airflow"], "pg-createdb")

    def _pg_ready(self, data: str) -> bool:
        proc = self.procs[("control", "postgres")]
        if proc.poll() is not None:
            raise DeploymentError(f"PostgreSQL exited with {proc.returncode}")
        return subprocess.run(self.hosts.enter("control") + ["pg_isready", "-h", self.control, "-p", str(PG_PORT)],
                              capture_output=True).returncode == 0

    def _start_redis(self) -> None:
        self._spawn("control", ["redis-server", "--bind", self.control, "--port", str(REDIS_PORT), "--save", "",
                                "--appendonly", "no", "--protected-mode", "no"], "redis", raw=True)

        def ready() -> bool:
            if self.procs[("control", "redis")].poll() is not None:
                raise DeploymentError("redis-server exited")
            argv = ["redis-cli", "-h", self.control, "-p", str(REDIS_PORT), "ping"]
            out = subprocess.run(self.hosts.enter("control") + argv, capture_output=True, text=True)
            return out.stdout.strip() == "PONG"

        wait_until(ready, 30, 0.2, what="Redis to answer")

    def _healthy(self) -> bool:
        for (host, name), proc in self.procs.items():
            if proc.poll() is not None:
                raise DeploymentError(f"{name} on {host} exited with {proc.returncode}")
        try:
            health = self.api.request("GET", "/api/v2/monitor/health")
            jobs = self.api.request("GET", "/api/v2/jobs?job_type=TriggererJob&is_alive=true&limit=50")["jobs"]
        except (urllib.error.URLError, OSError, ValueError):
            return False
        if not all(health.get(p, {}).get("status") == "healthy" for p in ("metadatabase", "scheduler", "triggerer",
                                                                          "dag_processor")):
            return False
        if {job["hostname"] for job in jobs} < {"control", *WORKER_QUEUES}:
            return False
        return all(self._worker_ready(host) for host in WORKER_QUEUES)

    def _worker_ready(self, host: str) -> bool:
        try:
            with open(os.path.join(self.logs, f"{host}-worker.log"), errors="replace") as f:
                return f"{host}@{host} ready" in f.read()
        except OSError:
            return False

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 30
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for daemon in self.daemons.values():
            daemon.stop()
        self.hosts.close()  # kills whatever is left in each namespace; private disks go with them

    # -- helpers for tests ---------------------------------------------------------------------
    def log_tails(self, lines: int = 15) -> str:
        out = []
        for name in sorted(os.listdir(self.logs)) if os.path.isdir(self.logs) else []:
            with open(os.path.join(self.logs, name), errors="replace") as f:
                out.append(f"--- {name}\n" + "".join(f.readlines()[-lines:]))
        return "\n".join(out)

    def kill_host(self, name: str) -> None:
        """The host dies (SIGKILL to everything on it, its disk gone); its components are forgotten."""
        self.hosts.kill_host(name)
        for key in [key for key in self.procs if key[0] == name]:
            self.procs.pop(key).wait()

    def docker_clients(self):
        """A TLS client per training daemon, as the worker would connect."""
        import docker

        from airflow_tf.backends.docker_daemons import _client_with_own_ca

        tls = docker.tls.TLSConfig(client_cert=(self.tls["client_cert"], self.tls["client_key"]),
                                   ca_cert=self.tls["ca"], verify=True)
        return {g: _client_with_own_ca()(base_url=f"https://{d.address}:2376", tls=tls, version="auto")
                for g, d in self.daemons.items()}


def remove_workdir(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
