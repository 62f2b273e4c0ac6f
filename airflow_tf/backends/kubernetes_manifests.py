"""KubernetesBackend's objects, built as plain dicts from the backend's settings and the plan:
pure functions, no API calls (the cncf provider's own pattern: its pod spec merging is pure too).

Per job: one headless Service (``clusterIP: None``, ``publishNotReadyAddresses``: a pod's DNS
name exists from the moment it has an IP, before any readiness) and one ConfigMap holding the
source bundle (the stdlib-only node runtime and, unless the sources are in the image, the
user's source directory, as one tar.gz). Per node: one Secret (its ``node.json``, which holds the
user's environment values, and ``secrets.json`` when the launch has secrets) and one Pod
(``restartPolicy: Never``) of three containers:

- ``unpack`` (init): unpacks the bundle into the pod's ``/airflow_tf`` emptyDir, copies node.json
  and secrets.json into the node directory (0600), and waits until the pod's own DNS name
  resolves, so peers can reach it once the launcher starts. Only it mounts the Secret: the node
  container's spec holds no secret at all, and the launcher deletes secrets.json first thing.
- ``node``: the launcher (``python -m airflow_tf.runtime.launcher``), the ranks' ports declared
  as container ports, the GPUs as ``<gpu_resource>`` limits, the outputs volume.
- ``files``: a keeper (a sleeping ``python -S``) that holds the node directory readable after
  the node container ended (metrics, model path, exit code are read through it), and exits
  ``files_retention`` seconds after the exit code was written, releasing the pod.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_tf.backends import bundle
from airflow_tf.backends import kubernetes_names as names
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodeLaunch, ProcessKind
from airflow_tf.runtime import node_files

if TYPE_CHECKING:
    from airflow_tf.backends.kubernetes import KubernetesBackend

BUNDLE_KEY = "bundle.tar.gz"
CONFIGMAP_LIMIT = 1 << 20  # the API server refuses a ConfigMap whose data exceeds 1 MiB
MAX_BUNDLE_BYTES = CONFIGMAP_LIMIT - 4096  # what is left for the bundle after the object's own fields
DNS_WAIT_S = 300

MPI_REFUSED = (
    "KubernetesBackend runs Horovod over Gloo only: distributed_backend='mpi' needs sshd and a shared ssh key "
    "in every pod (and mpirun's hostfile over them), which plain pods do not have. Use distributed_backend='gloo' "
    "(same HOROVOD_* ranks, no ssh), or the Kubeflow MPI Operator for MPI jobs"
)

# Init container: bundle -> /airflow_tf, node files -> the node directory, own DNS name resolves.
INIT_SCRIPT = f"""\
import os, socket, sys, tarfile, time
node_dir, host, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
with tarfile.open({names.BUNDLE_MOUNT + '/' + BUNDLE_KEY!r}) as tar:
    tar.extractall({names.ROOT!r}, **({{"filter": "data"}} if hasattr(tarfile, "data_filter") else {{}}))
os.makedirs(node_dir, 0o700, exist_ok=True)
for name in ({node_files.NODE_SPEC!r}, {node_files.SECRETS!r}):
    source = os.path.join({names.NODE_MOUNT!r}, name)
    if os.path.exists(source):
        fd = os.open(os.path.join(node_dir, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
            out.write(f.read())
deadline = time.monotonic() + timeout
while True:
    try:
        socket.getaddrinfo(host, None)
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"airflow-tf: {{host}} does not resolve after {{timeout:g}} s ({{exc}}): the job's headless "
                     "Service is missing or the cluster DNS does not answer")
        time.sleep(1)
print(f"airflow-tf: node files unpacked; {{host}} resolves")
"""

# Keeper: holds the node directory readable until files_retention after the exit code.
KEEPER_SCRIPT = f"""\
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
path, keep = os.path.join(sys.argv[1], {node_files.EXIT_CODE!r}), float(sys.argv[2])
while not os.path.exists(path):
    time.sleep(2)
time.sleep(keep)
"""

SMALL_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}


def node_dir(node_index: int) -> str:
    return f"{names.JOB_DIR}/{node_files.node_dirname(node_index)}"


def common_labels(backend: "KubernetesBackend", job_id: str) -> dict[str, str]:
    return {**(backend.labels or {}), names.LABEL_MANAGED: names.MANAGED_BY, names.LABEL_JOB: names.label_value(job_id)}


def _metadata(backend: "KubernetesBackend", name: str, job_id: str, labels: Mapping[str, str] | None = None):
    return {
        "name": name,
        "namespace": backend.namespace,
        "labels": {**common_labels(backend, job_id), **(labels or {})},
        "annotations": {**(backend.annotations or {}), names.ANNOTATION_JOB_ID: job_id},
    }


def check_node(node) -> None:
    """Refuse what plain pods cannot run (Horovod over MPI: its node plans hold mpirun, or nothing)."""
    if not node.processes or any(p.kind == ProcessKind.MPIRUN for p in node.processes):
        raise SpecError(MPI_REFUSED)


def service(backend: "KubernetesBackend", job_id: str) -> dict[str, Any]:
    """The job's headless Service: DNS names for its pods, no load balancing, no ports needed."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(backend, names.service_name(job_id), job_id),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {names.LABEL_JOB: names.label_value(job_id), names.LABEL_MANAGED: names.MANAGED_BY},
        },
    }


