"""Free ports on a remote Docker daemon's host, for a job's plan.

Containers use host networking, so a node's TF server or rendezvous binds a port of the daemon's
host. This machine cannot probe another host's ports, so a throwaway container on that daemon
does (host networking, the job's own image and Python): the kernel there hands out free ports,
and ports another job's container on the daemon has planned (its ``airflow_tf.ports`` label) are
never handed out again while that container exists, even before it binds them. The launcher's
bind check at start (``runtime.launcher``) catches what still races in between.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from airflow_tf.backends.docker_daemons import Daemon

if TYPE_CHECKING:
    from airflow_tf.backends.docker import DockerBackend

# Runs in the probe container with the image's Python: hold COUNT free ports open together (so
# they are distinct), skipping the reserved ones, and print them.
_PROBE = """
import json, socket, sys
count, reserved = int(sys.argv[1]), {int(p) for p in sys.argv[2:]}
held, ports = [], []
while len(ports) < count and len(held) < count + len(reserved) + 64:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("", 0))
    held.append(s)
    if s.getsockname()[1] not in reserved:
        ports.append(s.getsockname()[1])
print(json.dumps(ports))
"""
PROBE_TIMEOUT_S = 60


def reserved_ports(api) -> list[int]:
    """Ports planned by the containers on this daemon that may still bind them (not yet removed)."""
    from airflow_tf.backends.docker import LABEL_PORTS

    found = set()
    for info in api.containers(all=True, filters={"label": LABEL_PORTS}):
        if info.get("State") in ("exited", "dead"):
            continue
        found |= {int(p) for p in (info["Labels"].get(LABEL_PORTS) or "").split(",") if p.isdigit()}
    return sorted(found)


def probe_free_ports(backend: "DockerBackend", daemon: Daemon, count: int) -> list[int]:
    from airflow_tf.backends.docker import LABEL_PROBE

    if count <= 0:
        return []
    api = backend.client(daemon)
    host_config = api.create_host_config(network_mode="host", binds=list(backend.mounts or []),
                                         cap_drop=backend.cap_drop or None)
    container = api.create_container(
        backend.image, command=[backend.python, "-c", _PROBE, str(count), *map(str, reserved_ports(api))],
        user=backend.user, labels={LABEL_PROBE: "1"}, host_config=host_config, detach=True,
    )
    try:
        api.start(container["Id"])
        status = api.wait(container["Id"], timeout=PROBE_TIMEOUT_S).get("StatusCode")
        out = api.logs(container["Id"], stdout=True, stderr=True).decode(errors="replace").strip()
        if status != 0:
            raise RuntimeError(f"the port probe on Docker daemon {daemon.url} ({daemon.setting}) failed with {status}: "
                               f"{out[-500:]}")
        ports = json.loads(out.splitlines()[-1])
    finally:
        api.remove_container(container["Id"], force=True)
    if len(ports) < count:
        raise RuntimeError(f"Docker daemon {daemon.url}'s host has fewer than {count} free ports")
    return [int(p) for p in ports]
