"""A real 3-trial TensorFlow sweep through dag.test(): every trial trains, the best one is picked,
its model is published as an Asset event."""

import os

import pytest

from tests.integration.dagrun import xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration


def test_sweep_runs_three_trials_and_picks_the_best(airflow_db):
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_sweep.py"), "tf_sweep")
    run = dag.test()
    assert run.state == "success"
    best = xcom(dag.dag_id, run.run_id, "sweep.controller")
    assert len(best["trials"]) == 3 and all(t["state"] == "completed" for t in best["trials"])
    assert all(t["metric"] is not None and t["epochs_logged"] == 2 for t in best["trials"])
    assert best["best_metric"] == max(t["metric"] for t in best["trials"])
    (winner,) = [t for t in best["trials"] if t["params"] == best["best_params"]]
    assert winner["model_path"] == best["model_path"] and os.path.exists(best["model_path"])
    # each trial got its own learning rate (the grid, once each), in its own job
    assert sorted(t["params"]["--learning-rate"] for t in best["trials"]) == [0.0005, 0.05, 0.2]
    assert len({t["job_id"] for t in best["trials"]}) == 3
    assert best["picture"] and os.path.isfile(best["picture"])
    with create_session() as session:
        (event,) = session.scalars(
            select(AssetEvent).join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == "airflow-tf://models/sweep-best", AssetEvent.source_run_id == run.run_id)
        ).all()
    assert event.extra["model_path"] == best["model_path"] and event.extra["params"] == best["best_params"]
