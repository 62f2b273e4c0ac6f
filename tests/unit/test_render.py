"""`airflow-tf render`: the per-node plan of the example DAGs, printed without launching."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDENS = os.path.join(REPO, "tests", "goldens")
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"

CASES = {
    "render_mwms.txt": ("dags/tf_mwms_example.py", "train", "{}"),
    "render_mwms_conf3.txt": ("dags/tf_mwms_example.py", "train", '{"node_count": 3, "epochs": 7}'),
    "render_ps.txt": ("dags/tf_ps_example.py", "ps_tf_keras_fit", "{}"),
    "render_horovod_gloo.txt": ("dags/tf_horovod_example.py", "gloo_tf2_loop", "{}"),
    "render_horovod_mpi.txt": ("dags/tf_horovod_example.py", "mpi_keras_fit", "{}"),
}


def render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow_tf.render", "render", *args], cwd=REPO,
                          capture_output=True, text=True)


@pytest.mark.parametrize("golden", sorted(CASES))
def test_render_matches_golden(golden):
    dag_file, group, conf = CASES[golden]
    out = render(dag_file, group, "--conf", conf)
    assert out.returncode == 0, out.stderr
    path = os.path.join(GOLDENS, golden)
    if UPDATE:
        with open(path, "w") as f:
            f.write(out.stdout)
    with open(path) as f:
        assert out.stdout == f.read()


def test_render_launches_nothing_and_names_unknown_groups():
    out = render("dags/tf_mwms_example.py", "trian")
    assert out.returncode != 0
    assert "no training group 'trian'" in out.stderr and "['train']" in out.stderr


def test_render_json_is_the_plan():
    import json

    out = render("dags/tf_ps_example.py", "ps_keras3_loop", "--json")
    plan = json.loads(out.stdout)
    assert plan["strategy"] == "parameter_server" and plan["cluster"]["world_size"] == 4
    assert {r["role"] for n in plan["nodes"] for r in n["processes"]} == {"chief", "worker", "ps"}


def test_render_offline_retraining_pipeline_with_run_context_templates():
    # Its script_params use {{ ti.xcom_pull(...) }} and {{ params }}: offline, the stub context renders them.
    out = render("dags/tf_retraining_pipeline.py", "train", "--offline", "--conf", '{"epochs": 6}')
    assert out.returncode == 0, out.stderr
    assert "--epochs 6 --data '<xcom prepare_data['\"'\"'train'\"'\"']>'" in out.stdout
    assert out.stdout.startswith("job tf_retraining_pipeline.render.train-")
    assert out.stderr == ""  # no Airflow info lines


@pytest.mark.parametrize("dag_file,dag_id", [("tests/dags/tf_docker.py", "tf_docker_ps"),
                                              ("tests/dags/tf_ssh.py", "tf_ssh_mwms")])
def test_render_offline_docker_and_ssh_dags_need_no_daemon_or_connection(dag_file, dag_id):
    # No dockerd runs and no ssh connection exists here: offline planning contacts neither.
    out = render(dag_file, "train", "--offline", "--dag-id", dag_id, "--json")
    assert out.returncode == 0, out.stderr
    import json

    plan = json.loads(out.stdout)
    assert plan["job_id"].startswith(f"{dag_id}.render.train-")
    assert [n["host"] for n in plan["nodes"]] == [f"node-{i}.offline" for i in range(len(plan["nodes"]))]


def test_render_errors_are_one_line():
    several = render("tests/dags/tf_docker.py", "train", "--offline")
    assert several.returncode == 2 and "choose one with --dag-id" in several.stderr
    bad_conf = render("dags/tf_mwms_example.py", "train", "--offline", "--conf", '{"node_count": 0}')
    assert bad_conf.returncode == 2 and bad_conf.stdout == ""
    # The Param's own message (minimum=1 in the DAG's Params), not the planner's.
    assert bad_conf.stderr == ("airflow-tf render: --conf refused by the DAG's Params: Invalid input for param "
                               "node_count: 0 is less than the minimum of 1\n")
    missing = render("dags/no_such_dag.py", "train")
    assert (missing.returncode, missing.stderr) == (2, "airflow-tf render: no such DAG file: dags/no_such_dag.py\n")
    for out in (several, bad_conf, missing):
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
