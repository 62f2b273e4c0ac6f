"""secret_environment_variables and environment_variables through a real dag.test() on
LocalBackend: the values reach every rank, and no XCom, rendered field, task log or readable
file holds them afterwards. (The SSH and Docker counterparts: tests/ssh, tests/docker.)"""

from __future__ import annotations

import json
import os
import uuid

import pytest

from airflow_tf.cluster.errors import SpecError
from tests.helpers import job_pids
from tests.secrets_check import check_run

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DAG_FILE = os.path.join(REPO, "tests", "dags", "secrets_dags.py")


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=DAG_FILE)
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


@pytest.fixture
def secret_values(monkeypatch):
    """A real Connection and Variable from Airflow's environment secrets backend."""
    values = {"CONN_SECRET": f"conn-secret-{uuid.uuid4().hex}", "VAR_SECRET": f"var-secret-{uuid.uuid4().hex}"}
    monkeypatch.setenv("AIRFLOW_CONN_AFTF_SECRET_CONN", json.dumps(
        {"conn_type": "generic", "host": "db.example", "login": "u", "password": values["CONN_SECRET"]}))
    monkeypatch.setenv("AIRFLOW_VAR_AFTF_SECRET_VAR", values["VAR_SECRET"])
    return values


def test_secrets_reach_local_ranks_and_nowhere_else(airflow_db, secret_values, capfd):
    from tests.dags.secrets_dags import PLAIN_MARKER

    dag = load_dag("secrets_local")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-5000:]
    from tests.integration.dagrun import xcom

    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert plan["environment_names"] == ["PLAIN_MARKER"] and plan["secret_names"] == ["CONN_SECRET", "VAR_SECRET"]
    job_dir = os.path.join(airflow_db, "airflow_tf_jobs", plan["job_id"])
    # The metadata DB folder (Airflow home: DB, logs, config) and the job directory.
    check_run(dag.dag_id, run.run_id, output, {"PLAIN_MARKER": PLAIN_MARKER}, secret_values,
              roots=[airflow_db], db_path=os.path.join(airflow_db, "airflow.db"))
    for node in ("node-0", "node-1"):
        assert not os.path.exists(os.path.join(job_dir, node, "try-1", "secrets.json"))  # read and deleted
        assert os.stat(os.path.join(job_dir, node)).st_mode & 0o077 == 0
        assert os.stat(os.path.join(job_dir, node, "try-1")).st_mode & 0o077 == 0
    assert job_pids(plan["job_id"]) == []


def test_a_missing_reference_fails_before_any_node_starts(airflow_db, monkeypatch, capfd):
    monkeypatch.delenv("AIRFLOW_CONN_AFTF_SECRET_CONN", raising=False)
    monkeypatch.setenv("AIRFLOW_VAR_AFTF_SECRET_VAR", "irrelevant-value")
    dag = load_dag("secrets_local")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "failed"
    assert ("secret_environment_variables['CONN_SECRET'] = 'conn:aftf_secret_conn': no Airflow Connection "
            "'aftf_secret_conn' could be read") in output
    from tests.integration.dagrun import task_states

    states = task_states(dag.dag_id, run.run_id)
    assert states[("train.plan", -1)] == "failed"
    assert not any(task == "train.launch" and state == "success" for (task, _), state in states.items())


@pytest.mark.parametrize("value, message", [
    ({"A": "vault:x"}, r"secret_environment_variables\['A'\] must be a reference: \"var:KEY\""),
    ({"A": "conn:c:nope"}, r"secret_environment_variables\['A'\] must be a reference"),
    ({"TF_CONFIG": "var:x"}, r"secret_environment_variables\['TF_CONFIG'\] is set by airflow-tf's plan"),
    ("var:x", r"secret_environment_variables must be a dict of name -> reference"),
])
def test_bad_references_fail_at_parse_time(tmp_path, value, message):
    from airflow.sdk import DAG

    from airflow_tf import TensorFlowTrainOperator

    (tmp_path / "train.py").write_text("")
    with DAG(dag_id="bad_secret", schedule=None), pytest.raises(SpecError, match=message):
        TensorFlowTrainOperator(task_id="t", source_directory=str(tmp_path), entry_script="train.py",
                                secret_environment_variables=value)


def test_a_variable_in_both_lists_is_refused(tmp_path):
    from airflow.sdk import DAG

    from airflow_tf import TensorFlowTrainOperator

    (tmp_path / "train.py").write_text("")
    with DAG(dag_id="both", schedule=None), pytest.raises(SpecError, match=r"\['A'\] are in both"):
        TensorFlowTrainOperator(task_id="t", source_directory=str(tmp_path), entry_script="train.py",
                                environment_variables={"A": "1"}, secret_environment_variables={"A": "var:x"})
