"""Task-level arguments on a training group reach the tasks operators/task_args.py says, and a
group-level retry never restarts a job (the restart policy is the wait task's)."""

from __future__ import annotations

import datetime

import pytest
from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator
from airflow_tf.operators.restarts import RestartPolicy
from airflow_tf.operators.task_args import LAUNCH_RETRY_DELAY


def notify(context):  # a task callback
    return None


def build(tmp_path, default_args=None, **options):
    (tmp_path / "train.py").write_text("print('hi')\n")
    with DAG(dag_id="args", schedule=None, default_args=default_args or {}):
        return TensorFlowTrainOperator("train", source_directory=str(tmp_path), entry_script="train.py", **options)


def test_each_argument_reaches_the_tasks_it_means_something_on(tmp_path):
    group = build(tmp_path, retries=2, retry_delay=5, queue="gpu", pool="trainers", priority_weight=7,
                  execution_timeout=datetime.timedelta(minutes=2), on_failure_callback=notify,
                  on_success_callback=notify, max_restarts=3, permanent_exit_codes=[1])
    plan, launch, wait, teardown = group.plan_task, group.launch_task, group.wait_task, group.teardown_task
    launch_kwargs = launch.partial_kwargs
    for task in (plan, wait, teardown):
        assert (task.retries, task.retry_delay, task.queue, task.pool, task.priority_weight) == \
            (2, datetime.timedelta(seconds=5), "gpu", "trainers", 7)
    assert (launch_kwargs["retries"], launch_kwargs["queue"], launch_kwargs["pool"]) == (2, "gpu", "trainers")
    assert launch_kwargs["retry_delay"] == datetime.timedelta(seconds=5)
    # execution_timeout bounds the seconds-long tasks, never the wait (the job has its own limits).
    assert plan.execution_timeout == launch_kwargs["execution_timeout"] == datetime.timedelta(minutes=2)
    assert wait.execution_timeout is None
    # A failure is reported once: by the tasks that fail, not also by the teardown that follows.
    assert plan.on_failure_callback and wait.on_failure_callback and not teardown.on_failure_callback
    assert wait.on_success_callback and not plan.on_success_callback
    assert wait.restart_policy == RestartPolicy(3, None, [1]).to_json()


def test_a_launch_retry_comes_back_within_horovods_start_timeout_unless_told_otherwise(tmp_path):
    group = build(tmp_path, retries=1)
    assert group.launch_task.partial_kwargs["retry_delay"] == LAUNCH_RETRY_DELAY  # not Airflow's 300 s
    assert group.plan_task.retry_delay == datetime.timedelta(seconds=300)
    inherited = build(tmp_path / "x" if (tmp_path / "x").mkdir() is None else tmp_path,
                      default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=42)})
    assert inherited.launch_task.partial_kwargs["retry_delay"] == datetime.timedelta(seconds=42)


@pytest.mark.parametrize("code, done, restart", [
    (137, 0, True), (None, 0, True), (1, 0, True), (137, 3, False), (1, 0, False),
])
def test_restart_policy_decisions(code, done, restart):
    policy = RestartPolicy(3, None, [1]) if (code, restart) == (1, False) else RestartPolicy(3)
    assert (policy.decide(code, done) is None) == restart


def test_restart_on_exit_codes_is_an_allow_list():
    policy = RestartPolicy(2, restart_on_exit_codes=[137, 143])
    assert policy.decide(137, 0) is None and policy.decide(None, 1) is None  # lost counts as 137
    assert "not in restart_on_exit_codes" in policy.decide(1, 0)
    assert RestartPolicy(0).decide(137, 0) == "max_restarts is 0"
