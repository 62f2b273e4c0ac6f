"""SSH host outages while a job trains, through Airflow (dag.test of tests/dags/tf_watch_faults.py).

The host's link is taken down inside its network namespace (``ip link set ... down``): packets
are dropped, nothing is refused, so the trigger's SFTP reads hang until their timeout, exactly as
for a host whose network or switch went away. The rank on the host keeps running meanwhile.

- a few seconds down: the wait warns, rides it out, and the job succeeds with every line once;
- down for longer than the error budget: the wait fails saying why, the teardown stops the node
  once the host is back, and nothing is left running on it.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import threading
import time
from collections import Counter

import pytest

from airflow_tf.runtime import node_files
from tests.helpers import job_pids
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import load_dag

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_FILE = os.path.join(REPO, "tests", "dags", "tf_watch_faults.py")
OUTAGE_S = 8  # the short outage: past a read timeout plus a reconnect timeout (3 + 3 s), well under the 60-s budget


def set_link(ssh_hosts, k: int, state: str) -> None:
    subprocess.run(["ip", "-n", ssh_hosts.namespaces[k], "link", "set", f"{ssh_hosts.tag}v{k}", state], check=True)


def watch_state(ssh_hosts, dag_id: str) -> str | None:
    """The trigger's offsets file in node 0's directory on the host: it exists once the trigger streamed."""
    found = glob.glob(os.path.join(ssh_hosts.remote_root, f"{dag_id}.*", "node-0", "try-*", node_files.WATCH_STATE))
    return found[0] if found else None


def wait_state(dag_id: str) -> str | None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        state = session.scalar(select(TaskInstance.state).where(TaskInstance.dag_id == dag_id,
                                                                TaskInstance.task_id == "train.wait"))
    return str(state.value if hasattr(state, "value") else state) if state else None


def poll_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)
    return value


def host_processes(ssh_hosts, k: int) -> list[str]:
    """Command lines of the processes in host k's namespace other than its sshd's."""
    pids = subprocess.run(["ip", "netns", "pids", ssh_hosts.namespaces[k]], capture_output=True, text=True).stdout.split()
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "sshd" not in cmdline and cmdline.strip():
            found.append(cmdline)
    return found


class During(threading.Thread):
    """Runs a fault script beside dag.test(); re-raises its failure in the test, and always
    brings the link back up."""

    def __init__(self, ssh_hosts, script):
        super().__init__(daemon=True)
        self.ssh_hosts, self.script, self.error = ssh_hosts, script, None

    def run(self):
        try:
            self.script()
        except BaseException as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc
        finally:
            set_link(self.ssh_hosts, 0, "up")

    def finish(self):
        self.join(60)
        if self.error:
            raise self.error


def test_a_few_seconds_of_link_down_is_ridden_out_with_warnings(ssh_hosts, airflow_db, capfd):
    flap_done = os.path.join(ssh_hosts.remote_root, "watch-flap.done")  # tf_watch_faults.FLAP_DONE
    if os.path.exists(flap_done):
        os.remove(flap_done)
    dag = load_dag(DAG_FILE, "tf_watch_ssh_flap")
    timeline = {}

    def outage():
        state = poll_until(lambda: watch_state(ssh_hosts, dag.dag_id), 120, "the trigger streaming from the host")
        set_link(ssh_hosts, 0, "down")
        timeline["down"] = time.monotonic()
        time.sleep(OUTAGE_S)  # the fault itself: the link stays down this long
        set_link(ssh_hosts, 0, "up")
        before = os.stat(state).st_mtime_ns
        # The trigger streams again (its offsets move) before the rank is told to finish.
        poll_until(lambda: os.stat(state).st_mtime_ns != before, 60, "the trigger streaming again")
        with open(flap_done, "w"):
            pass

    fault = During(ssh_hosts, outage)
    fault.start()
    run = dag.test()
    fault.finish()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]
    assert "down" in timeline
    warnings = re.findall(r"could not read node\(s\) \[0\] \(.*?SSHBackendError", output)
    assert warnings, output[-3000:]  # a warning for each failed poll, naming the node and the host
    assert "every node answers again" in output
    lines = Counter(re.findall(r"\[node 0 rank 0\] (rank 0 (?:line|waiting) \d+)\b", output))
    assert lines and set(lines.values()) == {1}, lines  # each line once: a failed poll moves no offset
    waiting = sorted(int(line.rsplit(" ", 1)[1]) for line in lines if "waiting" in line)
    assert waiting == list(range(len(waiting))) and len(waiting) > OUTAGE_S * 5 // 2  # printed through the outage
    assert sorted(f"line {k}" for k in range(10)) == sorted(line[7:] for line in lines if " line " in line)
    for epoch in (1, 2):
        assert output.count(f"node 0 rank 0: epoch {epoch}/2 loss=") == 1
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == [] and host_processes(ssh_hosts, 0) == []


def test_an_outage_past_the_error_budget_fails_clearly_and_leaves_nothing_running(ssh_hosts, airflow_db, capfd):
    dag = load_dag(DAG_FILE, "tf_watch_ssh_outage")
    timeline = {}

    def outage():
        poll_until(lambda: watch_state(ssh_hosts, dag.dag_id), 120, "the trigger streaming from the host")
        set_link(ssh_hosts, 0, "down")
        timeline["down"] = time.monotonic()
        poll_until(lambda: wait_state(dag.dag_id) == "failed", 120, "the wait to give up")
        timeline["gave_up"] = time.monotonic()
        # back up right away: the teardown (next) must reach the host to stop the node

    fault = During(ssh_hosts, outage)
    fault.start()
    run = dag.test()
    fault.finish()
    output = capfd.readouterr().out
    assert run.state == "failed"
    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.wait", -1)] == "failed" and states[("train.teardown", -1)] == "failed"
    # Budget 3 s and at least 3 failed polls of ~3 s each (the SFTP/connect timeouts): well under 40 s.
    assert timeline["gave_up"] - timeline["down"] < 40
    message = re.search(r"its backend failed on (\d+) consecutive polls over ([\d.]+) s \(error_budget 3 s\)", output)
    assert message and int(message.group(1)) >= 3 and float(message.group(2)) >= 3, output[-3000:]
    assert "node 0: " in output and "SSHBackendError" in output
    assert "outcome is unknown and nothing was stopped by the wait" in output
    assert "stopped node(s) [0] of job" in output  # the teardown reached the host and stopped the node
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == [] and host_processes(ssh_hosts, 0) == []
