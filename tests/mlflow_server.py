"""A real MLflow tracking server for the tests (SQLite store, artifacts served by the server
itself, so a client uploads them over HTTP as it would to a shared server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

from tests.e2e.server import free_port, wait_until


class MlflowServer:
    def __init__(self, root: str):
        self.root = root
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        os.makedirs(self.root)
        mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
        log = open(os.path.join(self.root, "server.log"), "wb")
        self.proc = subprocess.Popen(
            [mlflow, "server", "--backend-store-uri", f"sqlite:///{self.root}/db.sqlite",
             "--artifacts-destination", os.path.join(self.root, "artifacts"), "--serve-artifacts",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # No job runner (7 huey consumer processes for MLflow's server-side jobs): tracking only.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        try:
            wait_until(self._healthy, timeout, what=f"mlflow server (log: {self.root}/server.log)")
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"mlflow server exited with {self.proc.returncode}; see {self.root}/server.log")
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def api(self, endpoint: str, **query) -> dict:
        """GET one of the server's REST endpoints (``runs/search`` is a POST: see search_runs)."""
        url = f"{self.uri}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}"
        with urllib.request.urlopen(url, timeout=30) as response:
            return json.load(response)

    def search_runs(self, experiment_id: str, filter_string: str) -> list[dict]:
        body = json.dumps({"experiment_ids": [experiment_id], "filter": filter_string}).encode()
        req = urllib.request.Request(f"{self.uri}/api/2.0/mlflow/runs/search", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as response:
            return json.load(response).get("runs", [])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # gunicorn/uvicorn workers go with it
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
