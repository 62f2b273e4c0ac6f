"""The seed's first estimator example, unchanged: a single node with ``conda_packages``, installed
for real by py-rattler from a local channel the test builds (tests/conda_channel.py).

Its own file, run before the Horovod DAG tests: after those ran in the same pytest process, the
py-rattler child of a later node aborted (SIGABRT) during its install, here only (in Airflow every
task is a fresh process). Not yet explained; see the session-3 closing note.
"""

import os

import pytest

from tests.conda_channel import seed_channel
from tests.helpers import process_env
from tests.integration.dagrun import xcom
from tests.integration.test_migration_dags import run_dag, why

pytestmark = pytest.mark.integration


def test_seed_single_node_with_conda_packages(airflow_db, capfd, tmp_path, monkeypatch):
    channel = seed_channel(tmp_path / "channel")
    monkeypatch.setenv("AIRFLOW_TF_TEST_CONDA_CHANNEL", channel)
    monkeypatch.setenv("AIRFLOW_TF_PACKAGE_CACHE", str(tmp_path / "cache"))
    dag, run, output, results = run_dag("seed_single_node", capfd)

    assert run.state == "success", why(output)
    assert f"conda_packages: installing ['scikit-learn'] from ['{channel}'] with py-rattler" in output
    # The script imported the channel's package from the job's cached environment (not the venv's).
    env_dir = next(p for p in os.listdir(tmp_path / "cache") if p.startswith("conda-") and not p.endswith(".lock"))
    assert f"scikit-learn 1.0.0.airflowtf from {tmp_path / 'cache' / env_dir}/lib/" in output
    # Autolog: the script passes no callback, yet per-epoch progress and history exist.
    assert "node 0 rank 0: epoch 1/2 accuracy=" in output and "node 0 rank 0: epoch 2/2 accuracy=" in output
    assert [h["epoch"] for h in results["history"]] == [1, 2]
    assert os.listdir(results["tensorboard_dir"])
    assert "TF_USE_LEGACY_KERAS" not in process_env(xcom(dag.dag_id, run.run_id, "train.plan", key="plan"), 0)
