"""Test DAGs: sweeps of the toy objective (sweep_toy/objective.py, no TensorFlow), one per behaviour."""

import os

from airflow.sdk import DAG

from airflow_tf import HyperparameterSweep
from airflow_tf.tuning import (
    BayesianParameterSampling,
    GridParameterSampling,
    MedianStoppingPolicy,
    RandomParameterSampling,
    choice,
    uniform,
)

TOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sweep_toy")
# Where each trial's process writes its own start/end times (the concurrency test reads them).
STAMPS = os.path.join(os.environ.get("AIRFLOW_HOME", "/tmp"), "sweep-stamps")
XY = {"--x": uniform(-2.0, 2.0), "--y": uniform(-2.0, 2.0)}
# dag.test() runs triggers inline: no scheduler race to keep the controller's steps apart for.
COMMON = {"source_directory": TOY, "entry_script": "objective.py", "poll_interval": 0.2, "decision_interval": 0.2}

with DAG(dag_id="tf_sweep_bayes", schedule=None, catchup=False):
    # TPE: 3 random start-up trials, then 5 chosen from the finished trials' results.
    HyperparameterSweep(
        task_id="sweep", hyperparameter_sampling=BayesianParameterSampling(XY, seed=3, n_startup_trials=3),
        primary_metric_name="loss", primary_metric_goal="minimize", max_total_runs=8, max_concurrent_runs=1,
        script_params={"--epochs": 2}, **COMMON)

with DAG(dag_id="tf_sweep_median", schedule=None, catchup=False):
    # Two at a time; --bad 5 is a deliberately bad trial that MedianStopping must stop early.
    # The seed puts it third or fourth (never in the first pair), so a finished trial exists to compare with.
    HyperparameterSweep(
        task_id="sweep", hyperparameter_sampling=GridParameterSampling({"--bad": choice(0.0, 0.01, 0.02, 5.0)}, seed=4),
        policy=MedianStoppingPolicy(evaluation_interval=1, delay_evaluation=1),
        primary_metric_name="loss", primary_metric_goal="minimize", max_concurrent_runs=2,
        script_params={"--epochs": 12, "--epoch-seconds": 0.25, "--stamps": STAMPS}, **COMMON)

with DAG(dag_id="tf_sweep_resume", schedule=None, catchup=False):
    # Killed mid-way by the test and run again: the study goes on.
    HyperparameterSweep(
        task_id="sweep", hyperparameter_sampling=RandomParameterSampling(XY, seed=5),
        primary_metric_name="loss", primary_metric_goal="minimize", max_total_runs=4,
        script_params={"--epochs": 3, "--epoch-seconds": 0.4}, **COMMON)

with DAG(dag_id="tf_sweep_no_metric", schedule=None, catchup=False):
    # The script logs "loss"; the sweep asks for "accuracy": a clear error after the first trial.
    HyperparameterSweep(
        task_id="sweep", hyperparameter_sampling=RandomParameterSampling(XY, seed=0),
        primary_metric_name="accuracy", max_total_runs=3, script_params={"--epochs": 1}, **COMMON)

with DAG(dag_id="tf_sweep_scheduler", schedule=None, catchup=False):
    # For a real scheduler + triggerer (tests/e2e): the default decision_interval (10 s), epochs
    # long enough that the bad trial is judged and stopped well before its end.
    HyperparameterSweep(
        task_id="sweep", hyperparameter_sampling=GridParameterSampling({"--bad": choice(0.0, 0.01, 5.0)}, seed=4),
        policy=MedianStoppingPolicy(evaluation_interval=1, delay_evaluation=1),
        primary_metric_name="loss", primary_metric_goal="minimize", max_concurrent_runs=2,
        source_directory=TOY, entry_script="objective.py", script_params={"--epochs": 30, "--epoch-seconds": 1.0})
