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
