"""secret_environment_variables on real ssh hosts: the values go over the SSH channel into a
0600 file in the node's 0700 directory, which the launcher deletes before its ranks start."""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest

from tests.helpers import job_pids
from tests.integration.dagrun import xcom
from tests.secrets_check import check_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_secrets_reach_ssh_ranks_and_nowhere_else(airflow_db, ssh_hosts, monkeypatch, capfd):
    from airflow.dag_processing.dagbag import DagBag

    from tests.dags.secrets_dags import PLAIN_MARKER

    secrets = {"CONN_SECRET": f"conn-secret-{uuid.uuid4().hex}", "VAR_SECRET": f"var-secret-{uuid.uuid4().hex}"}
    monkeypatch.setenv("AIRFLOW_CONN_AFTF_SECRET_CONN", json.dumps({"conn_type": "generic", "password": secrets["CONN_SECRET"]}))
    monkeypatch.setenv("AIRFLOW_VAR_AFTF_SECRET_VAR", secrets["VAR_SECRET"])
    bag = DagBag(dag_folder=os.path.join(REPO, "tests", "dags", "secrets_dags.py"))
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("secrets_ssh")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-5000:]
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert [node["host"] for node in plan["nodes"]] == ssh_hosts.addresses[:2]
    job_dir = os.path.join(ssh_hosts.remote_root, plan["job_id"])
    try:
        # cleanup="never": every node file the job wrote on the hosts is still there to be checked.
        node_files = sorted(os.listdir(os.path.join(job_dir, "node-1", "try-1")))
        assert "node.json" in node_files and "node.log" in node_files and "secrets.json" not in node_files
        check_run(dag.dag_id, run.run_id, output, {"PLAIN_MARKER": PLAIN_MARKER}, secrets,
                  roots=[airflow_db, ssh_hosts.remote_root], db_path=os.path.join(airflow_db, "airflow.db"))
        for folder, dirs, files in os.walk(job_dir):
            for name in dirs + files:
                mode = os.stat(os.path.join(folder, name)).st_mode
                assert mode & 0o077 == 0, f"{os.path.join(folder, name)} is open to others ({mode & 0o777:o})"
    finally:
        shutil.rmtree(job_dir, ignore_errors=True)
    assert job_pids(plan["job_id"]) == []
