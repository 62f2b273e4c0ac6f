"""DockerBackend privileges against the session's real dockerd: the capabilities a node's
container really has (read by the node itself from /proc), by default and when configured."""

from __future__ import annotations

import uuid

import pytest

from airflow_tf.backends.docker import DockerBackend
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from tests.helpers import wait_until

# Bit numbers in CapEff (linux/capability.h).
CAP = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8,
       "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "SYS_PTRACE": 19, "MKNOD": 27, "AUDIT_WRITE": 29,
       "SETFCAP": 31}
SCRIPT = """\
for line in open("/proc/self/status"):
    if line.startswith("CapEff:"):
        print("CAPEFF", line.split()[1], flush=True)
"""


def capabilities(dockerd, tmp_path, **settings) -> set[str]:
    """The effective capabilities of a node's process in a container started with ``settings``."""
    (tmp_path / "train.py").write_text(SCRIPT)
    backend = DockerBackend(image=dockerd["image"], docker_urls=[dockerd["url"]], mounts=dockerd["mounts"],
                            python=dockerd["python"], **settings)
    job_id = f"caps-{uuid.uuid4().hex[:8]}"
    spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py")
    plan = plan_tensorflow_job(spec, job_id=job_id, hosts=backend.hosts(1))
    try:
        handle = backend.start(plan.launch(0), plan.source_directory)
        state = wait_until(lambda: (s := backend.poll(handle)) and not s["running"] and s, timeout=60,
                           what="the node to end")
        lines = backend.read_tail(handle, 20)
        assert state["exit_code"] == 0, lines
    finally:
        backend.stop_job(job_id, 1, grace_s=0)
    (mask,) = [int(line.split("CAPEFF ")[1], 16) for line in lines if "CAPEFF " in line]
    return {name for name, bit in CAP.items() if mask >> bit & 1}


@pytest.mark.integration
def test_default_capabilities_drop_what_no_strategy_needs(dockerd, tmp_path):
    caps = capabilities(dockerd, tmp_path)
    assert not caps & {"NET_RAW", "MKNOD", "SETFCAP", "SETPCAP"}
    # Kept: writing the job's outputs as root into a directory the Airflow user owns, and what the
    # sshd of a Horovod-MPI container needs (privilege separation, login records, port 22).
    assert {"CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETUID", "SETGID", "SYS_CHROOT", "AUDIT_WRITE",
            "NET_BIND_SERVICE"} <= caps


@pytest.mark.integration
def test_cap_drop_and_cap_add_are_applied(dockerd, tmp_path):
    assert capabilities(dockerd, tmp_path, cap_drop=["ALL"], cap_add=["SYS_PTRACE"]) == {"SYS_PTRACE"}
