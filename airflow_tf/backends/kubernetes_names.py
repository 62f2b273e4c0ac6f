"""KubernetesBackend's names and field checks: pure, standard library only (DAG parsing imports
this module, never the kubernetes client).

Names: every object of a job is named from its job id, valid DNS-1123 within 63 characters
(a readable slug, truncated, plus a hash of the whole job id, so two long ids that share a prefix
never collide). The stable pod DNS name a node is reached at is
``<pod>.<service>.<namespace>.svc`` (the pod's ``hostname`` and ``subdomain``, the job's
headless Service): the planner puts exactly these into TF_CONFIG and the Horovod rendezvous.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.checks import describe
from airflow_tf.cluster.errors import SpecError

# Labels every object of a job carries (teardown deletes by LABEL_JOB).
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGED_BY = "airflow-tf"
LABEL_JOB = "airflow-tf/job"  # the job id, label-safe (truncated + hashed when needed)
LABEL_NODE = "airflow-tf/node"  # the node index
LABEL_TRY = "airflow-tf/try"  # the launch task's try number
ANNOTATION_JOB_ID = "airflow-tf/job-id"  # the job id itself (any length)
RESERVED_LABEL_PREFIX = "airflow-tf/"

# The fixed layout inside every pod (one emptyDir at ROOT, the outputs volume at OUTPUT_DIR).
ROOT = "/airflow_tf"
LIB_DIR = f"{ROOT}/lib"
SRC_DIR = f"{ROOT}/src"
JOB_DIR = f"{ROOT}/job"
OUTPUT_DIR = f"{ROOT}/outputs"
BUNDLE_MOUNT = "/airflow_tf_bundle"  # the job's ConfigMap (init container only)
NODE_MOUNT = "/airflow_tf_node"  # the node's Secret (init container only)

# Container names.
NODE_CONTAINER = "node"  # runs the launcher: its exit code is the node's
FILES_CONTAINER = "files"  # keeps the node directory readable after the node container ended
INIT_CONTAINER = "unpack"  # unpacks runtime + sources, copies node.json / secrets.json

MAX_NAME = 63
MAX_SERVICE = 55  # leaves "-n<index>" room for pod names of up to 99999 nodes
SUBDOMAIN_MAX = 253

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
GPU_RESOURCE = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
JOB_ID_HASHED = re.compile(r"[A-Za-z0-9._-]*-[0-9a-f]{8}")  # operators.nodes.job_id_for's form
QUANTITY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[munkMGTPE])?")


def _digest(text: str, length: int = 8) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:length]


def slug(text: str) -> str:
    """Lower-case letters, digits and single dashes."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", text.lower())).strip("-")


def service_name(job_id: str) -> str:
    """The job's headless Service (a DNS-1035 label: starts with a letter), at most MAX_SERVICE.

    A job id made by the plan task ends with a hash of the (DAG, run, group) it stands for
    (``operators.nodes.job_id_for``): when its slug fits whole, that hash keeps it unique and it
    is used as it is. Otherwise the slug is truncated and a hash of the whole job id appended."""
    body = slug(job_id)
    prefix = "" if body[:1].isalpha() else "tf-"
    if JOB_ID_HASHED.fullmatch(job_id) and len(prefix + body) <= MAX_SERVICE:
        return prefix + body
    digest = _digest(job_id)
    body = body[: MAX_SERVICE - len("tf--") - len(digest)].strip("-")
    return f"tf-{body}-{digest}" if body else f"tf-{digest}"


def pod_name(job_id: str, node_index: int) -> str:
    """Node ``node_index``'s pod, also its ``hostname`` (a DNS-1123 label)."""
    return f"{service_name(job_id)}-n{int(node_index)}"


def bundle_name(job_id: str) -> str:
    """The job's ConfigMap: the node runtime (and the sources, unless they are in the image)."""
    return f"{service_name(job_id)}-bundle"


def node_secret_name(job_id: str, node_index: int) -> str:
    """Node ``node_index``'s Secret: its node.json (the user's environment values) and secrets.json."""
    return f"{pod_name(job_id, node_index)}-files"


def host_name(job_id: str, node_index: int, namespace: str) -> str:
    """The stable DNS name other pods reach the node at."""
    return f"{pod_name(job_id, node_index)}.{service_name(job_id)}.{namespace}.svc"


def label_value(text: str) -> str:
    """``text`` as a label value: unchanged when valid, else cleaned, truncated and hashed."""
    if len(text) <= MAX_NAME and LABEL_NAME.fullmatch(text):
        return text
    digest = _digest(text)
    body = re.sub(r"[^A-Za-z0-9_.-]", "-", text)[: MAX_NAME - len(digest) - 1]
    body = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", body)
    return f"{body}-{digest}" if body else digest


