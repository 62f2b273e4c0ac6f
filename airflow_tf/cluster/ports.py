"""Port assignment: every task of the cluster gets a host:port pair no other task has."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow_tf.cluster.errors import SpecError

DEFAULT_BASE_PORT = 23456


def assign_ports(
    task_hosts: Sequence[str],
    *,
    free_ports: Mapping[str, Sequence[int]] | None = None,
    base_port: int = DEFAULT_BASE_PORT,
) -> list[int]:
    """One port per task, in task order, unique per host.

    With ``free_ports`` (host -> ports the backend found free there) the ports are taken from
    that list in order; otherwise the k-th task on a host gets ``base_port + k``.
    """
    if not 1 <= base_port <= 65535:
        raise SpecError(f"base_port must be in 1..65535, got {base_port}")
    used_per_host: dict[str, int] = {}
    ports: list[int] = []
    for host in task_hosts:
        k = used_per_host.get(host, 0)
        used_per_host[host] = k + 1
        if free_ports is not None:
            available = list(free_ports.get(host, ()))
            if k >= len(available):
                raise SpecError(f"host {host!r} needs {k + 1} ports but only {len(available)} were found free")
            port = available[k]
        else:
            port = base_port + k
        if not 1 <= port <= 65535:
            raise SpecError(f"port {port} for host {host!r} is outside 1..65535; lower base_port")
        ports.append(port)
    pairs = list(zip(task_hosts, ports))
    if len(set(pairs)) != len(pairs):
        raise SpecError(f"free_ports lists a port twice for one host: {pairs}")
    return ports
