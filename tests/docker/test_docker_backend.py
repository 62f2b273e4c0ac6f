"""DockerBackend against the session's real dockerd, without Airflow's scheduler: the stop paths
(teardown's stop_job, the trigger's on_kill), log streaming, and the errors bad settings give.

Stand-in scripts are plain Python (tests/dags/long_train, or written here): the container
mechanics are under test, not TensorFlow.
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
import uuid

import pytest

from airflow_tf.backends.base import Backend
from airflow_tf.backends.docker import DockerBackend
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.triggers.training_job import TrainingJobTrigger

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LONG_TRAIN = os.path.join(REPO, "tests", "dags", "long_train")


def job_containers(client, job_id: str) -> list[dict]:
    return client.containers(all=True, filters={"label": f"airflow_tf.job_id={job_id}"})


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def backend(dockerd):
    return DockerBackend(image=dockerd["image"], docker_urls=[dockerd["url"]], mounts=dockerd["mounts"],
                         python=dockerd["python"])


@pytest.fixture
def jobs(backend, dockerd):
    """Plans and starts jobs; removes whatever a failing test left on the daemon."""
    started = []

    def start(source_directory: str, nodes: int = 2, script_params=None, use_gpu: bool = False):
        job_id = f"dk-{uuid.uuid4().hex[:10]}"
        spec = TrainingSpec(source_directory=source_directory, entry_script="train.py", node_count=nodes,
                            script_params=script_params or {}, use_gpu=use_gpu)
        hosts = backend.hosts(nodes)
        plan = plan_tensorflow_job(spec, job_id=job_id, hosts=hosts,
                                   free_ports={hosts[0]: backend.free_ports(hosts[0], nodes)})
        started.append(job_id)
        handles = [backend.start(plan.launch(i), source_directory) for i in range(len(plan.nodes))]
        return job_id, handles, plan

    yield start
    for job_id in started:
        for info in job_containers(dockerd["client"], job_id):
            dockerd["client"].remove_container(info["Id"], force=True)


def log_of(backend, handle, offset=0):
    text, _ = backend.read_log(handle, offset)
    return text


# -- stop paths ---------------------------------------------------------------------------------
def test_teardown_stop_job_stops_and_removes_running_containers(backend, jobs, dockerd):
    job_id, handles, _ = jobs(LONG_TRAIN)
    for handle in handles:
        wait_until(lambda: "step 1" in log_of(backend, handle), what=f"node {handle['node_index']} training")
    assert [backend.poll(h)["running"] for h in handles] == [True, True]

    # What the teardown task does: a fresh backend from the settings, the job found by label.
    teardown_backend = Backend.deserialize(backend.serialize())
    assert teardown_backend.stop_job(job_id, 2) == [0, 1]
    assert job_containers(dockerd["client"], job_id) == []
    # Idempotent: nothing left to stop, and stopping a removed container does not raise.
    assert teardown_backend.stop_job(job_id, 2) == []
    backend.stop(handles[0])
    # Removed by another object: this one knows no exit code for it (a lost node, not a success).
    state = backend.poll(handles[1])
    assert state["running"] is False and state["exit_code"] is None


def running_containers(client, job_id: str) -> list[dict]:
    return [c for c in job_containers(client, job_id) if c["State"] == "running"]


def test_trigger_on_kill_stops_every_container_and_teardown_removes_them(backend, jobs, dockerd):
    job_id, handles, plan = jobs(LONG_TRAIN)
    for handle in handles:
        wait_until(lambda: "step 1" in log_of(backend, handle), what=f"node {handle['node_index']} training")
    trigger = TrainingJobTrigger(backend=backend.serialize(), job_id=job_id, handles=handles,
                                 success_rule=plan.success_rule, stop_grace_s=5)
    started = time.monotonic()
    asyncio.run(trigger.on_kill())
    assert time.monotonic() - started < 15  # TERM reached the ranks; no KILL after the grace was needed
    # stop() stops (state, log and files stay readable); the teardown's stop_job removes.
    assert running_containers(dockerd["client"], job_id) == []
    assert len(job_containers(dockerd["client"], job_id)) == 2
    assert backend.stop_job(job_id, 2) == []
    assert job_containers(dockerd["client"], job_id) == []


def test_stop_keeps_final_state_and_log_for_the_trigger(backend, jobs, dockerd):
    """The trigger stops every node, then streams their last lines and reads the failed tail."""
    job_id, handles, _ = jobs(LONG_TRAIN)
    handle = handles[0]
    offset = 0
    lines = []
    # Stream the log by offset while it grows: every line once, in order.
    while len(lines) < 4:
        text, offset = backend.read_log(handle, offset)
        lines += text.splitlines()
        time.sleep(0.3)
    for other in handles:
        backend.stop(other, grace_s=5)
    assert running_containers(dockerd["client"], job_id) == []
    state = Backend.deserialize(backend.serialize()).poll(handle)  # any backend object sees the end
    assert state["running"] is False and state["exit_code"] == 128 + 15  # the launcher's code for SIGTERM
    text, offset = backend.read_log(handle, offset)
    lines += text.splitlines()
    assert backend.read_log(handle, offset) == ("", offset)
    steps = [int(line.rsplit(" ", 1)[1]) for line in lines if "worker 0: step" in line]
    assert steps == list(range(len(steps))) and len(steps) >= 2
    assert lines[-1] == "[node 0] exit code 143"
    assert backend.read_tail(handle, 2)[-1] == "[node 0] exit code 143"
    assert backend.stop_job(job_id, 2) == []
    assert job_containers(dockerd["client"], job_id) == []


def test_read_log_after_a_fresh_backend_resumes_by_offset(backend, jobs):
    job_id, handles, _ = jobs(LONG_TRAIN, nodes=1)
    handle = handles[0]
    wait_until(lambda: "step 2" in log_of(backend, handle), what="three steps")
    first, offset = backend.read_log(handle, 0)
    # A triggerer restart: a new backend object, the offset from before.
    again = Backend.deserialize(backend.serialize())
    more = wait_until(lambda: again.read_log(handle, offset)[0], what="more lines")
    assert not set(first.splitlines()) & set(more.splitlines())
    full, _ = backend.read_log(handle, 0)
    assert full.startswith(first + more)


def test_node_files_and_outputs(backend, jobs, tmp_path, dockerd):
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(textwrap.dedent("""
        import os
        from airflow_tf.runtime import training  # shipped by the backend, not in the image
        training.log_metrics(1, {"loss": 0.5})
        if training.is_chief():
            path = os.path.join(training.output_dir(), "result.txt")
            open(path, "w").write("hello")
            open(os.path.join(training.node_dir(), "model_path"), "w").write(path)
        print("cwd", os.getcwd(), "runtime from", training.__file__)
    """))
    job_id, handles, _ = jobs(str(src), nodes=1)
    handle = handles[0]
    state = wait_until(lambda: (s := backend.poll(handle)) and not s["running"] and s, what="node exit")
    assert state["exit_code"] == 0, log_of(backend, handle)
    assert "runtime from /airflow_tf/lib/airflow_tf/runtime/training.py" in log_of(backend, handle)
    assert '"loss": 0.5' in backend.read_file(handle, "metrics-rank0.jsonl")
    assert backend.read_file(handle, "no-such-file") is None
    model_path = backend.read_file(handle, "model_path")
    assert model_path == "/airflow_tf/outputs/result.txt"
    on_host = backend.host_path(handle, model_path)
    assert on_host == os.path.join(backend.output_location(job_id), "result.txt")
    assert backend.stop_job(job_id, 1) == []  # it had ended: removed, not reported as running
    assert open(on_host).read() == "hello"  # outputs outlive the container
    assert job_containers(dockerd["client"], job_id) == []


def test_a_retried_launch_stops_the_earlier_try_keeps_its_log_and_reattaches(backend, jobs, dockerd):
    from airflow_tf.operators.restarts import reattach

    job_id, (first,), plan = jobs(LONG_TRAIN, nodes=1)
    wait_until(lambda: "step 0" in log_of(backend, first), what="the first try running")
    assert reattach(backend, plan.launch(0)) == first  # healthy, same attempt: re-attached
    again = backend.start(plan.launch(0), LONG_TRAIN)  # a start anyway (a later attempt does this)
    assert (first["try"], again["try"]) == (1, 2)
    tries = {c["Labels"]["airflow_tf.try"]: c for c in job_containers(dockerd["client"], job_id)}
    assert sorted(tries) == ["1", "2"] and tries["1"]["State"] == "exited"  # stopped, kept for its log
    assert "step 0" in log_of(backend, first)
    # (Stopped once running: in a container's first moments its PID 1 ignores TERM, see the docs.)
    wait_until(lambda: "step 0" in log_of(backend, again), what="the second try running")
    assert backend.find_node(job_id, 0)["container_id"] == again["container_id"]
    assert backend.stop_job(job_id, 1) == [0]
    assert job_containers(dockerd["client"], job_id) == []


HOLD_PORT = """
import json, os, socket, time
config = json.loads(os.environ["TF_CONFIG"])
port = int(config["cluster"]["worker"][config["task"]["index"]].rsplit(":", 1)[1])
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("", port))
server.listen()
print("bound", port, flush=True)
time.sleep(600)
"""


def test_jobs_on_one_remote_daemon_get_distinct_free_ports(dockerd, tmp_path):
    """A remote daemon's host cannot be probed from here: a probe container asks it, never handing
    out ports another job's containers there have planned. Three jobs planned and started
    interleaved (like sweep trials) all bind their ports; no probe container is left."""
    remote = DockerBackend(image=dockerd["image"], docker_urls=[dockerd["remote_url"]], mounts=dockerd["mounts"],
                           python=dockerd["python"], insecure_tcp=True)
    assert not remote.daemons()[0].is_local
    (tmp_path / "train.py").write_text(textwrap.dedent(HOLD_PORT))
    host = remote.hosts(2)[0]

    def plan(name):
        spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py", node_count=2)
        return plan_tensorflow_job(spec, job_id=f"dk-{name}-{uuid.uuid4().hex[:6]}", hosts=[host, host],
                                   free_ports={host: remote.free_ports(host, 2)})

    def start(p):
        return [remote.start(p.launch(i), str(tmp_path)) for i in range(2)]

    plans, handles = {}, {}
    try:
        plans["a"], plans["b"] = plan("a"), plan("b")
        handles["a"] = start(plans["a"])
        plans["c"] = plan("c")  # planned while a's containers hold their ports (labelled)
        handles["b"], handles["c"] = start(plans["b"]), start(plans["c"])
        ports = {name: sorted(n.ports[0] for n in p.nodes) for name, p in plans.items()}
        every = [port for group in ports.values() for port in group]
        assert len(set(every)) == 6, ports
        for name, group in handles.items():
            for handle in group:
                wait_until(lambda: "bound" in log_of(remote, handle), what=f"job {name} node {handle['node_index']}")
                assert remote.poll(handle)["running"]
        assert dockerd["client"].containers(all=True, filters={"label": "airflow_tf.port_probe"}) == []
    finally:
        for p in plans.values():
            remote.stop_job(p.job_id, 2, grace_s=1)


# -- bad settings -------------------------------------------------------------------------------
def test_missing_image_is_a_clear_error_before_any_node_starts(dockerd):
    backend = DockerBackend(image="localhost/no-such-image:1", docker_urls=[dockerd["url"]])
    with pytest.raises(SpecError, match=r"image 'localhost/no-such-image:1' does not exist on the Docker daemon "
                                        r".*never pulls: build or load it"):
        backend.hosts(2)


def test_unknown_connection_id_is_a_clear_error(dockerd):
    backend = DockerBackend(image=dockerd["image"], docker_conn_ids=["atf_no_such_daemon"])
    with pytest.raises(SpecError, match=r"docker_conn_ids\[0\] \('atf_no_such_daemon'\): no Airflow connection"):
        backend.hosts(1)


def test_connection_names_the_daemon(dockerd, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_ATF_TEST_DAEMON", f'{{"conn_type": "docker", "host": "{dockerd["url"]}"}}')
    backend = DockerBackend(image=dockerd["image"], docker_conn_ids=["atf_test_daemon", "atf_test_daemon"])
    assert backend.hosts(3) == ["127.0.0.1"] * 3
    assert backend.daemon_for(1).setting == "docker_conn_ids[1] ('atf_test_daemon')"


def test_unreachable_daemon_names_it(tmp_path):
    url = f"unix://{tmp_path}/nothing.sock"
    backend = DockerBackend(image="localhost/airflow-tf-test:latest", docker_urls=[url])
    with pytest.raises(ConnectionError, match=f"cannot reach the Docker daemon {url} \\(docker_urls\\[0\\]\\)"):
        backend.hosts(1)


def test_more_nodes_than_daemons_without_shared_hosts(dockerd):
    backend = DockerBackend(image=dockerd["image"], docker_urls=[dockerd["url"]], allow_shared_hosts=False)
    with pytest.raises(SpecError, match="node_count is 2 but only 1 Docker daemon.*allow_shared_hosts"):
        backend.hosts(2)
    assert backend.hosts(1) == ["127.0.0.1"]


def test_use_gpu_without_nvidia_runtime_is_a_clear_error(backend, jobs, dockerd):
    with pytest.raises(SpecError, match=f"use_gpu=True, but the Docker daemon {dockerd['url']} .* no 'nvidia' runtime"):
        jobs(LONG_TRAIN, nodes=1, use_gpu=True)
    assert dockerd["client"].containers(all=True, filters={"label": "airflow_tf.job_id"}) == []


def test_python_missing_in_the_image_is_a_clear_error(dockerd, tmp_path):
    backend = DockerBackend(image=dockerd["image"], docker_urls=[dockerd["url"]])  # python3: not in the image
    (tmp_path / "train.py").write_text("print('hi')\n")
    spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py")
    plan = plan_tensorflow_job(spec, job_id="dk-nopython", hosts=backend.hosts(1))
    with pytest.raises(SpecError, match="python='python3' is not in the image"):
        backend.start(plan.launch(0), str(tmp_path))
    assert job_containers(dockerd["client"], "dk-nopython") == []


def test_settings_round_trip(backend):
    rebuilt = Backend.deserialize(json.loads(json.dumps(backend.serialize())))
    assert isinstance(rebuilt, DockerBackend) and rebuilt.settings() == backend.settings()
