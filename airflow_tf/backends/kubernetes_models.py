"""Manifests as the official ``kubernetes`` client models: strict conversion, YAML, and the
pod_template merge.

Every object KubernetesBackend creates is a plain dict first (``kubernetes_manifests``), then
goes through :func:`to_model`, which walks it against the client models' ``openapi_types`` and
refuses any key a model does not have (the client's own deserializer silently drops them: a
misplaced ``nodeSelector`` inside a container would vanish), and builds the model (whose setters
refuse a missing required field). :func:`to_dict` is the model's wire form
(``ApiClient.sanitize_for_serialization``); ``to_dict(to_model(d)) == d`` for every manifest is
what the tests hold the builders to.

The kubernetes client is imported inside the functions: ``import airflow_tf`` and DAG parsing
never load it.
"""

from __future__ import annotations

import copy
import difflib
import functools
import os
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.checks import describe
from airflow_tf.cluster.errors import SpecError

TEMPLATE_TOP_KEYS = {"apiVersion", "kind", "metadata", "spec"}


@functools.cache
def _client():
    from kubernetes.client import ApiClient, Configuration

    # A fresh Configuration: never the process-global one an in-cluster config may have set.
    return ApiClient(configuration=Configuration())


def _check(data: Any, type_name: str, path: str) -> None:
    """Raise SpecError naming ``path`` for any key or type the model ``type_name`` does not allow."""
    from kubernetes.client import models

    if data is None:
        return
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise SpecError(f"{path} must be a list, got {describe(data)}")
        for i, item in enumerate(data):
            _check(item, type_name[5:-1], f"{path}[{i}]")
        return
    if type_name.startswith(("dict(", "dict[")):
        if not isinstance(data, Mapping):
            raise SpecError(f"{path} must be a mapping, got {describe(data)}")
        inner = type_name[5:-1].split(",", 1)[1].strip()
        for key, item in data.items():
            _check(item, inner, f"{path}[{key!r}]")
        return
    if type_name == "object":
        return  # int-or-string fields (ports, quantities) and free-form ones
    if type_name in ("str", "datetime", "date"):
        if not isinstance(data, str):
            raise SpecError(f"{path} must be a string, got {describe(data)}")
        return
    if type_name == "bool":
        if not isinstance(data, bool):
            raise SpecError(f"{path} must be true or false, got {describe(data)}")
        return
    if type_name in ("int", "float"):
        number = (int,) if type_name == "int" else (int, float)
        if isinstance(data, bool) or not isinstance(data, number):
            raise SpecError(f"{path} must be a number, got {describe(data)}")
        return
    klass = getattr(models, type_name)
    if not isinstance(data, Mapping):
        raise SpecError(f"{path} must be a mapping ({type_name}), got {describe(data)}")
    by_key = {key: attr for attr, key in klass.attribute_map.items()}
    for key, item in data.items():
        if key not in by_key:
            close = difflib.get_close_matches(str(key), list(by_key), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; {type_name} has {sorted(by_key)}"
            raise SpecError(f"{path}: unknown field {key!r}{hint}")
        _check(item, klass.openapi_types[by_key[key]], f"{path}.{key}")


def to_model(data: Mapping[str, Any], kind: str | None = None, path: str | None = None):
    """The client model (``V1Pod``, ``V1Service``, ...) of a manifest dict, refusing unknown keys."""
    type_name = kind or f"V1{data['kind']}"
    where = path or data.get("kind", type_name)
    _check(data, type_name, where)
    try:
        return _client()._ApiClient__deserialize(copy.deepcopy(dict(data)), type_name)
    except ValueError as exc:  # a required field is missing (the models' setters check)
        raise SpecError(f"{where}: {exc}") from None


def to_dict(model) -> dict[str, Any]:
    """The wire form of a client model (camelCase keys, no None values)."""
    return _client().sanitize_for_serialization(model)


def round_trip(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` through the client model and back: what the API server would be sent."""
    return to_dict(to_model(data))


def to_yaml(documents: list[Mapping[str, Any]]) -> str:
    """Multi-document YAML for ``kubectl create -f``; multi-line strings (the init and keeper
    scripts) as literal blocks, so a reviewer reads them as code."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):
        style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.split("\n")) else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return "".join("---\n" + yaml.dump(dict(doc), Dumper=Dumper, sort_keys=False, width=120) for doc in documents)


# -- pod_template -------------------------------------------------------------------------------
def check_template_shape(value: Any) -> dict[str, Any] | str | None:
    """DAG-parse time: a path to a YAML Pod, a dict of one, or a ``V1Pod`` (converted to its dict).

    Only what needs no kubernetes import is checked here (the file exists and is a YAML mapping
    with Pod keys); :func:`load_template` checks every field when the job is planned.
    """
    if value is None:
        return None
    if type(value).__module__.startswith("kubernetes.client"):  # a V1Pod: kubernetes is loaded already
        value = to_dict(value)
    if isinstance(value, str):
        if not os.path.isfile(value):
            raise SpecError(f"pod_template must be a V1Pod, a dict or the path of a YAML Pod file; no file {value!r}")
        data = _read_yaml(value)
    elif isinstance(value, Mapping):
        data = value
    else:
        raise SpecError(f"pod_template must be a V1Pod, a dict or the path of a YAML Pod file, got {describe(value)}")
    if not isinstance(data, Mapping):
        raise SpecError(f"pod_template {value!r} must hold one YAML mapping (a Pod), got {describe(data)}")
    unknown = sorted(set(data) - TEMPLATE_TOP_KEYS)
    if unknown:
        raise SpecError(f"pod_template: unknown top-level field(s) {unknown}; a Pod has {sorted(TEMPLATE_TOP_KEYS)}")
    if data.get("kind", "Pod") != "Pod":
        raise SpecError(f"pod_template must be a Pod, got kind {data.get('kind')!r}")
    return value if isinstance(value, str) else dict(data)


def _read_yaml(path: str) -> Any:
    import yaml

    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(f"pod_template {path!r} cannot be read as YAML: {exc}") from None


def load_template(value: dict[str, Any] | str | None) -> dict[str, Any] | None:
    """The template as a checked Pod dict (every field against the client models), or None."""
    if value is None:
        return None
    data = dict(_read_yaml(value) if isinstance(value, str) else value)
    data.setdefault("apiVersion", "v1")
    data.setdefault("kind", "Pod")
    data.setdefault("spec", {})
    data["spec"].setdefault("containers", [])  # a template may give only pod-level fields
    checked = _checked_template(data)
    return checked


def _checked_template(data: dict[str, Any]) -> dict[str, Any]:
    # V1PodSpec requires containers and V1Container a name: a template may leave both out.
    spec = copy.deepcopy(data)
    for i, container in enumerate(spec["spec"]["containers"]):
        if isinstance(container, Mapping):
            spec["spec"]["containers"][i] = {"name": f"template-{i}", **container}
    if not spec["spec"]["containers"]:
        spec["spec"]["containers"] = [{"name": "template-0"}]
    to_model(spec, "V1Pod", "pod_template")
    return data


def _merged_resources(template: Mapping[str, Any] | None, ours: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not template:
        return dict(ours) if ours else None
    merged = {part: dict(amounts) for part, amounts in template.items() if isinstance(amounts, Mapping)}
    for part, amounts in (ours or {}).items():
        merged.setdefault(part, {}).update(amounts)
    return merged


def merge_template(template: dict[str, Any] | None, pod: dict[str, Any]) -> dict[str, Any]:
    """``pod`` (ours) over ``template`` the way KubernetesPodOperator merges ``pod_template_file``:
    the cncf provider's ``PodGenerator.reconcile_pods`` (our values win; labels, annotations and
    node selectors merge; env, volume mounts, ports and volumes are concatenated; init containers
    merge by name). The template's first container is the base of the node container (its
    resources merge key by key with ours); further template containers run as extra sidecars.
    """
    if not template:
        return pod
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    template = copy.deepcopy(template)
    ours = copy.deepcopy(pod)
    containers = template["spec"].get("containers") or []
    base, extra = (containers[0] if containers else None), containers[1:]
    template["spec"]["containers"] = [{**base, "name": ours["spec"]["containers"][0]["name"]}] if base else []
    if base is not None:
        node = ours["spec"]["containers"][0]
        resources = _merged_resources(base.get("resources"), node.get("resources"))
        if resources:
            node["resources"] = resources
    for key in ("nodeSelector",):
        if template["spec"].get(key) and ours["spec"].get(key):
            ours["spec"][key] = {**template["spec"][key], **ours["spec"][key]}
    if not template["spec"]["containers"]:
        template["spec"]["containers"] = [{"name": ours["spec"]["containers"][0]["name"]}]
    merged = to_dict(PodGenerator.reconcile_pods(to_model(template, "V1Pod", "pod_template"),
                                                 to_model(ours, "V1Pod")))
    names = {c["name"] for c in merged["spec"]["containers"]}
    for i, container in enumerate(extra):
        if container.get("name") in names:
            raise SpecError(f"pod_template.spec.containers[{i + 1}]: the name {container.get('name')!r} is "
                            "KubernetesBackend's; rename the sidecar")
        merged["spec"]["containers"].append(container)
    return round_trip(merged)
