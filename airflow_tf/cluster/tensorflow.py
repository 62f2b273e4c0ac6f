"""TensorFlowTrainOperator's plans: one process, or MultiWorkerMirroredStrategy with one TF
worker per process (worker 0, on node 0, acts as chief). Its spec is the base TrainingSpec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow_tf.cluster.checks import check_hosts
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.layout import job_plan, node_plan
from airflow_tf.cluster.plan import ClusterPlan, JobPlan, ProcessPlan, Role, Strategy, SuccessRule
from airflow_tf.cluster.ports import assign_ports
from airflow_tf.cluster.spec import TrainingSpec


def rank_gpus(use_gpu: bool, per_node: int, local_rank: int) -> str | None:
    """CUDA_VISIBLE_DEVICES of a rank: none for a CPU job (even on a host that has GPUs), one
    per process when a node runs several, all of the node's otherwise (None: left unset)."""
    if not use_gpu:
        return ""
    return str(local_rank) if per_node > 1 else None


def plan_tensorflow_job(
    spec: TrainingSpec,
    *,
    job_id: str,
    hosts: Sequence[str],
    free_ports: Mapping[str, Sequence[int]] | None = None,
) -> JobPlan:
    """``hosts`` has one entry per node; ``free_ports`` (host -> ports found free there) feeds
    ``assign_ports``."""
    hosts = check_hosts(spec.node_count, hosts)
    per_node = spec.process_count_per_node
    world_size = spec.node_count * per_node
    strategy = Strategy.SINGLE if world_size == 1 else Strategy.MULTI_WORKER_MIRRORED
    tf_cluster = None
    ports: list[int | None] = [None] * world_size
    if strategy is Strategy.MULTI_WORKER_MIRRORED:
        task_hosts = [host for host in hosts for _ in range(per_node)]
        ports = assign_ports(task_hosts, free_ports=free_ports)
        addresses = [f"{host}:{port}" for host, port in zip(task_hosts, ports)]
        if len(set(addresses)) != len(addresses):
            raise SpecError(f"worker addresses must be unique, got {addresses}")
        # MultiWorkerMirroredStrategy: no "chief" entry; worker 0 acts as chief.
        tf_cluster = {Role.WORKER.value: addresses}
    nodes = []
    for node_index, host in enumerate(hosts):
        processes = []
        for local_rank in range(per_node):
            rank = node_index * per_node + local_rank
            distributed = strategy is Strategy.MULTI_WORKER_MIRRORED
            processes.append(ProcessPlan(
                label=f"node {node_index} rank {rank}", rank=rank, local_rank=local_rank,
                role=Role.WORKER if distributed else None, task_index=rank if distributed else None,
                port=ports[rank], gpus=rank_gpus(spec.use_gpu, per_node, local_rank),
            ))
        nodes.append(node_plan(spec, job_id, node_index, host, processes, gpus=per_node if spec.use_gpu else 0))
    return job_plan(spec, job_id, strategy, SuccessRule.ALL_RANKS_ZERO,
                    ClusterPlan(world_size=world_size, tf_cluster=tf_cluster), nodes)
