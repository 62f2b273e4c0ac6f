"""Which GPUs a node's container gets. Pure functions over node plans (no Docker client).

The planner marks a CPU job by ``CUDA_VISIBLE_DEVICES=""`` on every rank; a GPU job pins each
rank to its local rank (several ranks per node) or leaves the variable unset (one rank: all the
node's GPUs). Docker renumbers the devices it gives a container from 0, so a node's block of the
host's GPUs is what those per-rank numbers refer to inside.
"""

from __future__ import annotations

import json
from typing import Any

from airflow_tf.cluster.errors import SpecError


def wants_gpu(node: dict[str, Any]) -> bool:
    """The node plan says so (``use_gpu``); plans without the field: CUDA_VISIBLE_DEVICES="" on
    every rank marks a CPU job."""
    if "use_gpu" in node:
        return bool(node["use_gpu"])
    return any(rank["env"].get("CUDA_VISIBLE_DEVICES") != "" for rank in node["ranks"])


def plan_node_count(node: dict[str, Any]) -> int | None:
    """The job's node count as far as one node's plan tells it (None when it cannot)."""
    if node.get("node_count"):
        return int(node["node_count"])
    env = node["ranks"][0]["env"]
    if env.get("AIRFLOW_TF_NODE_COUNT"):
        return int(env["AIRFLOW_TF_NODE_COUNT"])
    if "ps" in json.loads(env.get("TF_CONFIG") or "{}").get("cluster", {}):
        return None  # parameter-server nodes carry different task counts
    world, per_node = int(env.get("AIRFLOW_TF_WORLD_SIZE", "0")), len(node["ranks"])
    return world // per_node if world and world % per_node == 0 else None


def gpu_devices(node: dict[str, Any], daemon_count: int, gpus_per_host: int | None, daemon: str) -> list[str] | None:
    """The GPUs of its host a GPU node's container gets: device ids, or None for all of them.

    Nodes sharing a daemon split its ``gpus_per_host`` GPUs into equal consecutive blocks, in
    node order; inside each container the block is renumbered from 0, which is what the plan's
    per-rank CUDA_VISIBLE_DEVICES (the local rank) refers to.
    """
    index = int(node["node_index"])
    node_count = plan_node_count(node)
    if node_count is None:  # only "does an earlier node share this daemon?" can be told
        if index >= daemon_count:
            raise SpecError(
                f"use_gpu: node {index} shares the Docker daemon {daemon} with node {index - daemon_count}, and GPUs "
                "can be split between nodes only for plans with the same ranks on every node (not parameter-server "
                "plans); give each GPU node its own daemon"
            )
        return None if gpus_per_host is None else [str(i) for i in range(gpus_per_host)]
    sharing = len(range(index % daemon_count, node_count, daemon_count))
    if gpus_per_host is None:
        if sharing > 1:
            raise SpecError(
                f"use_gpu: node {index} shares the Docker daemon {daemon} with other nodes of the job; set "
                "gpus_per_host so DockerBackend can split that host's GPUs between them (or give each node a daemon)"
            )
        return None
    share = gpus_per_host // sharing
    needed = max(1, sum(1 for rank in node["ranks"] if rank["env"].get("CUDA_VISIBLE_DEVICES")))
    if share < needed:
        raise SpecError(
            f"gpus_per_host={gpus_per_host} split between the {sharing} nodes on the Docker daemon {daemon} gives "
            f"{share} GPU(s) each, but node {index} needs {needed} (one per rank); use fewer nodes per daemon"
        )
    slot = index // daemon_count
    return [str(slot * share + i) for i in range(share)]
