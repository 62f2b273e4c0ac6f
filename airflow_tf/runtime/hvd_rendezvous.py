"""Node 0 of a Gloo Horovod job: host Horovod's own rendezvous server on the planned port.

    python -m airflow_tf.runtime.hvd_rendezvous --address A --port P --hosts node0-h:2,node1-h:2 --start-timeout S

This is what ``horovodrun --gloo`` does inside its driver, minus the ssh fan-out: each node
starts its own ranks. We reuse Horovod's server and handler; only the port is ours (Horovod's
``RendezvousServer.start`` picks a random one, but every node's ranks were told this one). It
also enforces the start timeout: ranks that have not joined by then are named, and the job
fails instead of waiting on Gloo's own timeout with no hint of who is missing.

It listens only where the plan told the ranks to connect (``--address``: node 0's address), not
on every interface of the host; see ``bind_address`` for the cases it cannot.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import socketserver
import sys
import threading
import time


def _is_local(address: str) -> bool:
    """Whether this host has ``address`` (binding to it would work)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def bind_address(address: str) -> tuple[str, str]:
    """Where the rendezvous listens, and why (for the node log): ``address``, what every rank
    connects to (``HOROVOD_GLOO_RENDEZVOUS_ADDR``), when it is one of this host's addresses.
    Otherwise every interface, and the log says so: the address is not local (NAT, a tunnel),
    or it is a host name that resolves to loopback here only (Debian's ``127.0.1.1`` for the
    host's own name) while the other nodes reach it on a real interface.
    """
    try:
        resolved = socket.gethostbyname(address)
    except OSError:
        return "", f"{address!r} does not resolve here: listening on all interfaces"
    try:
        literal = ipaddress.ip_address(address)
    except ValueError:
        literal = None
    if ipaddress.ip_address(resolved).is_loopback and (literal is None or not literal.is_loopback) \
            and address != "localhost":
        return "", f"{address!r} resolves to loopback here but not for the other nodes: listening on all interfaces"
    if not _is_local(resolved):
        return "", f"{address!r} is not an address of this host (NAT?): listening on all interfaces"
    return resolved, f"address {address}"


def parse_hosts(text: str) -> list[tuple[str, int]]:
    hosts = []
    for item in text.split(","):
        name, _, slots = item.rpartition(":")
        hosts.append((name, int(slots)))
    return hosts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_tf.runtime.hvd_rendezvous")
    parser.add_argument("--address", help="where the ranks connect (default: listen on all interfaces)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hosts", required=True, help="hostname:slots,... in rank order")
    parser.add_argument("--start-timeout", type=float, default=120)
    args = parser.parse_args(argv)

    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts as hvd_parse_hosts
    from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer

    hosts = parse_hosts(args.hosts)
    size = sum(slots for _, slots in hosts)
    plan = get_host_assignments(hvd_parse_hosts(args.hosts), size)
    joined: set[int] = set()
    lock = threading.Lock()

    class JoinTrackingHandler(RendezvousHandler):
        # Gloo's rendezvous: every rank PUTs "rank_<r>" (its address) into the global scope.
        def _put_value(self, scope, key, value):
            if scope == "global" and key.startswith("rank_") and key[5:].isdigit():
                with lock:
                    joined.add(int(key[5:]))
            super()._put_value(scope, key, value)

    class NoLookupServer(RendezvousHTTPServer):
        def server_bind(self):
            # HTTPServer.server_bind reverse-resolves the address it binds (socket.getfqdn): on a
            # host whose DNS is slow or unreachable that blocks for seconds, and the ranks give
            # up on a rendezvous that is not listening yet. The name is only used in logs.
            socketserver.TCPServer.server_bind(self)
            self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    host, why = bind_address(args.address) if args.address else ("", "no --address")
    server = NoLookupServer((host, args.port), JoinTrackingHandler, 0)
    server.init(plan)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"rendezvous: serving {size} rank(s) on {host or '*'}:{args.port} ({why})", flush=True)

    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        with lock:
            if len(joined) >= size:
                break
        time.sleep(0.2)
    else:
        with lock:
            missing = [slot for slot in plan if slot.rank not in joined]
        by_node: dict[str, list[int]] = {}
        for slot in missing:
            by_node.setdefault(slot.hostname, []).append(slot.rank)
        names = "; ".join(f"{host}: rank(s) {ranks}" for host, ranks in by_node.items())
        print(f"rendezvous: start timeout after {args.start_timeout:g}s: never joined: {names}", flush=True)
        return 3
    print("rendezvous: all ranks joined", flush=True)
    threading.Event().wait()  # serve until the node runtime stops us
    return 0


if __name__ == "__main__":
    sys.exit(main())
