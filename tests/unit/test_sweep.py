"""Sweep planning: grids, seeded samples, best-trial choice and bad input."""

import pytest
from airflow.sdk import DAG

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.sweep import best_trial, trials


def test_grid_is_every_combination_in_key_order():
    assert trials({"--lr": [0.1, 0.2], "--epochs": [1, 2]}) == [
        {"--lr": 0.1, "--epochs": 1}, {"--lr": 0.1, "--epochs": 2},
        {"--lr": 0.2, "--epochs": 1}, {"--lr": 0.2, "--epochs": 2},
    ]


def test_random_sample_is_seeded_and_distinct():
    grid = {"--lr": [0.001, 0.01, 0.1], "--batch": [16, 32, 64]}
    first, again = trials(grid, sample=4, seed=7), trials(grid, sample=4, seed=7)
    assert first == again and len({tuple(t.items()) for t in first}) == 4
    assert trials(grid, sample=4, seed=8) != first


@pytest.mark.parametrize(("grid", "message"), [
    ({}, "grid must be a non-empty dict"),
    ({"--lr": []}, "grid['--lr'] must be a non-empty list"),
    ({"--lr": [[1, 2]]}, "grid['--lr'] values must be scalars"),
])
def test_bad_grids(grid, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        trials(grid)


def test_sample_larger_than_grid():
    with pytest.raises(SpecError, match=r"sample must be an integer in 1..2"):
        trials({"--lr": [1, 2]}, sample=3)


RESULTS = [
    {"params": {"--lr": 1}, "metrics": {"accuracy": 0.5, "loss": 0.9}},
    {"params": {"--lr": 2}, "metrics": {"accuracy": 0.9, "loss": 0.2}},
    {"params": {"--lr": 3}},  # failed trial: no results
]


def test_best_by_max_and_min():
    assert best_trial(RESULTS, "accuracy", "max")["params"] == {"--lr": 2}
    assert best_trial(RESULTS, "loss", "min")["params"] == {"--lr": 2}
    assert best_trial(RESULTS, "loss", "max")["params"] == {"--lr": 1}


def test_unknown_metric_names_the_available_ones():
    with pytest.raises(SpecError, match=r"metric 'acc' is not in the trials' final metrics; available: \['accuracy', 'loss'\]"):
        best_trial(RESULTS, "acc", "max")


def test_sweep_group_validates_at_parse_time(tmp_path):
    from airflow_tf import HyperparameterSweep

    (tmp_path / "train.py").write_text("")
    common = {"source_directory": str(tmp_path), "entry_script": "train.py"}
    with DAG(dag_id="sweeps", schedule=None):
        with pytest.raises(SpecError, match="grid must be a non-empty dict"):
            HyperparameterSweep(task_id="s1", grid={}, metric="accuracy", **common)
        with pytest.raises(SpecError, match="mode must be one of"):
            HyperparameterSweep(task_id="s2", grid={"--lr": [1]}, metric="accuracy", mode="best", **common)
        with pytest.raises(SpecError, match="metric must be the name"):
            HyperparameterSweep(task_id="s3", grid={"--lr": [1]}, metric="", **common)
        sweep = HyperparameterSweep(task_id="s4", grid={"--lr": [1, 2, 3]}, metric="loss", max_parallel_trials=2, **common)
    # trial 2 waits for trial 0: at most two in flight
    assert sweep.trials[2].plan_task.upstream_task_ids == {"s4.trial_0.wait"}
    assert sweep.trials[1].plan_task.upstream_task_ids == set()
