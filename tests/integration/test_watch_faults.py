"""The wait trigger against real nodes that misbehave in the ways that used to kill healthy jobs.

- Through Airflow (dag.test): every metrics record written in two pieces, plus a garbage line.
- The trigger itself (the class the triggerer runs, on LocalBackend nodes): a "triggerer restart"
  (its asyncio task cancelled mid-run, as the triggerer's shutdown does, then a new instance from
  the serialized kwargs), and nodes out of its sight (LocalBackend files on another machine).

Scripts are plain Python (tests/dags/watch_faults/train.py): the trigger is what is under test.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from collections import Counter

import pytest

from airflow_tf.backends.local import LocalBackend
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.results.progress import metrics_files
from airflow_tf.runtime import node_files
from airflow_tf.triggers.training_job import TrainingJobTrigger
from tests.helpers import job_pids, wait_until
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import load_dag

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_FILE = os.path.join(REPO, "tests", "dags", "tf_watch_faults.py")
SOURCE = os.path.join(REPO, "tests", "dags", "watch_faults")
RANK_LINE = re.compile(r"\[node (\d+) rank \d+\] (rank \d+ line \d+)\b")


def rank_lines(text: str) -> Counter:
    return Counter(f"node {node}: {line}" for node, line in RANK_LINE.findall(text))


def test_half_written_records_and_a_garbage_line_do_not_fail_the_job(airflow_db, capfd):
    dag = load_dag(DAG_FILE, "tf_watch_two_piece")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]
    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.wait", -1)] == states[("train.teardown", -1)] == "success"
    # Each record was half on disk for 1.2 s (4 polls): reported once, whole, when its newline came.
    for node in (0, 1):
        for epoch in (1, 2, 3):
            assert output.count(f"node {node} rank {node}: epoch {epoch}/3 loss=") == 1, (node, epoch)
        # The garbage line: one warning, naming the file and the byte it starts at; never fatal.
        assert output.count(f"node {node} metrics-rank{node}.jsonl: line at byte 0 is not JSON") == 1
    lines = rank_lines(output)
    assert sorted(lines.values()) == [1] * 24, lines  # 12 numbered lines per rank, each streamed once
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert [r["epoch"] for r in results["history"]] == [1, 2, 3] and results["epochs_logged"] == 3
    assert "could not save the streamed offsets" not in output  # kept with the job on every poll
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == []


# -- the trigger on its own ---------------------------------------------------------------------

@pytest.fixture
def local_job(tmp_path):
    """Start a LocalBackend job of watch_faults/train.py; stop whatever is left afterwards."""
    backend = LocalBackend(job_root=str(tmp_path / "jobs"))
    started = []

    def start(nodes: int, script_params: dict):
        job_id = f"watch-{uuid.uuid4().hex[:10]}"
        spec = TrainingSpec(source_directory=SOURCE, entry_script="train.py", node_count=nodes,
                            script_params=script_params)
        hosts = backend.hosts(nodes)
        plan = plan_tensorflow_job(spec, job_id=job_id, hosts=hosts, free_ports={hosts[0]: backend.free_ports(hosts[0], nodes)})
        started.append((job_id, nodes))
        handles = [backend.start(plan.launch(i), SOURCE) for i in range(nodes)]
        files = [metrics_files(node.to_json(), plan.world_size) for node in plan.nodes]
        return plan, handles, files

    yield backend, start
    for job_id, nodes in started:
        backend.stop_job(job_id, nodes, grace_s=2)
        assert job_pids(job_id) == []


async def first_event(trigger):
    async for event in trigger.run():
        return event.payload


def test_a_restarted_trigger_streams_every_line_and_epoch_exactly_once(local_job, capfd):
    backend, start = local_job
    plan, handles, files = start(2, {"--lines": 40, "--interval": 0.1, "--epochs": 4})
    kwargs = dict(backend=backend.serialize(), job_id=plan.job_id, handles=handles, success_rule=plan.success_rule,
                  poll_interval=0.2, metrics_files=files)
    first = TrainingJobTrigger(**kwargs)
    before = ""

    async def until_cancelled():
        nonlocal before
        task = asyncio.create_task(first_event(first))
        while len(rank_lines(before)) < 12:
            before += capfd.readouterr().out  # the trigger logs to stdout here
            assert not task.done(), "the job ended before the restart"
            await asyncio.sleep(0.05)
        task.cancel()  # what the triggerer's shutdown does to every trigger it runs
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(until_cancelled())  # asyncio.run then waits for the trigger's threads, as a process exit would
    before += capfd.readouterr().out
    assert any(backend.poll(h)["running"] for h in handles), "the restart did not happen mid-training"
    second_class, second_kwargs = first.serialize()
    second = TrainingJobTrigger(**second_kwargs)
    event = asyncio.run(first_event(second))
    after = capfd.readouterr().out

    assert event["status"] == "success", event
    assert "resuming where an earlier trigger stopped" in after
    streamed = rank_lines(before) + rank_lines(after)
    assert sorted(streamed.values()) == [1] * 80, streamed  # 40 lines per rank, none twice, none lost
    progress = re.findall(r"node \d rank \d: epoch \d/4", before + "\n" + after)
    assert sorted(Counter(progress).values()) == [1] * 8, progress
    assert [r["epoch"] for r in event["history"]] == [1, 2, 3, 4]
    assert os.path.exists(os.path.join(handles[0]["node_dir"], node_files.WATCH_STATE))
    # The curves are drawn by the trigger (outputs on its machine): off the wait task's critical path.
    assert event["curves_png"] == os.path.join(backend.output_location(plan.job_id), "curves.png")
    with open(event["curves_png"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_nodes_out_of_sight_fail_clearly_and_nothing_is_stopped(local_job):
    """LocalBackend node 1 was started on another machine: its files are not here and its pid
    means nothing here. The trigger says exactly that and stops nothing, not even node 0."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_tf.operators.nodes import WaitForTrainingJobOperator

    backend, start = local_job
    plan, handles, files = start(1, {"--lines": 1, "--until-file": "/nonexistent/never"})
    wait_until(lambda: "rank 0 line 0" in open(os.path.join(handles[0]["node_dir"], "node.log")).read(), 30,
               what="node 0 running")
    elsewhere = {**handles[0], "node_index": 1, "host": "10.99.0.2", "pid": 1, "start_ticks": 1,
                 "node_dir": "/srv/elsewhere/node-1", "machine": "another-boot/pid:[4026531836]"}
    trigger = TrainingJobTrigger(backend=backend.serialize(), job_id=plan.job_id, handles=[handles[0], elsewhere],
                                 success_rule=plan.success_rule, poll_interval=0.2, metrics_files=files + [[]])
    started = time.monotonic()
    event = asyncio.run(first_event(trigger))
    assert time.monotonic() - started < 10
    assert event["status"] == "failed" and event["retryable"] is False
    assert "cannot see its node(s)" in event["message"] and "node 1 was started on another machine" in event["message"]
    assert "Nothing was stopped" in event["message"] and "LocalBackend is single-host" in event["message"]
    assert backend.poll(handles[0])["running"] and job_pids(plan.job_id)  # node 0 untouched
    wait = WaitForTrainingJobOperator(task_id="w", handles=[], backend=backend.serialize(), plan_task_id="p")
    with pytest.raises(AirflowFailException, match="cannot see its node"):
        wait.execute_complete({}, event)


