"""The job plan: what every node starts, with which environment. Pure data, JSON in and out.

A plan is what the ``plan`` task returns (so users can read the generated TF_CONFIG in the UI),
what each ``launch`` task receives for its node, and what the node runtime executes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_tf.cluster import tf_config as tfc
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.ports import assign_ports
from airflow_tf.cluster.spec import TrainingSpec

# Strategies and the rule that decides success for each.
SINGLE = "single"
MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
ALL_RANKS_ZERO = "all_ranks_zero"
PARAMETER_SERVER = "parameter_server"
CHIEF_ZERO = "chief_zero"


@dataclasses.dataclass(frozen=True)
class RankPlan:
    rank: int
    local_rank: int
    label: str  # prefixed to every line this rank prints
    env: dict[str, str]
    role: str = "worker"
    # Run ``python -u *command`` instead of the entry script (e.g. the runtime's TF server).
    command: list[str] | None = None
    # A daemon serves until stopped (ps, PS workers): the node does not wait for it to exit.
    daemon: bool = False
    # Restarts the node runtime grants this rank after a failure before the node fails.
    max_restarts: int = 0


@dataclasses.dataclass(frozen=True)
class NodePlan:
    job_id: str
    node_index: int
    host: str
    script: str  # relative to the source directory
    script_args: list[str]
    env: dict[str, str]  # common to every rank of the node
    ranks: list[RankPlan]
    pip_packages: list[str] = dataclasses.field(default_factory=list)  # installed by the node runtime
    use_gpu: bool = False  # the backend gives the node GPUs (e.g. Docker device requests)
    node_count: int = 1  # nodes in the job (a backend splitting a host's GPUs needs it)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "NodePlan":
        fields = dict(data)
        fields["ranks"] = [RankPlan(**rank) for rank in fields["ranks"]]
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class JobPlan:
    job_id: str
    strategy: str
    success_rule: str
    world_size: int
    source_directory: str
    nodes: list[NodePlan]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobPlan":
        fields = dict(data)
        fields["nodes"] = [NodePlan.from_json(node) for node in fields["nodes"]]
        return cls(**fields)


def _check_hosts(spec: TrainingSpec, hosts: Sequence[str]) -> None:
    if len(hosts) != spec.node_count:
        raise SpecError(f"node_count is {spec.node_count} but the backend offered {len(hosts)} host(s): {list(hosts)}")
    for i, host in enumerate(hosts):
        if not isinstance(host, str) or not host or ":" in host or any(c.isspace() for c in host):
            raise SpecError(f"host {i} must be a hostname or IPv4 address without port, got {host!r}")


def rank_env(spec: TrainingSpec, *, job_id: str, node_index: int, rank: int, local_rank: int, world_size: int) -> dict[str, str]:
    env = {
        "AIRFLOW_TF_JOB_ID": job_id,
        "AIRFLOW_TF_NODE_INDEX": str(node_index),
        "AIRFLOW_TF_RANK": str(rank),
        "AIRFLOW_TF_LOCAL_RANK": str(local_rank),
        "AIRFLOW_TF_WORLD_SIZE": str(world_size),
        "AIRFLOW_TF_IS_CHIEF": "1" if rank == 0 else "0",
    }
    if not spec.use_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU job: keep TF off any GPU the host happens to have
    elif spec.process_count_per_node > 1:
        env["CUDA_VISIBLE_DEVICES"] = str(local_rank)  # one GPU per process
    return env


def plan_tensorflow_job(
    spec: TrainingSpec,
    *,
    job_id: str,
    hosts: Sequence[str],
    free_ports: Mapping[str, Sequence[int]] | None = None,
) -> JobPlan:
    """Single-process run, or MultiWorkerMirroredStrategy with one TF worker per process.

    ``hosts`` has one entry per node; ``free_ports`` (host -> ports found free there) feeds
    ``assign_ports``. Worker 0 (node 0, local rank 0) acts as chief.
    """
    _check_hosts(spec, hosts)
    per_node = spec.process_count_per_node
    world_size = spec.node_count * per_node
    task_hosts = [host for host in hosts for _ in range(per_node)]
    ports = assign_ports(task_hosts, free_ports=free_ports)
    addresses = [f"{host}:{port}" for host, port in zip(task_hosts, ports)]
    if len(set(addresses)) != len(addresses):
        raise SpecError(f"worker addresses must be unique, got {addresses}")
    strategy = SINGLE if world_size == 1 else MULTI_WORKER_MIRRORED
    cluster = tfc.multi_worker_cluster(addresses)

    nodes = []
    for node_index, host in enumerate(hosts):
        ranks = []
        for local_rank in range(per_node):
            rank = node_index * per_node + local_rank
            env = rank_env(spec, job_id=job_id, node_index=node_index, rank=rank, local_rank=local_rank, world_size=world_size)
            if strategy == MULTI_WORKER_MIRRORED:
                env["TF_CONFIG"] = tfc.dumps(tfc.tf_config(cluster, "worker", rank))
            ranks.append(RankPlan(rank=rank, local_rank=local_rank, label=f"node {node_index} rank {rank}", env=env))
        nodes.append(
            NodePlan(
                job_id=job_id,
                node_index=node_index,
                host=host,
                script=spec.entry_script,
                script_args=script_argv(spec.script_params),
                env={"PYTHONUNBUFFERED": "1", **spec.environment_variables},
                ranks=ranks,
                pip_packages=list(spec.pip_packages),
                use_gpu=spec.use_gpu,
                node_count=spec.node_count,
            )
        )
    return JobPlan(
        job_id=job_id,
        strategy=strategy,
        success_rule=ALL_RANKS_ZERO,
        world_size=world_size,
        source_directory=spec.source_directory,
        nodes=nodes,
    )
