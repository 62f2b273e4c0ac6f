"""Horovod plans: rank/local/cross assignment, the Gloo environment per rank, and the mpirun
command line for the MPI backend.

Rank assignment follows Horovod's own runner (``horovod.runner.common.util.hosts.
get_host_assignments``), re-stated here because planning must not import Horovod (the Airflow
side may not have it); ``tests/unit/test_horovod_planner.py`` checks the two agree.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.plan import ALL_RANKS_ZERO, JobPlan, NodePlan, RankPlan
from airflow_tf.cluster.ports import assign_ports
from airflow_tf.cluster.spec import HorovodSpec

HOROVOD = "horovod"
RENDEZVOUS_MODULE = ["-m", "airflow_tf.runtime.hvd_rendezvous"]
MPIRUN_MODULE = ["-m", "airflow_tf.runtime.hvd_mpirun"]
RANK_MODULE = ["-m", "airflow_tf.runtime.hvd_rank"]


@dataclasses.dataclass(frozen=True)
class Slot:
    """One Horovod process: the numbers Horovod's SlotInfo carries."""

    hostname: str
    rank: int
    local_rank: int
    cross_rank: int
    size: int
    local_size: int
    cross_size: int


def assign_slots(hostnames: Sequence[str], slots: Sequence[int]) -> list[Slot]:
    """Ranks host by host; local rank within a host; cross rank among the hosts that have that
    local rank (so uneven slot counts give smaller cross sizes for the higher local ranks)."""
    if len(hostnames) != len(slots) or len(set(hostnames)) != len(hostnames):
        raise SpecError(f"need one slot count per distinct host name, got {list(hostnames)} / {list(slots)}")
    size = sum(slots)
    result, rank = [], 0
    for host_index, (hostname, count) in enumerate(zip(hostnames, slots)):
        for local_rank in range(count):
            peers = [i for i, c in enumerate(slots) if c > local_rank]
            result.append(Slot(hostname, rank, local_rank, peers.index(host_index), size, count, len(peers)))
            rank += 1
    return result


def slot_env(slot: Slot) -> dict[str, str]:
    """The HOROVOD_* variables ``horovodrun --gloo`` gives a rank (gloo_run.create_slot_env_vars)."""
    return {
        "HOROVOD_HOSTNAME": slot.hostname,
        "HOROVOD_RANK": str(slot.rank),
        "HOROVOD_SIZE": str(slot.size),
        "HOROVOD_LOCAL_RANK": str(slot.local_rank),
        "HOROVOD_LOCAL_SIZE": str(slot.local_size),
        "HOROVOD_CROSS_RANK": str(slot.cross_rank),
        "HOROVOD_CROSS_SIZE": str(slot.cross_size),
    }


def hostfile_text(hosts: Sequence[str], slots: Sequence[int]) -> str:
    """An OpenMPI hostfile; nodes sharing a host add up their slots."""
    total: dict[str, int] = {}
    for host, count in zip(hosts, slots):
        total[host] = total.get(host, 0) + count
    return "".join(f"{host} slots={count}\n" for host, count in total.items())


def node_hostnames(hosts: Sequence[str]) -> list[str]:
    """Horovod's per-host identity. Each node is its own 'host' even when two share an address
    (the local backend), so local ranks and GPUs are counted per node."""
    return [f"node{i}-{host}" for i, host in enumerate(hosts)]


def plan_horovod_job(
    spec: HorovodSpec,
    *,
    job_id: str,
    hosts: Sequence[str],
    free_ports: Mapping[str, Sequence[int]] | None = None,
) -> JobPlan:
    if len(hosts) != spec.node_count:
        raise SpecError(f"node_count is {spec.node_count} but the backend offered {len(hosts)} host(s): {list(hosts)}")
    per_node = [spec.process_count_per_node] * spec.node_count
    common = {"PYTHONUNBUFFERED": "1", **spec.environment_variables}
    if spec.network_interface:
        common["HOROVOD_GLOO_IFACE"] = spec.network_interface
        common["NCCL_SOCKET_IFNAME"] = spec.network_interface
    if spec.distributed_backend == "gloo":
        nodes = _gloo_nodes(spec, job_id, hosts, per_node, common, free_ports)
    else:
        nodes = _mpi_nodes(spec, job_id, hosts, per_node, common)
    return JobPlan(
        job_id=job_id,
        strategy=HOROVOD,
        success_rule=ALL_RANKS_ZERO,
        world_size=sum(per_node),
        source_directory=spec.source_directory,
        nodes=nodes,
    )


