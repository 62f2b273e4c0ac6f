"""DockerBackend without a daemon: settings validation (DAG-parse time), addressing, outputs, the
GPU split, and the offset-based log reading over Docker's timestamped logs.

The behaviour against a real dockerd is in tests/docker/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from airflow_tf.backends.base import Backend
from airflow_tf.backends.docker import DockerBackend
from airflow_tf.backends.docker_daemons import url_from_connection as _url_from_connection
from airflow_tf.backends.docker_gpus import gpu_devices
from airflow_tf.backends.docker_logs import LogCursor, parse_timestamp, split_timestamped, take_lines
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.parameter_server import ParameterServerSpec, plan_parameter_server_job
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCK = "unix:///var/run/docker.sock"
IMAGE = "localhost/tf:1"


# -- settings -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs docker_urls .* or docker_conn_ids"),
    ({"docker_urls": [SOCK], "docker_conn_ids": ["a"]}, "docker_urls or docker_conn_ids, not both"),
    ({"docker_urls": SOCK}, "docker_urls must be a non-empty list"),
    ({"docker_urls": []}, "docker_urls must be a non-empty list"),
    ({"docker_urls": ["gpu1:2375"]}, r"docker_urls\[0\] must be a URL like"),
    ({"docker_conn_ids": ["ok", ""]}, r"docker_conn_ids\[1\] must be a non-empty string"),
    ({"docker_urls": [SOCK], "mounts": ["/data"]}, r"mounts\[0\] must be 'host_path:container_path"),
    ({"docker_urls": [SOCK], "mounts": ["data:/data"]}, r"mounts\[0\]: both paths must be absolute"),
    ({"docker_urls": [SOCK], "mounts": ["/d:/data:rx"]}, r"mounts\[0\] must be"),
    ({"docker_urls": [SOCK], "mounts": ["/x:/airflow_tf/src"]}, "/airflow_tf is reserved"),
    ({"docker_urls": [SOCK], "gpus_per_host": 0}, "gpus_per_host must be an integer >= 1"),
    ({"docker_urls": [SOCK], "gpus_per_host": True}, "gpus_per_host must be an integer >= 1"),
    ({"docker_urls": [SOCK], "output_dir": "outputs"}, "output_dir must be an absolute path"),
    ({"docker_urls": [SOCK], "environment": {"A": 1}}, "environment must be a dict of strings"),
    ({"docker_urls": [SOCK], "python": ""}, "python must be"),
    ({"docker_urls": [SOCK], "allow_shared_hosts": "no"}, "allow_shared_hosts must be True or False"),
    ({"docker_urls": [SOCK, "https://gpu2:2376"]}, r"docker_urls\[0\] is a local Docker daemon next to remote ones"),
    ({"docker_urls": [SOCK], "host_addresses": ["a", "b"]}, "one address per daemon"),
    ({"docker_urls": [SOCK], "timeout": 0}, "timeout must be"),
])
def test_bad_settings_fail_at_construction_naming_the_setting(kwargs, message):
    with pytest.raises(SpecError, match=message):
        DockerBackend(image=IMAGE, **kwargs)


def test_bad_image_reference():
    with pytest.raises(SpecError, match="image must be an image reference"):
        DockerBackend(image="my image", docker_urls=[SOCK])


def test_settings_round_trip_through_json():
    backend = DockerBackend(
        image=IMAGE, docker_urls=["tcp://gpu1:2375", "tcp://gpu2:2375"], insecure_tcp=True, shm_size="2g",
        environment={"A": "1"}, cap_drop=["ALL"], cap_add=["CAP_NET_BIND_SERVICE"],
        mounts=["/data:/data:ro", "/cache:/cache"], user="1000:1000", python="/opt/py/bin/python", gpus_per_host=8,
        allow_shared_hosts=False, output_dir="/srv/jobs", host_addresses=["10.0.0.1", "10.0.0.2"], timeout=30,
    )
    rebuilt = Backend.deserialize(json.loads(json.dumps(backend.serialize())))
    assert isinstance(rebuilt, DockerBackend)
    assert rebuilt.settings() == backend.settings()
    assert rebuilt.mounts == ["/data:/data:ro", "/cache:/cache:rw"]
    assert (rebuilt.cap_drop, rebuilt.cap_add, rebuilt.insecure_tcp) == (["ALL"], ["NET_BIND_SERVICE"], True)


def test_constructing_and_parsing_a_dag_imports_no_docker_sdk():
    code = (
        "import runpy, sys\n"
        "from airflow_tf import DockerBackend\n"
        "DockerBackend(image='x:1', docker_urls=['https://gpu1:2376'])\n"
        "runpy.run_path(sys.argv[1])\n"
        "print(sorted(m for m in ('docker', 'tensorflow', 'paramiko') if m in sys.modules))\n"
    )
    dag_file = os.path.join(REPO, "tests", "dags", "tf_docker.py")
    out = subprocess.run([sys.executable, "-c", code, dag_file], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# -- addressing and outputs ----------------------------------------------------------------------
@pytest.mark.parametrize("url, host", [
    (SOCK, "127.0.0.1"),
    ("tcp://localhost:2375", "127.0.0.1"),
    ("tcp://gpu1.example.org:2376", "gpu1.example.org"),
    ("https://10.1.2.3:2376", "10.1.2.3"),
    ("ssh://me@gpu2", "gpu2"),
])
def test_node_address_is_the_daemons_host(url, host):
    backend = DockerBackend(image=IMAGE, docker_urls=[url], insecure_tcp=True)
    assert backend.daemon_for(0).host == host
    assert backend.daemon_for(5).url == url


def test_nodes_go_round_robin_over_daemons_and_host_addresses_override():
    backend = DockerBackend(image=IMAGE, docker_urls=[SOCK, "https://gpu2:2376"], host_addresses=["10.0.0.1", "10.0.0.2"])
    assert [backend.daemon_for(i).host for i in range(4)] == ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"]


def test_outputs_bind_locally_and_use_a_volume_on_remote_daemons(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_TF_JOB_ROOT", str(tmp_path))
    local = DockerBackend(image=IMAGE, docker_urls=[SOCK])
    assert local.output_location("job-1") == str(tmp_path / "job-1" / "outputs")
    handle = {"host": "127.0.0.1", "outputs": str(tmp_path / "job-1" / "outputs")}
    assert local.host_path(handle, "/airflow_tf/outputs/model.keras") == str(tmp_path / "job-1" / "outputs" / "model.keras")
    assert local.host_path(handle, "/elsewhere/model.keras") == "/elsewhere/model.keras"

    remote = DockerBackend(image=IMAGE, docker_urls=["https://gpu1:2376"])
    assert remote.output_location("job-1") == "docker-volume://gpu1/airflow_tf-job-1-outputs"
    handle = {"host": "gpu1", "outputs": "airflow_tf-job-1-outputs"}
    assert remote.host_path(handle, "/airflow_tf/outputs/m.keras") == "docker-volume://gpu1/airflow_tf-job-1-outputs/m.keras"

    bound = DockerBackend(image=IMAGE, docker_urls=["ssh://me@gpu1"], output_dir="/srv/jobs")
    assert bound.output_location("job-1") == "/srv/jobs/job-1/outputs"


def test_free_ports_of_a_local_daemon_are_this_machines():
    # Remote daemons are probed with a container (tests/docker/test_docker_ports.py).
    assert len(set(DockerBackend(image=IMAGE, docker_urls=[SOCK]).free_ports("127.0.0.1", 3))) == 3
    assert DockerBackend(image=IMAGE, docker_urls=[SOCK]).free_ports("10.9.9.9", 3) is None  # not a daemon's host


@pytest.mark.parametrize("host, port, url", [
    ("unix:///var/run/docker.sock", None, "unix:///var/run/docker.sock"),
    ("tcp://gpu1:2376", None, "tcp://gpu1:2376"),
    ("tcp://gpu1", 2376, "tcp://gpu1:2376"),
    ("gpu1", None, "tcp://gpu1:2375"),
    ("gpu1", 2376, "tcp://gpu1:2376"),
])
def test_daemon_url_from_a_connection(host, port, url):
    assert _url_from_connection(types.SimpleNamespace(conn_id="c", host=host, port=port)) == url


def test_connection_without_host_is_an_error():
    with pytest.raises(SpecError, match="connection 'c' has no host"):
        _url_from_connection(types.SimpleNamespace(conn_id="c", host="", port=None))


# -- GPUs ---------------------------------------------------------------------------------------
def tf_nodes(node_count: int, per_node: int = 1, use_gpu: bool = True, hosts=None) -> list:
    spec = TrainingSpec(source_directory=REPO, entry_script="README.md", node_count=node_count,
                        process_count_per_node=per_node, use_gpu=use_gpu)
    plan = plan_tensorflow_job(spec, job_id="j", hosts=hosts or [f"h{i}" for i in range(node_count)])
    return plan.nodes


def test_gpus_are_wanted_exactly_when_use_gpu():
    # The plan says how many GPUs a node needs; no backend reads CUDA_VISIBLE_DEVICES.
    assert tf_nodes(2, use_gpu=False)[0].gpus == 0
    assert tf_nodes(2, use_gpu=True)[0].gpus == 1
    assert tf_nodes(1, per_node=2, use_gpu=True)[0].gpus == 2


def test_one_node_per_daemon_gets_all_its_gpus():
    nodes = tf_nodes(2)
    assert gpu_devices(nodes[1], daemon_count=2, gpus_per_host=None, daemon="d") is None
    assert gpu_devices(nodes[1], daemon_count=2, gpus_per_host=4, daemon="d") == ["0", "1", "2", "3"]


def test_nodes_sharing_a_daemon_split_its_gpus():
    nodes = tf_nodes(4, per_node=2)
    # 4 nodes on 2 daemons: nodes 0 and 2 share daemon 0, nodes 1 and 3 daemon 1.
    assert [gpu_devices(node, 2, 4, "d") for node in nodes] == [["0", "1"], ["0", "1"], ["2", "3"], ["2", "3"]]
    # 3 nodes on 1 daemon with 8 GPUs: 2 each (the 2 left over stay unused).
    nodes = tf_nodes(3)
    assert [gpu_devices(node, 1, 8, "d") for node in nodes] == [["0", "1"], ["2", "3"], ["4", "5"]]


def test_gpu_split_errors_name_the_setting():
    with pytest.raises(SpecError, match="shares the Docker daemon d with other nodes.*set gpus_per_host"):
        gpu_devices(tf_nodes(2)[0], daemon_count=1, gpus_per_host=None, daemon="d")
    with pytest.raises(SpecError, match=r"gpus_per_host=2 split between the 2 nodes .* gives 1 GPU\(s\) each, but node 0 needs 2"):
        gpu_devices(tf_nodes(2, per_node=2)[0], daemon_count=1, gpus_per_host=2, daemon="d")


def test_parameter_server_nodes_sharing_a_daemon_split_by_the_plans_node_count():
    spec = ParameterServerSpec(source_directory=REPO, entry_script="README.md", node_count=3, worker_count=2,
                               parameter_server_count=1, use_gpu=True)
    nodes = plan_parameter_server_job(spec, job_id="j", hosts=["a", "b", "c"]).nodes
    assert gpu_devices(nodes[0], daemon_count=3, gpus_per_host=None, daemon="d") is None
    # nodes 0 and 2 share daemon 0 of 2: the plan's node_count lets the backend split its GPUs
    first, third = (gpu_devices(nodes[i], daemon_count=2, gpus_per_host=4, daemon="d") for i in (0, 2))
    assert first and third and not set(first) & set(third)


# -- logs ---------------------------------------------------------------------------------------
def test_parse_timestamp():
    assert parse_timestamp("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert parse_timestamp(b"2026-11-26T20:23:23.084371077Z") % 1_000_000_000 == 84371077
    assert parse_timestamp("2026-11-26T20:23:23Z") % 1_000_000_000 == 0
    assert parse_timestamp("0001-01-01T00:00:00Z") is None
    assert parse_timestamp("garbage") is None


def ts(second: int, nanos: int = 0) -> bytes:
    return f"2026-01-01T00:00:{second:02d}.{nanos:09d}Z".encode()


def test_split_keeps_only_complete_lines():
    raw = ts(1) + b" one\n" + ts(2) + b" two\n" + ts(3) + b" thr"
    assert [line for _, line in split_timestamped(raw)] == [b"one\n", b"two\n"]


def test_take_lines_from_the_whole_log_skips_offset_bytes():
    raw = ts(1) + b" one\n" + ts(2) + b" two\n" + ts(3) + b" three\n"
    text, cursor = take_lines(raw, 0, None)
    assert text == b"one\ntwo\nthree\n" and cursor.offset == len(text)
    text, cursor = take_lines(raw, 4, None)  # e.g. a new backend object after "one\n" was read
    assert text == b"two\nthree\n" and cursor.offset == 14
    assert cursor.newest_ns == parse_timestamp(ts(3))


def test_take_lines_resumes_from_the_cursor_without_repeating():
    first = ts(1) + b" a\n" + ts(2, 5) + b" b\n"
    text, cursor = take_lines(first, 0, None)
    assert text == b"a\nb\n"
    assert cursor.since() == pytest.approx(parse_timestamp(ts(1, 5)) / 1e9)
    # Docker returns everything since one second before the newest line: "b" again, then new ones,
    # including a line with the very same timestamp as "b" and a stderr line slightly out of order.
    second = ts(2, 5) + b" b\n" + ts(2, 5) + b" b2\n" + ts(2, 4) + b" late\n" + ts(3) + b" c\n" + ts(4) + b" partial"
    text, cursor2 = take_lines(second, cursor.offset, cursor)
    assert text == b"b2\nlate\nc\n"
    assert cursor2.offset == cursor.offset + len(text)
    # The same read again hands out nothing; a read at another offset starts over from the bytes.
    assert take_lines(second, cursor2.offset, cursor2)[0] == b""
    assert take_lines(first + second[len(ts(2, 5) + b" b\n"):], 2, cursor2)[0] == b"b\nb2\nlate\nc\n"


def test_cursor_forgets_lines_older_than_the_overlap():
    cursor = LogCursor()
    for second in range(10):
        _, cursor = take_lines(ts(second) + b" x\n", cursor.offset, cursor)
    assert {key[0] for key in cursor.recent} == {parse_timestamp(ts(s)) for s in (7, 8, 9)}


def test_a_missing_provider_names_the_extra_at_parse_time(monkeypatch):
    from airflow_tf import SSHBackend, extras

    real = extras.available
    monkeypatch.setattr(extras, "available", lambda module: not module.startswith("airflow.providers.") and real(module))
    with pytest.raises(SpecError, match=r'DockerBackend needs .*pip install "airflow-tf\[docker\]"'):
        DockerBackend(image=IMAGE, docker_urls=[SOCK])
    with pytest.raises(SpecError, match=r'SSHBackend needs .*pip install "airflow-tf\[ssh\]"'):
        SSHBackend(["a"])
