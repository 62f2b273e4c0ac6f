"""KubernetesBackend: one pod per node plus a headless Service per job, every API call through the
cncf provider's ``KubernetesHook`` (its ``core_v1_client`` / ``api_client``: no client handling here).

Nodes reach each other at stable DNS names, ``<pod>.<service>.<namespace>.svc`` (each pod's
``hostname`` + ``subdomain`` under the job's headless Service), which the planner puts into
TF_CONFIG and the Horovod rendezvous with the planned ports (declared as container ports). What
the objects are and why: ``kubernetes_manifests``; how a pod's status is read: ``kubernetes_status``;
logs and node files: ``kubernetes_io``; names and field checks: ``kubernetes_names``. Written and
reviewed for a real cluster, but run only against a scripted fake of the hook here (no API
server runs on these machines): see docs/kubernetes-backend.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping
from typing import Any

from airflow_tf import extras
from airflow_tf.backends import kubernetes_io as kio
from airflow_tf.backends import kubernetes_manifests as manifests
from airflow_tf.backends import kubernetes_names as names
from airflow_tf.backends import kubernetes_status as status
from airflow_tf.backends import node_io
from airflow_tf.backends.base import Backend, Handle, NodeState, cache
from airflow_tf.backends.docker_logs import LogCursor
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodeLaunch

log = logging.getLogger(__name__)
STOP_POLL_S = 0.5
GONE_WAIT_S = 60


@dataclasses.dataclass(frozen=True, eq=False)
class KubernetesBackend(node_io.NodeDirectoryFiles, Backend):
    """Run each node as a pod (see docs/kubernetes-backend.md for RBAC and a kind/k3s recipe).

    :param image: the image every node runs: a ``python`` with TensorFlow (and Horovod for Horovod
        jobs); nothing of airflow_tf (the runtime comes in the job's ConfigMap).
    :param namespace: where the job's objects are created.
    :param kubernetes_conn_id: the cncf provider's Kubernetes connection (in-cluster, a kubeconfig
        path or content); ``kubernetes_default`` may be undefined (the default kubeconfig / in-cluster).
    :param gpus_per_node: GPUs each GPU node's pod asks for (default: one per rank); the ranks' per-rank
        CUDA_VISIBLE_DEVICES index into the GPUs the pod gets.
    :param gpu_resource: the extended resource GPUs are requested as (``nvidia.com/gpu``, ``amd.com/gpu``).
    :param resources: the node container's ``{"requests": {...}, "limits": {...}}``.
    :param node_selector, tolerations, affinity, service_account_name, image_pull_secrets,
        image_pull_policy, priority_class_name, labels, annotations: as in a Pod spec (YAML form).
    :param environment: extra environment of the node container (visible in the pod spec: not
        for secrets; use secret_environment_variables).
    :param pod_template: a ``V1Pod``, its dict, or a YAML file: merged under the generated pod the
        way KubernetesPodOperator merges ``pod_template_file`` (its first container is the base of
        the node container).
    :param image_source_dir: the sources are in the image at this path (the ConfigMap then
        carries only the node runtime): for sources over the ConfigMap's 1 MiB.
    :param outputs_pvc: a PersistentVolumeClaim the chief's outputs go to (``<claim>/<job slug>/``);
        without it they live in node 0's pod and are deleted at teardown.
    :param shm_size: a memory-backed /dev/shm of this size (``"2Gi"``) for NCCL / tf.data.
    :param python: the interpreter in the image.
    :param start_timeout: seconds a pod may stay Pending (unschedulable, pulling) before its node
        fails, naming every pod of the job still Pending.
    :param files_retention: seconds a pod keeps its node directory readable after its node ended
        (the teardown deletes it sooner).
    :param timeout: seconds for one API call.
    """

    image: str
    namespace: str = "default"
    kubernetes_conn_id: str = "kubernetes_default"
    gpus_per_node: int | None = None
    gpu_resource: str = "nvidia.com/gpu"
    resources: dict[str, dict[str, str]] | None = None
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    affinity: dict[str, Any] | None = None
    service_account_name: str | None = None
    image_pull_secrets: list[str] | None = None
    image_pull_policy: str | None = None
    priority_class_name: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    environment: dict[str, str] | None = None
    pod_template: dict[str, Any] | str | None = None
    image_source_dir: str | None = None
    outputs_pvc: str | None = None
    shm_size: str | None = None
    python: str = "python3"
    start_timeout: int = 600
    files_retention: int = 3600
    timeout: int = 60
    _hooks: dict[str, Any] = cache()
    _cursors: dict[tuple[str, Any], LogCursor] = cache()
    _released: dict[str, bool] = cache()

    def __post_init__(self) -> None:
        extras.require("kubernetes", "airflow.providers.cncf.kubernetes", "KubernetesBackend")
        for field, value in names.check_settings(self).items():
            object.__setattr__(self, field, value)

    # -- the hook ---------------------------------------------------------------------------------
    def hook(self):
        """The provider's hook for ``kubernetes_conn_id`` (one per backend object)."""
        if "hook" not in self._hooks:
            from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

            self._hooks["hook"] = KubernetesHook(conn_id=self.kubernetes_conn_id)
        return self._hooks["hook"]

    def _core(self):
        return self.hook().core_v1_client

    def _get_pod(self, name: str) -> dict[str, Any] | None:
        from airflow_tf.backends.kubernetes_models import to_dict

        try:
            return to_dict(self._core().read_namespaced_pod(name, self.namespace, _request_timeout=self.timeout))
        except Exception as exc:
            if kio.api_status(exc) == 404:
                return None
            raise

    def _list(self, kind: str, selector: str) -> list[Any]:
        method = getattr(self._core(), f"list_namespaced_{kind}")
        return list(method(self.namespace, label_selector=selector, _request_timeout=self.timeout).items)

    def _delete(self, kind: str, name: str, grace_s: float | None = None) -> None:
        kwargs = {} if grace_s is None else {"grace_period_seconds": max(int(grace_s), 0)}
        try:
            getattr(self._core(), f"delete_namespaced_{kind}")(name, self.namespace, _request_timeout=self.timeout,
                                                                **kwargs)
        except Exception as exc:
            if kio.api_status(exc) != 404:  # already gone
                raise

    # -- planning -------------------------------------------------------------------------------
    def planned_hosts(self, node_count: int, job_id: str) -> list[str]:
        """The stable pod DNS names of a job's nodes. Pure: contacts no cluster (``render --offline``)."""
        from airflow_tf.backends.kubernetes_models import load_template

        load_template(self.pod_template)  # every field of the template checked at plan time
        return [names.host_name(job_id, i, self.namespace) for i in range(node_count)]

    def hosts(self, node_count: int, job_id: str | None = None) -> list[str]:
        """The nodes' DNS names, after the pre-flight: the connection exists, the API answers and
        lets the connection list pods, the outputs claim exists; Horovod MPI is refused here."""
        plan_task = _plan_task()
        if plan_task is not None:
            if str(plan_task.spec_fields.get("distributed_backend", "")).lower() == "mpi":
                raise SpecError(manifests.MPI_REFUSED)
            job_id = job_id or _job_id_of(plan_task)
        if job_id is None:
            raise SpecError("KubernetesBackend.hosts() names pods after the job: call it from the plan task or pass "
                            "job_id")
        self.preflight()
        return self.planned_hosts(node_count, job_id)

    def render_objects(self, plan, environment: Mapping[str, str]) -> str:
        """Every object a run of ``plan`` (a JobPlan) creates, as YAML, contacting no cluster
        (``airflow-tf render --offline``): what ``start`` sends, for a launch's first try."""
        from airflow_tf.backends.kubernetes_models import load_template, to_yaml

        launches = [plan.launch(i, environment) for i in range(len(plan.nodes))]
        payload = manifests.build_bundle(self, plan.source_directory)
        return to_yaml(manifests.job_objects(self, launches, payload, load_template(self.pod_template), try_number=1))

    def preflight(self) -> None:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            KubernetesHook.get_connection(self.kubernetes_conn_id)
        except AirflowNotFoundException:
            raise SpecError(f"kubernetes_conn_id {self.kubernetes_conn_id!r}: no Airflow connection with this id is "
                            "defined") from None
        try:
            self._core().list_namespaced_pod(self.namespace, limit=1, _request_timeout=self.timeout)
        except Exception as exc:
            if kio.api_status(exc) in (401, 403):
                raise SpecError(f"kubernetes_conn_id {self.kubernetes_conn_id!r} may not use namespace "
                                f"{self.namespace!r} ({exc.status}: {exc.reason}); grant it the Role in "
                                "docs/kubernetes-backend.md") from None
            raise ConnectionError(f"KubernetesBackend cannot reach the cluster of {self.kubernetes_conn_id!r}: {exc}") \
                from exc
        if self.outputs_pvc:
            try:
                self._core().read_namespaced_persistent_volume_claim(self.outputs_pvc, self.namespace,
                                                                     _request_timeout=self.timeout)
            except Exception as exc:
                if kio.api_status(exc) == 404:
                    raise SpecError(f"outputs_pvc {self.outputs_pvc!r}: no such PersistentVolumeClaim in namespace "
                                    f"{self.namespace!r}") from None
                if kio.api_status(exc) != 403:  # not allowed to look: the pod's start will tell
                    raise

    # -- node lifecycle -------------------------------------------------------------------------
    def start(self, launch: NodeLaunch, source_directory: str, secrets: Mapping[str, str] | None = None) -> Handle:
        from airflow_tf.backends.kubernetes_models import load_template, merge_template, round_trip, to_model

        node = launch.node
        manifests.check_node(node)
        try_number = _try_number()
        pod = merge_template(load_template(self.pod_template), round_trip(manifests.pod(self, launch, try_number)))
        payload = manifests.build_bundle(self, source_directory)  # too big: refused before anything is created
        core, name = self._core(), pod["metadata"]["name"]
        # A retried launch: the earlier try's pod has this pod's name; it must be gone first.
        self._delete("pod", name, grace_s=0)
        self._wait_gone(name)
        self._create("service", manifests.service(self, node.job_id))
        self._create("config_map", manifests.bundle_config_map(self, node.job_id, payload), replace=True)
        self._create("secret", manifests.node_secret(self, launch, secrets, try_number), replace=True)
        try:
            core.create_namespaced_pod(self.namespace, to_model(pod), _request_timeout=self.timeout)
        except Exception as exc:
            if kio.api_status(exc) in (400, 403, 422):  # refused: admission, quota, validation
                raise RuntimeError(f"KubernetesBackend could not create pod {name} in {self.namespace!r}: "
                                   f"{getattr(exc, 'body', None) or exc}") from exc
            raise
        return {
            "backend": "kubernetes", "job_id": node.job_id, "node_index": node.node_index, "host": node.host,
            "namespace": self.namespace, "pod": name, "try": try_number, "started_at": time.time(),
        }

    def _create(self, kind: str, manifest: dict[str, Any], replace: bool = False) -> None:
        from airflow_tf.backends.kubernetes_models import to_model

        core, body = self._core(), to_model(manifest)
        try:
            getattr(core, f"create_namespaced_{kind}")(self.namespace, body, _request_timeout=self.timeout)
        except Exception as exc:
            if kio.api_status(exc) != 409:
                raise
            if replace:  # another node of this job (or an earlier try) created it: ours is as new
                getattr(core, f"replace_namespaced_{kind}")(manifest["metadata"]["name"], self.namespace, body,
                                                            _request_timeout=self.timeout)

    def _wait_gone(self, name: str) -> None:
        deadline = time.monotonic() + GONE_WAIT_S
        while self._get_pod(name) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"pod {name} of an earlier try is still being deleted after {GONE_WAIT_S} s "
                                   "(a finalizer, or its node is unreachable); the launch cannot reuse its name")
            time.sleep(STOP_POLL_S)

    def poll(self, handle: Handle) -> NodeState:
        pod = self._get_pod(handle["pod"])
        if pod is not None and status.started(pod):
            self._release_secret(handle)
        return status.node_state(pod, handle["started_at"], self.start_timeout, time.time())

    def _release_secret(self, handle: Handle) -> None:
        """Once the node container runs, the init container has copied node.json and secrets.json
        (and the launcher has deleted secrets.json): the node's Secret goes at once, not at teardown."""
        name = names.node_secret_name(handle["job_id"], handle["node_index"])
        if self._released.get(name):
            return
        try:
            self._delete("secret", name)
            self._released[name] = True
        except Exception as exc:  # noqa: BLE001 - the teardown deletes it in any case
            log.warning("could not delete Secret %s yet (%s); the teardown will", name, exc)

    def read_log(self, handle: Handle, offset: int) -> tuple[str, int]:
        key = (handle["pod"], handle.get("started_at"))
        try:
            text, self._cursors[key] = kio.read_log(self.hook(), self.namespace, handle["pod"], offset,
                                                    self._cursors.get(key))
        except Exception as exc:
            if kio.not_started(exc):
                return "", offset
            raise
        return text.decode(errors="replace"), offset + len(text)

    def _tail(self, pod: str, lines: int, container: str = names.NODE_CONTAINER) -> list[str]:
        try:
            raw = kio.pod_log(self.hook(), self.namespace, pod, container=container, timestamps=False,
                              tail_lines=lines)
        except Exception as exc:
            if kio.not_started(exc):
                return []
            raise
        return raw.decode(errors="replace").splitlines()[-lines:]

    def read_tail(self, handle: Handle, lines: int) -> list[str]:
        """The node container's last lines, then why the pod ended or never ran (evicted,
        preempted, OOMKilled, an init failure with its lines, Pending past the start timeout with
        every pod of the job still Pending)."""
        from airflow_tf.backends.kubernetes_models import to_dict

        name, pod = handle["pod"], self._get_pod(handle["pod"])
        tail = self._tail(name, lines) if pod is not None else []
        now, pending = time.time(), None
        if pod is not None and not status.started(pod):
            tail += self._tail(name, lines, names.INIT_CONTAINER)
            if status.is_pending(pod):
                pending = sorted(p["metadata"]["name"] for p in map(to_dict, self._list("pod", names.job_selector(
                    handle["job_id"]))) if status.is_pending(p))
        return tail + status.explain(pod, name, started_at=handle["started_at"], start_timeout=self.start_timeout,
                                     now=now, pending=pending)

    def _files(self, handle: Handle) -> tuple[kio.PodFiles, str]:
        return (kio.PodFiles(self.hook(), self.namespace, handle["pod"], self.python),
                manifests.node_dir(handle["node_index"]))

    def stop(self, handle: Handle, grace_s: float = 10.0) -> None:
        """TERM the launcher (it stops its ranks and records their exit code; the pod, its log and
        files stay until stop_job); the pod is deleted only when it never ran or the launcher
        outlives the grace."""
        name = handle["pod"]
        pod = self._get_pod(name)
        if pod is None or not status.node_state(pod, 0, float("inf"), time.time())["running"]:
            return  # gone, or ended
        if not status.started(pod):
            self._delete("pod", name, grace_s)  # Pending: nothing ran, nothing to keep
            return
        try:
            kio.run_exec(self.hook(), self.namespace, name, names.NODE_CONTAINER,
                         [self.python, "-S", "-c", kio.STOP_SCRIPT], timeout=self.timeout)
        except Exception as exc:
            if kio.api_status(exc) not in (400, 404):  # it ended meanwhile
                raise
        deadline = time.monotonic() + grace_s + 2
        while time.monotonic() < deadline:
            pod = self._get_pod(name)
            if pod is None or status.node_state(pod, 0, float("inf"), time.time())["exit_code"] is not None:
                return
            time.sleep(STOP_POLL_S)
        self._delete("pod", name, 0)  # a launcher that ignores TERM: the kubelet KILLs it

    def stop_job(self, job_id: str, node_count: int, grace_s: float = 10.0) -> list[int]:
        """Delete every object labelled with the job: pods (with the grace), Secrets, the
        ConfigMap and the Service. Returns the nodes whose node container had not ended."""
        from airflow_tf.backends.kubernetes_models import to_dict

        selector = names.job_selector(job_id)
        were_running = set()
        for item in self._list("pod", selector):
            pod = to_dict(item)
            if status.node_state(pod, 0, float("inf"), time.time())["running"]:  # Pending counts
                were_running.add(int(pod["metadata"].get("labels", {}).get(names.LABEL_NODE, -1)))
            self._delete("pod", pod["metadata"]["name"], grace_s)
        for kind in ("secret", "config_map", "service"):
            for item in self._list(kind, selector):
                self._delete(kind, item.metadata.name)
        return sorted(were_running)

    # -- outputs -------------------------------------------------------------------------------
    def output_location(self, job_id: str) -> str:
        if self.outputs_pvc:
            return f"pvc://{self.namespace}/{self.outputs_pvc}/{names.slug(job_id) or 'job'}"
        return f"pod://{self.namespace}/{names.pod_name(job_id, 0)}{names.OUTPUT_DIR}"

    def host_path(self, handle: Handle, path: str) -> str:
        if path == names.OUTPUT_DIR or path.startswith(names.OUTPUT_DIR + "/"):
            return self.output_location(handle["job_id"]) + path[len(names.OUTPUT_DIR):]
        return path


def _current_context() -> Mapping[str, Any] | None:
    try:
        from airflow.sdk import get_current_context

        return get_current_context()
    except Exception:  # noqa: BLE001 - not inside a running task
        return None


def _plan_task():
    """The plan task calling hosts() (it has the job's name and the spec's static fields)."""
    context = _current_context()
    task = context.get("task") if context else None
    return task if task is not None and hasattr(task, "job_name") and hasattr(task, "spec_fields") else None


def _job_id_of(plan_task) -> str:
    # The plan task's own job id rule (operators sit above backends: imported only when running).
    from airflow_tf.operators.nodes import job_id_for

    context = _current_context()
    return job_id_for(context["dag"].dag_id, context["run_id"], plan_task.job_name)


def _try_number() -> int | None:
    """The launch task's try (the pod's ``airflow-tf/try`` label); None outside a task."""
    context = _current_context()
    ti = context.get("ti") if context else None
    number = getattr(ti, "try_number", None)
    return number if isinstance(number, int) else None
