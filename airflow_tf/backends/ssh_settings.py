"""SSHBackend's settings checks: what each field may hold, checked when the backend is built
(DAG-parse time), with the field named in the error. Paths and the interpreter end up in the ssh
provider's remote-job wrapper, a ``bash -c`` script, so they are held to shell-safe characters."""

from __future__ import annotations

import enum
from typing import Any

from airflow_tf.cluster.checks import check_shell_safe
from airflow_tf.cluster.errors import SpecError


class CleanupPolicy(enum.StrEnum):
    ON_SUCCESS = "on_success"  # a failed job's logs stay for debugging
    ALWAYS = "always"
    NEVER = "never"


def check_conn_ids(value: Any) -> None:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise SpecError(f"ssh_conn_ids must be a non-empty list of Airflow SSH connection ids, got {value!r}")
    for i, conn_id in enumerate(value):
        if not isinstance(conn_id, str) or not conn_id.strip():
            raise SpecError(f"ssh_conn_ids[{i}] must be a connection id (a non-empty string), got {conn_id!r}")


def check_root(value: Any) -> str:
    root = value.rstrip("/") if isinstance(value, str) else None
    if not root or not (root.startswith("/") or root.startswith("~/")) or ".." in root.split("/"):
        raise SpecError(f"remote_root must be an absolute path or start with '~/' (no '..'), got {value!r}")
    # The ssh provider's remote-job wrapper splices paths into a double-quoted `bash -c` script:
    # only characters no shell interprets may reach it ("/x$(touch f)" would run on the host).
    return check_shell_safe("remote_root", root, "an absolute path or '~/...'")


def check_python(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value) or value.startswith("-"):
        raise SpecError(f"python must be one executable (a name on the hosts' PATH or an absolute path), "
                        f"got {value!r}")
    return check_shell_safe("python", value, "one executable (a name on the hosts' PATH or an absolute path)")
