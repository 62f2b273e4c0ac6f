"""Which network interface reaches a given address: the one Gloo must use.

Without HOROVOD_GLOO_IFACE, Gloo advertises whatever the host name resolves to — often
127.0.0.1 — and peers on other hosts get "connection refused": the classic Horovod hang/crash.
``horovodrun`` avoids it by probing interfaces from its driver; each node here asks its own
routing table instead: the interface whose address the kernel would use towards the rendezvous
(node 0) is one every peer can reach it on. Linux, standard library only.
"""

from __future__ import annotations

import fcntl
import socket
import struct

SIOCGIFADDR = 0x8915


def local_address_towards(address: str) -> str:
    """The source address the kernel picks for packets to ``address`` (UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((address, 9))
        return sock.getsockname()[0]


def interface_address(name: str) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
        except OSError:
            return None  # no IPv4 address on it
    return socket.inet_ntoa(packed[20:24])


def interface_towards(address: str) -> str | None:
    """The name of the interface carrying traffic to ``address`` (e.g. 'lo', 'eth0'), or None."""
    source = local_address_towards(socket.gethostbyname(address))
    for _, name in socket.if_nameindex():
        if interface_address(name) == source:
            return name
    return None
