"""The node runtime (airflow_tf.runtime.launcher) with plain-Python stand-ins for training scripts.

The launcher is started the way LocalBackend starts it: its own session (so it leads a process
group), stdout and stderr into the node's log. Leftover processes are checked with
tests/helpers.job_pids, which does not depend on airflow_tf's own process helpers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from tests.helpers import job_pids, pid_gone, wait_until

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LONG_SLEEP_S = 300  # what a stuck rank would run for; every bound below stays far under it


def read_text(path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Node:
    """One launcher run: its directories, process and log."""

    def __init__(self, tmp_path, script: str, *, ranks: int = 2, script_args: list[str] | None = None, grace: float = 1.0):
        self.job_id = f"launcher-{uuid.uuid4().hex[:12]}"
        self.src = tmp_path / "src"
        self.src.mkdir(exist_ok=True)
        (self.src / "train.py").write_text(textwrap.dedent(script))
        self.job_dir = tmp_path / "jobs" / self.job_id
        self.node_dir = self.job_dir / "node-0"
        self.node_dir.mkdir(parents=True)
        self.log_path = self.node_dir / "node.log"
        # node.json is a NodeLaunch: the node's plan, the job's cluster, the user's environment.
        addresses = [f"127.0.0.1:{23000 + r}" for r in range(ranks)]
        self.spec = {
            "node": {
                "job_id": self.job_id,
                "node_index": 0,
                "node_count": 1,
                "host": "127.0.0.1",
                "script": "train.py",
                "script_args": list(script_args or []),
                "env": {"PYTHONUNBUFFERED": "1"},
                "processes": [
                    {
                        "label": f"node 0 rank {r}", "kind": "rank", "rank": r, "local_rank": r,
                        "role": "worker", "task_index": r, "port": 23000 + r, "gpus": f"gpu-{r}",
                        "command": None, "daemon": False, "max_restarts": 0,
                    }
                    for r in range(ranks)
                ],
                "pip_packages": [],
                "gpus": 0,
            },
            "cluster": {"world_size": ranks, "tf_cluster": {"worker": addresses}, "horovod": None},
            "environment": {"COMMON_VAR": "common"},
        }
        (self.node_dir / "node.json").write_text(json.dumps(self.spec))
        self.grace = grace
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Node":
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        argv = [
            sys.executable, "-m", "airflow_tf.runtime.launcher", str(self.node_dir),
            "--workdir", str(self.src), "--grace", str(self.grace),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv, cwd=str(self.node_dir), env=env, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    def log(self) -> str:
        return read_text(self.log_path)

    def log_lines(self) -> list[str]:
        return self.log().splitlines()

    def wait_for_log(self, needle: str, count: int = 1, timeout: float = 30.0) -> None:
        wait_until(
            lambda: self.log().count(needle) >= count or self.proc.poll() is not None,
            timeout, what=f"{count}x {needle!r} in the node log",
        )
        assert self.log().count(needle) >= count, f"launcher ended early; log:\n{self.log()}"

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"launcher still running after {timeout}s; log:\n{self.log()}") from None

    def exit_code_file(self) -> str | None:
        path = self.node_dir / "exit_code"
        return path.read_text() if path.exists() else None

    def cleanup(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for pid in job_pids(self.job_id):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def make_node(tmp_path):
    nodes: list[Node] = []

    def make(script: str, **kwargs) -> Node:
        node = Node(tmp_path, script, **kwargs)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.cleanup()


def test_ranks_output_is_prefixed_and_each_rank_gets_its_env_and_argv(make_node):
    tricky = "a b; rm -rf / && echo $HOME `id` 'q' \"dq\" | cat > /tmp/x"
    node = make_node(
        """
        import json, os, sys
        rank = os.environ["AIRFLOW_TF_RANK"]
        for i in range(5):
            print(f"rank={rank} line {i}")
        print(f"rank={rank} stderr line", file=sys.stderr, flush=True)
        keys = ["AIRFLOW_TF_RANK", "AIRFLOW_TF_LOCAL_RANK", "AIRFLOW_TF_NODE_DIR", "AIRFLOW_TF_OUTPUT_DIR",
                "CUDA_VISIBLE_DEVICES", "TF_CONFIG", "COMMON_VAR"]
        info = {"argv": sys.argv[1:], "cwd": os.getcwd(), "env": {k: os.environ.get(k) for k in keys}}
        print(f"rank={rank} INFO " + json.dumps(info))
        sys.stdout.write(f"rank={rank} last line without newline")
        """,
        ranks=2,
        script_args=["--lr", "0.1", tricky, "--flag"],
    ).start()

    assert node.wait() == 0, node.log()
    assert node.exit_code_file() == "0\n"

    infos = {}
    rank_lines = {"0": 0, "1": 0}
    for line in node.log_lines():
        assert line.startswith("[node 0"), f"unprefixed line {line!r} in:\n{node.log()}"
        if line.startswith("[node 0] "):  # the launcher's own messages
            continue
        prefix, _, rest = line.partition("] ")
        assert rest.startswith("rank="), line
        rank = rest[len("rank="):].split(" ", 1)[0]
        assert prefix == f"[node 0 rank {rank}", f"line of rank {rank} has prefix {prefix!r}"
        rank_lines[rank] += 1
        if " INFO " in rest:
            infos[rank] = json.loads(rest.split(" INFO ", 1)[1])
    # 5 numbered lines, one stderr line, the INFO line and the unterminated last line per rank
    assert rank_lines == {"0": 8, "1": 8}
    assert "[node 0 rank 1] rank=1 last line without newline" in node.log_lines()
    assert "[node 0] exit code 0" in node.log_lines()

    for rank in ("0", "1"):
        info = infos[rank]
        assert info["argv"] == ["--lr", "0.1", tricky, "--flag"]
        assert info["cwd"] == str(node.src)
        assert info["env"]["AIRFLOW_TF_RANK"] == rank
        assert info["env"]["AIRFLOW_TF_LOCAL_RANK"] == rank
        assert info["env"]["CUDA_VISIBLE_DEVICES"] == f"gpu-{rank}"  # the process's own field
        assert json.loads(info["env"]["TF_CONFIG"]) == {  # built on the node from the one cluster
            "cluster": {"worker": [f"127.0.0.1:{23000 + r}" for r in range(2)]},
            "task": {"type": "worker", "index": int(rank)},
        }
        assert info["env"]["COMMON_VAR"] == "common"
        assert info["env"]["AIRFLOW_TF_NODE_DIR"] == str(node.node_dir)
        assert info["env"]["AIRFLOW_TF_OUTPUT_DIR"] == str(node.job_dir / "outputs")
    assert (node.job_dir / "outputs").is_dir()
    assert job_pids(node.job_id) == []


def test_first_failure_stops_the_other_ranks(make_node, tmp_path):
    ready = tmp_path / "sleeper-ready"
    node = make_node(
        f"""
        import os, sys, time
        ready = {str(ready)!r}
        if os.environ["AIRFLOW_TF_RANK"] == "0":
            while not os.path.exists(ready):  # fail only once the sleeper is surely running
                time.sleep(0.02)
            print("rank 0 failing", flush=True)
            sys.exit(3)
        print(f"sleeper pid {{os.getpid()}}", flush=True)
        open(ready, "w").close()
        time.sleep({LONG_SLEEP_S})
        """,
        ranks=2,
    ).start()

    node.wait_for_log("sleeper pid")
    sleeper = int(node.log().split("sleeper pid ", 1)[1].split()[0])
    started = time.monotonic()
    code = node.wait(timeout=60)
    assert time.monotonic() - started < LONG_SLEEP_S / 2
    assert code == 3, node.log()
    assert node.exit_code_file() == "3\n"
    assert "node 0 rank 0 exited with 3; stopping the other ranks" in node.log()
    assert pid_gone(sleeper)  # a child of the launcher, reaped before it exited
    assert job_pids(node.job_id) == []


def test_sigterm_to_the_process_group_stops_ranks_and_records_143(make_node):
    node = make_node(
        f"""
        import os, time
        print(f"ready pid {{os.getpid()}}", flush=True)
        time.sleep({LONG_SLEEP_S})
        """,
        ranks=2,
    ).start()

    node.wait_for_log("ready pid", count=2)
    rank_pids = [int(part.split()[0]) for part in node.log().split("ready pid ")[1:]]
    os.killpg(node.proc.pid, signal.SIGTERM)
    assert node.wait(timeout=60) == 143, node.log()
    assert node.exit_code_file() == "143\n"
    assert all(pid_gone(pid) for pid in rank_pids)
    assert job_pids(node.job_id) == []


def test_sigterm_is_forwarded_and_a_rank_ignoring_it_is_killed_after_grace(make_node):
    node = make_node(
        f"""
        import os, signal, time
        def ignore(signum, frame):
            print("ignoring TERM", flush=True)
        if os.environ["AIRFLOW_TF_RANK"] == "0":
            signal.signal(signal.SIGTERM, ignore)
        print(f"ready pid {{os.getpid()}}", flush=True)
        deadline = time.monotonic() + {LONG_SLEEP_S}
        while time.monotonic() < deadline:
            time.sleep(0.5)
        """,
        ranks=2,
        grace=1,
    ).start()

    node.wait_for_log("ready pid", count=2)
    rank_pids = [int(part.split()[0]) for part in node.log().split("ready pid ")[1:]]
    started = time.monotonic()
    os.kill(node.proc.pid, signal.SIGTERM)  # the launcher only: it must forward TERM itself
    assert node.wait(timeout=60) == 143, node.log()
    assert time.monotonic() - started < LONG_SLEEP_S / 2
    log = node.log()
    assert "[node 0] received signal 15, stopping ranks" in log
    assert "[node 0 rank 0] ignoring TERM" in log  # it did get the forwarded TERM, and survived it
    assert node.exit_code_file() == "143\n"
    assert all(pid_gone(pid) for pid in rank_pids)
    assert job_pids(node.job_id) == []


def test_grandchild_left_behind_by_a_rank_is_killed(make_node):
    node = make_node(
        f"""
        import os, subprocess
        child = subprocess.Popen(["sleep", "{LONG_SLEEP_S}"])
        print(f"grandchild pid {{child.pid}}", flush=True)
        """,
        ranks=1,
    ).start()

    node.wait_for_log("grandchild pid")
    grandchild = int(node.log().split("grandchild pid ", 1)[1].split()[0])
    assert node.wait(timeout=60) == 0, node.log()
    assert node.exit_code_file() == "0\n"
    wait_until(lambda: pid_gone(grandchild), timeout=10, what=f"grandchild {grandchild} to be gone")
    wait_until(lambda: job_pids(node.job_id) == [], timeout=10, what="no process of the job left")
