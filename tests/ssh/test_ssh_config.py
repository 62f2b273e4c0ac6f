"""SSHBackend settings, connections and host-key policy: no ssh host needed (nothing connects).

Connections come from ``AIRFLOW_CONN_*`` variables; HOME points at an empty directory so no
``~/.ssh/known_hosts`` of this machine can vouch for a host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from airflow_tf.runtime import node_ops
from airflow_tf.backends.base import Backend
from airflow_tf.backends.ssh import SSHBackend
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.cluster.spec import TrainingSpec

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKqHK9uGnlCPM8zWU/OkbO4JuD3adIvUURKow9w6cFVQ"  # any valid key


@pytest.fixture(autouse=True)
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def define(monkeypatch, conn_id: str, host: str = "10.231.250.2", **extra) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(
        {"conn_type": "ssh", "host": host, "port": 22, "login": "root", "extra": {"key_file": "/nonexistent", **extra}}))


def test_settings_round_trip_through_json():
    backend = SSHBackend(["a", "b"], remote_root="/srv/jobs", python="/opt/py/bin/python", cleanup="never",
                         allow_shared_hosts=True, preflight=False, connect_attempts=2, connect_timeout=5)
    data = json.loads(json.dumps(backend.serialize()))
    again = Backend.deserialize(data)
    assert isinstance(again, SSHBackend) and again.settings() == backend.settings()
    assert data["classpath"] == "airflow_tf.backends.ssh.SSHBackend"


@pytest.mark.parametrize("kwargs, message", [
    ({"ssh_conn_ids": []}, "ssh_conn_ids must be a non-empty list"),
    ({"ssh_conn_ids": "node0"}, "ssh_conn_ids must be a non-empty list"),
    ({"ssh_conn_ids": ["a", ""]}, r"ssh_conn_ids\[1\] must be a connection id"),
    ({"ssh_conn_ids": ["a"], "cleanup": "sometimes"}, r"cleanup must be one of \['on_success', 'always', 'never'\]"),
    ({"ssh_conn_ids": ["a"], "remote_root": "jobs"}, "remote_root must be an absolute path or start with '~/'"),
    ({"ssh_conn_ids": ["a"], "remote_root": "/srv/../etc"}, "remote_root must be"),
    ({"ssh_conn_ids": ["a"], "remote_root": "/"}, "remote_root must be"),
    ({"ssh_conn_ids": ["a"], "remote_root": "~/"}, "remote_root must be"),
    ({"ssh_conn_ids": ["a"], "python": "conda run python"}, "python must be one executable"),
    ({"ssh_conn_ids": ["a"], "connect_attempts": 0}, "connect_attempts must be an integer >= 1"),
])
def test_bad_settings_fail_at_construction(kwargs, message):
    with pytest.raises(SpecError, match=message):
        SSHBackend(**kwargs)


def test_more_nodes_than_connections_needs_allow_shared_hosts(monkeypatch):
    define(monkeypatch, "n0", host="10.231.250.2", host_key=HOST_KEY)
    define(monkeypatch, "n1", host="10.231.251.2", host_key=HOST_KEY)
    with pytest.raises(SpecError, match=r"node_count is 3 but SSHBackend has 2 ssh_conn_ids \['n0', 'n1'\].*"
                                        r"allow_shared_hosts=True"):
        SSHBackend(["n0", "n1"]).hosts(3)
    shared = SSHBackend(["n0", "n1"], allow_shared_hosts=True, preflight=False)
    assert shared.hosts(3) == ["10.231.250.2", "10.231.251.2", "10.231.250.2"]
    assert shared.conn_id_for(2) == "n0"


def test_unknown_connection_is_named(monkeypatch):
    define(monkeypatch, "n0", host_key=HOST_KEY)
    with pytest.raises(SpecError, match=r"SSHBackend ssh_conn_ids\[1\] = 'no_such_conn': no such Airflow connection"):
        SSHBackend(["n0", "no_such_conn"], preflight=False).hosts(2)


def test_a_connection_that_pins_no_host_key_is_refused(monkeypatch):
    define(monkeypatch, "n0")
    with pytest.raises(SpecError) as err:
        SSHBackend(["n0"], preflight=False).hosts(1)
    message = str(err.value)
    assert "ssh_conn_ids[0] = 'n0' (10.231.250.2:22): no host key to check the server against" in message
    assert "'host_key'" in message and "'known_hosts'" in message and "'no_host_key_check': true" in message


def test_allow_host_key_change_alone_is_refused(monkeypatch):
    # The hook would accept any key then (it skips ~/.ssh/known_hosts and auto-accepts).
    define(monkeypatch, "n0", allow_host_key_change="true")
    with pytest.raises(SpecError, match="no host key to check the server against"):
        SSHBackend(["n0"], preflight=False).hosts(1)


def test_explicit_opt_out_is_honoured(monkeypatch):
    define(monkeypatch, "n0", no_host_key_check="true")
    backend = SSHBackend(["n0"], preflight=False)
    assert backend.hosts(1) == ["10.231.250.2"]
    assert backend.host("n0").hook.no_host_key_check is True


def test_a_pinned_key_turns_the_check_on(monkeypatch):
    define(monkeypatch, "n0", host_key=HOST_KEY, no_host_key_check="false")
    hook = SSHBackend(["n0"], preflight=False).host("n0").hook
    assert hook.no_host_key_check is False and hook.host_key.get_name() == "ssh-ed25519"


def test_known_hosts_extra_pins_the_key(monkeypatch, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text(f"10.231.250.2 {HOST_KEY}\n")
    define(monkeypatch, "n0", known_hosts=str(known))
    hook = SSHBackend(["n0"], preflight=False).host("n0").hook
    assert hook.host_key is not None and hook.host_key.get_base64() == HOST_KEY.split()[1]
    define(monkeypatch, "n1", host="10.231.251.2", known_hosts=str(known))
    with pytest.raises(SpecError, match="known_hosts file .* has no key for this host"):
        SSHBackend(["n1"], preflight=False).hosts(1)


def test_non_ssh_connection_is_refused(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PG", json.dumps({"conn_type": "postgres", "host": "db"}))
    with pytest.raises(SpecError, match="'pg' is a 'postgres' connection, not 'ssh'"):
        SSHBackend(["pg"], preflight=False).hosts(1)


def test_planned_ports_are_the_nodes_own_ports_as_plan_fields(tmp_path):
    (tmp_path / "train.py").write_text("")
    spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py", node_count=2, process_count_per_node=2)
    plan = plan_tensorflow_job(spec, job_id="j", hosts=["10.0.0.1", "10.0.0.2"],
                               free_ports={"10.0.0.1": [5001, 5002], "10.0.0.2": [6001, 6002]})
    assert [node.ports for node in plan.nodes] == [[5001, 5002], [6001, 6002]]


def test_ops_never_touch_paths_outside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "job" / "node-0").mkdir(parents=True)
    (root / "job" / "outputs").mkdir()
    (root / "job" / "outputs" / "model.keras").write_text("weights")
    with pytest.raises(ValueError, match="is not inside"):
        node_ops.prepare(str(root), str(tmp_path / "elsewhere"), [])
    with pytest.raises(ValueError, match="is not inside"):
        node_ops.cleanup(str(root), str(root), [])
    with pytest.raises(ValueError, match="is not inside"):
        node_ops.cleanup(str(root), str(root / "job"), [str(root / "job" / ".." / "..")])
    assert node_ops.cleanup(str(root), str(root / "job"), [str(root / "job" / "node-0")]) == {"job_dir_left": True}
    assert sorted(os.listdir(root / "job")) == ["outputs"]  # the model stays


def test_import_airflow_tf_does_not_import_paramiko():
    code = ("import sys, airflow_tf; from airflow_tf import SSHBackend; SSHBackend(['a']); "
            "print(any(m.split('.')[0] == 'paramiko' or m.startswith('airflow.providers.ssh') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