def build_bundle(backend: "KubernetesBackend", source_directory: str) -> bytes:
    """The tar.gz the init container unpacks at /airflow_tf: ``lib/`` (the node runtime) and
    ``src/`` (the sources, unless ``image_source_dir`` says they are in the image)."""
    if backend.image_source_dir is None and not os.path.isdir(source_directory):
        raise SpecError(f"source_directory {source_directory!r} is not a directory on this worker")
    if backend.image_source_dir is None:
        with bundle.build(source_directory, runtime_at="lib", source_at="src", files={}, gzip=True) as data:
            payload = data.read()
    else:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
            for name, content in bundle.runtime_files().items():
                info = tarfile.TarInfo(f"lib/{name}")
                info.size, info.mode, info.mtime = len(content), 0o644, int(time.time())
                tar.addfile(info, io.BytesIO(content))
        payload = buf.getvalue()
    if len(payload) > MAX_BUNDLE_BYTES:
        raise SpecError(
            f"source_directory {source_directory!r} packs to {len(payload)} bytes (gzip), over what one ConfigMap "
            f"holds ({MAX_BUNDLE_BYTES} of the API server's 1 MiB limit). Build an image that holds the sources and "
            "set image_source_dir (their path in the image), or move data files out of the source directory "
            "(into a volume: pod_template)"
        )
    return payload


def bundle_config_map(backend: "KubernetesBackend", job_id: str, payload: bytes) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(backend, names.bundle_name(job_id), job_id),
        "binaryData": {BUNDLE_KEY: base64.b64encode(payload).decode()},
    }


def node_secret(backend: "KubernetesBackend", launch: NodeLaunch, secrets: Mapping[str, str] | None,
                try_number: int | None) -> dict[str, Any]:
    """node.json (the NodeLaunch: the user's environment values) and secrets.json, for the init
    container to copy into the node directory; never in the pod spec."""
    node = launch.node
    data = {node_files.NODE_SPEC: json.dumps(launch.to_json(), indent=1, sort_keys=True)}
    if secrets:
        data[node_files.SECRETS] = json.dumps(dict(secrets), sort_keys=True)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _metadata(backend, names.node_secret_name(node.job_id, node.node_index), node.job_id,
                              _node_labels(node.node_index, try_number)),
        "stringData": data,
    }


def _node_labels(node_index: int, try_number: int | None) -> dict[str, str]:
    labels = {names.LABEL_NODE: str(node_index)}
    if try_number is not None:
        labels[names.LABEL_TRY] = str(try_number)
    return labels


def gpu_count(backend: "KubernetesBackend", node) -> int:
    """The GPUs the node's pod asks for: ``gpus_per_node`` when set, else one per rank."""
    if not node.gpus:
        return 0
    if backend.gpus_per_node is None:
        return node.gpus
    if backend.gpus_per_node < node.gpus:
        raise SpecError(f"gpus_per_node={backend.gpus_per_node} but node {node.node_index} runs {node.gpus} GPU "
                        "rank(s), one GPU each; raise gpus_per_node or lower process_count_per_node")
    return backend.gpus_per_node


def _container_resources(backend: "KubernetesBackend", node) -> dict[str, Any] | None:
    resources = {part: dict(amounts) for part, amounts in (backend.resources or {}).items()}
    gpus = gpu_count(backend, node)
    if gpus:
        resources.setdefault("limits", {})[backend.gpu_resource] = str(gpus)
    return resources or None


