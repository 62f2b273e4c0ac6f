"""A real Airflow (scheduler + triggerer + dag-processor + api-server, via ``airflow standalone``)
in its own home, driven through the REST API like a user's browser would."""

from __future__ import annotations

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


class AirflowServer:
    def __init__(self, home: str, bundles: dict[str, str]):
        self.home = home
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            # standalone starts its components as `airflow ...`: the venv's bin must be on PATH.
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": next(iter(bundles.values())),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([
                {"name": name, "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle", "kwargs": {"path": path}}
                for name, path in bundles.items()
            ]),
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        }
        self.proc: subprocess.Popen | None = None
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
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return all(health.get(part, {}).get("status") == "healthy" for part in ("metadatabase", "scheduler", "triggerer"))

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the group: a plain TERM orphans the scheduler
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

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

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        body = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true")
        content = body["content"]
        if isinstance(content, list):
            return "\n".join(item.get("event", "") if isinstance(item, dict) else str(item) for item in content)
        return str(content)
