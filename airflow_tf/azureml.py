"""A drop-in for the retired ``azureml.train.dnn.TensorFlow`` estimator: the same call, plus
``task_id`` and ``backend``, builds the matching training group in a DAG.

    from airflow_tf.azureml import TensorFlow
    from airflow_tf import LocalBackend

    train = TensorFlow(source_directory="./my-tf-proj", entry_script="train.py",
                       script_params={"--batch-size": 50}, conda_packages=["scikit-learn"],
                       use_gpu=False, task_id="train", backend=LocalBackend())

``distributed_backend`` picks the group: None -> ``TensorFlowTrainOperator`` (one process, or
MultiWorkerMirrored when node_count x process_count_per_node > 1), ``'mpi'`` (or ``'gloo'``) ->
``HorovodTrainOperator``, ``'ps'`` -> ``ParameterServerTrainOperator``. Options of the estimator
that have no meaning here (``compute_target``, ``vm_size``, ...) fail with a one-line message
saying what to use instead; docs/migration.md lists every parameter.

``inputs`` (the estimator's data references): ``{name: path}`` (or a list of paths, named by
their last component). Each input must be a directory or file the nodes can read: with
``LocalBackend`` / ``SSHBackend`` the path itself; with ``DockerBackend`` it is bind-mounted
read-only at ``/mnt/inputs/<name>``. The script receives the path on the node in
``AZUREML_DATAREFERENCE_<name>`` (the estimator's variable), so its ``os.environ`` lookups work
unchanged. Object-store URIs are not staged (yet): copy the data with an upstream task.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.estimator_names import INSTEAD

CONTAINER_INPUTS = "/mnt/inputs"
INPUT_ENV_PREFIX = "AZUREML_DATAREFERENCE_"
_INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DISTRIBUTED_BACKENDS = (None, "mpi", "gloo", "ps")
# The estimator's options that only make sense in Azure ML: refused when set to anything but
# their estimator default.
AZURE_ONLY = {
    "compute_target": None, "vm_size": None, "vm_priority": None, "distributed_training": None,
    "custom_docker_base_image": None, "image_registry_details": None, "user_managed": False,
    "conda_dependencies_file_path": None, "pip_requirements_file_path": None, "conda_dependencies_file": None,
    "pip_requirements_file": None, "environment_definition": None, "source_directory_data_store": None,
}


def _refuse(name: str) -> SpecError:
    return SpecError(f"TensorFlow(...): {name}: {INSTEAD[name]}")


def _inputs(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        value = {os.path.basename(os.path.normpath(str(path))): path for path in value}
    if not isinstance(value, Mapping):
        raise SpecError(f"inputs must be a dict of name -> path or a list of paths, got {type(value).__name__}")
    inputs = {}
    for name, path in value.items():
        if not isinstance(name, str) or not _INPUT_NAME.match(name):
            raise SpecError(f"inputs: name {name!r} must be letters, digits and '_' (it becomes "
                            f"{INPUT_ENV_PREFIX}<name>)")
        path = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(path, str) or not path:
            raise SpecError(f"inputs[{name!r}] must be a path, got {path!r}")
        if "://" in path:
            raise SpecError(f"inputs[{name!r}] is {path!r}: object-store inputs are not staged yet; copy the data "
                            "to a path the nodes can read (an upstream task) and give that path")
        if not os.path.isabs(path):
            raise SpecError(f"inputs[{name!r}] must be an absolute path (where the nodes read it), got {path!r}")
        inputs[name] = path
    return inputs


def _with(backend, **changes):
    """The backend with some settings changed (backends are frozen dataclasses)."""
    return dataclasses.replace(backend, **changes)


def _place_inputs(inputs: dict[str, str], backend) -> tuple[Any, dict[str, str]]:
    """(backend, environment): the inputs made reachable on the nodes, and where they are."""
    if not inputs:
        return backend, {}
    kind = type(backend).__name__
    if kind == "DockerBackend":
        mounts = [*(backend.mounts or []), *(f"{path}:{CONTAINER_INPUTS}/{name}:ro" for name, path in inputs.items())]
        return _with(backend, mounts=mounts), {f"{INPUT_ENV_PREFIX}{name}": f"{CONTAINER_INPUTS}/{name}"
                                               for name in inputs}
    if kind == "KubernetesBackend":
        raise SpecError("inputs: with KubernetesBackend mount the data through its pod_template (a volume) and give "
                        "the script its path in script_params")
    if kind == "LocalBackend":
        for name, path in inputs.items():
            if not os.path.exists(path):
                raise SpecError(f"inputs[{name!r}]: {path} does not exist on this machine (LocalBackend's nodes run "
                                "here)")
    return backend, {f"{INPUT_ENV_PREFIX}{name}": path for name, path in inputs.items()}


def _image_options(backend, custom_docker_image, shm_size, use_docker):
    kind = type(backend).__name__
    containers = kind in ("DockerBackend", "KubernetesBackend")
    changes = {}
    if custom_docker_image is not None:
        if not containers:
            raise SpecError(f"custom_docker_image needs a container backend: backend=DockerBackend(image=...) or "
                            f"KubernetesBackend(image=...), got {kind}")
        changes["image"] = custom_docker_image
    if shm_size is not None:
        if not containers:
            raise SpecError(f"shm_size applies to containers (DockerBackend, KubernetesBackend), got {kind}")
        changes["shm_size"] = shm_size
    if use_docker is False and kind == "DockerBackend":
        raise SpecError("use_docker=False but backend is DockerBackend: use LocalBackend() or SSHBackend(...)")
    return _with(backend, **changes) if changes else backend


def TensorFlow(  # noqa: N802 - the estimator's name, so that migrating is changing one import
    source_directory: str,
    *,
    task_id: str,
    backend: Any = None,
    entry_script: str | None = None,
    script_params: Mapping[str, Any] | list[str] | None = None,
    node_count: int = 1,
    process_count_per_node: int = 1,
    worker_count: int = 1,
    parameter_server_count: int = 1,
    distributed_backend: str | None = None,
    use_gpu: bool = False,
    use_docker: bool = True,
    custom_docker_image: str | None = None,
    conda_packages: list[str] | None = None,
    pip_packages: list[str] | None = None,
    environment_variables: Mapping[str, str] | None = None,
    inputs: Mapping[str, str] | list[str] | None = None,
    shm_size: str | int | None = None,
    resume_from: Any = None,
    max_run_duration_seconds: float | None = None,
    framework_version: str | None = None,
    compute_target: Any = None,
    vm_size: Any = None,
    vm_priority: Any = None,
    distributed_training: Any = None,
    custom_docker_base_image: Any = None,
    image_registry_details: Any = None,
    user_managed: bool = False,
    conda_dependencies_file_path: Any = None,
    pip_requirements_file_path: Any = None,
    conda_dependencies_file: Any = None,
    pip_requirements_file: Any = None,
    environment_definition: Any = None,
    source_directory_data_store: Any = None,
    **options: Any,
):
    """The training group the estimator call describes (see the module's doc). Extra keyword
    options go to the group (``keras_version``, ``conda_channels``, ``poll_interval``, ...)."""
    given = dict(locals())
    for name, default in AZURE_ONLY.items():
        if given[name] is not default and given[name] != default:
            raise _refuse(name)
    if entry_script is None:
        raise SpecError("entry_script is required: the script to run, relative to source_directory")
    if distributed_backend not in DISTRIBUTED_BACKENDS:
        raise SpecError(f"distributed_backend must be one of {list(DISTRIBUTED_BACKENDS)}, got {distributed_backend!r}")
    from airflow_tf.backends.local import LocalBackend  # noqa: PLC0415 - the operators import Airflow

    backend = LocalBackend() if backend is None else backend
    backend = _image_options(backend, custom_docker_image, shm_size, use_docker)
    backend, input_env = _place_inputs(_inputs(inputs), backend)
    clash = sorted(set(input_env) & set(environment_variables or {}))
    if clash:
        raise SpecError(f"environment_variables {clash} are set by inputs: drop them or rename the inputs")
    group_options: dict[str, Any] = dict(
        source_directory=source_directory, entry_script=entry_script, script_params=script_params,
        node_count=node_count, process_count_per_node=process_count_per_node, use_gpu=use_gpu,
        conda_packages=conda_packages, pip_packages=pip_packages, backend=backend,
        environment_variables={**(environment_variables or {}), **input_env} or None,
        framework_version=framework_version, **options,
    )
    if max_run_duration_seconds is not None:
        group_options["max_run_duration_seconds"] = max_run_duration_seconds
    if distributed_backend == "ps":
        from airflow_tf.operators.parameter_server import ParameterServerTrainOperator as group  # noqa: PLC0415

        group_options.update(worker_count=worker_count, parameter_server_count=parameter_server_count)
    else:
        for name, value in (("worker_count", worker_count), ("parameter_server_count", parameter_server_count)):
            if value != 1:
                raise SpecError(f"{name} applies to distributed_backend='ps', got distributed_backend="
                                f"{distributed_backend!r}")
        if distributed_backend in ("mpi", "gloo"):
            from airflow_tf.operators.horovod import HorovodTrainOperator as group  # noqa: PLC0415

            group_options["distributed_backend"] = distributed_backend
        else:
            from airflow_tf.operators.tensorflow import TensorFlowTrainOperator as group  # noqa: PLC0415
    if resume_from is not None:
        if "resume_from" not in inspect.signature(group.__init__).parameters and not _spec_has(group, "resume_from"):
            raise SpecError("resume_from is not supported by this airflow-tf version yet; resume from the job's "
                            "checkpoint directory in the script instead")
        group_options["resume_from"] = resume_from
    return group(task_id, **group_options)


def _spec_has(group, name: str) -> bool:
    from airflow_tf.cluster.registry import PLANNERS, JobKind  # noqa: PLC0415

    return name in {f.name for f in dataclasses.fields(PLANNERS[JobKind(group.strategy)][0])}
