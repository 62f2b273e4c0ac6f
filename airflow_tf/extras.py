"""Optional dependencies: one clear message naming the pip extra that brings what is missing.

``pip install airflow-tf`` installs what every DAG needs (Airflow and its standard provider).
Backends and features that need more come as extras (declared in ``setup.cfg``)::

    pip install "airflow-tf[docker,ssh]"

:func:`require` is called where such a feature is configured (a backend's constructor, i.e. at
DAG parse), so a missing provider fails the DAG import with the extra to install, not a
``ModuleNotFoundError`` deep inside a task. It only looks the module up on disk; it imports
nothing, so it costs next to nothing at parse time.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from airflow_tf.cluster.errors import SpecError

# extra -> (what it brings, in words; the distributions it installs). setup.cfg's
# [options.extras_require] must list these distributions (tests/package checks it).
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "docker": ("the docker provider", ("apache-airflow-providers-docker",)),
    "ssh": ("the ssh provider", ("apache-airflow-providers-ssh",)),
    "kubernetes": ("the cncf.kubernetes provider", ("apache-airflow-providers-cncf-kubernetes",)),
    "celery": ("the celery provider and the PostgreSQL drivers",
               ("apache-airflow-providers-celery", "celery", "psycopg2-binary", "psycopg", "asyncpg")),
    "sftp": ("the sftp provider and sshfs", ("apache-airflow-providers-sftp", "sshfs")),
    "onnx": ("tf2onnx and onnxruntime", ("tf2onnx", "onnxruntime", "onnx")),
    "plots": ("matplotlib", ("matplotlib",)),
    "mlflow": ("mlflow", ("mlflow",)),
    "tuning": ("Optuna", ("optuna",)),
    "tensorflow": ("TensorFlow", ("tensorflow-cpu", "tensorboard")),
    "conda": ("py-rattler (conda_packages on nodes without conda / mamba / micromamba)", ("py-rattler",)),
}


def available(module: str) -> bool:
    """Whether ``module`` (dotted name) is installed, without importing it or its parents.

    ``importlib.util.find_spec("airflow.providers.ssh")`` would import ``airflow.providers``,
    and importing that makes Airflow discover every provider (and the ssh provider's info
    module) at DAG parse: so only the top-level package's spec is looked up, and the rest of the
    name is found on disk below it.
    """
    if module in sys.modules:
        return True
    head, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(head)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    paths = list(spec.submodule_search_locations or [])
    for part in rest[:-1]:
        paths = [os.path.join(p, part) for p in paths if os.path.isdir(os.path.join(p, part))]
    if not rest:
        return True
    last = rest[-1]
    return any(os.path.isdir(os.path.join(p, last)) or os.path.isfile(os.path.join(p, f"{last}.py")) for p in paths)


def install_hint(extra: str) -> str:
    if extra not in EXTRAS:
        raise ValueError(f"unknown airflow-tf extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    return f'pip install "airflow-tf[{extra}]"'


def message(extra: str, what: str) -> str:
    """``<what> needs <the extra's contents>: pip install "airflow-tf[<extra>]"``."""
    hint = install_hint(extra)
    return f"{what} needs {EXTRAS[extra][0]}: {hint}"


def require(extra: str, module: str, what: str) -> None:
    """Raise :class:`SpecError` naming the extra to install when ``module`` is not importable.

    ``require("docker", "airflow.providers.docker", "DockerBackend")`` raises
    ``DockerBackend needs the docker provider: pip install "airflow-tf[docker]"`` where the
    docker provider is not installed.
    """
    hint = message(extra, what)  # checks the extra's name even when the module is there
    if not available(module):
        raise SpecError(hint)
