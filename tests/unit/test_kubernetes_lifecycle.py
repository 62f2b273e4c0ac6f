"""KubernetesBackend's lifecycle (create -> poll -> logs -> files -> stop -> delete) against a
scripted fake of the cncf provider's hook: ``core_v1_client`` (create / replace / delete / list /
read, exec), ``api_client.call_api`` (the log endpoint) and ``get_pod``.

What the fake does NOT exercise: an API server, admission, the scheduler, a kubelet, DNS, the
websocket transport of exec (``kubernetes.stream.stream`` is replaced by a direct call; the
exec'd read/write scripts do run, locally, over a directory standing in for the pod's emptyDir).
Pod status changes are scripted by each test the way a kubelet would report them.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import time
import types

import pytest
from kubernetes.client import models as k8s
from kubernetes.client.exceptions import ApiException

from airflow_tf.backends import kubernetes as kube
from airflow_tf.backends import kubernetes_io as kio
from airflow_tf.backends import kubernetes_names as names
from airflow_tf.backends.kubernetes import KubernetesBackend
from airflow_tf.backends.kubernetes_models import to_dict
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.cluster.spec import TrainingSpec

JOB = "lifecycle.run_1.train-0123abcd"
T0 = 1_780_000_000  # whole seconds: the fake kubelet's clock for log lines


def api_error(status: int) -> ApiException:
    return ApiException(status=status, reason={400: "Bad Request", 403: "Forbidden", 404: "Not Found",
                                               409: "Conflict"}[status])


def container(name: str, state: str, exit_code: int = 0, reason: str | None = None, message: str | None = None):
    now = datetime.datetime.now(datetime.timezone.utc)
    states = {
        "running": k8s.V1ContainerState(running=k8s.V1ContainerStateRunning(started_at=now)),
        "terminated": k8s.V1ContainerState(terminated=k8s.V1ContainerStateTerminated(
            exit_code=exit_code, reason=reason, finished_at=now)),
        "waiting": k8s.V1ContainerState(waiting=k8s.V1ContainerStateWaiting(reason=reason, message=message)),
    }
    return k8s.V1ContainerStatus(name=name, state=states[state], ready=state == "running", restart_count=0,
                                 image="img", image_id="")


class Cluster:
    """The scripted API: objects by (kind, name), pod statuses, container logs, faults."""

    def __init__(self, root):
        self.root, self.objects, self.calls, self.faults = root, {}, [], {}
        self.logs: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self.on_term: dict[str, str] = {}  # pod -> "exit" (the launcher stops) or "ignore"

    def record(self, *call):
        self.calls.append(call)
        fault = self.faults.pop(call[:2], None)
        if fault is not None:
            raise fault

    def pod(self, name):
        return self.objects.get(("pod", name))

    def set_status(self, name, phase, node=None, files="running", init=None, conditions=(), reason=None,
                   message=None):
        statuses = [s for s in (node, container(names.FILES_CONTAINER, files) if files else None) if s]
        self.pod(name).status = k8s.V1PodStatus(
            phase=phase, reason=reason, message=message, container_statuses=statuses or None,
            init_container_statuses=[init] if init else None,
            conditions=[k8s.V1PodCondition(type=t, status=s, reason=r, message=m) for t, s, r, m in conditions] or None)

    def running(self, name, container_name):
        pod = self.pod(name)
        for status in (pod.status.container_statuses or []) if pod and pod.status else []:
            if status.name == container_name and status.state.running:
                return True
        return False


class FakeWS:
    """What ``stream(connect_get_namespaced_pod_exec, ..., _preload_content=False)`` returns."""

    def __init__(self, cluster, pod, container_name, command):
        self.cluster, self.pod, self.container, self.command = cluster, pod, container_name, command
        self.stdin, self.out, self.err, self.returncode = "", "", "", None

    def write_stdin(self, data):
        self.stdin += data

    def run_forever(self, timeout=None):
        if self.command[3] == kio.STOP_SCRIPT:  # TERM to the launcher: it stops its ranks and exits 143
            if self.cluster.on_term.get(self.pod, "exit") == "exit":
                self.cluster.set_status(self.pod, "Running", container(names.NODE_CONTAINER, "terminated", 143))
            self.returncode = 0
            return
        argv = [a.replace(names.ROOT, str(self.cluster.root / self.pod)) for a in self.command[1:]]
        done = subprocess.run([sys.executable, *argv], input=self.stdin, capture_output=True, text=True, timeout=30)
        self.out, self.err, self.returncode = done.stdout, done.stderr, done.returncode

    def read_stdout(self):
        return self.out

    def read_stderr(self):
        return self.err

    def close(self):
        pass


class FakeCore:
    """``CoreV1Api``: the namespaced create / replace / delete / list / read calls and exec."""

    KINDS = ("pod", "service", "config_map", "secret")

    def __init__(self, cluster):
        self.cluster = cluster

    def __getattr__(self, method):
        verb, _, kind = method.partition("_namespaced_")
        if kind not in self.KINDS:
            raise AttributeError(method)
        return lambda *args, **kwargs: getattr(self, f"_{verb}")(kind, *args, **kwargs)

    def _create(self, kind, namespace, body, **kwargs):
        name = body.metadata.name
        self.cluster.record("create", kind, name)
        if (kind, name) in self.cluster.objects:
            raise api_error(409)
        self.cluster.objects[(kind, name)] = body

    def _replace(self, kind, name, namespace, body, **kwargs):
        self.cluster.record("replace", kind, name)
        self.cluster.objects[(kind, name)] = body

    def _delete(self, kind, name, namespace, **kwargs):
        self.cluster.record("delete", kind, name, kwargs.get("grace_period_seconds"))
        if self.cluster.objects.pop((kind, name), None) is None:
            raise api_error(404)

    def _list(self, kind, namespace, label_selector="", **kwargs):
        self.cluster.record("list", kind, label_selector)
        wanted = dict(part.split("=") for part in label_selector.split(",") if part)
        items = [body for (k, _), body in sorted(self.cluster.objects.items(), key=lambda i: i[0])
                 if k == kind and wanted.items() <= (body.metadata.labels or {}).items()]
        return types.SimpleNamespace(items=items)

    def read_namespaced_pod(self, name, namespace, **kwargs):
        self.cluster.record("get", "pod", name)
        pod = self.cluster.pod(name)
        if pod is None:
            raise api_error(404)
        return pod

    def read_namespaced_persistent_volume_claim(self, name, namespace, **kwargs):
        self.cluster.record("read", "persistent_volume_claim", name)

    def connect_get_namespaced_pod_exec(self, name, namespace, container, command, **kwargs):
        self.cluster.record("exec", container, name)
        if self.cluster.pod(name) is None:
            raise api_error(404)
        if not self.cluster.running(name, container):
            raise api_error(400)  # "container not found" / "cannot exec into a completed pod"
        return FakeWS(self.cluster, name, container, command)


class FakeApiClient:
    """``ApiClient.call_api`` for the log endpoint, answering as the kubelet would."""

    def __init__(self, cluster):
        self.cluster = cluster

    def call_api(self, path, method, path_params, query_params, **kwargs):
        assert path == "/api/v1/namespaces/{namespace}/pods/{name}/log" and method == "GET"
        query = dict(query_params)
        name, container_name = path_params["name"], query["container"]
        self.cluster.record("log", container_name, name, query.get("sinceTime"), query.get("limitBytes"))
        pod = self.cluster.pod(name)
        if pod is None:
            raise api_error(404)
        lines = self.cluster.logs.get((name, container_name))
        if lines is None:
            raise api_error(400)  # container is waiting to start
        if "sinceTime" in query:
            since = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00")).timestamp()
            assert since == int(since)  # whole seconds, as the API server passes it on
            lines = [(ts, text) for ts, text in lines if ts >= since * 1e9]
        if "tailLines" in query:
            lines = lines[-int(query["tailLines"]):]
        stamp = query.get("timestamps") == "true"
        data = "".join((f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ts // 10**9))}.{ts % 10**9:09d}Z "
                        if stamp else "") + text + "\n" for ts, text in lines).encode()
        if "limitBytes" in query:
            data = data[:int(query["limitBytes"])]
        return types.SimpleNamespace(data=data)


class FakeHook:
    """``KubernetesHook``: the backend uses its ``core_v1_client`` and ``api_client`` only."""

    def __init__(self, cluster):
        self.core_v1_client, self.api_client = FakeCore(cluster), FakeApiClient(cluster)


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    monkeypatch.setattr(kio, "exec_stream", lambda: lambda method, *args, **kwargs: method(*args, **kwargs))
    monkeypatch.setattr(kube, "STOP_POLL_S", 0.05)
    monkeypatch.setattr(kube, "_try_number", lambda: 1)
    return Cluster(tmp_path)


@pytest.fixture
def src(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('hi')\n")
    return str(tmp_path / "src")


def make(cluster, **kwargs) -> KubernetesBackend:
    backend = KubernetesBackend(image="tf:2.21", namespace="ml", **kwargs)
    backend._hooks["hook"] = FakeHook(cluster)
    return backend


def launches(backend, src, nodes=2):
    spec = TrainingSpec(source_directory=src, entry_script="train.py", node_count=nodes)
    plan = plan_tensorflow_job(spec, job_id=JOB, hosts=backend.planned_hosts(nodes, JOB))
    return [plan.launch(i, {"DATA_DIR": "/data"}) for i in range(nodes)]


def started(cluster, backend, src, nodes=2, secrets=None):
    handles = [backend.start(launch, src, secrets=secrets) for launch in launches(backend, src, nodes)]
    for handle in handles:
        cluster.set_status(handle["pod"], "Pending", files=None)
    return handles


# -- create -------------------------------------------------------------------------------------
def test_start_creates_the_jobs_objects_once_and_a_retry_replaces_the_earlier_pod(cluster, src, monkeypatch):
    backend = make(cluster)
    h0, h1 = started(cluster, backend, src, secrets={"TOKEN": "t0k3n-value"})
    pods = [names.pod_name(JOB, i) for i in range(2)]
    service, bundle = names.service_name(JOB), names.bundle_name(JOB)
    assert [c for c in cluster.calls if c[0] in ("create", "replace", "delete")] == [
        ("delete", "pod", pods[0], 0), ("create", "service", service), ("create", "config_map", bundle),
        ("create", "secret", f"{pods[0]}-files"), ("create", "pod", pods[0]),
        ("delete", "pod", pods[1], 0), ("create", "service", service), ("create", "config_map", bundle),
        ("replace", "config_map", bundle), ("create", "secret", f"{pods[1]}-files"), ("create", "pod", pods[1]),
    ]
    assert h0["pod"] == pods[0] and h0["host"] == f"{pods[0]}.{service}.ml.svc" and h0["try"] == 1
    pod = to_dict(cluster.pod(pods[0]))
    assert isinstance(cluster.pod(pods[0]), k8s.V1Pod) and pod["spec"]["hostname"] == pods[0]
    secret = to_dict(cluster.objects[("secret", f"{pods[0]}-files")])
    assert json.loads(secret["stringData"]["secrets.json"]) == {"TOKEN": "t0k3n-value"}
    assert "t0k3n-value" not in json.dumps(pod) and "/data" not in json.dumps(pod)

    monkeypatch.setattr(kube, "_try_number", lambda: 2)
    cluster.calls.clear()
    retry = backend.start(launches(backend, src)[0], src)
    assert cluster.calls[0] == ("delete", "pod", pods[0], 0)  # the earlier try's pod, before the new one
    assert ("create", "pod", pods[0]) in cluster.calls and retry["try"] == 2
    assert cluster.pod(pods[0]).metadata.labels[names.LABEL_TRY] == "2"


def test_a_refused_pod_names_the_pod_and_the_answer(cluster, src):
    backend = make(cluster)
    cluster.faults[("create", "pod")] = ApiException(status=403, reason="Forbidden: exceeded quota: gpu-quota")
    with pytest.raises(RuntimeError, match=f"could not create pod {names.pod_name(JOB, 0)} in 'ml'"):
        backend.start(launches(backend, src)[0], src)


# -- poll ---------------------------------------------------------------------------------------
def test_poll_follows_the_node_container_pending_running_terminated(cluster, src):
    backend = make(cluster)
    handle = started(cluster, backend, src)[0]
    assert backend.poll(handle) == {"running": True, "exit_code": None, "ended_at": None}
    secret = ("secret", names.node_secret_name(JOB, 0))
    assert secret in cluster.objects
    cluster.set_status(handle["pod"], "Running", container("node", "running"))
    assert backend.poll(handle)["running"]
    assert secret not in cluster.objects  # copied by the init container: deleted once the node runs
    backend.poll(handle)
    assert [c for c in cluster.calls if c[:2] == ("delete", "secret")] == [("delete", "secret", secret[1], None)]
    cluster.set_status(handle["pod"], "Running", container("node", "terminated", 3))  # the keeper keeps it Running
    state = backend.poll(handle)
    assert not state["running"] and state["exit_code"] == 3 and state["ended_at"] > 0


def test_a_pod_pending_past_the_start_timeout_fails_naming_every_pending_pod(cluster, src):
    backend = make(cluster, start_timeout=30)
    h0, h1 = started(cluster, backend, src)
    cluster.set_status(h0["pod"], "Running", container("node", "running"))
    unschedulable = [("PodScheduled", "False", "Unschedulable",
                      "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")]
    cluster.set_status(h1["pod"], "Pending", files=None, conditions=unschedulable)
    assert backend.poll(h1)["running"]  # within the start timeout: waiting is normal
    late = {**h1, "started_at": time.time() - 31}
    assert backend.poll(late) == {"running": False, "exit_code": None, "ended_at": pytest.approx(time.time(), abs=5)}
    tail = "\n".join(backend.read_tail(late, 30))
    assert f"pod {h1['pod']} did not start within start_timeout=30 s; pods of this job still Pending: {h1['pod']}" \
        in tail
    assert "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in tail


def test_an_invalid_image_fails_at_once(cluster, src):
    backend = make(cluster)
    handle = started(cluster, backend, src)[0]
    cluster.set_status(handle["pod"], "Pending", container("node", "waiting", reason="InvalidImageName",
                                                           message="bad ref"), files=None)
    assert backend.poll(handle)["exit_code"] is None and not backend.poll(handle)["running"]
    assert "cannot start: InvalidImageName" in "\n".join(backend.read_tail(handle, 5))


def test_eviction_preemption_and_deletion_end_the_node_with_the_reason(cluster, src):
    backend = make(cluster)
    h0, h1 = started(cluster, backend, src)
    cluster.logs[(h0["pod"], "node")] = [(T0 * 10**9, "[node 0 rank 0] epoch 1")]
    cluster.set_status(h0["pod"], "Failed", container("node", "terminated", 137, reason="Error"), files="terminated",
                       reason="Evicted", message="The node was low on resource: memory.")
    assert backend.poll(h0)["exit_code"] == 137
    tail = backend.read_tail(h0, 10)
    assert tail[0] == "[node 0 rank 0] epoch 1"
    assert any("was evicted: The node was low on resource: memory." in line for line in tail)

    cluster.set_status(h1["pod"], "Running", container("node", "running"),
                       conditions=[("DisruptionTarget", "True", "PreemptionByScheduler", "by pod x")])
    del cluster.objects[("pod", h1["pod"])]  # preempted: the scheduler deletes the pod
    assert backend.poll(h1) == {"running": False, "exit_code": None, "ended_at": pytest.approx(time.time(), abs=5)}
    assert "no longer exists" in backend.read_tail(h1, 10)[-1]


def test_a_failed_init_container_ends_the_node_with_its_lines(cluster, src):
    backend = make(cluster)
    handle = started(cluster, backend, src)[0]
    cluster.logs[(handle["pod"], names.INIT_CONTAINER)] = [(T0 * 10**9, "airflow-tf: x does not resolve after 300 s")]
    cluster.set_status(handle["pod"], "Failed", files=None,
                       init=container(names.INIT_CONTAINER, "terminated", 1, reason="Error"))
    assert backend.poll(handle) == {"running": False, "exit_code": None, "ended_at": pytest.approx(time.time(), abs=5)}
    tail = backend.read_tail(handle, 10)
    assert tail[0] == "airflow-tf: x does not resolve after 300 s"
    assert "the init container unpack failed with exit 1" in tail[1]


# -- logs ---------------------------------------------------------------------------------------
def test_logs_stream_every_line_exactly_once_over_since_time(cluster, src, monkeypatch):
    monkeypatch.setattr(kio, "LOG_LIMIT", 256)  # small enough that bursts overflow one window
    backend = make(cluster)
    handle = started(cluster, backend, src)[0]
    log = cluster.logs.setdefault((handle["pod"], "node"), [])
    assert backend.read_log(handle, 0) == ("", 0)  # not started yet: nothing, no error
    cluster.logs[(handle["pod"], "node")] = log
    written, streamed, offset = [], "", 0
    for burst in range(12):
        # Bursts land in the same second and the next (and one line repeats exactly: a digest
        # alone would drop it; the timestamp keeps it).
        for i in range(burst % 4 + 1 + (30 if burst == 7 else 0)):
            ts = (T0 + burst // 2) * 10**9 + burst * 1000 + i
            text = f"[node 0 rank 0] burst {burst} line {i}" if i != 2 else "[node 0 rank 0] same line"
            log.append((ts, text))
            written.append(text + "\n")
        text, offset = backend.read_log(handle, offset)
        streamed += text
    assert streamed == "".join(written) and offset == len(streamed.encode())
    since = [c[3] for c in cluster.calls if c[0] == "log" and c[3]]
    assert since and all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", s) for s in since)  # whole seconds
    assert any(c[4] and c[4] > 256 for c in cluster.calls if c[0] == "log")  # a full window grew the limit
    # A fresh backend object (a restarted trigger) resumes at the offset from the whole log.
    fresh = make(cluster)
    log.append(((T0 + 9) * 10**9, "[node 0 rank 0] after restart"))
    assert fresh.read_log(handle, offset) == ("[node 0 rank 0] after restart\n", offset + 30)


# -- files --------------------------------------------------------------------------------------
def test_node_files_are_read_and_written_through_exec_in_the_files_container(cluster, src):
    backend = make(cluster)
    handle = started(cluster, backend, src)[0]
    assert backend.read_from(handle, "metrics-rank0.jsonl", 0, 100) is None  # keeper not running yet
    cluster.set_status(handle["pod"], "Running", container("node", "terminated", 0))  # ended; files kept
    node_dir = cluster.root / handle["pod"] / "job" / "node-0"
    node_dir.mkdir(parents=True)
    (node_dir / "metrics-rank0.jsonl").write_bytes(b'{"epoch": 1}\n{"epoch": 2}\n')
    (node_dir / "model_path").write_text("/airflow_tf/outputs/model.keras")
    assert backend.read_from(handle, "metrics-rank0.jsonl", 13, 100) == b'{"epoch": 2}\n'
    assert backend.read_file(handle, "model_path") == "/airflow_tf/outputs/model.keras"
    assert backend.read_file(handle, "tensorboard_dir") is None
    backend.write_file(handle, "watch_state.json", b'{"version": 1}')
    assert (node_dir / "watch_state.json").read_bytes() == b'{"version": 1}'
    assert {c[1] for c in cluster.calls if c[0] == "exec"} == {"files"}
    assert backend.host_path(handle, "/airflow_tf/outputs/model.keras") == \
        f"pod://ml/{names.pod_name(JOB, 0)}/airflow_tf/outputs/model.keras"


# -- stop, delete -------------------------------------------------------------------------------
def test_stop_terms_the_launcher_and_deletes_only_a_pod_that_ignores_it_or_never_ran(cluster, src):
    backend = make(cluster)
    h0, h1 = started(cluster, backend, src)
    cluster.set_status(h0["pod"], "Running", container("node", "running"))
    backend.stop(h0, grace_s=5)
    assert ("exec", "node", h0["pod"]) in cluster.calls and cluster.pod(h0["pod"]) is not None  # log, files kept
    assert backend.poll(h0)["exit_code"] == 143
    cluster.calls.clear()
    backend.stop(h0)  # ended already: a no-op
    assert [c for c in cluster.calls if c[0] in ("exec", "delete")] == []

    cluster.set_status(h1["pod"], "Running", container("node", "running"))
    cluster.on_term[h1["pod"]] = "ignore"
    backend.stop(h1, grace_s=0)
    assert cluster.calls[-1] == ("delete", "pod", h1["pod"], 0)

    pending = make(cluster).start(launches(backend, src)[1], src)
    cluster.set_status(pending["pod"], "Pending", files=None)
    backend.stop(pending, grace_s=7)
    assert cluster.calls[-1] == ("delete", "pod", pending["pod"], 7)


def test_stop_job_deletes_everything_of_the_job_by_label_and_nothing_else(cluster, src):
    backend = make(cluster)
    h0, h1 = started(cluster, backend, src)
    other = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name="other", labels={names.LABEL_JOB: "other-job"}))
    cluster.objects[("pod", "other")] = other
    cluster.set_status(h0["pod"], "Running", container("node", "terminated", 0))
    cluster.set_status(h1["pod"], "Running", container("node", "running"))
    assert backend.stop_job(JOB, 2, grace_s=3) == [1]
    selector = names.job_selector(JOB)
    assert {c[1] for c in cluster.calls if c[0] == "list" and c[2] == selector} == {"pod", "secret", "config_map",
                                                                                   "service"}
    assert set(cluster.objects) == {("pod", "other")}
    assert ("delete", "pod", h1["pod"], 3) in cluster.calls


# -- hosts: the pre-flight ----------------------------------------------------------------------
def test_hosts_pre_flight_names_the_connection_namespace_and_claim(cluster, monkeypatch):
    from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    def get_connection(conn_id):
        if conn_id == "missing":
            raise AirflowNotFoundException(conn_id)
        return types.SimpleNamespace(conn_id=conn_id, extra_dejson={})

    monkeypatch.setattr(KubernetesHook, "get_connection", staticmethod(get_connection))
    with pytest.raises(SpecError, match="kubernetes_conn_id 'missing': no Airflow connection"):
        make(cluster, kubernetes_conn_id="missing").hosts(2, job_id=JOB)
    cluster.faults[("list", "pod")] = api_error(403)
    with pytest.raises(SpecError, match="kubernetes_conn_id 'kubernetes_default' may not use namespace 'ml'"):
        make(cluster).hosts(2, job_id=JOB)
    cluster.faults[("read", "persistent_volume_claim")] = api_error(404)
    with pytest.raises(SpecError, match="outputs_pvc 'models': no such PersistentVolumeClaim in namespace 'ml'"):
        make(cluster, outputs_pvc="models").hosts(2, job_id=JOB)
    assert make(cluster).hosts(2, job_id=JOB) == make(cluster).planned_hosts(2, JOB)

    # From the plan task: the job id is the plan task's, and Horovod MPI is refused at plan time.
    task = types.SimpleNamespace(job_name="train", spec_fields={"distributed_backend": "gloo"})
    context = {"task": task, "dag": types.SimpleNamespace(dag_id="lifecycle"), "run_id": "run_1"}
    monkeypatch.setattr(kube, "_current_context", lambda: context)
    from airflow_tf.operators.nodes import job_id_for

    assert make(cluster).hosts(1) == make(cluster).planned_hosts(1, job_id_for("lifecycle", "run_1", "train"))
    task.spec_fields["distributed_backend"] = "mpi"
    with pytest.raises(SpecError, match="Horovod over Gloo only"):
        make(cluster).hosts(2)


# -- the wait trigger over the backend ------------------------------------------------------------
def test_the_wait_trigger_streams_and_succeeds_over_the_fake(cluster, src, monkeypatch):
    import asyncio

    from airflow_tf.triggers.training_job import TrainingJobTrigger

    backend = make(cluster)
    handles = started(cluster, backend, src)
    monkeypatch.setattr(KubernetesBackend, "hook", lambda self: FakeHook(cluster))
    for i, handle in enumerate(handles):
        cluster.set_status(handle["pod"], "Running", container("node", "terminated", 0))
        cluster.logs[(handle["pod"], "node")] = [(T0 * 10**9 + i, f"[node {i} rank {i}] done")]
        node_dir = cluster.root / handle["pod"] / "job" / f"node-{i}"
        node_dir.mkdir(parents=True)
        (node_dir / f"metrics-rank{i}.jsonl").write_text(json.dumps({"epoch": 1, "loss": 0.5, "rank": i}) + "\n")
    (cluster.root / handles[0]["pod"] / "job" / "node-0" / "model_path").write_text("/airflow_tf/outputs/m.keras")
    trigger = TrainingJobTrigger(backend=backend.serialize(), job_id=JOB, handles=handles,
                                 success_rule="all_ranks_zero", poll_interval=0.05,
                                 metrics_files=[["metrics-rank0.jsonl"], ["metrics-rank1.jsonl"]])

    async def first_event():
        async for event in trigger.run():
            return event.payload

    event = asyncio.run(asyncio.wait_for(first_event(), 60))
    assert event["status"] == "success", event
    assert event["model_path"] == f"pod://ml/{names.pod_name(JOB, 0)}/airflow_tf/outputs/m.keras"
    assert event["metrics"]["loss"] == 0.5 and [n["exit_code"] for n in event["nodes"]] == [0, 0]
    state = json.loads((cluster.root / handles[0]["pod"] / "job" / "node-0" / "watch_state.json").read_text())
    assert state["cursors"][0]["log"] == len("[node 0 rank 0] done\n")  # offsets kept with the job
