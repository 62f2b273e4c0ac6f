"""The training spec: the retired Azure ML estimator's parameter names, validated on construction.

Every check names the field and what is allowed, so a DAG author sees
``node_count must be an integer >= 1, got 0`` when the DAG file is parsed, not a stack trace
from deep inside TensorFlow at run time.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Callable

from airflow_tf.cluster.errors import SpecError

SCALAR_TYPES = (str, int, float, bool)


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_positive_int(field: str, value: Any) -> int:
    # bool is an int subclass; True nodes is a typo, not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field} must be an integer >= 1, got {_describe(value)}")
    if value < 1:
        raise SpecError(f"{field} must be an integer >= 1, got {value}")
    return value


def coerce_positive_int(field: str, value: Any) -> int:
    """Like check_positive_int, but accepts the digit strings a rendered template produces."""
    if isinstance(value, str) and value.strip().removeprefix("-").isdecimal():
        value = int(value.strip())
    return check_positive_int(field, value)


def check_script_params(value: Any) -> dict[str, Any] | list[str]:
    """script_params is a mapping of flag -> scalar (None for a bare flag) or a list of strings."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise SpecError(f"script_params keys must be non-empty strings, got {_describe(key)}")
            if item is not None and not isinstance(item, SCALAR_TYPES):
                raise SpecError(
                    f"script_params[{key!r}] must be a scalar (str, int, float, bool) or None, "
                    f"got {_describe(item)}"
                )
        return dict(value)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            if not isinstance(item, SCALAR_TYPES):
                raise SpecError(f"script_params[{i}] must be a scalar (str, int, float, bool), got {_describe(item)}")
        return [str(item) for item in value]
    raise SpecError(f"script_params must be a dict of flag -> scalar or a list of arguments, got {_describe(value)}")


def check_string_list(field: str, value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise SpecError(f"{field} must be a list of strings, got {_describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise SpecError(f"{field}[{i}] must be a non-empty string, got {_describe(item)}")
    return list(value)


def check_environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"environment_variables must be a dict of name -> string, got {_describe(value)}")
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise SpecError(f"environment_variables keys must be non-empty names without '=', got {_describe(key)}")
        if key.startswith(RESERVED_ENV_PREFIXES) or key in RESERVED_ENV:
            raise SpecError(f"environment_variables[{key!r}] is set by airflow-tf's plan and cannot be overridden")
        if not isinstance(item, SCALAR_TYPES):
            raise SpecError(f"environment_variables[{key!r}] must be a scalar, got {_describe(item)}")
    return {key: str(item) for key, item in value.items()}


def check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{field} must be True or False, got {_describe(value)}")
    return value


def check_source(source_directory: Any, entry_script: Any) -> None:
    if not isinstance(source_directory, (str, os.PathLike)) or not str(source_directory):
        raise SpecError(f"source_directory must be a path to a directory, got {_describe(source_directory)}")
    if not os.path.isdir(source_directory):
        raise SpecError(f"source_directory must be an existing directory, got {str(source_directory)!r}")
    if not isinstance(entry_script, str) or not entry_script:
        raise SpecError(f"entry_script must be a path relative to source_directory, got {_describe(entry_script)}")
    root = os.path.realpath(source_directory)
    script = os.path.realpath(os.path.join(root, entry_script))
    if os.path.isabs(entry_script) or not script.startswith(root + os.sep):
        raise SpecError(f"entry_script must be a relative path inside source_directory, got {entry_script!r}")
    if not os.path.isfile(script):
        raise SpecError(f"entry_script {entry_script!r} not found under source_directory {str(source_directory)!r}")


# Names the plan owns: letting a user set them would silently break the cluster wiring.
RESERVED_ENV = frozenset({"TF_CONFIG", "CUDA_VISIBLE_DEVICES"})
RESERVED_ENV_PREFIXES = ("AIRFLOW_TF_", "HOROVOD_")

# Field -> check, for fields that can be validated one at a time (templated ones are checked
# again after rendering). source_directory/entry_script are checked together.
FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "node_count": lambda v: check_positive_int("node_count", v),
    "process_count_per_node": lambda v: check_positive_int("process_count_per_node", v),
    "script_params": check_script_params,
    "pip_packages": lambda v: check_string_list("pip_packages", v),
    "conda_packages": lambda v: check_string_list("conda_packages", v),
    "use_gpu": lambda v: check_bool("use_gpu", v),
    "environment_variables": check_environment,
}


def validate_fields(fields: Mapping[str, Any], *, skip: frozenset[str] | set[str] = frozenset()) -> None:
    """Check the fields given, except those in ``skip`` (Jinja templates, checked once rendered)."""
    for name, check in FIELD_CHECKS.items():
        if name in fields and name not in skip:
            check(fields[name])
    if "source_directory" in fields and not {"source_directory", "entry_script"} & set(skip):
        check_source(fields["source_directory"], fields.get("entry_script"))


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

    def __post_init__(self) -> None:
        check_source(self.source_directory, self.entry_script)
        for name, check in FIELD_CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name)))
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