def job_selector(job_id: str) -> str:
    return f"{LABEL_JOB}={label_value(job_id)}"


def node_selector_of(job_id: str, node_index: int) -> str:
    return f"{job_selector(job_id)},{LABEL_NODE}={int(node_index)}"


def parse_host(host: str) -> tuple[str, str, str]:
    """``(pod, service, namespace)`` of a planned host name (``<pod>.<service>.<namespace>.svc``)."""
    parts = host.split(".")
    if len(parts) != 4 or parts[3] != "svc":
        raise SpecError(f"host {host!r} is not a KubernetesBackend pod DNS name (<pod>.<service>.<namespace>.svc): "
                        "the job was planned with another backend")
    return parts[0], parts[1], parts[2]


# -- field checks (DAG-parse time) --------------------------------------------------------------
def check_dns_label(field: str, value: Any, what: str = "a DNS-1123 label") -> str:
    if not isinstance(value, str) or len(value) > MAX_NAME or not DNS1123_LABEL.fullmatch(value):
        raise SpecError(f"{field} must be {what} (lower-case letters, digits and '-', starting and ending with a "
                        f"letter or digit, at most {MAX_NAME} characters), got {describe(value)}")
    return value


def check_dns_subdomain(field: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.fullmatch(value):
        raise SpecError(f"{field} must be a Kubernetes object name (DNS-1123 subdomain: lower-case letters, digits, "
                        f"'-' and '.', at most {SUBDOMAIN_MAX} characters), got {describe(value)}")
    return value


def check_label_key(field: str, key: Any) -> str:
    """``[prefix/]name``: prefix a DNS-1123 subdomain, name at most 63 of [A-Za-z0-9-_.]."""
    if not isinstance(key, str):
        raise SpecError(f"{field}: keys must be strings, got {describe(key)}")
    prefix, _, name = key.rpartition("/")
    if (prefix and (len(prefix) > SUBDOMAIN_MAX or not DNS1123_SUBDOMAIN.fullmatch(prefix))) \
            or len(name) > MAX_NAME or not LABEL_NAME.fullmatch(name):
        raise SpecError(f"{field}: {key!r} is not a valid label/annotation key ([prefix/]name: name at most 63 "
                        "letters, digits, '-', '_', '.', starting and ending with a letter or digit; prefix a DNS "
                        "subdomain)")
    return key


def check_labels(field: str, value: Any, *, reserved: bool = True) -> dict[str, str] | None:
    """A dict of label keys to label values (at most 63 characters, or empty)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{field} must be a dict of label keys to label values, got {describe(value)}")
    for key, item in value.items():
        check_label_key(field, key)
        if reserved and (key.startswith(RESERVED_LABEL_PREFIX) or key == LABEL_MANAGED):
            raise SpecError(f"{field}: {key!r} is reserved: KubernetesBackend sets the {RESERVED_LABEL_PREFIX}* "
                            f"labels and {LABEL_MANAGED} itself")
        if not isinstance(item, str) or (item and (len(item) > MAX_NAME or not LABEL_NAME.fullmatch(item))):
            raise SpecError(f"{field}[{key!r}] must be a label value (at most 63 letters, digits, '-', '_', '.', "
                            f"starting and ending with a letter or digit, or empty), got {describe(item)}")
    return dict(value)


def check_annotations(field: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{field} must be a dict of annotation keys to strings, got {describe(value)}")
    for key, item in value.items():
        check_label_key(field, key)
        if key.startswith(RESERVED_LABEL_PREFIX):
            raise SpecError(f"{field}: {key!r} is reserved for KubernetesBackend")
        if not isinstance(item, str):
            raise SpecError(f"{field}[{key!r}] must be a string, got {describe(item)}")
    return dict(value)


def check_environment(field: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", k) and isinstance(v, str)
            for k, v in value.items()):
        raise SpecError(f"{field} must be a dict of environment variable names to strings, got {describe(value)}")
    return dict(value)


def check_quantity(field: str, value: Any) -> str:
    """A Kubernetes quantity (``"500m"``, ``"16Gi"``, ``2``), returned as a string."""
    text = str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not QUANTITY.fullmatch(text):
        raise SpecError(f"{field} must be a Kubernetes quantity like '4', '500m' or '16Gi', got {describe(value)}")
    return text


def check_resources(value: Any) -> dict[str, dict[str, str]] | None:
    """``{"requests": {...}, "limits": {...}}`` for the node container."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or not set(value) <= {"requests", "limits"}:
        raise SpecError(f"resources must be a dict with 'requests' and/or 'limits', got {describe(value)}")
    out: dict[str, dict[str, str]] = {}
    for part, amounts in value.items():
        if not isinstance(amounts, Mapping):
            raise SpecError(f"resources[{part!r}] must be a dict of resource names to quantities, "
                            f"got {describe(amounts)}")
        out[part] = {}
        for name, amount in amounts.items():
            check_label_key(f"resources[{part!r}]", name)
            out[part][name] = check_quantity(f"resources[{part!r}][{name!r}]", amount)
    return out


TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
AFFINITY_KEYS = {"nodeAffinity", "podAffinity", "podAntiAffinity"}


def check_tolerations(value: Any) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if isinstance(value, (str, Mapping)) or not isinstance(value, (list, tuple)):
        raise SpecError(f"tolerations must be a list of dicts (the Pod spec's YAML form), got {describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not set(item) <= TOLERATION_KEYS:
            unknown = sorted(set(item) - TOLERATION_KEYS) if isinstance(item, Mapping) else []
            raise SpecError(f"tolerations[{i}] must be a dict with keys {sorted(TOLERATION_KEYS)}"
                            + (f"; unknown: {unknown}" if unknown else f", got {describe(item)}"))
    return [dict(item) for item in value]


def check_affinity(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not set(value) <= AFFINITY_KEYS:
        unknown = sorted(set(value) - AFFINITY_KEYS) if isinstance(value, Mapping) else []
        raise SpecError(f"affinity must be a dict with keys {sorted(AFFINITY_KEYS)} (the Pod spec's YAML form)"
                        + (f"; unknown: {unknown}" if unknown else f", got {describe(value)}"))
    return dict(value)


def check_gpu_resource(value: Any) -> str:
    if not isinstance(value, str) or not GPU_RESOURCE.fullmatch(value):
        raise SpecError(f"gpu_resource must be an extended resource name like 'nvidia.com/gpu' or 'amd.com/gpu', "
                        f"got {describe(value)}")
    return value


def check_absolute_path(field: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value or value.rstrip("/") == "":
        raise SpecError(f"{field} must be an absolute path inside the image, got {describe(value)}")
    if value.rstrip("/") == ROOT or value.startswith(ROOT + "/"):
        raise SpecError(f"{field}: {ROOT} is reserved for the node runtime, got {value!r}")
    return value.rstrip("/")


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def check_settings(b) -> dict[str, Any]:
    """Every KubernetesBackend setting (DAG-parse time: no cluster, no kubernetes import); returns
    the fields in their normal form (quantities as strings, a V1Pod template as its dict)."""
    from airflow_tf.backends.kubernetes_models import check_template_shape
    from airflow_tf.cluster.checks import check_name, check_positive_int, check_string_list

    if not isinstance(b.image, str) or not b.image.strip() or any(c.isspace() for c in b.image):
        raise SpecError(f"image must be an image reference like 'tensorflow/tensorflow:2.21.0-gpu', got {b.image!r}")
    check_dns_label("namespace", b.namespace, "a namespace name (a DNS-1123 label)")
    check_name("kubernetes_conn_id", b.kubernetes_conn_id, "an Airflow connection id")
    if b.gpus_per_node is not None:
        check_positive_int("gpus_per_node", b.gpus_per_node)
    check_gpu_resource(b.gpu_resource)
    for field in ("service_account_name", "priority_class_name", "outputs_pvc"):
        if getattr(b, field) is not None:
            check_dns_subdomain(field, getattr(b, field))
    pull_secrets = None
    if b.image_pull_secrets is not None:
        pull_secrets = check_string_list("image_pull_secrets", b.image_pull_secrets, allow_none=False)
        for i, name in enumerate(pull_secrets):
            check_dns_subdomain(f"image_pull_secrets[{i}]", name)
    if b.image_pull_policy is not None and b.image_pull_policy not in PULL_POLICIES:
        raise SpecError(f"image_pull_policy must be one of {list(PULL_POLICIES)} or None, got {b.image_pull_policy!r}")
    if not isinstance(b.python, str) or not b.python.strip() or any(c.isspace() for c in b.python):
        raise SpecError(f"python must be the interpreter's name or path in the image, got {describe(b.python)}")
    for field in ("start_timeout", "files_retention", "timeout"):
        check_positive_int(field, getattr(b, field))
    return {
        "resources": check_resources(b.resources),
        "node_selector": check_labels("node_selector", b.node_selector, reserved=False),
        "tolerations": check_tolerations(b.tolerations),
        "affinity": check_affinity(b.affinity),
        "labels": check_labels("labels", b.labels),
        "annotations": check_annotations("annotations", b.annotations),
        "environment": check_environment("environment", b.environment),
        "pod_template": check_template_shape(b.pod_template),
        "image_source_dir": check_absolute_path("image_source_dir", b.image_source_dir),
        "image_pull_secrets": pull_secrets,
        "shm_size": None if b.shm_size is None else check_quantity("shm_size", b.shm_size),
    }
