"""A real 3-trial sweep through dag.test(): every trial trains, the best one is picked."""

import os

import pytest

from tests.integration.dagrun import xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration


def test_sweep_runs_three_trials_and_picks_the_best(airflow_db):
    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_sweep.py"), "tf_sweep")
    run = dag.test()
    assert run.state == "success"
    best = xcom(dag.dag_id, run.run_id, "sweep.select_best")
    assert len(best["trials"]) == 3 and all(t["metric"] is not None for t in best["trials"])
    assert best["best_metric"] == max(t["metric"] for t in best["trials"])
    (winner,) = [t for t in best["trials"] if t["params"] == best["best_params"]]
    assert winner["model_path"] == best["model_path"] and os.path.exists(best["model_path"])
    # each trial got its own learning rate
    assert sorted(t["params"]["--learning-rate"] for t in best["trials"]) == [0.0005, 0.05, 0.2]
