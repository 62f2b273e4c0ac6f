"""Sweeps of a toy objective through dag.test(): Bayesian sampling, early termination, the
concurrency limit, a killed-and-retried sweep, a primary metric nobody reports.

The toy script (tests/dags/sweep_toy/objective.py) logs a known function of its params per
epoch with airflow-tf's log_metrics, so the sampler's and the policy's effect is asserted on
the stored Optuna study; no TensorFlow (fast). Measured wall time: see docs/tuning.md.
"""

import datetime
import glob
import os
import signal
import statistics
import subprocess
import sys
import time

import optuna
import pytest

from airflow_tf.runtime import procfs
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration
DAGS = os.path.join(REPO, "tests", "dags", "tf_sweep_toy.py")


def stored_study(result_or_dir):
    directory = result_or_dir["study"]["directory"] if isinstance(result_or_dir, dict) else result_or_dir
    return optuna.load_study(study_name=None, storage=f"sqlite:///{os.path.join(directory, 'study.db')}")


def left_running(study) -> dict[str, list[int]]:
    """Processes still carrying a trial's job marker (nothing may survive a sweep)."""
    jobs = [t.user_attrs["job"]["job_id"] for t in study.trials if "job" in t.user_attrs]
    return {job: pids for job in jobs if (pids := procfs.job_processes(job))}


def test_bayesian_sampling_beats_its_random_start(airflow_db):
    dag = load_dag(DAGS, "tf_sweep_bayes")
    run = dag.test()
    assert run.state == "success"
    result = xcom(dag.dag_id, run.run_id, "sweep.controller")
    study = stored_study(result)
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 8
    # every value is the known function of the params the trial ran with (2 epochs: + 1/2)
    for t in trials:
        x, y = t.user_attrs["script_params"]["--x"], t.user_attrs["script_params"]["--y"]
        assert t.value == pytest.approx((x - 0.3) ** 2 + (y + 0.2) ** 2 + 0.5)
        assert sorted(t.intermediate_values) == [1, 2]
    startup, chosen = trials[:3], trials[3:]
    assert min(t.value for t in chosen) < statistics.median(t.value for t in startup)
    assert result["best_metric"] == min(t.value for t in trials) and result["best_trial"] == study.best_trial.number
    assert result["best_params"] == study.best_trial.user_attrs["script_params"]
    assert len(result["trials"]) == 8 and os.path.isfile(result["picture"])
    assert left_running(study) == {}


