"""The "hosts" of the distributed deployment: network namespaces (tests/ssh/hosts.py's SSHHosts,
with this package's own tag and 10.250.0.0/16), each Airflow host also with its own host name
(UTS namespace) and its own disk (a private tmpfs in its own mount namespace, at the same path
on every host, like ``/data`` on real machines).

A host is a *keeper* process (``sleep infinity``) holding those namespaces; everything of the
host runs by ``nsenter`` into the keeper. Killing every process of the namespace is "the host
died": its disk goes with it. The namespaces share this machine's pid space (tests can check
/proc directly) and everything outside the private disk (the venv, the repo, the shared path).

Names: namespaces ``atfd<pid>n<k>``, veths ``atfd<pid>h<k>``/``v<k>``; addresses 10.250.b.2.
Missing tools fail the session (never a skip). Needs root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

from tests.ssh.hosts import SSHHosts

SUBNET_PREFIX = "10.250"
TAG_PREFIX = "atfd"
TOOLS = ("nsenter", "unshare", "ip", "mount", "openssl", "hostname")


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def remove_stale() -> None:
    """Namespaces (and their /etc/netns files) of an earlier session whose pid is gone."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{TAG_PREFIX}(\d+)n\d+", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)


class Hosts(SSHHosts):
    """``names`` namespaces; the first ``airflow_hosts`` get a keeper (host name + private disk)."""

    def __init__(self, workdir: str, names: list[str], airflow_hosts: int, disk: str):
        super().__init__(workdir, count=len(names), with_sshd=0, conn_prefix="atfd_ssh",
                         tag=f"{TAG_PREFIX}{os.getpid() % 10_000_000}", subnet_prefix=SUBNET_PREFIX)
        self.names = names
        self.airflow_hosts = airflow_hosts
        self.disk = disk  # the mount point of every host's private disk
        self.keepers: dict[str, subprocess.Popen] = {}

    def start(self) -> "Hosts":
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"the distributed deployment needs {missing} (util-linux, iproute2, openssl)")
        remove_stale()
        super().start()
        try:
            self._write_hosts_files()
            os.makedirs(self.disk, exist_ok=True)
            for k in range(self.airflow_hosts):
                self._start_keeper(k)
        except BaseException:
            self.close()
            raise
        return self

    def address(self, name: str) -> str:
        return self.addresses[self.names.index(name)]

    def namespace(self, name: str) -> str:
        return self.namespaces[self.names.index(name)]

    def _write_hosts_files(self) -> None:
        """``ip netns exec`` binds /etc/netns/<ns>/hosts over /etc/hosts: every host resolves the
        others by name (the api-server fetches task logs from ``http://<ti.hostname>:8793``)."""
        lines = ["127.0.0.1 localhost"] + [f"{address} {name}" for name, address in zip(self.names, self.addresses)]
        for ns in self.namespaces:
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as f:
                f.write("\n".join(lines) + "\n")

    def _start_keeper(self, k: int) -> None:
        name = self.names[k]
        script = f"mount -t tmpfs -o size=4g,mode=0755 atfd-disk {self.disk} && hostname {name} && exec sleep infinity"
        keeper = subprocess.Popen(
            ["ip", "netns", "exec", self.namespaces[k], "unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
        )
        self.keepers[name] = keeper
        deadline = time.monotonic() + 10
        while not self._keeper_ready(keeper):
            if keeper.poll() is not None or time.monotonic() > deadline:
                why = keeper.stderr.read().decode() if keeper.stderr else ""
                raise RuntimeError(f"host {name} did not start: {why}")
            time.sleep(0.05)

    @staticmethod
    def _keeper_ready(keeper: subprocess.Popen) -> bool:
        try:
            with open(f"/proc/{keeper.pid}/cmdline", "rb") as f:
                return f.read().startswith(b"sleep")
        except OSError:
            return False

    def enter(self, name: str) -> list[str]:
        """The argv prefix that runs a command on host ``name`` (its network; for Airflow hosts
        also its host name and disk)."""
        if name in self.keepers:
            return ["nsenter", "-t", str(self.keepers[name].pid), "-n", "-m", "-u", "--"]
        # nsenter, not `ip netns exec`: that remounts /sys, and dockerd needs the cgroup mounts.
        return ["nsenter", f"--net=/run/netns/{self.namespace(name)}", "--"]

    def disk_path(self, name: str, path: str) -> str:
        """``path`` (on the private disk) as seen from this machine: through the keeper's root."""
        return f"/proc/{self.keepers[name].pid}/root{path}"

    def kill_host(self, name: str) -> list[int]:
        """The host dies: SIGKILL every process in its network namespace (its disk goes too)."""
        pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", self.namespace(name)], capture_output=True,
                                               text=True).stdout.split()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.keepers.pop(name, None)
        return pids

    def close(self) -> None:
        namespaces = list(self.namespaces)
        super().close()  # kills whatever lives in each namespace (keepers included) and deletes it
        for keeper in self.keepers.values():
            keeper.wait()
        self.keepers = {}
        for ns in namespaces:
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
