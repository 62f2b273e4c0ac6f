"""Real ssh "hosts" for tests and benchmarks: network namespaces with their own addresses, each
running a throwaway sshd (PLATFORM.md, "Real SSH hosts for tests").

Host k is namespace ``af<pid>n<k>`` joined to this machine by a veth pair with a /30 from
10.231.0.0/16 (machine side .1, namespace side .2); with ip_forward=1 the namespaces reach each
other through the machine's routing. All namespaces share this machine's filesystem and pid
space, so the remote Python can be the project's venv and tests can check /proc directly.

Missing tools are an error, never a skip: CI must not pass without having tested.
Needs root (ip netns, sshd).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

SUBNET_PREFIX = "10.231"
TOOLS = {"sshd": "/usr/sbin/sshd", "ip": "ip", "ssh-keygen": "ssh-keygen", "tar": "tar", "setsid": "setsid"}

SSHD_CONFIG = """\
ListenAddress {address}
Port 22
HostKey {host_key}
PidFile {pid_file}
AuthorizedKeysFile {authorized_keys}
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
PrintMotd no
MaxStartups 50
ClientAliveInterval 5
ClientAliveCountMax 2
"""


def _run(*argv: str) -> str:
    out = subprocess.run(argv, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def missing_tools() -> list[str]:
    return [name for name, path in TOOLS.items() if shutil.which(path) is None]


def remove_stale_namespaces() -> None:
    """Namespaces an earlier, killed session left behind (``af<pid>n<k>`` of a pid that is gone)."""
    for line in _run("ip", "netns", "list").splitlines():
        match = re.fullmatch(r"af(\d+)n\d+", line.split()[0]) if line.strip() else None
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            for pid in _run("ip", "netns", "pids", match.group(0)).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", match.group(0)], capture_output=True)


class SSHHosts:
    """``count`` namespaces; sshd runs in the first ``with_sshd`` of them (the rest are "down")."""

    def __init__(self, workdir: str, count: int = 3, with_sshd: int = 2, conn_prefix: str = "aftf_ssh",
                 tag: str | None = None, subnet_prefix: str = SUBNET_PREFIX):
        self.workdir = workdir
        self.count = count
        self.with_sshd = with_sshd
        self.conn_prefix = conn_prefix
        # Another fixture (tests/distributed) passes its own tag and /16, so the two never collide.
        self.tag = tag or f"af{os.getpid() % 10_000_000}"
        self.subnet_prefix = subnet_prefix
        self.namespaces: list[str] = []
        self.links: list[str] = []
        self.sshds: dict[int, subprocess.Popen] = {}
        self.addresses: list[str] = []
        self.host_keys: list[str] = []
        self.client_key = os.path.join(workdir, "client_key")
        self._forward_was = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> "SSHHosts":
        missing = missing_tools()
        if missing:
            raise RuntimeError(f"real-sshd tests need {missing}: install openssh-server and iproute2 "
                               "(requirements/apt.txt; scripts/setup.sh does it)")
        if os.geteuid() != 0:
            raise RuntimeError("real-sshd tests need root (ip netns, sshd)")
        os.makedirs(self.workdir, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.client_key)
        shutil.copy(self.client_key + ".pub", os.path.join(self.workdir, "authorized_keys"))
        self._enable_forwarding()
        remove_stale_namespaces()
        block = self._free_block()
        try:
            for k in range(self.count):
                self._add_namespace(k, f"{self.subnet_prefix}.{block + k}")
            for k in range(self.with_sshd):
                self.start_sshd(k)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for k in list(self.sshds):
            self.stop_sshd(k)
        for ns in self.namespaces:
            # sshd's per-connection children run in their own sessions: whatever still lives in
            # the namespace goes too, or it would wait forever on a link that no longer exists.
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes its veth end along
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        self.namespaces, self.links = [], []
        if self._forward_was is not None and self._forward_was != "1":
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write(self._forward_was)

    def __enter__(self) -> "SSHHosts":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- network ------------------------------------------------------------------------------
    def _enable_forwarding(self) -> None:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            self._forward_was = f.read().strip()
        if self._forward_was != "1":
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write("1")

    def _free_block(self) -> int:
        """The first 10.231.b.0/24 .. b+count-1 with no route yet (another session may hold one)."""
        routes = _run("ip", "-4", "route", "show")
        for block in range(0, 256 - self.count, self.count):
            if not any(f"{self.subnet_prefix}.{block + k}." in routes for k in range(self.count)):
                return block
        raise RuntimeError(f"no free {self.subnet_prefix}.x.0/30 block for {self.count} namespaces")

    def _add_namespace(self, k: int, net: str) -> None:
        ns, outer, inner = f"{self.tag}n{k}", f"{self.tag}h{k}", f"{self.tag}v{k}"
        _run("ip", "netns", "add", ns)
        self.namespaces.append(ns)
        _run("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
        self.links.append(outer)
        _run("ip", "link", "set", inner, "netns", ns)
        _run("ip", "addr", "add", f"{net}.1/30", "dev", outer)
        _run("ip", "link", "set", outer, "up")
        _run("ip", "-n", ns, "addr", "add", f"{net}.2/30", "dev", inner)
        _run("ip", "-n", ns, "link", "set", inner, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "-n", ns, "route", "add", "default", "via", f"{net}.1")
        self.addresses.append(f"{net}.2")
        key = os.path.join(self.workdir, f"host_key_{k}")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
        with open(key + ".pub") as f:
            self.host_keys.append(" ".join(f.read().split()[:2]))  # "ssh-ed25519 AAAA..."

    # -- sshd ---------------------------------------------------------------------------------
    def start_sshd(self, k: int) -> None:
        config = os.path.join(self.workdir, f"sshd_config_{k}")
        with open(config, "w") as f:
            f.write(SSHD_CONFIG.format(
                address=self.addresses[k], host_key=os.path.join(self.workdir, f"host_key_{k}"),
                pid_file=os.path.join(self.workdir, f"sshd_{k}.pid"),
                authorized_keys=os.path.join(self.workdir, "authorized_keys"),
            ))
        log = os.path.join(self.workdir, f"sshd_{k}.log")
        self.sshds[k] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespaces[k], TOOLS["sshd"], "-D", "-f", config, "-E", log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.addresses[k], 22), timeout=1).close()
                return
            except OSError:
                if self.sshds[k].poll() is not None or time.monotonic() > deadline:
                    with open(log) as f:
                        raise RuntimeError(f"sshd in {self.namespaces[k]} did not come up: {f.read()[-2000:]}")
                time.sleep(0.05)

    def stop_sshd(self, k: int) -> None:
        proc = self.sshds.pop(k, None)
        if proc is None:
            return
        # Its session also holds the per-connection sshd children: stop the whole group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    # -- Airflow connections ------------------------------------------------------------------
    def conn_id(self, k: int) -> str:
        return f"{self.conn_prefix}_{k}"

    def connection(self, k: int, **extra) -> dict:
        """Connection JSON for host k: key login, and its host key pinned (so it IS checked)."""
        return {
            "conn_type": "ssh", "host": self.addresses[k], "port": 22, "login": "root",
            "extra": {"key_file": self.client_key, "host_key": self.host_keys[k], "look_for_keys": "false", **extra},
        }

    def connection_env(self) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{self.conn_id(k).upper()}": json.dumps(self.connection(k)) for k in range(self.count)}
