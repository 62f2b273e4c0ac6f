"""A Docker daemon on a remote "GPU host": dockerd in that host's network namespace, listening
on TCP with TLS (client certificates verified), as a user's GPU machine would expose it.

The certificates come from the openssl CLI: a throwaway CA, one server certificate per daemon
(its IP address as subjectAltName, so the client's host-name check is real) and one client
certificate. The test image and bind mounts are tests/docker/engine.py's; the image is loaded
over the daemon's private unix socket (never over the network, never pulled).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

from tests.docker.engine import IMAGE, IMAGE_REPO, IMAGE_TAG, EngineError, rootfs_tar

PORT = 2376


def _openssl(*args: str, cwd: str) -> None:
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {out.stderr.strip()}")


def make_ca(directory: str) -> dict[str, str]:
    """The CA and one client certificate: ``{"ca", "client_cert", "client_key"}`` paths."""
    os.makedirs(directory, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=atfd-ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=directory)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=airflow-worker", "-keyout", "key.pem",
             "-out", "client.csr", cwd=directory)
    with open(os.path.join(directory, "client.ext"), "w") as f:
        f.write("extendedKeyUsage = clientAuth\n")
    _openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "2", "-extfile", "client.ext", "-out", "cert.pem", cwd=directory)
    return {name: os.path.join(directory, file) for name, file in
            (("ca", "ca.pem"), ("client_cert", "cert.pem"), ("client_key", "key.pem"))}


def server_cert(ca_dir: str, name: str, address: str) -> tuple[str, str]:
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
             "-out", f"{name}.csr", cwd=ca_dir)
    with open(os.path.join(ca_dir, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName = IP:{address}\nextendedKeyUsage = serverAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
             "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=ca_dir)
    return os.path.join(ca_dir, f"{name}.pem"), os.path.join(ca_dir, f"{name}-key.pem")


def _tail(path: str, lines: int = 20) -> str:
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


class TLSDaemon:
    """dockerd on ``address:2376`` (TLS, client certs verified) inside ``enter`` (an argv prefix)."""

    def __init__(self, name: str, address: str, enter: list[str], run_dir: str, ca_dir: str):
        self.name, self.address, self.enter, self.run = name, address, enter, run_dir
        self.ca_dir = ca_dir
        self.sock = os.path.join(run_dir, "docker.sock")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{PORT}"

    def start(self, timeout: float = 60) -> "TLSDaemon":
        exe = shutil.which("dockerd")
        if exe is None:
            raise EngineError("dockerd not found: install Debian's docker.io (requirements/apt.txt)")
        import docker

        os.makedirs(self.run, exist_ok=True)
        cert, key = server_cert(self.ca_dir, self.name, self.address)
        log = open(os.path.join(self.run, "dockerd.log"), "wb")
        self.proc = subprocess.Popen(
            [*self.enter, exe, "-H", f"unix://{self.sock}", "-H", f"tcp://{self.address}:{PORT}", "--tlsverify",
             "--tlscacert", os.path.join(self.ca_dir, "ca.pem"), "--tlscert", cert, "--tlskey", key,
             "--data-root", f"{self.run}/data", "--exec-root", f"{self.run}/exec", "--pidfile", f"{self.run}/pid",
             "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=overlay2"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise EngineError(f"dockerd on {self.name} exited with {self.proc.returncode}: {_tail(log.name)}")
            if os.path.exists(self.sock):
                try:
                    client = docker.APIClient(base_url=f"unix://{self.sock}", version="auto", timeout=60)
                    break
                except docker.errors.DockerException:
                    pass
            if time.monotonic() > deadline:
                raise EngineError(f"dockerd on {self.name} did not answer within {timeout:.0f} s: {_tail(log.name)}")
            time.sleep(0.1)
        with contextlib.closing(client):
            client.import_image_from_data(rootfs_tar(), repository=IMAGE_REPO, tag=IMAGE_TAG)
        return self

    @property
    def image(self) -> str:
        return IMAGE

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        with open("/proc/self/mounts") as f:
            leftovers = [line.split()[1] for line in f if line.split()[1].startswith(self.run + "/")]
        for mount in sorted(leftovers, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.run, ignore_errors=True)
