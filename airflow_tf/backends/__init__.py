"""Compute targets: where a node runs."""

from airflow_tf.backends.base import Backend, NodeState
from airflow_tf.backends.local import LocalBackend

__all__ = ["Backend", "LocalBackend", "NodeState"]
