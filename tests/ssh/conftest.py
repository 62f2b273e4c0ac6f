"""Real ssh hosts for the SSHBackend tests: 3 network namespaces, sshd running in the first 2.

Connections ``aftf_ssh_0..2`` come from ``AIRFLOW_CONN_*`` environment variables with the key
login and each host's public key pinned (``host_key``), so host keys ARE checked. The hosts
share this machine's filesystem, so the remote Python is the one running the tests (the
project's venv, with TensorFlow). Started once per session, torn down at its end; missing
sshd/ip fail the session (never skip).
"""

from __future__ import annotations

import os
import sys

import pytest

from tests.ssh.hosts import SSHHosts


@pytest.fixture(scope="session")
def ssh_hosts(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ssh_hosts")
    hosts = SSHHosts(str(workdir), count=3, with_sshd=2)
    hosts.start()
    remote_root = str(workdir / "jobs")
    env = {
        **hosts.connection_env(),
        "AIRFLOW_TF_TEST_SSH_CONNS": f"{hosts.conn_id(0)},{hosts.conn_id(1)}",
        "AIRFLOW_TF_TEST_SSH_DOWN": hosts.conn_id(2),
        "AIRFLOW_TF_TEST_SSH_PYTHON": sys.executable,
        "AIRFLOW_TF_TEST_SSH_ROOT": remote_root,
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    hosts.remote_root = remote_root
    try:
        yield hosts
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        hosts.close()
