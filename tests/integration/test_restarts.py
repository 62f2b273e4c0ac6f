"""Job-level restarts (max_restarts, exit-code policy) and resume_from, through dag.test() on real
nodes (docs/reliability.md: "restart" and "resume" rows)."""

from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time

import pytest

from airflow_tf.runtime import procfs
from tests.helpers import job_pids
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import load_dag

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_FILE = os.path.join(REPO, "tests", "dags", "tf_restarts.py")


def _jobs(dag_id: str) -> list[str]:
    return glob.glob(os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs", f"{dag_id}.*"))


def _epochs(path: str) -> list[int]:
    with open(path) as f:
        return [json.loads(line)["epoch"] for line in f if line.strip()]


class RankKiller(threading.Thread):
    """SIGKILLs node 1's training rank once its first try has logged ``epoch`` epochs."""

    def __init__(self, dag_id: str, epoch: int):
        super().__init__(daemon=True)
        self.dag_id, self.epoch, self.killed_at, self.done = dag_id, epoch, None, threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 240
        while not self.done.is_set() and time.monotonic() < deadline:
            for metrics in glob.glob(os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs", f"{self.dag_id}.*",
                                                  "node-1", "try-1", "metrics-rank1.jsonl")):
                if len(_epochs(metrics)) >= self.epoch:
                    job_id = metrics.split(os.sep)[-4]
                    for pid in procfs.job_processes(job_id, 1):
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            if b"train.py" in f.read():
                                os.kill(pid, signal.SIGKILL)
                                self.killed_at = time.monotonic()
                    return
            time.sleep(0.05)


def test_a_rank_killed_mid_training_restarts_the_job_from_its_checkpoint(airflow_db, capfd):
    dag = load_dag(DAG_FILE, "tf_restart_mwms")
    killer = RankKiller(dag.dag_id, epoch=5)
    killer.start()
    try:
        run = dag.test()
    finally:
        killer.done.set()
    output = capfd.readouterr().out
    assert killer.killed_at is not None, "worker 1 never reached epoch 5"
    assert run.state == "success", output[-4000:]
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert results["attempt"] == 2
    (earlier,) = results["earlier_attempts"]
    assert (earlier["failed_node"], earlier["exit_code"]) == (1, 137)
    assert "Restarting the whole job as attempt 2" in output
    (job_dir,) = _jobs(dag.dag_id)
    first, second = (_epochs(os.path.join(job_dir, "node-0", t, "metrics-rank0.jsonl")) for t in ("try-1", "try-2"))
    # The second attempt continued from the checkpoint: its first epoch is past those already done.
    assert first[:5] == [1, 2, 3, 4, 5] and second[0] >= 5 and second[-1] == 10, (first, second)
    assert [r["epoch"] for r in results["history"]] == list(range(1, 11))
    print(f"killed at epoch 5 of attempt 1; attempt 2 trained epochs {second}")
    assert job_pids(os.path.basename(job_dir)) == []


@pytest.mark.parametrize("dag_id, why", [
    ("tf_restart_none", "exited with code 137"),
    ("tf_restart_permanent", "Not restarted: exit code 3 is in permanent_exit_codes [3]"),
])
def test_no_restart_without_budget_or_for_a_permanent_exit_code(airflow_db, capfd, dag_id, why):
    dag = load_dag(DAG_FILE, dag_id)
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "failed"
    assert task_states(dag.dag_id, run.run_id)[("train.wait", -1)] == "failed"
    assert why in output and "Restarting the whole job" not in output
    (job_dir,) = _jobs(dag_id)
    for node in (0, 1):  # one attempt only: no node was started again
        assert sorted(e for e in os.listdir(os.path.join(job_dir, f"node-{node}")) if e.startswith("try-")) == ["try-1"]
    assert job_pids(os.path.basename(job_dir)) == []


def test_resume_from_an_earlier_run_warm_starts_from_its_weights(airflow_db, capfd, monkeypatch):
    fresh = load_dag(DAG_FILE, "tf_resume_fresh")
    run = fresh.test()
    assert run.state == "success", capfd.readouterr().out[-3000:]
    first = xcom(fresh.dag_id, run.run_id, "train.wait")
    monkeypatch.setenv("AIRFLOW_TF_TEST_RESUME_FROM", first["output_dir"])
    warm = load_dag(DAG_FILE, "tf_resume_warm")
    run = warm.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]
    second = xcom(warm.dag_id, run.run_id, "train.wait")
    assert "airflow_tf: warm start from " + os.path.join(first["output_dir"], "model.keras") in output
    # Same data, same schedule: the warm run starts where the fresh one ended.
    assert second["history"][0]["loss"] < first["history"][0]["loss"]
    assert second["history"][0]["loss"] <= first["history"][-1]["loss"] * 1.05
    print(f"epoch-1 loss: fresh {first['history'][0]['loss']:.4f}, warm {second['history'][0]['loss']:.4f}")


def test_a_horovod_gloo_job_restarts_within_its_start_timeout(airflow_db, capfd):
    dag = load_dag(DAG_FILE, "hvd_restart_gloo")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-4000:]
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert results["attempt"] == 2 and results["earlier_attempts"][0]["exit_code"] == 137
    # Attempt 2 formed its Gloo ring again (every node started at once) and ran all five rounds.
    assert "rank 1 step 4 sum 2.0" in output
    (job_dir,) = _jobs(dag.dag_id)
    assert job_pids(os.path.basename(job_dir)) == []
