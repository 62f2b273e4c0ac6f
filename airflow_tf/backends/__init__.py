"""Compute targets: where a node runs. Backends load on first use: DAG parsing should pay only
for the one it uses (the Docker and SSH backends pull in their providers' clients)."""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Backend": "airflow_tf.backends.base",
    "NodeState": "airflow_tf.backends.base",
    "LocalBackend": "airflow_tf.backends.local",
    "DockerBackend": "airflow_tf.backends.docker",
    "SSHBackend": "airflow_tf.backends.ssh",
    "KubernetesBackend": "airflow_tf.backends.kubernetes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'airflow_tf.backends' has no attribute {name!r}")
