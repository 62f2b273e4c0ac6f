"""The training spec: the retired Azure ML estimator's parameter names, validated on construction.

Each spec class lists its field checks once (``FIELD_CHECKS``) and its cross-field rules once
(``check_together``). Both entry points use them: construction (which also normalises the
values) and ``validate_fields`` (parse time, where Jinja-templated fields are skipped and
checked again once the plan task renders them).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

from airflow_tf.cluster.checks import (
    SCALAR_TYPES,
    check_bool,
    check_no_nul,
    check_positive_int,
    check_source,
    describe,
)
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.frameworks import (
    KerasVersion,
    check_conda_channels,
    check_conda_packages,
    check_framework_version,
    check_keras_version,
)
from airflow_tf.cluster.limits import check_limit
from airflow_tf.cluster.pip import check_pip_hosts, check_pip_packages, check_pip_url, check_pip_urls
from airflow_tf.cluster.secrets import check_disjoint, check_secret_environment

# Names the plan owns: letting a user set them would silently break the cluster wiring.
RESERVED_ENV = frozenset({"TF_CONFIG", "CUDA_VISIBLE_DEVICES"})
RESERVED_ENV_PREFIXES = ("AIRFLOW_TF_", "HOROVOD_")


def check_script_params(value: Any) -> dict[str, Any] | list[str]:
    """script_params is a mapping of flag -> scalar (None for a bare flag) or a list of strings."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise SpecError(f"script_params keys must be non-empty strings, got {describe(key)}")
            if item is not None and not isinstance(item, SCALAR_TYPES):
                raise SpecError(
                    f"script_params[{key!r}] must be a scalar (str, int, float, bool) or None, got {describe(item)}"
                )
            check_no_nul(f"script_params key {key!r}", key)
            if isinstance(item, str):
                check_no_nul(f"script_params[{key!r}]", item)
        return dict(value)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if not isinstance(item, SCALAR_TYPES):
                raise SpecError(f"script_params[{i}] must be a scalar (str, int, float, bool), got {describe(item)}")
            if isinstance(item, str):
                check_no_nul(f"script_params[{i}]", item)
        return [str(item) for item in value]
    raise SpecError(f"script_params must be a dict of flag -> scalar or a list of arguments, got {describe(value)}"
                    + (RENDERED_TO_STRING if isinstance(value, str) else ""))


# A whole-dict template ("{{ params.script_params }}") renders to the dict's text unless the DAG
# renders templates as Python objects.
RENDERED_TO_STRING = (
    ". A templated dict renders to a string unless the DAG sets render_template_as_native_obj=True: set it "
    "on the DAG, or template the values one by one ({'--lr': '{{ params.lr }}'})"
)


