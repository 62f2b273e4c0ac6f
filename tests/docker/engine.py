"""A private Docker engine (Debian's dockerd) and the tiny test image, for tests and benchmarks.

Started exactly as shared/PLATFORM.md shows: its own socket, data and exec roots under a fresh
temporary directory, no iptables, no bridge (nodes use host networking). The image holds only
the merged-/usr symlinks and /etc/passwd; the host's /usr, this Python's installation and the
project's venv are bind-mounted read-only (``python_mounts``), so the project's own TensorFlow
runs inside. airflow_tf itself is NOT mounted: the backend must ship its node runtime.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

IMAGE_REPO, IMAGE_TAG = "localhost/airflow-tf-test", "latest"
IMAGE = f"{IMAGE_REPO}:{IMAGE_TAG}"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


class EngineError(RuntimeError):
    """dockerd is missing or did not come up (tests turn this into a failure, never a skip)."""


def rootfs_tar() -> bytes:
    """A minimal root file system: merged-/usr symlinks, /etc/passwd, /tmp. Everything else is mounted."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        def add(name, kind=tarfile.DIRTYPE, mode=0o755, target="", data=b""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname, info.mtime = kind, mode, target, int(time.time())
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for name in ("usr", "etc", "root", "proc", "sys", "dev"):
            add(name)
        add("tmp", mode=0o1777)
        for name in ("bin", "lib", "lib64", "sbin"):
            add(name, tarfile.SYMTYPE, 0o777, f"usr/{name}")
        add("etc/passwd", tarfile.REGTYPE, 0o644, data=PASSWD)
        add("etc/group", tarfile.REGTYPE, 0o644, data=GROUP)
    return buf.getvalue()


def python_mounts() -> list[str]:
    """Read-only binds that make this interpreter and its venv (with TensorFlow) run in the image."""
    paths = ["/usr"]
    for path in (os.path.realpath(sys.base_prefix), sys.prefix):
        if not any(path == p or path.startswith(p + "/") for p in paths):
            paths.append(path)
    return [f"{path}:{path}:ro" for path in paths]


def _log_tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


@contextlib.contextmanager
def private_dockerd(ready_timeout_s: float = 60.0):
    """Start dockerd, import the test image; yield ``{"url", "image", "python", "mounts", "client", "env",
    "remote_url"}``.

    ``env`` is what tests/dags/tf_docker.py reads. Everything is stopped and deleted on exit.
    """
    exe = shutil.which("dockerd")
    if exe is None:
        raise EngineError("dockerd not found: install Debian's docker.io (requirements/apt.txt; scripts/setup.sh does it)")
    if os.geteuid() != 0:
        raise EngineError("the Docker tests start their own dockerd, which needs root")
    import docker

    run = tempfile.mkdtemp(prefix="airflow-tf-dockerd-")
    sock = os.path.join(run, "docker.sock")
    # Also on TCP at 127.0.0.2: DockerBackend treats that as a daemon on another machine (it is
    # not in LOCAL_HOSTS), so the remote-daemon paths (port probe, volumes) run against this
    # engine, while staying on loopback (nothing outside this machine can reach it).
    with socket.socket() as probe:
        probe.bind(("127.0.0.2", 0))
        tcp_port = probe.getsockname()[1]
    log_path = os.path.join(run, "dockerd.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [exe, "-H", f"unix://{sock}", "-H", f"tcp://127.0.0.2:{tcp_port}", "--data-root", f"{run}/data", "--exec-root", f"{run}/exec",
             "--pidfile", f"{run}/dockerd.pid", "--iptables=false", "--ip6tables=false", "--bridge=none",
             "--storage-driver=overlay2"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    url = f"unix://{sock}"
    client = None
    try:
        deadline = time.monotonic() + ready_timeout_s
        while client is None:
            if proc.poll() is not None:
                raise EngineError(f"dockerd exited with {proc.returncode}:\n{_log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise EngineError(f"dockerd did not answer on {sock} within {ready_timeout_s:.0f} s:\n{_log_tail(log_path)}")
            if os.path.exists(sock):
                try:
                    client = docker.APIClient(base_url=url, version="auto", timeout=60)
                except docker.errors.DockerException:
                    client = None
            time.sleep(0.1)
        client.import_image_from_data(rootfs_tar(), repository=IMAGE_REPO, tag=IMAGE_TAG)
        python = os.path.join(sys.prefix, "bin", "python")
        mounts = python_mounts()
        env = {"AIRFLOW_TF_TEST_DOCKER_URL": url, "AIRFLOW_TF_TEST_DOCKER_IMAGE": IMAGE,
               "AIRFLOW_TF_TEST_DOCKER_PYTHON": python, "AIRFLOW_TF_TEST_DOCKER_MOUNTS": json.dumps(mounts)}
        yield {"url": url, "image": IMAGE, "python": python, "mounts": mounts, "client": client, "env": env,
               "remote_url": f"tcp://127.0.0.2:{tcp_port}"}
    finally:
        if client is not None:
            client.close()
        _stop(proc)
        # dockerd can leave its network namespace mounted under exec/; unmount whatever is left
        # before deleting, so the removal neither fails nor follows a mount.
        with open("/proc/self/mounts") as f:
            leftovers = [line.split()[1] for line in f if line.split()[1].startswith(run + "/")]
        for mount in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(run, ignore_errors=True)


def _stop(proc: subprocess.Popen) -> None:
    """TERM dockerd (it stops its containers and its containerd); KILL its group if it hangs."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # containerd and shims it started, if any remain
    proc.wait()
