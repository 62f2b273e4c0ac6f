"""A triggerer restart in the middle of training, on a real scheduler + triggerer (tests/e2e/server.py).

The trigger's offsets live in node 0's directory (docs/reliability.md): the new triggerer's
trigger resumes there, so the wait task's log (what the UI shows: the task's log and every
triggerer's) holds each rank line and each progress line exactly once, and training never
noticed (cleanup() on the old triggerer's way out stops nothing).
"""

import glob
import json
import os
import re
import time
from collections import Counter

import pytest

from airflow_tf.operators.nodes import job_id_for
from airflow_tf.runtime import node_files
from tests.e2e.server import wait_until
from tests.helpers import job_pids

pytestmark = pytest.mark.e2e

LINES, EPOCHS = 70, 7  # per rank, as tests/dags/tf_watch_faults.py's tf_watch_restart prints them


def streamed_offsets(home: str, job_id: str) -> list[int] | None:
    """The log offsets the trigger saved with the job, once it has saved any."""
    found = glob.glob(os.path.join(home, "**", job_id, "node-0", "try-*", node_files.WATCH_STATE), recursive=True)
    try:
        with open(found[0]) as f:
            return [cursor["log"] for cursor in json.load(f)["cursors"]]
    except (IndexError, OSError, ValueError, KeyError):
        return None


def test_triggerer_restart_mid_training_streams_every_line_exactly_once(airflow_server):
    dag_id = "tf_watch_restart"
    airflow_server.wait_for_dag(dag_id)
    run_id = airflow_server.trigger(dag_id)
    job_id = job_id_for(dag_id, run_id, "train")

    # The first triggerer has streamed part of both nodes' logs, and both nodes still train.
    wait_until(lambda: (offsets := streamed_offsets(airflow_server.home, job_id)) and min(offsets) > 0, 120,
               0.2, what="the trigger streaming both nodes")
    assert len(job_pids(job_id)) == 4  # 2 launchers + 2 ranks: mid-training
    restart_started = time.monotonic()
    outage_s = airflow_server.restart_triggerer()
    print(f"no triggerer for {outage_s:.1f} s; new one heartbeating after {time.monotonic() - restart_started:.1f} s")
    assert job_pids(job_id), "training ended before the new triggerer was up: not a restart mid-training"

    wait_until(lambda: airflow_server.run_state(dag_id, run_id) in ("success", "failed"), 180, what="the run to end")
    assert airflow_server.run_state(dag_id, run_id) == "success"
    wait = airflow_server.task_instances(dag_id, run_id)[("train.wait", -1)]
    assert wait["try_number"] == 1  # the same try: the deferred wait survived the restart

    log = airflow_server.task_log(dag_id, run_id, "train.wait")
    assert "resuming where an earlier trigger stopped" in log  # the second triggerer's trigger
    lines = Counter(re.findall(r"\[node (\d) rank \d\] rank \d line (\d+)\b", log))
    expected = {(str(node), str(k)) for node in (0, 1) for k in range(LINES)}
    assert set(lines) == expected, sorted(expected - set(lines))[:10]  # none lost
    assert set(lines.values()) == {1}, [k for k, n in lines.items() if n > 1][:10]  # none twice
    progress = Counter(re.findall(r"node (\d) rank \d: epoch (\d)/7 ", log))
    assert set(progress) == {(str(n), str(e)) for n in (0, 1) for e in range(1, EPOCHS + 1)}
    assert set(progress.values()) == {1}, progress
    assert outage_s < 60
    wait_until(lambda: job_pids(job_id) == [], 30, what="the job's processes to be gone")
