"""Which GPUs a node's container gets. A pure function over the node plan's ``gpus`` (how many
it needs) and ``node_count`` — never the ranks' environment.

Docker renumbers the devices it gives a container from 0, so a node's block of the host's GPUs
is what the plan's per-process GPU numbers (``ProcessPlan.gpus``: the local rank) refer to inside.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import NodePlan


def gpu_devices(node: NodePlan, daemon_count: int, gpus_per_host: int | None, daemon: str) -> list[str] | None:
    """The GPUs of its host a GPU node's container gets: device ids, or None for all of them.

    Nodes sharing a daemon (node i runs on daemon i % daemon_count) split its ``gpus_per_host``
    GPUs into equal consecutive blocks, in node order.
    """
    index = node.node_index
    sharing = len(range(index % daemon_count, node.node_count, daemon_count))
    if gpus_per_host is None:
        if sharing > 1:
            raise SpecError(
                f"use_gpu: node {index} shares the Docker daemon {daemon} with other nodes of the job; set "
                "gpus_per_host so DockerBackend can split that host's GPUs between them (or give each node a daemon)"
            )
        return None
    share = gpus_per_host // sharing
    if share < node.gpus:
        raise SpecError(
            f"gpus_per_host={gpus_per_host} split between the {sharing} nodes on the Docker daemon {daemon} gives "
            f"{share} GPU(s) each, but node {index} needs {node.gpus} (one per rank); use fewer nodes per daemon"
        )
    slot = index // daemon_count
    return [str(slot * share + i) for i in range(share)]


def gpu_requests(node: NodePlan, daemon: Any, daemon_info: Callable[[], dict], daemon_count: int,
                 gpus_per_host: int | None) -> list | None:
    """The container's device requests (like ``docker run --gpus``) when the node needs GPUs;
    ``daemon_info`` (the daemon's ``docker info``) is asked only then."""
    if not node.gpus:
        return None
    from docker.types import DeviceRequest

    runtimes = sorted(daemon_info().get("Runtimes") or {})
    if "nvidia" not in runtimes:
        raise SpecError(
            f"use_gpu=True, but the Docker daemon {daemon.url} ({daemon.setting}) has no 'nvidia' runtime "
            f"(its runtimes: {runtimes}); install the NVIDIA Container Toolkit on that host or set use_gpu=False"
        )
    ids = gpu_devices(node, daemon_count, gpus_per_host, daemon.url)
    if ids is None:
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=ids, capabilities=[["gpu"]])]
