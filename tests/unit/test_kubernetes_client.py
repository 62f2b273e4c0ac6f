"""KubernetesBackend through the real stack short of a cluster: an Airflow connection (from the
environment) -> the cncf provider's ``KubernetesHook`` -> the official client -> HTTP, answered
by a small local stub of the API server's REST endpoints. It checks what the other tests fake:
the client methods, their arguments, the JSON bodies on the wire, the log endpoint's query
(``sinceTime``, ``limitBytes``), the error statuses.

The stub is not an API server: no validation, no admission, no scheduler or kubelet, no exec
(a websocket; covered by the scripted fake in test_kubernetes_lifecycle.py).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from airflow_tf.backends import kubernetes_manifests as manifests
from airflow_tf.backends import kubernetes_names as names
from airflow_tf.backends.kubernetes import KubernetesBackend
from airflow_tf.backends.kubernetes_models import round_trip
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job

JOB = "client.run_1.train-0123abcd"
PLURALS = {"pods": "Pod", "services": "Service", "configmaps": "ConfigMap", "secrets": "Secret"}


class Stub(BaseHTTPRequestHandler):
    store: dict = {}
    requests: list = []

    def log_message(self, *args):
        pass

    def _send(self, code, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code, reason):
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})

    def _route(self):
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")  # api v1 namespaces ml <plural> [name [log]]
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, "/".join(parts[4:]), query, body))
        assert parts[:4] == ["api", "v1", "namespaces", "ml"] and self.headers["Authorization"] == "Bearer t0ken"
        return parts[4], parts[5] if len(parts) > 5 else None, parts[6] if len(parts) > 6 else None, query, body

    def do_GET(self):
        plural, name, sub, query, _ = self._route()
        if sub == "log":
            assert query["container"] == "node" and query["timestamps"] == "true"
            self._send(200, b"2026-06-01T10:00:00.000000001Z [node 0 rank 0] hello\n"
                            b"2026-06-01T10:00:01.500000000Z [node 0 rank 0] world\n", "text/plain")
        elif name is None:
            selector = dict(p.split("=") for p in query.get("labelSelector", "").split(",") if p)
            items = [o for (kind, _), o in self.store.items() if kind == plural
                     and selector.items() <= o["metadata"].get("labels", {}).items()]
            self._send(200, {"kind": PLURALS[plural] + "List", "apiVersion": "v1", "metadata": {}, "items": items})
        elif (plural, name) in self.store:
            self._send(200, self.store[(plural, name)])
        else:
            self._status(404, "NotFound")

    def do_POST(self):
        plural, _, _, _, body = self._route()
        key = (plural, body["metadata"]["name"])
        if key in self.store:
            return self._status(409, "AlreadyExists")
        self.store[key] = body
        self._send(201, body)

    def do_PUT(self):
        plural, name, _, _, body = self._route()
        self.store[(plural, name)] = body
        self._send(200, body)

    def do_DELETE(self):
        plural, name, _, _, _ = self._route()
        if self.store.pop((plural, name), None) is None:
            return self._status(404, "NotFound")
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})


@pytest.fixture
def api(monkeypatch):
    Stub.store, Stub.requests = {}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = {
        "apiVersion": "v1", "kind": "Config", "current-context": "stub",
        "clusters": [{"name": "stub", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}],
        "users": [{"name": "stub", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
    }
    monkeypatch.setenv("AIRFLOW_CONN_K8S_STUB", json.dumps({"conn_type": "kubernetes",
                                                              "extra": {"kube_config": kubeconfig}}))
    yield Stub
    server.shutdown()


def test_the_provider_hook_sends_what_the_builders_made_and_reads_logs_by_since_time(api, tmp_path, monkeypatch):
    from airflow_tf.backends import kubernetes as kube

    monkeypatch.setattr(kube, "_try_number", lambda: 3)
    (tmp_path / "train.py").write_text("print('hi')\n")
    backend = KubernetesBackend(image="tf:2.21", namespace="ml", kubernetes_conn_id="k8s_stub", timeout=10)
    hosts = backend.hosts(2, job_id=JOB)  # pre-flight: GET pods?limit=1 through the connection's kubeconfig
    assert api.requests[0][:3] == ("GET", "pods", {"limit": "1"})
    plan = plan_tensorflow_job(TrainingSpec(source_directory=str(tmp_path), entry_script="train.py", node_count=2),
                               job_id=JOB, hosts=hosts)
    launch = plan.launch(0, {"A": "1"})
    handle = backend.start(launch, str(tmp_path), secrets={"TOKEN": "v"})
    calls = [(m, p) for m, p, _, _ in api.requests[1:]]
    pod = names.pod_name(JOB, 0)
    assert calls == [("DELETE", f"pods/{pod}"), ("GET", f"pods/{pod}"), ("POST", "services"), ("POST", "configmaps"),
                     ("POST", "secrets"), ("POST", "pods")]
    sent = {PLURALS[p]: body for m, p, _, body in api.requests if m == "POST"}
    assert sent["Pod"] == round_trip(manifests.pod(backend, launch, 3))  # the wire JSON is the builder's
    assert sent["Service"] == round_trip(manifests.service(backend, JOB))
    assert json.loads(sent["Secret"]["stringData"]["secrets.json"]) == {"TOKEN": "v"}

    # A second node of the job: the Service exists (409: kept), the ConfigMap is replaced (PUT).
    backend.start(plan.launch(1, {}), str(tmp_path))
    assert [(m, p) for m, p, _, _ in api.requests[-5:]] == [("POST", "services"), ("POST", "configmaps"),
                                                             ("PUT", f"configmaps/{names.bundle_name(JOB)}"),
                                                             ("POST", "secrets"), ("POST", "pods")]

    api.store[("pods", pod)]["status"] = {"phase": "Running", "containerStatuses": [
        {"name": "node", "ready": True, "restartCount": 0, "image": "tf", "imageID": "",
         "state": {"running": {"startedAt": "2026-06-01T10:00:00Z"}}}]}
    assert backend.poll(handle)["running"]
    assert ("DELETE", f"secrets/{names.node_secret_name(JOB, 0)}") in [(m, p) for m, p, _, _ in api.requests]

    text, offset = backend.read_log(handle, 0)
    assert text == "[node 0 rank 0] hello\n[node 0 rank 0] world\n"
    assert backend.read_log(handle, offset) == ("", offset)  # the same lines again: handed out already
    log_query = [q for m, p, q, _ in api.requests if p.endswith("/log")][-1]
    assert log_query["sinceTime"] == "2026-06-01T10:00:00Z" and log_query["limitBytes"] == str(4 << 20)

    assert backend.stop_job(JOB, 2, grace_s=4) == [0, 1]  # pod 1 has no status yet: Pending counts
    deletes = [(p, q) for m, p, q, _ in api.requests if m == "DELETE"][-5:]
    assert (f"pods/{pod}", {"gracePeriodSeconds": "4"}) in deletes
    assert not any(kind in ("pods", "services", "configmaps", "secrets") for kind, _ in api.store)
    assert time.time() - handle["started_at"] < 60
