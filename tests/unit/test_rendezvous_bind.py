"""The Horovod Gloo rendezvous listens where the plan told the ranks to connect, not on every
interface: Horovod's own server (the node runtime's hvd_rendezvous), checked in /proc/net/tcp."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from airflow_tf.runtime.hvd_rendezvous import bind_address

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def listeners(port: int) -> list[str]:
    """Local addresses (dotted IPv4) in LISTEN state on ``port``."""
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bind_address_rules():
    assert bind_address("127.0.0.1")[0] == "127.0.0.1"
    assert bind_address("localhost")[0] == "127.0.0.1"
    host, why = bind_address("203.0.113.7")  # TEST-NET-3: never an address of this machine
    assert host == "" and "not an address of this host" in why
    host, why = bind_address("no-such-host.invalid")
    assert host == "" and "does not resolve" in why


def test_rendezvous_server_listens_on_the_planned_address_only():
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "airflow_tf.runtime.hvd_rendezvous", "--address", "127.0.0.1", "--port", str(port),
         "--hosts", "node0-127.0.0.1:1", "--start-timeout", "30"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"serving 1 rank(s) on 127.0.0.1:{port} (address 127.0.0.1)" in line, line
        assert listeners(port) == ["127.0.0.1"]  # before: 0.0.0.0, every interface of the host
    finally:
        proc.kill()
        proc.wait()
