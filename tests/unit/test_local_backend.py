"""LocalBackend with plain-Python stand-ins for training scripts (no TensorFlow).

Every test uses its own job id and stops its jobs in the fixture's teardown, so a failing test
leaves no process behind. Leftovers are checked with tests/helpers.job_pids, which is independent
of airflow_tf.runtime.procfs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import textwrap
import time
import uuid

import pytest

from airflow_tf.backends.base import Backend
from airflow_tf.backends.local import LocalBackend, safe_job_id
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.cluster.spec import TrainingSpec
from tests.helpers import job_pids, pid_gone, wait_until

LONG_SLEEP_S = 300  # what a stuck rank would run for; every bound below stays far under it


def full_log(handle) -> str:
    try:
        with open(os.path.join(handle["node_dir"], "node.log"), encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Jobs:
    """Builds plans for stand-in scripts and remembers every job it started, for teardown."""

    def __init__(self, backend: LocalBackend, tmp_path):
        self.backend = backend
        self.tmp_path = tmp_path
        self.started: dict[str, int] = {}  # job id -> node count
        self.envs: dict[str, dict] = {}  # job id -> the user's environment values (not in the plan)

    def plan(self, script: str, *, nodes: int = 1, per_node: int = 1, script_params=None, env=None):
        job_id = f"lb-{uuid.uuid4().hex[:12]}"
        src = self.tmp_path / f"src-{job_id}"
        src.mkdir()
        (src / "train.py").write_text(textwrap.dedent(script))
        spec = TrainingSpec(
            source_directory=str(src), entry_script="train.py", script_params=script_params or [],
            node_count=nodes, process_count_per_node=per_node, environment_variables=env or {},
        )
        hosts = self.backend.hosts(nodes)
        free = {hosts[0]: self.backend.free_ports(hosts[0], nodes * per_node)}
        self.started[job_id] = nodes
        self.envs[job_id] = dict(env or {})
        return plan_tensorflow_job(spec, job_id=job_id, hosts=hosts, free_ports=free)

    def start(self, script: str, **kwargs):
        """Plan and start every node; returns (job_id, handles)."""
        plan = self.plan(script, **kwargs)
        handles = [self.launch(plan, i) for i in range(len(plan.nodes))]
        return plan.job_id, handles

    def launch(self, plan, node_index: int):
        return self.backend.start(plan.launch(node_index, self.envs.get(plan.job_id)), plan.source_directory)

    def cleanup(self) -> None:
        for job_id, nodes in self.started.items():
            try:
                self.backend.stop_job(job_id, nodes, grace_s=1)
            finally:
                for pid in job_pids(job_id):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass


@pytest.fixture
def backend(tmp_path):
    return LocalBackend(job_root=str(tmp_path / "jobs"))


@pytest.fixture
def jobs(backend, tmp_path):
    jobs = Jobs(backend, tmp_path)
    yield jobs
    jobs.cleanup()


def wait_ended(backend, handle, timeout: float = 60.0):
    return wait_until(
        lambda: (lambda s: s if not s["running"] else None)(backend.poll(handle)),
        timeout, what=f"node {handle['node_index']} to end; log:\n{full_log(handle)}",
    )


def wait_for_log(handle, needle: str, count: int = 1, timeout: float = 30.0) -> str:
    wait_until(lambda: full_log(handle).count(needle) >= count, timeout, what=f"{count}x {needle!r} in the node log")
    return full_log(handle)


def no_job_pids(job_id: str, timeout: float = 10.0) -> None:
    wait_until(lambda: job_pids(job_id) == [], timeout, what=f"no process of job {job_id} left")


SLEEPER = f"""
    import os, time
    print(f"ready pid {{os.getpid()}}", flush=True)
    time.sleep({LONG_SLEEP_S})
"""

TERM_IGNORER = f"""
    import os, signal, time
    def ignore(signum, frame):
        print("ignoring TERM", flush=True)
    signal.signal(signal.SIGTERM, ignore)
    print(f"ready pid {{os.getpid()}}", flush=True)
    deadline = time.monotonic() + {LONG_SLEEP_S}
    while time.monotonic() < deadline:
        time.sleep(0.5)
