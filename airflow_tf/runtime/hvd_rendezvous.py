"""Node 0 of a Gloo Horovod job: host Horovod's own rendezvous server on the planned port.

    python -m airflow_tf.runtime.hvd_rendezvous --port P --hosts node0-h:2,node1-h:2 --start-timeout S

This is what ``horovodrun --gloo`` does inside its driver, minus the ssh fan-out: each node
starts its own ranks. We reuse Horovod's server and handler; only the port is ours (Horovod's
``RendezvousServer.start`` picks a random one, but every node's ranks were told this one). It
also enforces the start timeout: ranks that have not joined by then are named, and the job
fails instead of waiting on Gloo's own timeout with no hint of who is missing.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time


def parse_hosts(text: str) -> list[tuple[str, int]]:
    hosts = []
    for item in text.split(","):
        name, _, slots = item.rpartition(":")
        hosts.append((name, int(slots)))
    return hosts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_tf.runtime.hvd_rendezvous")
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

    server = RendezvousHTTPServer(("", args.port), JoinTrackingHandler, 0)
    server.init(plan)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"rendezvous: serving {size} rank(s) on port {args.port}", flush=True)

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
