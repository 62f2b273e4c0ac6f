"""Compute targets: where a node runs."""

from airflow_tf.backends.base import Backend, NodeState
from airflow_tf.backends.docker import DockerBackend  # imports the docker SDK only when used
from airflow_tf.backends.local import LocalBackend
from airflow_tf.backends.ssh import SSHBackend  # imports paramiko only when used

__all__ = ["Backend", "DockerBackend", "LocalBackend", "NodeState", "SSHBackend"]