"""


# -- settings and small helpers ---------------------------------------------------------------


def test_serialize_round_trip(tmp_path):
    backend = LocalBackend(job_root=str(tmp_path / "jobs"), python="/usr/bin/python3", host="10.0.0.7")
    data = backend.serialize()
    assert data == {
        "classpath": "airflow_tf.backends.local.LocalBackend",
        "kwargs": {"job_root": str(tmp_path / "jobs"), "python": "/usr/bin/python3", "host": "10.0.0.7",
                   "pass_environment": []},
    }
    rebuilt = Backend.deserialize(json.loads(json.dumps(data)))
    assert isinstance(rebuilt, LocalBackend)
    assert rebuilt.settings() == backend.settings()
    assert rebuilt.hosts(3) == ["10.0.0.7"] * 3
    assert rebuilt.job_dir("j1") == os.path.join(str(tmp_path / "jobs"), "j1")
    assert rebuilt.node_dir("j1", 2) == os.path.join(str(tmp_path / "jobs"), "j1", "node-2")
    assert rebuilt.output_location("j1") == os.path.join(str(tmp_path / "jobs"), "j1", "outputs")


def test_deserialize_rejects_a_class_that_is_not_a_backend():
    with pytest.raises(TypeError):
        Backend.deserialize({"classpath": "collections.OrderedDict", "kwargs": {}})


def test_free_ports_are_distinct(backend):
    ports = backend.free_ports("127.0.0.1", 16)
    assert len(ports) == 16
    assert len(set(ports)) == 16
    assert all(1 <= port <= 65535 for port in ports)


@pytest.mark.parametrize("bad", ["../x", "..", ".hidden", "a/b", "", "x" * 202, "a b", "a;b", "/abs"])
def test_safe_job_id_rejects_path_tricks(bad, backend):
    with pytest.raises(ValueError):
        safe_job_id(bad)
    with pytest.raises(ValueError):
        backend.job_dir(bad)


@pytest.mark.parametrize("good", ["job-1", "dag.run_2024-01-01T00.train", "A" * 201])
def test_safe_job_id_accepts_plain_ids(good):
    assert safe_job_id(good) == good


# -- start / poll / files ---------------------------------------------------------------------


def test_start_poll_exit_code_and_read_file(backend, jobs):
    job_id, (handle,) = jobs.start(
        """
        import os, sys
        print("hello from rank", os.environ["AIRFLOW_TF_RANK"])
        with open(os.path.join(os.environ["AIRFLOW_TF_NODE_DIR"], "metrics.jsonl"), "w") as f:
            f.write('{"loss": 0.5}\\n')
        """
    )
    assert json.loads(json.dumps(handle)) == handle  # plain JSON: travels through XCom
    assert handle["backend"] == "local"
    assert handle["job_id"] == job_id
    assert handle["node_index"] == 0
    assert handle["node_dir"] == os.path.join(backend.node_dir(job_id, 0), "try-1")  # the node's first try
    assert handle["try"] == 1 and handle["attempt"] == 1
    assert handle["node_dir"].startswith(str(backend.job_root))

    state = wait_ended(backend, handle)
    assert state["exit_code"] == 0, full_log(handle)
    assert isinstance(state["ended_at"], float)
    assert backend.read_file(handle, "exit_code") == "0\n"
    assert backend.read_file(handle, "metrics.jsonl") == '{"loss": 0.5}\n'
    assert json.loads(backend.read_file(handle, "node.json"))["node"]["job_id"] == job_id
    assert backend.read_file(handle, "no-such-file") is None
    for bad in ("../node-0/exit_code", "sub/file", ".hidden", ".."):
        with pytest.raises(ValueError):
            backend.read_file(handle, bad)
    assert "[node 0 rank 0] hello from rank 0" in full_log(handle)
    no_job_pids(job_id)


def test_poll_reports_the_failing_exit_code(backend, jobs):
    job_id, (handle,) = jobs.start("import sys\nprint('failing', flush=True)\nsys.exit(7)\n")
    state = wait_ended(backend, handle)
    assert state["exit_code"] == 7, full_log(handle)
    assert backend.read_tail(handle, 1) == ["[node 0] exit code 7"]


def test_two_nodes_each_run_their_ranks(backend, jobs):
    job_id, handles = jobs.start(
        "import os\nprint('rank', os.environ['AIRFLOW_TF_RANK'], 'world', os.environ['AIRFLOW_TF_WORLD_SIZE'])\n",
        nodes=2, per_node=2,
    )
    for node_index, handle in enumerate(handles):
        assert wait_ended(backend, handle)["exit_code"] == 0, full_log(handle)
        log = full_log(handle)
        for rank in (2 * node_index, 2 * node_index + 1):
            assert f"[node {node_index} rank {rank}] rank {rank} world 4" in log
    no_job_pids(job_id)


def test_ranks_do_not_inherit_airflow_secrets(backend, jobs, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__FERNET_KEY", "fernet-secret")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://user:pw@db/airflow")
    monkeypatch.setenv("AIRFLOW_CONN_MY_DB", "postgres://user:pw@host/db")
    monkeypatch.setenv("AIRFLOW_VAR_SECRET", "var-secret")
    monkeypatch.setenv("HARMLESS_TEST_VAR", "kept")
    job_id, (handle,) = jobs.start(
        """
        import json, os
        print("ENV " + json.dumps(sorted(os.environ)))
        print("HARMLESS " + os.environ.get("HARMLESS_TEST_VAR", "<missing>"))
        """
    )
    assert wait_ended(backend, handle)["exit_code"] == 0, full_log(handle)
    log = full_log(handle)
    names = json.loads(log.split("ENV ", 1)[1].splitlines()[0])
    leaked = [n for n in names if n.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_"))]
    assert leaked == []
    # An allow-list, not a deny-list: the worker's other variables (cloud keys...) stay behind.
    assert "HARMLESS <missing>" in log
    assert "PATH" in names and "HOME" in names
    for secret in ("fernet-secret", "user:pw", "var-secret"):
        assert secret not in log


def test_pass_environment_adds_named_variables_but_never_airflows_own(tmp_path, monkeypatch):
    monkeypatch.setenv("HARMLESS_TEST_VAR", "kept")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    backend = LocalBackend(job_root=str(tmp_path / "jobs"), pass_environment=["HARMLESS_*"])
    jobs = Jobs(backend, tmp_path)
    try:
        job_id, (handle,) = jobs.start("import os\nprint('HARMLESS', os.environ.get('HARMLESS_TEST_VAR'), "
                                       "os.environ.get('AWS_SECRET_ACCESS_KEY'))\n")
        assert wait_ended(backend, handle)["exit_code"] == 0, full_log(handle)
        assert "HARMLESS kept None" in full_log(handle)
    finally:
        jobs.cleanup()
    with pytest.raises(SpecError, match=r"pass_environment\[0\] = 'AIRFLOW_CONN_\*'.*secret_environment_variables"):
        LocalBackend(pass_environment=["AIRFLOW_CONN_*"])
    with pytest.raises(SpecError, match=r"pass_environment\[0\] must be a variable name or a prefix"):
        LocalBackend(pass_environment=["A B"])


# -- logs -------------------------------------------------------------------------------------


def test_read_log_hands_out_whole_lines_without_loss_or_duplicates(backend, jobs, tmp_path):
    acks = tmp_path / "acks"
    acks.mkdir()
    job_id, (handle,) = jobs.start(
        f"""
        import os, sys, time
        acks = {str(acks)!r}
        for i in range(5):
            # half a line first: the log must never show it until the line is complete
            sys.stdout.write(f"step {{i}} ")
            sys.stdout.flush()
            time.sleep(0.05)
            print("done", flush=True)
            while not os.path.exists(os.path.join(acks, str(i))):
                time.sleep(0.02)
        for i in range(300):
            print(f"burst {{i}} " + "x" * 100)
        """
    )
    offset = 0
    chunks: list[str] = []
    for i in range(5):  # one step per read_log call: the script waits for the test's ack
        deadline = time.monotonic() + 30
        text = ""
        while f"step {i} done" not in text:
            piece, offset = backend.read_log(handle, offset)
            assert piece == "" or piece.endswith("\n"), f"partial line handed out: {piece!r}"
            text += piece
            chunks.append(piece)
            assert time.monotonic() < deadline, f"step {i} never showed up; log:\n{full_log(handle)}"
            if f"step {i} done" not in text:
                time.sleep(0.02)
        (acks / str(i)).touch()

    while True:  # the burst, read while it is being written
        piece, offset = backend.read_log(handle, offset)
        assert piece == "" or piece.endswith("\n"), f"partial line handed out: {piece!r}"
        chunks.append(piece)
        if piece == "" and not backend.poll(handle)["running"]:
            piece, offset = backend.read_log(handle, offset)  # anything written before the exit code
            chunks.append(piece)
            if piece == "":
                break
        elif piece == "":
            time.sleep(0.02)

    streamed = "".join(chunks)
    assert streamed == full_log(handle)  # nothing lost, nothing twice
    assert offset == len(full_log(handle).encode())
    rank_lines = [line for line in streamed.splitlines() if line.startswith("[node 0 rank 0] ")]
    expected = [f"[node 0 rank 0] step {i} done" for i in range(5)]
    expected += [f"[node 0 rank 0] burst {i} " + "x" * 100 for i in range(300)]
    assert rank_lines == expected
    assert backend.read_log(handle, offset) == ("", offset)


def test_read_log_keeps_an_unterminated_line_for_the_next_call(backend, jobs):
    job_id, (handle,) = jobs.start("print('only line')\n")
    wait_ended(backend, handle)
    text, offset = backend.read_log(handle, 0)
    assert text.endswith("[node 0] exit code 0\n")
    log_path = os.path.join(handle["node_dir"], "node.log")
    with open(log_path, "ab") as f:
        f.write("half a lïne".encode())  # non-ASCII: a byte offset, not a character count
    assert backend.read_log(handle, offset) == ("", offset)
    with open(log_path, "ab") as f:
        f.write(b" now whole\nand a tail")
    text, offset2 = backend.read_log(handle, offset)
    assert text == "half a lïne now whole\n"
    assert offset2 == offset + len("half a lïne now whole\n".encode())
    assert backend.read_log(handle, offset2) == ("", offset2)


def test_read_log_and_tail_before_the_log_exists(backend, tmp_path):
    handle = {"node_dir": str(tmp_path / "missing"), "job_id": "nope", "node_index": 0}
    assert backend.read_log(handle, 42) == ("", 42)
    assert backend.read_tail(handle, 5) == []
    assert backend.read_file(handle, "exit_code") is None


def test_read_tail_returns_the_last_lines(backend, jobs):
    job_id, (handle,) = jobs.start("for i in range(100):\n    print(f'line {i}')\n")
    assert wait_ended(backend, handle)["exit_code"] == 0
    tail = backend.read_tail(handle, 3)
    assert tail == ["[node 0 rank 0] line 98", "[node 0 rank 0] line 99", "[node 0] exit code 0"]
    assert backend.read_tail(handle, 1000) == full_log(handle).splitlines()


# -- stopping ---------------------------------------------------------------------------------


def test_stop_terminates_the_node_and_records_143(backend, jobs):
    job_id, (handle,) = jobs.start(SLEEPER, per_node=2)
    log = wait_for_log(handle, "ready pid", count=2)
    rank_pids = [int(m) for m in re.findall(r"ready pid (\d+)", log)]
    assert backend.poll(handle)["running"]

    started = time.monotonic()
    backend.stop(handle, grace_s=5)
    assert time.monotonic() - started < LONG_SLEEP_S / 2
    state = backend.poll(handle)
    assert state["running"] is False
    assert state["exit_code"] == 143, full_log(handle)
    assert "[node 0] received signal 15, stopping ranks" in full_log(handle)
    assert all(pid_gone(pid) for pid in rank_pids)
    no_job_pids(job_id)

    # stopping again is a no-op
    log_before = full_log(handle)
    backend.stop(handle, grace_s=5)
    assert backend.poll(handle)["exit_code"] == 143
    assert full_log(handle) == log_before


def test_stop_kills_a_rank_that_ignores_term(backend, jobs):
    job_id, (handle,) = jobs.start(TERM_IGNORER)
    log = wait_for_log(handle, "ready pid")
    rank_pid = int(re.search(r"ready pid (\d+)", log).group(1))

    started = time.monotonic()
    backend.stop(handle, grace_s=1)
    assert time.monotonic() - started < LONG_SLEEP_S / 2
    assert "ignoring TERM" in full_log(handle)  # it got TERM and survived it...
    wait_until(lambda: pid_gone(rank_pid), timeout=10, what="the TERM-ignoring rank to be killed")
    assert backend.poll(handle)["running"] is False
    no_job_pids(job_id)


def test_stop_also_kills_processes_that_left_the_process_group(backend, jobs):
    job_id, (handle,) = jobs.start(
        f"""
        import os, subprocess, time
        child = subprocess.Popen(["sleep", "{LONG_SLEEP_S}"], start_new_session=True)
        print(f"escaped pid {{child.pid}}", flush=True)
        time.sleep({LONG_SLEEP_S})
        """
    )
    log = wait_for_log(handle, "escaped pid")
    escaped = int(re.search(r"escaped pid (\d+)", log).group(1))
    backend.stop(handle, grace_s=5)
    wait_until(lambda: pid_gone(escaped), timeout=10, what="the escaped grandchild to be killed")
    no_job_pids(job_id)


def test_stop_of_a_finished_node_is_a_noop(backend, jobs):
    job_id, (handle,) = jobs.start("print('quick')\n")
    assert wait_ended(backend, handle)["exit_code"] == 0
    wait_until(lambda: pid_gone(handle["pid"]), timeout=10, what="the launcher to exit")
    log_before = full_log(handle)
    backend.stop(handle, grace_s=5)
    state = backend.poll(handle)
    assert state["running"] is False and state["exit_code"] == 0
    assert full_log(handle) == log_before
    assert backend.stop_job(job_id, 1, grace_s=5) == []


def test_stop_job_finds_nodes_without_handles(backend, jobs):
    plan = jobs.plan(
        f"""
        import os, time
        if os.environ["AIRFLOW_TF_NODE_INDEX"] == "0":
            print("node 0 done", flush=True)
        else:
            print(f"ready pid {{os.getpid()}}", flush=True)
            time.sleep({LONG_SLEEP_S})
        """,
        nodes=3,
    )
    # nodes 0 and 1 start; node 2 never does (as after a launch task that failed half-way)
    handles = [jobs.launch(plan, i) for i in range(2)]
    assert wait_ended(backend, handles[0])["exit_code"] == 0
    wait_for_log(handles[1], "ready pid")

    fresh = Backend.deserialize(backend.serialize())  # no handles in hand
    started = time.monotonic()
    assert fresh.stop_job(plan.job_id, 3, grace_s=5) == [1]
    assert time.monotonic() - started < LONG_SLEEP_S / 2
    no_job_pids(plan.job_id)
    assert backend.poll(handles[0])["exit_code"] == 0
    state = backend.poll(handles[1])
    assert state["running"] is False and state["exit_code"] == 143
    assert not os.path.exists(backend.node_dir(plan.job_id, 2))
    assert fresh.stop_job(plan.job_id, 3, grace_s=5) == []  # again: nothing was running


def test_stop_job_of_an_unknown_job_is_a_noop(backend):
    assert backend.stop_job(f"never-started-{uuid.uuid4().hex[:8]}", 4, grace_s=1) == []


def test_retried_start_stops_the_previous_process_first(backend, jobs):
    plan = jobs.plan(SLEEPER)
    first = jobs.launch(plan, 0)
    log = wait_for_log(first, "ready pid")
    first_rank = int(re.search(r"ready pid (\d+)", log).group(1))

    second = jobs.launch(plan, 0)
    assert second["pid"] != first["pid"]
    assert (first["try"], second["try"]) == (1, 2)
    assert second["node_dir"] == os.path.join(os.path.dirname(first["node_dir"]), "try-2")
    # the first try's launcher and rank were stopped before the second started; its files stay
    assert pid_gone(first["pid"])
    assert "ready pid" in open(os.path.join(first["node_dir"], "node.log")).read()
    assert backend.find_node(plan.job_id, 0) == second  # the node's current try
    wait_until(lambda: pid_gone(first_rank), timeout=10, what="the first try's rank to be gone")
    log = wait_for_log(second, "ready pid")
    second_rank = int(re.search(r"ready pid (\d+)", log).group(1))
    assert second_rank != first_rank
    assert log.count("ready pid") == 1  # a fresh log, not the first try's
    assert backend.poll(second)["running"]
    live = job_pids(plan.job_id)
    assert first_rank not in live and first["pid"] not in live
    assert second_rank in live

    assert backend.stop_job(plan.job_id, 1, grace_s=5) == [0]
    no_job_pids(plan.job_id)


def test_poll_reports_a_lost_node(backend, jobs):
    job_id, (handle,) = jobs.start(SLEEPER)
    wait_for_log(handle, "ready pid")
    os.kill(handle["pid"], signal.SIGKILL)  # the launcher dies hard: no exit code is written
    state = wait_until(
        lambda: (lambda s: s if not s["running"] else None)(backend.poll(handle)), timeout=30, what="poll to see the loss",
    )
    assert state["exit_code"] is None
    assert state["ended_at"] is not None
    assert backend.read_file(handle, "exit_code") is None
    # its orphaned rank still carries the job id: stop_job finds and kills it
    backend.stop_job(job_id, 1, grace_s=1)
    no_job_pids(job_id)


def test_user_environment_reaches_ranks_from_a_private_node_file_not_the_plan(backend, jobs):
    marker = f"marker-{uuid.uuid4().hex}"
    plan = jobs.plan("import os\nprint('GOT', os.environ['MY_TOKEN'], flush=True)\n", env={"MY_TOKEN": marker})
    assert marker not in json.dumps(plan.to_json())  # the plan (the XCom) names the variable only
    assert plan.environment_names == ["MY_TOKEN"]
    handle = jobs.launch(plan, 0)
    assert wait_ended(backend, handle)["exit_code"] == 0, full_log(handle)
    assert f"GOT {marker}" in full_log(handle)
    node_dir = os.path.join(backend.node_dir(plan.job_id, 0), "try-1")
    assert os.stat(os.path.join(node_dir, "node.json")).st_mode & 0o777 == 0o600
    assert os.stat(node_dir).st_mode & 0o777 == 0o700
    assert os.stat(os.path.dirname(node_dir)).st_mode & 0o777 == 0o700
    assert os.stat(backend.job_dir(plan.job_id)).st_mode & 0o777 == 0o700
    backend.stop_job(plan.job_id, 1, grace_s=1)


def test_rerun_launch_rule_reattach_healthy_same_attempt_else_stop_then_start(backend, jobs):
    """docs/reliability.md, "a re-run launch": the rule ``LaunchNodeOperator`` applies."""
    import dataclasses

    from airflow_tf.operators.restarts import reattach

    plan = jobs.plan(SLEEPER)
    launch = plan.launch(0, {})
    first = backend.start(launch, plan.source_directory)
    wait_for_log(first, "ready pid")
    # Healthy, same attempt: re-attached, nothing new started.
    assert reattach(backend, launch) == first
    assert sorted(os.listdir(backend.node_dir(plan.job_id, 0))) == ["handle.json", "try-1"]
    # A later job attempt (a restart): not re-attached; start stops try 1 before try 2 runs.
    later = dataclasses.replace(launch, attempt=2)
    assert reattach(backend, later) is None
    second = backend.start(later, plan.source_directory)
    assert second["try"] == 2 and pid_gone(first["pid"])
    wait_for_log(second, "ready pid")
    # A launcher whose handle was never written (its launch task died in between) carries the
    # node's marker from its first instant: the next start stops it too.
    os.remove(os.path.join(backend.node_dir(plan.job_id, 0), "handle.json"))
    assert reattach(backend, later) is None
    third = backend.start(later, plan.source_directory)
    wait_until(lambda: pid_gone(second["pid"]), timeout=10, what="the handle-less try to be stopped")
    wait_for_log(third, "ready pid")
    launchers = [p for p in job_pids(plan.job_id) if b"airflow_tf.runtime.launcher" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert launchers == [third["pid"]]
    # A node that ended is not healthy: a re-run launch starts a new try.
    backend.stop(third, grace_s=2)
    assert reattach(backend, later) is None
    assert backend.stop_job(plan.job_id, 1, grace_s=2) == []
    no_job_pids(plan.job_id)


def test_a_planned_port_taken_before_the_node_starts_fails_it_clearly(backend, jobs, tmp_path):
    import socket

    from airflow_tf.runtime import node_files

    squatter = socket.socket()
    squatter.bind(("", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    try:
        (tmp_path / "train.py").write_text("print('should not run')\n")
        spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py", node_count=2)
        plan = plan_tensorflow_job(spec, job_id=f"lb-port-{uuid.uuid4().hex[:8]}", hosts=["127.0.0.1"] * 2,
                                   free_ports={"127.0.0.1": [taken, *backend.free_ports("127.0.0.1", 1)]})
        assert plan.nodes[0].ports == [taken]
        jobs.started[plan.job_id] = 2
        handle = backend.start(plan.launch(0, {}), str(tmp_path))
        state = wait_ended(backend, handle)
        assert state["exit_code"] == node_files.PORTS_TAKEN
        log = full_log(handle)
        assert f"port(s) [{taken}] planned for this node are already in use" in log and "should not run" not in log
    finally:
        squatter.close()