def _overlap(intervals):
    """Most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, change in edges:
        now += change
        most = max(most, now)
    return most


def test_median_stopping_stops_the_bad_trial_and_two_run_at_most(airflow_db):
    stamps = os.path.join(os.environ["AIRFLOW_HOME"], "sweep-stamps")
    os.makedirs(stamps, exist_ok=True)
    for name in os.listdir(stamps):
        os.remove(os.path.join(stamps, name))
    dag = load_dag(DAGS, "tf_sweep_median")
    run = dag.test()
    assert run.state == "success"  # a terminated trial is no failure of the sweep
    result = xcom(dag.dag_id, run.run_id, "sweep.controller")
    study = stored_study(result)
    by_bad = {t.user_attrs["script_params"]["--bad"]: t for t in study.trials}
    assert sorted(by_bad) == [0.0, 0.01, 0.02, 5.0]  # the grid, each combination once
    bad = by_bad[5.0]
    assert bad.number >= 2, "precondition: the bad trial starts after a trial has finished"
    assert bad.state.name == "PRUNED" and bad.user_attrs["outcome"] == "terminated"
    assert len(bad.user_attrs["history"]) < 12  # fewer epochs logged than its budget
    assert by_bad[0.0].state.name == "COMPLETE" and result["best_params"] == {"--bad": 0.0}
    assert result["terminated_early"] >= 1
    assert left_running(study) == {}
    # Concurrency, from the processes' own clocks: each wrote its start (and, unless stopped, its end).
    intervals = []
    for name in os.listdir(stamps):
        with open(os.path.join(stamps, name)) as f:
            times = [float(line) for line in f.read().split()]
        intervals.append((times[0], times[1] if len(times) > 1 else time.time()))
    assert len(intervals) == 4
    stopped = sum(1 for name in os.listdir(stamps) if len(open(os.path.join(stamps, name)).read().split()) == 1)
    assert stopped >= 1  # the bad trial's process never reached its end
    assert _overlap(intervals) == 2  # two at once, never three


def test_killed_sweep_resumes_its_study(airflow_db, tmp_path):
    logical = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc)
    code = ("import sys, datetime; sys.path.insert(0, sys.argv[1]);"
            "from tests.integration.test_tensorflow_dag import load_dag;"
            "when = datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone.utc);"
            "load_dag(sys.argv[2], 'tf_sweep_resume').test(logical_date=when, run_after=when)")
    output = tmp_path / "killed-sweep.log"  # why it ended, if it ends before it is killed
    with open(output, "wb") as sink:
        child = subprocess.Popen([sys.executable, "-c", code, REPO, DAGS], cwd=REPO, start_new_session=True,
                                 stdout=sink, stderr=subprocess.STDOUT)
    root = os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs")
    before, deadline = None, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and child.poll() is None:
            found = glob.glob(os.path.join(root, "tf_sweep_resume.*sweep-*", "study.db"))
            if found:
                try:
                    study = stored_study(os.path.dirname(found[0]))
                    done = [t for t in study.trials if t.state.name == "COMPLETE"]
                except Exception:  # noqa: BLE001 - the child is creating its tables right now
                    done = []
                if len(done) >= 2:
                    before = {t.number: (t.user_attrs["script_params"], t.value, t.datetime_complete) for t in done}
                    break
            time.sleep(0.2)
    finally:
        ended_early = child.poll()
        if ended_early is None:
            os.killpg(child.pid, signal.SIGKILL)  # the worker dies mid-sweep; trial nodes (own sessions) live on
        child.wait()
    assert ended_early is None, (f"the sweep's dag.test ended (exit {ended_early}) before two trials were seen "
                                 f"finished; its last output:\n{output.read_text(errors='replace')[-4000:]}")
    assert before is not None, "the killed sweep never finished two trials"
    directory = os.path.dirname(found[0])
    dag = load_dag(DAGS, "tf_sweep_resume")
    run = dag.test(logical_date=logical, run_after=logical)  # the same run again: the controller's next try
    assert run.state == "success"
    study = stored_study(directory)
    assert sorted(t.number for t in study.trials) == [0, 1, 2, 3]  # max_total_runs, not 4 more
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    for number, kept in before.items():  # finished trials were kept, not run again
        t = study.trials[number]
        assert (t.user_attrs["script_params"], t.value, t.datetime_complete) == kept
    assert len({tuple(t.user_attrs["script_params"].values()) for t in study.trials}) == 4
    result = xcom(dag.dag_id, run.run_id, "sweep.controller")
    assert result["study"]["directory"] == directory and result["best_metric"] == study.best_value
    assert left_running(study) == {}


def test_a_primary_metric_no_trial_reports_fails_after_the_first_trial(airflow_db):
    dag = load_dag(DAGS, "tf_sweep_no_metric")
    run = dag.test()
    assert run.state == "failed"
    states = task_states(dag.dag_id, run.run_id)
    assert states[("sweep.controller", -1)] == "failed" and states[("sweep.teardown", -1)] == "failed"
    from airflow_tf import LocalBackend
    from airflow_tf.operators.nodes import job_id_for
    from airflow_tf.operators.sweep_controller import sweep_directory

    study = stored_study(sweep_directory(LocalBackend(), job_id_for(dag.dag_id, run.run_id, "sweep")))
    assert len(study.trials) == 1 and study.trials[0].state.name == "FAIL"
    assert study.trials[0].user_attrs["reason"] == ("did not report primary_metric_name 'accuracy'; "
                                                    "it reported ['loss']")
    assert left_running(study) == {}
