"""Test DAGs for the watch-side faults (tests/integration/test_watch_faults.py,
tests/ssh/test_ssh_faults.py, tests/docker/test_docker_faults.py, tests/e2e/test_triggerer_restart.py).

Every job runs watch_faults/train.py: numbered lines and metrics records, written the awkward
ways real scripts write them. The SSH and Docker settings come from the environment their
fixtures set (tests/ssh/conftest.py, tests/docker/conftest.py); the defaults only keep this file
parseable without them.
"""

import json
import os

from airflow.sdk import DAG

from airflow_tf import DockerBackend, SSHBackend, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "watch_faults")
SSH_ROOT = os.environ.get("AIRFLOW_TF_TEST_SSH_ROOT", "/tmp/airflow-tf-ssh-jobs")
SSH_CONN = os.environ.get("AIRFLOW_TF_TEST_SSH_CONNS", "aftf_ssh_0").split(",")[0]
# The SSH tests end a rank by creating this file (a path on the hosts, which share this filesystem).
FLAP_DONE = os.path.join(SSH_ROOT, "watch-flap.done")


def train(dag_id: str, script_params: dict, node_count: int = 1, **options) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        TensorFlowTrainOperator(task_id="train", source_directory=SOURCE, entry_script="train.py",
                                script_params=script_params, node_count=node_count, poll_interval=0.3, **options)
    return dag


def ssh_backend() -> SSHBackend:
    # connect_attempts=1 and a 3-s timeout: an unreachable host costs a poll ~3 s, not the defaults' ~40 s.
    return SSHBackend(ssh_conn_ids=[SSH_CONN], python=os.environ.get("AIRFLOW_TF_TEST_SSH_PYTHON", "python3"),
                      remote_root=SSH_ROOT, connect_attempts=1, connect_timeout=3)


def docker_backend() -> DockerBackend:
    return DockerBackend(
        image=os.environ.get("AIRFLOW_TF_TEST_DOCKER_IMAGE", "localhost/airflow-tf-test:latest"),
        docker_urls=[os.environ.get("AIRFLOW_TF_TEST_DOCKER_URL", "unix:///var/run/docker.sock")],
        mounts=json.loads(os.environ.get("AIRFLOW_TF_TEST_DOCKER_MOUNTS", "[]")),
        python=os.environ.get("AIRFLOW_TF_TEST_DOCKER_PYTHON", "python3"),
        allow_privileged_mounts=True,  # the test image runs the host's /usr and venv, mounted read-only
    )


# Each record written in two pieces 1.2 s apart (the trigger polls every 0.3 s in between), and one
# line of garbage: two nodes, three epochs each.
tf_watch_two_piece = train("tf_watch_two_piece", {"--lines": 12, "--interval": 0.1, "--epochs": 3,
                                                  "--split-pause": 1.2, "--garbage": None}, node_count=2)
# The host's link goes down for a few seconds while the rank prints (the test ends it via FLAP_DONE).
tf_watch_ssh_flap = train("tf_watch_ssh_flap", {"--lines": 10, "--interval": 0.1, "--epochs": 2,
                                                "--until-file": FLAP_DONE}, backend=ssh_backend())
# The same host, down for longer than a 3-s error budget; the rank would run until stopped.
tf_watch_ssh_outage = train("tf_watch_ssh_outage", {"--lines": 5, "--interval": 0.1, "--epochs": 1,
                                                    "--until-file": os.path.join(SSH_ROOT, "never")},
                            backend=ssh_backend(), error_budget=3)
# A metrics file past the 16 MiB that read_file refuses: 17 MiB of per-step records, then 2 epochs.
tf_watch_docker_big = train("tf_watch_docker_big", {"--big-metrics-mb": 17, "--lines": 6, "--epochs": 2},
                            backend=docker_backend())
# Two nodes printing 70 numbered lines each over ~25 s: the triggerer is restarted in the middle.
tf_watch_restart = train("tf_watch_restart", {"--lines": 70, "--interval": 0.35, "--epochs": 7}, node_count=2)
