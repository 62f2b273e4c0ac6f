"""Horovod: the spec, rank/local/cross assignment, and plans for Gloo (every node starts its
ranks; node 0 hosts the rendezvous) and MPI (node 0 runs mpirun over a generated hostfile).

Rank assignment follows Horovod's own runner (``horovod.runner.common.util.hosts.
get_host_assignments``), re-stated here because planning must not import Horovod (the Airflow
side may not have it); ``tests/unit/test_horovod_planner.py`` checks the two agree.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from airflow_tf.cluster.checks import check_choice, check_hosts, check_name, check_positive_int, check_string_list
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.layout import COMMON_ENV, job_plan, node_plan
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.plan import (
    ClusterPlan,
    HorovodRendezvous,
    JobPlan,
    NodePlan,
    ProcessKind,
    ProcessPlan,
    Strategy,
    SuccessRule,
)
from airflow_tf.cluster.ports import assign_ports
from airflow_tf.cluster.spec import RESERVED_ENV_PREFIXES, TrainingSpec
from airflow_tf.runtime.rank_env import cross_rank, node_hostname

RENDEZVOUS_MODULE = ["-m", "airflow_tf.runtime.hvd_rendezvous"]
MPIRUN_MODULE = ["-m", "airflow_tf.runtime.hvd_mpirun"]
RANK_MODULE = ["-m", "airflow_tf.runtime.hvd_rank"]


class DistributedBackend(enum.StrEnum):
    GLOO = "gloo"
    MPI = "mpi"


# mpirun options the plan owns: a user setting them would fight the generated rank layout.
MPIRUN_OWNED = frozenset({
    "-np", "--np", "-n", "-c", "-H", "--host", "-host", "--hostfile", "-hostfile", "--machinefile",
    "-machinefile", "--default-hostfile", "--app", "--map-by", "--bind-to",
    "-N", "-npernode", "--npernode", "-npersocket", "--npersocket", "--ppr", "-ppr", "--rank-by", "-rf",
    "--rankfile", "-rankfile",
})
# Short options OpenMPI also reads glued to their value: "-np4", "-n4", "-c4", "-Hhost1".
_GLUED = ("-np", "-n", "-c", "-N", "-H")


def _owned_name(option: str) -> str | None:
    name = option.split("=", 1)[0]
    if name in MPIRUN_OWNED:
        return name
    for short in _GLUED:
        rest = option[len(short):]
        if option.startswith(short) and rest and (rest.isdecimal() or short == "-H"):
            return short
    return None


def check_mpirun_options(value: Any) -> list[str]:
    options = check_string_list("mpirun_options", value)
    for option in options:
        if option == "--":
            raise SpecError("mpirun_options may not contain '--': it separates mpirun's options from the rank "
                            "command the plan adds")
        name = _owned_name(option)
        if name:
            raise SpecError(
                f"mpirun_options may not set {name!r} (from {option!r}): the plan owns the rank layout "
                f"({', '.join(sorted(MPIRUN_OWNED))}); use node_count and process_count_per_node"
            )
    for flag, exported in zip(options, options[1:]):
        if flag == "-x" and exported.split("=", 1)[0].startswith(RESERVED_ENV_PREFIXES):
            raise SpecError(f"mpirun_options may not export {exported!r}: HOROVOD_* and AIRFLOW_TF_* are set by the plan")
    return options


@dataclasses.dataclass(frozen=True)
class HorovodSpec(TrainingSpec):
    distributed_backend: DistributedBackend = DistributedBackend.GLOO
    network_interface: str | None = None
    mpirun_options: list[str] = dataclasses.field(default_factory=list)
    gpus_per_node: int | None = None
    start_timeout: int = 120

    FIELD_CHECKS = {
        "distributed_backend": lambda v: check_choice("distributed_backend", v, DistributedBackend),
        "mpirun_options": check_mpirun_options,
        "network_interface": lambda v: None if v is None else check_name(
            "network_interface", v, "an interface name such as 'eth0'"),
        "start_timeout": lambda v: check_positive_int("start_timeout", v),
        "gpus_per_node": lambda v: None if v is None else check_positive_int("gpus_per_node", v),
    }

    @classmethod
    def check_together(cls, fields: Mapping[str, Any]) -> None:
        super().check_together(fields)
        if fields.get("mpirun_options") and fields.get("distributed_backend", "gloo") != DistributedBackend.MPI:
            raise SpecError("mpirun_options only apply to distributed_backend='mpi'")
        gpus, per_node = fields.get("gpus_per_node"), fields.get("process_count_per_node", 1)
        if gpus is not None and fields.get("use_gpu") and isinstance(per_node, int) and per_node > gpus:
            raise SpecError(
                f"process_count_per_node is {per_node} but gpus_per_node is {gpus}: with use_gpu every rank needs "
                "its own GPU; lower process_count_per_node or set use_gpu=False"
            )


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
    result, rank = [], 0
    for host_index, (hostname, count) in enumerate(zip(hostnames, slots)):
        for local_rank in range(count):
            cross, cross_size = cross_rank(slots, host_index, local_rank)
            result.append(Slot(hostname, rank, local_rank, cross, sum(slots), count, cross_size))
            rank += 1
    return result


def hostfile_text(hosts: Sequence[str], slots: Sequence[int]) -> str:
    """An OpenMPI hostfile; nodes sharing a host add up their slots."""
    total: dict[str, int] = {}
    for host, count in zip(hosts, slots):
        total[host] = total.get(host, 0) + count
    return "".join(f"{host} slots={count}\n" for host, count in total.items())


def node_hostnames(hosts: Sequence[str]) -> list[str]:
    return [node_hostname(i, host) for i, host in enumerate(hosts)]


def plan_horovod_job(
    spec: HorovodSpec,
    *,
    job_id: str,
    hosts: Sequence[str],
    free_ports: Mapping[str, Sequence[int]] | None = None,
) -> JobPlan:
    hosts = check_hosts(spec.node_count, hosts)
    slots = [spec.process_count_per_node] * spec.node_count
    env = {}
    if spec.network_interface:
        env = {"HOROVOD_GLOO_IFACE": spec.network_interface, "NCCL_SOCKET_IFNAME": spec.network_interface}
    gpus = spec.process_count_per_node if spec.use_gpu else 0
    if spec.distributed_backend is DistributedBackend.GLOO:
        rendezvous, per_node = _gloo(spec, hosts, slots, free_ports)
        cluster = ClusterPlan(world_size=sum(slots), horovod=rendezvous)
    else:
        cluster, per_node = ClusterPlan(world_size=sum(slots)), _mpi(spec, hosts, slots)
    nodes: list[NodePlan] = [node_plan(spec, job_id, i, host, per_node[i], gpus=gpus, env=env)
                             for i, host in enumerate(hosts)]
    return job_plan(spec, job_id, Strategy.HOROVOD, SuccessRule.ALL_RANKS_ZERO, cluster, nodes)


def _gloo(spec, hosts, slots, free_ports) -> tuple[HorovodRendezvous, list[list[ProcessPlan]]]:
    hostnames = node_hostnames(hosts)
    # One port: node 0's runtime hosts Horovod's own rendezvous server there.
    port = assign_ports([hosts[0]], free_ports=free_ports)[0]
    per_node: list[list[ProcessPlan]] = [[] for _ in hosts]
    for slot in assign_slots(hostnames, slots):
        node = hostnames.index(slot.hostname)
        per_node[node].append(ProcessPlan(
            label=f"node {node} rank {slot.rank}", rank=slot.rank, local_rank=slot.local_rank,
            gpus=str(slot.local_rank) if spec.use_gpu else "",  # one GPU per rank, by local rank
        ))
    layout = ",".join(f"{name}:{count}" for name, count in zip(hostnames, slots))
    per_node[0].append(ProcessPlan(
        label="node 0 rendezvous", kind=ProcessKind.RENDEZVOUS, port=port, daemon=True,
        # --address: what every rank is told to connect to; the server listens there only.
        command=[*RENDEZVOUS_MODULE, "--address", hosts[0], "--port", str(port), "--hosts", layout,
                 "--start-timeout", str(spec.start_timeout)],
    ))
    return HorovodRendezvous(address=hosts[0], port=port, timeout_s=spec.start_timeout, slots=list(slots)), per_node


def _mpi(spec, hosts, slots) -> list[list[ProcessPlan]]:
    mpirun = [
        "-np", str(sum(slots)),
        "--bind-to", "none", "--map-by", "slot",
        # Exported to every rank on every host (mpirun -x): the job id marks them as ours.
        *[arg for name in sorted({"AIRFLOW_TF_JOB_ID", *COMMON_ENV, *spec.environment_variables,
                                  *spec.secret_environment_variables})
          for arg in ("-x", name)],
    ]
    if spec.network_interface:
        mpirun += ["--mca", "btl_tcp_if_include", spec.network_interface, "--mca", "oob_tcp_if_include",
                   spec.network_interface, "-x", "NCCL_SOCKET_IFNAME"]
    mpirun += list(spec.mpirun_options)
    rank_cmd = [*RANK_MODULE, "--use-gpu" if spec.use_gpu else "--no-gpu", spec.entry_script,
                *script_argv(spec.script_params)]
    launcher = ProcessPlan(
        label="node 0 mpirun", kind=ProcessKind.MPIRUN,
        command=[*MPIRUN_MODULE, "--hostfile-text", hostfile_text(hosts, slots), "--", *mpirun, "--", *rank_cmd],
    )
    # Node 0 starts every rank through mpirun; the other nodes only need to be reachable
    # (the ssh host itself, or a container running sshd), so their node plan has no processes.
    return [[launcher] if node == 0 else [] for node in range(len(hosts))]
