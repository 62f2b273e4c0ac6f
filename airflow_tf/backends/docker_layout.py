"""What goes into a DockerBackend node container: its fixed layout, and the one archive a launch
copies in with ``put_archive`` before the container starts (the node runtime, the user's source,
``node.json``, and the secrets file when there are secrets)."""

from __future__ import annotations

import json
from collections.abc import Mapping

from airflow_tf.backends import bundle
from airflow_tf.backends.base import secrets_payload
from airflow_tf.backends.docker_daemons import RESERVED_ROOT
from airflow_tf.cluster.plan import NodeLaunch
from airflow_tf.runtime import node_files

# Fixed layout inside every node container.
ROOT = RESERVED_ROOT
LIB_DIR = f"{ROOT}/lib"  # the node runtime package (PYTHONPATH)
SRC_DIR = f"{ROOT}/src"  # the user's source directory (the ranks' working directory)
JOB_DIR = f"{ROOT}/job"  # node-<i>/: the node directory (runtime.node_files)
OUTPUT_DIR = f"{ROOT}/outputs"  # the chief's outputs: bind mount or named volume


def node_archive(launch: NodeLaunch, source_directory: str, secrets: Mapping[str, str] | None, user: str | None):
    """The archive (a context manager over its bytes) of one node's container."""
    node_dir = f"{JOB_DIR}/{node_files.node_dirname(launch.node.node_index)}"[1:]
    files = {f"{node_dir}/{node_files.NODE_SPEC}": (json.dumps(launch.to_json(), indent=1).encode(), 0o644)}
    # The container is private to the node: directories writable by whatever ``user`` runs it
    # (it writes its exit code and metrics there), files readable by it. Secrets go in the
    # archive, not the container's config (``docker inspect`` shows that): 0600 and owned by
    # the container's user when it is a uid (a user name's uid is not known here: 0644).
    uid = user.split(":")[0] if user else "0"
    if secrets:
        files[f"{node_dir}/{node_files.SECRETS}"] = (secrets_payload(secrets), 0o600 if uid.isdigit() else 0o644)
    return bundle.build(
        source_directory, runtime_at=LIB_DIR[1:], source_at=SRC_DIR[1:], dir_mode=0o777,
        dirs=[ROOT[1:], LIB_DIR[1:], JOB_DIR[1:], node_dir], files=files, owner=int(uid) if uid.isdigit() else 0,
    )
