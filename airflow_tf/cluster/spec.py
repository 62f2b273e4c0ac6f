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
    def validate_fields(cls, fields: Mapping[str, Any], *, skip: frozenset[str] | set[str] = frozenset()) -> None:
        """Parse-time check of the fields given (templated ones, in ``skip``, are checked later)."""
        validate_fields(fields, skip=skip)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrainingSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise SpecError(f"unknown training option(s) {unknown}; allowed: {sorted(names)}")
        return cls(**data)


SERVER_MODES = ("script", "runtime")


def check_non_negative_int(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{field} must be an integer >= 0, got {_describe(value)}")
    return value


PS_FIELD_CHECKS: dict[str, Callable[[Any], Any]] = {
    "worker_count": lambda v: check_positive_int("worker_count", v),
    "parameter_server_count": lambda v: check_positive_int("parameter_server_count", v),
    "evaluator": lambda v: check_bool("evaluator", v),
    "max_worker_restarts": lambda v: check_non_negative_int("max_worker_restarts", v),
}


def check_server_mode(value: Any) -> str:
    if value not in SERVER_MODES:
        raise SpecError(f"server_mode must be one of {list(SERVER_MODES)}, got {value!r}")
    return value


def check_max_tasks_per_node(value: Any) -> int | None:
    return None if value is None else check_positive_int("max_tasks_per_node", value)


def check_ps_layout(fields: Mapping[str, Any]) -> None:
    """Cross-field checks: the process count is implied by the roles, and tasks must fit."""
    if fields.get("process_count_per_node", 1) != 1:
        raise SpecError(
            "process_count_per_node must be 1 for parameter-server training (tasks per node follow from "
            f"worker_count, parameter_server_count and node_count), got {fields['process_count_per_node']!r}"
        )
    limit, node_count = fields.get("max_tasks_per_node"), fields.get("node_count")
    if not isinstance(node_count, int):
        return  # templated: checked again once rendered
    # The operator passes only the options a user gave: fall back to ParameterServerSpec's defaults.
    workers, ps = fields.get("worker_count", 1), fields.get("parameter_server_count", 1)
    tasks = 1 + workers + ps + (1 if fields.get("evaluator") else 0)
    described = (f"{tasks} tasks (chief + {workers} workers + {ps} ps"
                 f"{' + evaluator' if fields.get('evaluator') else ''})")
    if node_count > tasks:
        raise SpecError(f"node_count is {node_count} but there are only {described}; lower node_count or add workers")
    if limit is not None and -(-tasks // node_count) > limit:
        raise SpecError(
            f"max_tasks_per_node is {limit}, but {described} over node_count={node_count} put "
            f"{-(-tasks // node_count)} on one node; raise node_count or the limit"
        )


def check_evaluator_script(source_directory: Any, evaluator: bool, evaluator_script: Any) -> None:
    if evaluator_script is None:
        return
    if not evaluator:
        raise SpecError("evaluator_script is set but evaluator is False; set evaluator=True or drop evaluator_script")
    try:
        check_source(source_directory, evaluator_script)
    except SpecError as exc:
        # Rename the field the message starts with, not every "entry_script" (paths may contain it).
        message = str(exc)
        if message.startswith("entry_script"):
            message = "evaluator_script" + message[len("entry_script"):]
        raise SpecError(message) from None


@dataclasses.dataclass(frozen=True)
class ParameterServerSpec(TrainingSpec):
    """A chief (coordinator) + ``worker_count`` workers + ``parameter_server_count`` ps tasks.

    ``evaluator`` adds a sidecar evaluator kept out of the training cluster. ``server_mode``:
    "script" runs the entry script on every task (the shape TensorFlow documents: ps/workers
    start ``tf.distribute.Server`` and join); "runtime" runs the entry script on the chief only
    and lets the node runtime serve the ps/worker tasks.
    """

    worker_count: int = 1
    parameter_server_count: int = 1
    evaluator: bool = False
    server_mode: str = "script"
    max_worker_restarts: int = 0
    max_tasks_per_node: int | None = None
    evaluator_script: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_evaluator_script(self.source_directory, self.evaluator, self.evaluator_script)
        for name, check in PS_FIELD_CHECKS.items():
            check(getattr(self, name))
        check_server_mode(self.server_mode)
        check_max_tasks_per_node(self.max_tasks_per_node)
        check_ps_layout(dataclasses.asdict(self))

    @classmethod
    def validate_fields(cls, fields: Mapping[str, Any], *, skip: frozenset[str] | set[str] = frozenset()) -> None:
        super().validate_fields(fields, skip=skip)
        for name, check in PS_FIELD_CHECKS.items():
            if name in fields:
                check(fields[name])
        check_server_mode(fields.get("server_mode", "script"))
        check_max_tasks_per_node(fields.get("max_tasks_per_node"))
        check_ps_layout({k: v for k, v in fields.items() if k not in skip})
        check_evaluator_script(fields.get("source_directory"), fields.get("evaluator", False), fields.get("evaluator_script"))


DISTRIBUTED_BACKENDS = ("gloo", "mpi")
# mpirun options the plan owns: a user setting them would fight the generated rank layout.
MPIRUN_OWNED = frozenset({
    "-np", "--np", "-n", "-c", "-H", "--host", "-host", "--hostfile", "-hostfile", "--machinefile",
    "-machinefile", "--default-hostfile", "--app", "--map-by", "--bind-to",
})


def check_mpirun_options(value: Any) -> list[str]:
    options = check_string_list("mpirun_options", value)
    for option in options:
        name = option.split("=", 1)[0]
        if name in MPIRUN_OWNED:
            raise SpecError(
                f"mpirun_options may not set {name!r}: the plan owns the rank layout "
                f"({', '.join(sorted(MPIRUN_OWNED))}); use node_count and process_count_per_node"
            )
    for flag, value in zip(options, options[1:]):
        if flag == "-x" and value.split("=", 1)[0].startswith(RESERVED_ENV_PREFIXES):
            raise SpecError(f"mpirun_options may not export {value!r}: HOROVOD_* and AIRFLOW_TF_* are set by the plan")
    return options


def check_horovod(fields: Mapping[str, Any]) -> None:
    backend = fields.get("distributed_backend", "gloo")
    if backend not in DISTRIBUTED_BACKENDS:
        raise SpecError(f"distributed_backend must be one of {list(DISTRIBUTED_BACKENDS)}, got {backend!r}")
    options = check_mpirun_options(fields.get("mpirun_options"))
    if options and backend != "mpi":
        raise SpecError("mpirun_options only apply to distributed_backend='mpi'")
    iface = fields.get("network_interface")
    if iface is not None and (not isinstance(iface, str) or not iface or not all(c.isalnum() or c in "_.:-" for c in iface)):
        raise SpecError(f"network_interface must be an interface name such as 'eth0', got {iface!r}")
    check_positive_int("start_timeout", fields.get("start_timeout", 120))
    gpus = fields.get("gpus_per_node")
    if gpus is not None:
        check_positive_int("gpus_per_node", gpus)
        per_node = fields.get("process_count_per_node", 1)
        if fields.get("use_gpu") and isinstance(per_node, int) and per_node > gpus:
            raise SpecError(
                f"process_count_per_node is {per_node} but gpus_per_node is {gpus}: with use_gpu every rank needs "
                "its own GPU; lower process_count_per_node or set use_gpu=False"
            )


@dataclasses.dataclass(frozen=True)
class HorovodSpec(TrainingSpec):
    """Horovod over Gloo (every node starts its ranks; node 0 hosts the rendezvous) or MPI
    (node 0 runs mpirun over a generated hostfile)."""

    distributed_backend: str = "gloo"
    network_interface: str | None = None
    mpirun_options: list[str] = dataclasses.field(default_factory=list)
    gpus_per_node: int | None = None
    start_timeout: int = 120

    def __post_init__(self) -> None:
        super().__post_init__()
        check_horovod(dataclasses.asdict(self))

    @classmethod
    def validate_fields(cls, fields: Mapping[str, Any], *, skip: frozenset[str] | set[str] = frozenset()) -> None:
        super().validate_fields(fields, skip=skip)
        check_horovod({k: v for k, v in fields.items() if k not in skip})
