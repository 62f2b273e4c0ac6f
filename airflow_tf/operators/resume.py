"""``resume_from`` (the estimator's name): an earlier run's outputs (or model file) a new run
warm-starts from. The nodes get it as ``AIRFLOW_TF_RESUME_FROM``; the script's helpers
(``runtime.training.warm_start``, ``checkpoint_dir``) use it.

A path the nodes see (absolute, or ``file://``), or a model Asset whose URI is one. Checked at
parse time for its form, and for existence where it can be: at plan time when the nodes run on
the planning machine (LocalBackend), else by each node's launcher before any rank starts.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote, urlsplit

from airflow_tf.cluster.errors import SpecError

RESUME_VAR = "AIRFLOW_TF_RESUME_FROM"


def resume_path(value: Any) -> str | None:
    """The path ``resume_from`` names, or None."""
    if value is None:
        return None
    uri = getattr(value, "uri", value)  # an airflow.sdk.Asset: its URI
    if not isinstance(uri, str) or not uri.strip() or "\0" in uri:
        raise SpecError(f"resume_from must be a path, a file:// URI or a model Asset with one, got {value!r}")
    parts = urlsplit(uri)
    if parts.scheme == "file":
        uri = unquote(parts.path)
    elif parts.scheme:
        raise SpecError(f"resume_from {uri!r}: only paths the nodes see (absolute, or file://) are supported; copy "
                        "the earlier run's outputs to such a path (a shared volume) first")
    if not os.path.isabs(uri):
        raise SpecError(f"resume_from must be an absolute path (the nodes resolve it, not the DAG folder), got {uri!r}")
    return os.path.normpath(uri)


def check_exists(path: str) -> str:
    """At plan time, for backends whose nodes see this machine's files."""
    if not os.path.exists(path):
        raise SpecError(f"resume_from {path!r} does not exist: give an earlier run's outputs directory "
                        "(results['output_dir']) or its model file")
    return path


def with_resume(plan, path: str, backend: Backend):
    """The plan with ``resume_from`` in every node's environment; a path on this machine is
    checked now, when the nodes see this machine's files (LocalBackend); else each launcher
    checks it before any rank starts."""
    import dataclasses

    from airflow_tf.backends.local import LocalBackend

    if isinstance(backend, LocalBackend):
        check_exists(path)
    nodes = [dataclasses.replace(node, env={**node.env, RESUME_VAR: path}) for node in plan.nodes]
    return dataclasses.replace(plan, nodes=nodes)