def pod(backend: "KubernetesBackend", launch: NodeLaunch, try_number: int | None) -> dict[str, Any]:
    """Node ``launch.node``'s pod, before the pod_template merge."""
    node = launch.node
    check_node(node)
    job_id, index = node.job_id, node.node_index
    pod_name = names.pod_name(job_id, index)
    if names.parse_host(node.host) != (pod_name, names.service_name(job_id), backend.namespace):
        raise SpecError(f"node {index}'s planned host {node.host!r} is not "
                        f"{names.host_name(job_id, index, backend.namespace)!r}: the plan was made for another job or "
                        "namespace")
    workdir = backend.image_source_dir or names.SRC_DIR
    directory = node_dir(index)
    env = dict(backend.environment or {})
    env["PYTHONPATH"] = ":".join(filter(None, [names.LIB_DIR, env.get("PYTHONPATH")]))
    pull = {"imagePullPolicy": backend.image_pull_policy} if backend.image_pull_policy else {}
    root_mount = {"name": "airflow-tf", "mountPath": names.ROOT}
    outputs_mount = {"name": "outputs", "mountPath": names.OUTPUT_DIR}
    if backend.outputs_pvc and index == 0:
        outputs_mount["subPath"] = names.slug(job_id) or "job"
    node_mounts = [root_mount, outputs_mount]
    volumes: list[dict[str, Any]] = [
        {"name": "airflow-tf", "emptyDir": {}},
        {"name": "bundle", "configMap": {"name": names.bundle_name(job_id), "defaultMode": 0o444}},
        # Read by the init container only (as whatever user the image runs as). Optional: the
        # backend deletes the Secret once the node container runs (the kubelet must not complain).
        {"name": "node-files", "secret": {"secretName": names.node_secret_name(job_id, index), "defaultMode": 0o444,
                                          "optional": True}},
        # Only the chief's node (0) writes outputs that outlive the job: it alone mounts the claim
        # (a ReadWriteOnce volume is enough); the others write scratch copies.
        {"name": "outputs", **({"persistentVolumeClaim": {"claimName": backend.outputs_pvc}}
                               if backend.outputs_pvc and index == 0 else {"emptyDir": {}})},
    ]
    if backend.shm_size:
        volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": backend.shm_size}})
        node_mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    node_container = {
        "name": names.NODE_CONTAINER,
        "image": backend.image,
        **pull,
        "command": [backend.python, "-m", "airflow_tf.runtime.launcher", directory, "--workdir", workdir,
                    "--output-dir", names.OUTPUT_DIR],
        "workingDir": workdir,
        "env": [{"name": key, "value": value} for key, value in sorted(env.items())],
        "ports": [{"containerPort": port, "protocol": "TCP"} for port in node.ports],
        "volumeMounts": node_mounts,
    }
    resources = _container_resources(backend, node)
    if resources:
        node_container["resources"] = resources
    if not node_container["ports"]:
        del node_container["ports"]
    init = {
        "name": names.INIT_CONTAINER, "image": backend.image, **pull,
        "command": [backend.python, "-S", "-c", INIT_SCRIPT, directory, node.host, str(DNS_WAIT_S)],
        "resources": SMALL_RESOURCES,
        "volumeMounts": [root_mount, {"name": "bundle", "mountPath": names.BUNDLE_MOUNT, "readOnly": True},
                         {"name": "node-files", "mountPath": names.NODE_MOUNT, "readOnly": True}],
    }
    keeper = {
        "name": names.FILES_CONTAINER, "image": backend.image, **pull,
        "command": [backend.python, "-S", "-c", KEEPER_SCRIPT, directory, str(backend.files_retention)],
        "resources": SMALL_RESOURCES,
        "volumeMounts": [root_mount],
    }
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "hostname": pod_name,
        "subdomain": names.service_name(job_id),
        "enableServiceLinks": False,
        "initContainers": [init],
        "containers": [node_container, keeper],
        "volumes": volumes,
    }
    optional = {
        "nodeSelector": backend.node_selector, "tolerations": backend.tolerations, "affinity": backend.affinity,
        "serviceAccountName": backend.service_account_name,
        "imagePullSecrets": [{"name": name} for name in backend.image_pull_secrets or []] or None,
        "priorityClassName": backend.priority_class_name,
    }
    spec.update({key: value for key, value in optional.items() if value})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(backend, pod_name, job_id, _node_labels(index, try_number)),
        "spec": spec,
    }


def job_objects(backend: "KubernetesBackend", launches: list[NodeLaunch], payload: bytes,
                template: dict[str, Any] | None, try_number: int | None = 1,
                secrets: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Every object of a job in creation order, as the API server would get them
    (each through the client models): Service, ConfigMap, the nodes' Secrets, their Pods."""
    from airflow_tf.backends.kubernetes_models import merge_template, round_trip

    job_id = launches[0].node.job_id
    objects = [round_trip(service(backend, job_id)), round_trip(bundle_config_map(backend, job_id, payload))]
    objects += [round_trip(node_secret(backend, launch, secrets, try_number)) for launch in launches]
    objects += [merge_template(template, round_trip(pod(backend, launch, try_number))) for launch in launches]
    return objects