def check_environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"environment_variables must be a dict of name -> string, got {describe(value)}"
                        + (RENDERED_TO_STRING if isinstance(value, str) else ""))
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise SpecError(f"environment_variables keys must be non-empty names without '=' or NUL, "
                            f"got {describe(key)}")
        if key.startswith(RESERVED_ENV_PREFIXES) or key in RESERVED_ENV:
            raise SpecError(f"environment_variables[{key!r}] is set by airflow-tf's plan and cannot be overridden")
        if not isinstance(item, SCALAR_TYPES):
            raise SpecError(f"environment_variables[{key!r}] must be a scalar, got {describe(item)}")
        check_no_nul(f"environment_variables[{key!r}]", str(item))
    return {key: str(item) for key, item in value.items()}


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    """One training step, as a user describes it (names kept from azureml.train.dnn.TensorFlow)."""

    source_directory: str
    entry_script: str
    script_params: dict[str, Any] | list[str] = dataclasses.field(default_factory=dict)
    node_count: int = 1
    process_count_per_node: int = 1
    pip_packages: list[str] = dataclasses.field(default_factory=list)
    conda_packages: list[str] = dataclasses.field(default_factory=list)
    use_gpu: bool = False
    environment_variables: dict[str, str] = dataclasses.field(default_factory=dict)
    # name -> reference to an Airflow secret (cluster/secrets.py); values resolved at launch only.
    secret_environment_variables: dict[str, str] = dataclasses.field(default_factory=dict)
    # Where pip_packages come from (pip's --index-url / --extra-index-url / --trusted-host).
    pip_index_url: str | None = None
    pip_extra_index_urls: list[str] = dataclasses.field(default_factory=list)
    pip_trusted_hosts: list[str] = dataclasses.field(default_factory=list)
    # Where conda_packages come from (cluster/frameworks.py; default conda-forge).
    conda_channels: list[str] | None = None
    # "2" (tf_keras), "3", or "auto": 2 for distributed strategies. Sets TF_USE_LEGACY_KERAS per rank.
    keras_version: KerasVersion = KerasVersion.AUTO
    # The estimator's TensorFlow version, checked against the node's before any rank starts.
    framework_version: str | None = None
    # Keras fit's per-epoch metrics (and a TensorBoard dir) recorded without the script's help.
    autolog: bool = True

    # Field -> check returning the normalised value. Subclasses add theirs (merged along the MRO).
    FIELD_CHECKS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "node_count": lambda v: check_positive_int("node_count", v, "max_node_count"),
        "process_count_per_node": lambda v: check_positive_int("process_count_per_node", v, "max_processes_per_node"),
        "script_params": check_script_params,
        "pip_packages": check_pip_packages,
        "pip_index_url": lambda v: None if v is None else check_pip_url("pip_index_url", v),
        "pip_extra_index_urls": lambda v: check_pip_urls("pip_extra_index_urls", v),
        "pip_trusted_hosts": check_pip_hosts,
        "conda_packages": check_conda_packages,
        "conda_channels": check_conda_channels,
        "keras_version": check_keras_version,
        "framework_version": check_framework_version,
        "autolog": lambda v: check_bool("autolog", v),
        "use_gpu": lambda v: check_bool("use_gpu", v),
        "environment_variables": check_environment,
        "secret_environment_variables": check_secret_environment,
    }

    @classmethod
    def field_checks(cls) -> dict[str, Callable[[Any], Any]]:
        checks: dict[str, Callable[[Any], Any]] = {}
        for klass in reversed(cls.__mro__):
            checks.update(vars(klass).get("FIELD_CHECKS", {}))
        return checks

    @classmethod
    def check_together(cls, fields: Mapping[str, Any]) -> None:
        """Cross-field rules over the fields given (templated ones are absent until rendered)."""
        if "source_directory" in fields and "entry_script" in fields:
            check_source(fields["source_directory"], fields["entry_script"])
        nodes, per_node = fields.get("node_count"), fields.get("process_count_per_node", 1)
        if isinstance(nodes, int) and isinstance(per_node, int):  # not templated: known now
            check_limit(f"node_count x process_count_per_node ({nodes} x {per_node})", nodes * per_node,
                        "max_world_size")
        index = [name for name in ("pip_index_url", "pip_extra_index_urls", "pip_trusted_hosts") if fields.get(name)]
        if index and "pip_packages" in fields and not fields["pip_packages"]:
            raise SpecError(f"{', '.join(index)}: applies only to pip_packages, which is empty; add the packages "
                            "or drop the option")
        if fields.get("conda_channels") is not None and "conda_packages" in fields and not fields["conda_packages"]:
            raise SpecError("conda_channels: applies only to conda_packages, which is empty; add the packages or "
                            "drop the option")
        env, keras = fields.get("environment_variables"), fields.get("keras_version")
        if isinstance(env, Mapping) and "TF_USE_LEGACY_KERAS" in env and keras not in (None, "auto"):
            raise SpecError(f"environment_variables['TF_USE_LEGACY_KERAS'] and keras_version={keras!r} both choose "
                            "the Keras version: keep keras_version only")
        if isinstance(fields.get("environment_variables"), Mapping):
            check_disjoint(fields["environment_variables"], fields.get("secret_environment_variables") or {})

    @classmethod
    def validate_fields(cls, fields: Mapping[str, Any], *, skip: frozenset[str] | set[str] = frozenset()) -> None:
        """Parse-time check of the fields given, except those in ``skip`` (Jinja templates)."""
        known = {name: value for name, value in fields.items() if name not in skip}
        for name, check in cls.field_checks().items():
            if name in known:
                check(known[name])
        cls.check_together(known)

    def __post_init__(self) -> None:
        for name, check in self.field_checks().items():
            object.__setattr__(self, name, check(getattr(self, name)))
        self.check_together(dataclasses.asdict(self))
        object.__setattr__(self, "source_directory", os.path.abspath(self.source_directory))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainingSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"unknown training option(s) {unknown}; allowed: {sorted(names)}")
        return cls(**data)