def _rank_env(spec: HorovodSpec, job_id: str, node: int, slot: Slot) -> dict[str, str]:
    env = {
        "AIRFLOW_TF_JOB_ID": job_id,
        "AIRFLOW_TF_NODE_INDEX": str(node),
        "AIRFLOW_TF_RANK": str(slot.rank),
        "AIRFLOW_TF_LOCAL_RANK": str(slot.local_rank),
        "AIRFLOW_TF_WORLD_SIZE": str(slot.size),
        "AIRFLOW_TF_IS_CHIEF": "1" if slot.rank == 0 else "0",
        # One GPU per rank, chosen by local rank; CPU jobs see none.
        "CUDA_VISIBLE_DEVICES": str(slot.local_rank) if spec.use_gpu else "",
    }
    return env


def _gloo_nodes(spec, job_id, hosts, per_node, common, free_ports) -> list[NodePlan]:
    hostnames = node_hostnames(hosts)
    slots = assign_slots(hostnames, per_node)
    # One port: node 0's runtime hosts Horovod's own rendezvous server there.
    port = assign_ports([hosts[0]], free_ports=free_ports)[0]
    rendezvous = {
        "HOROVOD_CONTROLLER": "gloo",
        "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": hosts[0],
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
        "HOROVOD_GLOO_TIMEOUT_SECONDS": str(spec.start_timeout),
    }
    nodes = []
    for node, host in enumerate(hosts):
        ranks = [
            RankPlan(
                rank=slot.rank,
                local_rank=slot.local_rank,
                label=f"node {node} rank {slot.rank}",
                env={**_rank_env(spec, job_id, node, slot), **rendezvous, **slot_env(slot)},
            )
            for slot in slots if slot.hostname == hostnames[node]
        ]
        if node == 0:
            layout = ",".join(f"{name}:{count}" for name, count in zip(hostnames, per_node))
            ranks.append(
                RankPlan(
                    rank=-1,
                    local_rank=-1,
                    label="node 0 rendezvous",
                    env={"AIRFLOW_TF_JOB_ID": job_id, "AIRFLOW_TF_NODE_INDEX": "0"},
                    role="rendezvous",
                    command=[*RENDEZVOUS_MODULE, "--port", str(port), "--hosts", layout,
                             "--start-timeout", str(spec.start_timeout)],
                    daemon=True,
                )
            )
        nodes.append(_node(spec, job_id, node, host, common, ranks))
    return nodes


def _mpi_nodes(spec, job_id, hosts, per_node, common) -> list[NodePlan]:
    size = sum(per_node)
    mpirun = [
        "-np", str(size),
        "--bind-to", "none", "--map-by", "slot",
        # Exported to every rank on every host (mpirun -x): the job id marks them as ours.
        *[arg for name in sorted({"AIRFLOW_TF_JOB_ID", "PYTHONUNBUFFERED", *spec.environment_variables})
          for arg in ("-x", name)],
    ]
    if spec.network_interface:
        mpirun += ["--mca", "btl_tcp_if_include", spec.network_interface, "--mca", "oob_tcp_if_include",
                   spec.network_interface, "-x", "NCCL_SOCKET_IFNAME"]
    mpirun += list(spec.mpirun_options)
    rank_cmd = [*RANK_MODULE, "--use-gpu" if spec.use_gpu else "--no-gpu", spec.entry_script,
                *script_argv(spec.script_params)]
    launcher = RankPlan(
        rank=0,
        local_rank=0,
        label="node 0 mpirun",
        env={"AIRFLOW_TF_JOB_ID": job_id, "AIRFLOW_TF_NODE_INDEX": "0", "AIRFLOW_TF_WORLD_SIZE": str(size)},
        role="mpirun",
        command=[*MPIRUN_MODULE, "--hostfile-text", hostfile_text(hosts, per_node), "--", *mpirun, "--", *rank_cmd],
    )
    # Node 0 starts every rank through mpirun; the other nodes only need to be reachable
    # (the ssh host itself, or a container running sshd), so their node plan has no ranks.
    return [_node(spec, job_id, node, host, common, [launcher] if node == 0 else []) for node, host in enumerate(hosts)]


def _node(spec, job_id, node, host, common, ranks) -> NodePlan:
    return NodePlan(
        job_id=job_id, node_index=node, host=host, script=spec.entry_script,
        script_args=script_argv(spec.script_params), env=dict(common), ranks=ranks,
        pip_packages=list(spec.pip_packages), use_gpu=spec.use_gpu, node_count=spec.node_count,
    )
