"""A real Airflow (scheduler + triggerer + dag-processor + api-server, via ``airflow standalone``)
in its own home, driven through the REST API like a user's browser would."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def _newer(timestamp: str | None, monotonic_then: float) -> bool:
    """An API timestamp (ISO 8601) later than a ``time.monotonic()`` reading of this process."""
    import datetime

    if not timestamp:
        return False
    then = time.time() - (time.monotonic() - monotonic_then)
    return datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() > then


def _group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


class AirflowServer:
    def __init__(self, home: str, bundles: dict[str, str], env: dict[str, str] | None = None):
        """``env``: extra settings (``AIRFLOW__SECTION__KEY``) over the defaults below, e.g. a
        benchmark's ``[core] parallelism``; the defaults are what the tests run with."""
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            # standalone starts its components as `airflow ...`: the venv's bin must be on PATH.
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            "AIRFLOW_HOME": home,
            # The repository on every component's path: a fault-injecting backend (tests/faults.py)
            # is rebuilt from its classpath in the task runners and in the triggerer.
            "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Per-job packages cached in this home: a fresh server installs them for real.
            "AIRFLOW__AIRFLOW_TF__PACKAGE_CACHE": os.path.join(home, "package-cache"),
            "AIRFLOW__CORE__DAGS_FOLDER": next(iter(bundles.values())),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([
                {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": path}}
                for name, path in bundles.items()
            ]),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__PORT": str(self.port),
            # Their own log-server ports: another Airflow on this machine (the distributed suite's
            # workers) must not make the scheduler's or triggerer's fail to bind.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
            # The workers' and triggerer's log servers default to fixed ports (8793, 8794): two
            # standalones on one machine (concurrent test sessions) would collide there.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
        self.env.update(env or {})
        self.proc: subprocess.Popen | None = None
        self.replacements: list[subprocess.Popen] = []  # triggerers started by restart_triggerer
        self.token: str | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.home, "standalone.log")

    def start(self, timeout: float = 120) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        os.makedirs(self.home)
        log = open(self.log_path, "wb")
        # Own session: stopping it must take the scheduler, triggerer and task runners along.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_until(self._healthy, timeout, what=f"airflow standalone to be healthy (log: {self.log_path})")
        except BaseException:
            self.stop()
            raise
        password_file = os.path.join(self.home, "simple_auth_manager_passwords.json.generated")
        wait_until(lambda: os.path.exists(password_file), 30, what="the admin password file")
        with open(password_file) as f:
            password = json.load(f)["admin"]
        self.token = self.request("POST", "/auth/token", {"username": "admin", "password": password}, auth=False)["access_token"]

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"airflow standalone exited with {self.proc.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(f"{self.base}/api/v2/monitor/health", timeout=2) as response:
                health = json.load(response)
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException):
            return False  # HTTPException: not yet, or the port briefly answered by something else
        return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "triggerer"))

    def _triggerer_pid(self) -> int | None:
        """The running triggerer: standalone's child, or the replacement restart_triggerer started."""
        running = [p.pid for p in self.replacements if p.poll() is None]
        if running:
            return running[-1]
        parents = {self.proc.pid}
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rpartition(")")[2].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (OSError, ValueError, IndexError):
                continue
            if ppid in parents and b"triggerer" in cmdline:
                return int(entry)
        return None

    def restart_triggerer(self, timeout: float = 90) -> float:
        """Stop the triggerer the way a deploy does (SIGTERM, graceful), start a new one with the
        same environment, and wait until it heartbeats. Returns how long no triggerer ran (s)."""
        old = self._triggerer_pid()
        assert old is not None, "no triggerer is running"
        with open(f"/proc/{old}/environ", "rb") as f:
            env = dict(item.split(b"=", 1) for item in f.read().split(b"\0") if b"=" in item)
        os.kill(old, signal.SIGTERM)
        stopped = time.monotonic()
        wait_until(lambda: not os.path.exists(f"/proc/{old}") or _zombie(old), 60, 0.1, what="the triggerer to stop")
        log = open(os.path.join(self.home, f"triggerer-{len(self.replacements) + 1}.log"), "wb")
        # Own session, stopped with the rest in stop(): standalone does not know about it.
        self.replacements.append(subprocess.Popen(
            [os.path.join(os.path.dirname(sys.executable), "airflow"), "triggerer"],
            env={k.decode(): v.decode() for k, v in env.items()}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        ))
        started = time.monotonic()

        def heartbeating() -> bool:
            try:
                health = self.request("GET", "/api/v2/monitor/health")["triggerer"]
            except (urllib.error.URLError, OSError, KeyError):
                return False
            return health.get("status") == "healthy" and _newer(health.get("latest_triggerer_heartbeat"), stopped)

        wait_until(heartbeating, timeout, 0.2, what="the new triggerer to heartbeat")
        return started - stopped

    def stop(self) -> None:
        for proc in self.replacements:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group: a plain TERM orphans the scheduler
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            # standalone can exit before its components (a scheduler's LocalExecutor workers were
            # seen alive minutes later): wait for the whole group, then kill what is left of it.
            # Training nodes are never in it (they run in their own sessions).
            if not _group_gone(self.proc.pid, 15):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                _group_gone(self.proc.pid, 10)

    def request(self, method: str, path: str, body: dict | None = None, *, auth: bool = True, raw: bool = False):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as response:
            payload = response.read()
        return payload.decode() if raw else (json.loads(payload) if payload else None)

    # -- conveniences ----------------------------------------------------------------------
    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> None:
        def parsed():
            try:
                return self.request("GET", f"/api/v2/dags/{dag_id}")
            except urllib.error.HTTPError:
                return None

        wait_until(parsed, timeout, what=f"DAG {dag_id} to be parsed")
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> dict[tuple[str, int], dict]:
        items = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")["task_instances"]
        return {(ti["task_id"], ti["map_index"]): ti for ti in items}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> str:
        body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
                                   f"?full_content=true&map_index={map_index}")
        content = body["content"]
        if isinstance(content, list):
            return "\n".join(item.get("event", "") if isinstance(item, dict) else str(item) for item in content)
        return str(content)
