"""pip_packages: installed once per package set into a cached environment, then reused."""

import os

import pytest

from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration


def test_second_job_reuses_the_cached_environment(airflow_db, capfd, tmp_path, monkeypatch):
    monkeypatch.setenv("AIRFLOW_TF_PACKAGE_CACHE", str(tmp_path / "cache"))
    dag = load_dag(os.path.join(REPO, "tests", "dags", "tf_pip_packages.py"), "tf_pip_packages")

    first = dag.test()
    out1 = capfd.readouterr().out
    second = dag.test()
    out2 = capfd.readouterr().out

    assert first.state == second.state == "success"
    # Both nodes of the first job share one install (the lock); the second job installs nothing.
    assert out1.count("pip_packages: installing ['pyjokes==0.8.3']") == 1
    assert out1.count("pip_packages: using cached environment") == 1
    assert "pip_packages: installing" not in out2
    assert out2.count("pip_packages: using cached environment") == 2
    for rank in (0, 1):
        assert f"[node {rank} rank {rank}] pyjokes 0.8.3 from {tmp_path / 'cache'}" in out2
    assert not [p for p in os.listdir(tmp_path / "cache") if p.endswith(".building")]
