"""secret_environment_variables on a real dockerd: the values reach the ranks through the
archive copied into the container (deleted by the launcher at start), never through the
container's configuration that ``docker inspect`` shows."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

from airflow_tf.backends.docker import DockerBackend
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from tests.secrets_check import digest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(REPO, "tests", "dags", "secret_job")


def test_secrets_reach_container_ranks_and_are_not_in_docker_inspect(dockerd, tmp_path):
    backend = DockerBackend(image=dockerd["image"], docker_urls=[dockerd["url"]], mounts=dockerd["mounts"],
                            python=dockerd["python"], output_dir=str(tmp_path / "out"))
    plain = f"plain-{uuid.uuid4().hex}"
    secrets = {"CONN_SECRET": f"conn-secret-{uuid.uuid4().hex}", "VAR_SECRET": f"var-secret-{uuid.uuid4().hex}"}
    spec = TrainingSpec(source_directory=SOURCE, entry_script="train.py", environment_variables={"PLAIN_MARKER": plain},
                        secret_environment_variables={"CONN_SECRET": "conn:x", "VAR_SECRET": "var:y"})
    job_id = f"dk-secrets-{uuid.uuid4().hex[:8]}"
    plan = plan_tensorflow_job(spec, job_id=job_id, hosts=backend.hosts(1))
    client = dockerd["client"]
    handle = backend.start(plan.launch(0, {"PLAIN_MARKER": plain}), SOURCE, secrets=secrets)
    try:
        deadline = time.monotonic() + 60
        while backend.poll(handle)["running"]:
            assert time.monotonic() < deadline, "the node did not end"
            time.sleep(0.2)
        log = backend.read_log(handle, 0)[0]
        assert backend.poll(handle)["exit_code"] == 0, log
        for name, value in {"PLAIN_MARKER": plain, **secrets}.items():
            assert f"rank 0 {name} sha256 {digest(value)}" in log, log
            assert value not in log
        inspected = json.dumps(client.inspect_container(handle["container_id"]))
        for value in (plain, *secrets.values()):
            assert value not in inspected  # not in Config.Env, Cmd, Labels, Mounts...
        assert backend.read_file(handle, "secrets.json") is None  # the launcher deleted it
        assert json.loads(backend.read_file(handle, "node.json"))["environment"] == {"PLAIN_MARKER": plain}
    finally:
        backend.stop_job(job_id, 1, grace_s=1)
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
    assert client.containers(all=True, filters={"label": f"airflow_tf.job_id={job_id}"}) == []