# -- node exits heard by event, not at the next poll ---------------------------------------------

def test_a_node_exit_wakes_the_trigger_without_waiting_for_its_next_poll(local_job):
    """poll_interval is an hour: the job is reported only because each launcher's exit (its
    pidfd) ends the trigger's pause. Without that the wait below runs out and the test fails."""
    backend, start = local_job
    plan, handles, files = start(2, {"--lines": 10, "--interval": 0.1, "--epochs": 1})
    trigger = TrainingJobTrigger(backend=backend.serialize(), job_id=plan.job_id, handles=handles,
                                 success_rule=plan.success_rule, poll_interval=3600, metrics_files=files)
    event = asyncio.run(asyncio.wait_for(first_event(trigger), 120))
    assert event["status"] == "success", event
    assert [n["exit_code"] for n in event["nodes"]] == [0, 0]


def test_a_failed_node_wakes_the_trigger_and_its_peer_is_stopped(local_job):
    backend, start = local_job
    # Node 0 runs until a file that never appears; node 1 has no --until-file: both print 5 lines,
    # then node 1 is killed by this test, so its launcher exits (137-style) while node 0 still runs.
    plan, handles, files = start(2, {"--lines": 5, "--interval": 0.1, "--until-file": "/nonexistent/never"})
    wait_until(lambda: all(backend.poll(h)["running"] for h in handles), 30, what="both nodes running")
    trigger = TrainingJobTrigger(backend=backend.serialize(), job_id=plan.job_id, handles=handles,
                                 success_rule=plan.success_rule, poll_interval=3600, metrics_files=files,
                                 stop_grace_s=2)

    async def kill_node_1_then_wait():
        task = asyncio.create_task(first_event(trigger))
        await asyncio.sleep(0.5)  # the trigger's first poll has seen both running, it now pauses
        assert not task.done()
        backend.stop(handles[1], grace_s=0)
        return await asyncio.wait_for(task, 120)

    event = asyncio.run(kill_node_1_then_wait())
    assert event["status"] == "failed" and event["failed_node"] == 1, event
    assert not backend.poll(handles[0])["running"]  # its healthy peer was stopped by the trigger
    assert job_pids(plan.job_id) == []


def test_exit_descriptors_only_for_the_launcher_itself(local_job):
    """A pid reused by another process, or a pid of another machine, gets no descriptor: the
    trigger must never wake on (or hold) a stranger's exit."""
    backend, start = local_job
    plan, handles, files = start(1, {"--lines": 1, "--until-file": "/nonexistent/never"})
    fd = backend.exit_descriptor(handles[0])
    assert fd is not None
    os.close(fd)
    assert backend.exit_descriptor({**handles[0], "start_ticks": handles[0]["start_ticks"] + 1}) is None
    assert backend.exit_descriptor({**handles[0], "machine": "another-boot/pid:[1]"}) is None
    backend.stop(handles[0], grace_s=2)
    assert backend.exit_descriptor(handles[0]) is None  # gone: the poll reads its exit
