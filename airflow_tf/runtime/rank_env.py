"""The environment the plan gives each process of a node, built in one place.

The plan states the cluster once per job (``cluster.plan.ClusterPlan``: TF addresses, the
Horovod rendezvous) and each process only its rank, role and task index, so plans grow
linearly with the ranks. Here, on the node, each process's ``AIRFLOW_TF_*`` variables,
``TF_CONFIG``, ``HOROVOD_*`` and ``CUDA_VISIBLE_DEVICES`` are derived from those fields. The
planner's goldens and ``airflow-tf render`` call the same functions, so what they show is what
a node gets. Standard library only (shipped to the nodes).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

RANK, RENDEZVOUS, MPIRUN = "rank", "rendezvous", "mpirun"  # cluster.plan.ProcessKind values
EVALUATOR = "evaluator"
LEGACY_KERAS = "TF_USE_LEGACY_KERAS"  # "1": tf.keras is tf_keras (Keras 2); read by TensorFlow at import
AUTOLOG = "AIRFLOW_TF_AUTOLOG"  # "0": the rank's Keras fit is not recorded (runtime.autolog)


def dumps(config: Mapping) -> str:
    """Compact and key-sorted, so the same cluster always yields the same TF_CONFIG string."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def tf_config(cluster: Mapping[str, Sequence[str]], task_type: str, task_index: int) -> dict:
    """TF_CONFIG for one task. An evaluator is never a member of ``cluster`` (TF hangs waiting
    for it otherwise, tensorflow/tensorflow#46169): it only gets the training cluster."""
    if task_type != EVALUATOR and (task_type not in cluster or not 0 <= task_index < len(cluster[task_type])):
        raise ValueError(f"task {task_type}:{task_index} is not in cluster {dict(cluster)}")
    return {"cluster": {role: list(addresses) for role, addresses in cluster.items()},
            "task": {"type": task_type, "index": task_index}}


def airflow_env(*, job_id: str, node_index: int | None, node_count: int, world_size: int, rank: int | None = None,
                local_rank: int | None = None, role: str | None = None) -> dict[str, str]:
    """``AIRFLOW_TF_*``: what training.py reads, and the job marker every process carries (the
    leftover sweep finds processes by ``AIRFLOW_TF_JOB_ID``)."""
    env = {
        "AIRFLOW_TF_JOB_ID": job_id,
        "AIRFLOW_TF_NODE_COUNT": str(node_count),
        "AIRFLOW_TF_WORLD_SIZE": str(world_size),
    }
    if node_index is not None:  # None: an MPI rank on another host, not told its node
        env["AIRFLOW_TF_NODE_INDEX"] = str(node_index)
    if rank is not None:
        env["AIRFLOW_TF_RANK"] = str(rank)
        env["AIRFLOW_TF_LOCAL_RANK"] = str(local_rank if local_rank is not None else 0)
        env["AIRFLOW_TF_IS_CHIEF"] = "1" if rank == 0 else "0"  # the chief is always rank 0
    if role:
        env["AIRFLOW_TF_ROLE"] = role
    return env


def node_hostname(node_index: int, host: str) -> str:
    """Horovod's per-host identity. Each node is its own 'host' even when two share an address
    (the local backend), so local ranks and GPUs are counted per node."""
    return f"node{node_index}-{host}"


def cross_rank(slots: Sequence[int], node_index: int, local_rank: int) -> tuple[int, int]:
    """(cross rank, cross size): this node's place among the nodes that have ``local_rank``
    (so uneven slot counts give smaller cross sizes to the higher local ranks)."""
    peers = [i for i, count in enumerate(slots) if count > local_rank]
    return peers.index(node_index), len(peers)


def horovod_env(rendezvous: Mapping[str, Any], *, node_index: int, host: str, rank: int, local_rank: int) -> dict:
    """What ``horovodrun --gloo`` gives a rank (gloo_run.create_slot_env_vars + rendezvous)."""
    slots = rendezvous["slots"]
    cross, cross_size = cross_rank(slots, node_index, local_rank)
    return {
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": rendezvous["address"],
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous["port"]),
        "HOROVOD_GLOO_TIMEOUT_SECONDS": str(rendezvous["timeout_s"]),
        "HOROVOD_HOSTNAME": node_hostname(node_index, host),
        "HOROVOD_RANK": str(rank),
        "HOROVOD_SIZE": str(sum(slots)),
        "HOROVOD_LOCAL_RANK": str(local_rank),
        "HOROVOD_LOCAL_SIZE": str(slots[node_index]),
        "HOROVOD_CROSS_RANK": str(cross),
        "HOROVOD_CROSS_SIZE": str(cross_size),
    }


def process_env(node: Mapping[str, Any], process: Mapping[str, Any], cluster: Mapping[str, Any],
                environment: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the plan sets for one process (JSON forms of NodePlan, ProcessPlan, ClusterPlan), on
    top of the environment the launcher inherited.

    In order: the node's common plan variables (``node["env"]``, defaults such as
    PYTHONUNBUFFERED, and TF_USE_LEGACY_KERAS from ``keras_version``), the user's ``environment`` (which may override those), then the
    per-process variables, which always win (the user's names cannot collide with them: the
    spec reserves TF_CONFIG, CUDA_VISIBLE_DEVICES, AIRFLOW_TF_* and HOROVOD_*).
    """
    node_index = node["node_index"]
    is_rank = process["kind"] == RANK
    env = dict(node.get("env") or {})
    keras = node.get("keras_version")
    if keras:  # before the user's values: an explicit TF_USE_LEGACY_KERAS of theirs wins over "auto"
        env[LEGACY_KERAS] = "1" if keras == "2" else "0"
    env.update(environment or {})
    env.update(airflow_env(
        job_id=node["job_id"], node_index=node_index, node_count=node["node_count"], world_size=cluster["world_size"],
        rank=process["rank"] if is_rank else None, local_rank=process.get("local_rank"), role=process.get("role"),
    ))
    env[AUTOLOG] = "1" if node.get("autolog", True) else "0"
    tf_cluster = cluster.get("tf_cluster")
    if tf_cluster and process.get("role"):
        env["TF_CONFIG"] = dumps(tf_config(tf_cluster, process["role"], process.get("task_index") or 0))
    if cluster.get("horovod") and is_rank:
        env.update(horovod_env(cluster["horovod"], node_index=node_index, host=node["host"],
                               rank=process["rank"], local_rank=process["local_rank"]))
    if process.get("gpus") is not None:
        env["CUDA_VISIBLE_DEVICES"] = process["gpus"]
    return env
