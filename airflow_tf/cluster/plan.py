"""The job plan: the cluster stated once, and what every node starts. Pure data, JSON in and out.

A plan is what the ``plan`` task returns (its XCom is readable in the UI), what each ``launch``
task receives for its node, and what the node runtime executes. Its size is linear in the ranks:
the cluster (TF addresses, the Horovod rendezvous) is stated once per job in ``ClusterPlan``;
each process carries only its rank, role, task index, port and GPUs, and the node runtime
derives every environment variable from those (``runtime.rank_env``). User environment values
are not in the plan either: it names them (``environment_names``), and the launch task hands
the values to its node (``NodeLaunch``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any

from airflow_tf.runtime import rank_env


class Strategy(enum.StrEnum):
    SINGLE = "single"
    MULTI_WORKER_MIRRORED = "multi_worker_mirrored"
    PARAMETER_SERVER = "parameter_server"
    HOROVOD = "horovod"


class SuccessRule(enum.StrEnum):
    """ALL_RANKS_ZERO: every node must end with 0. CHIEF_ZERO: node 0 (the chief's) ending with 0
    decides; the others serve until they are stopped."""

    ALL_RANKS_ZERO = "all_ranks_zero"
    CHIEF_ZERO = "chief_zero"


class ProcessKind(enum.StrEnum):
    RANK = rank_env.RANK  # a training process (TF task or Horovod rank)
    RENDEZVOUS = rank_env.RENDEZVOUS  # Horovod Gloo's rendezvous server, hosted by node 0
    MPIRUN = rank_env.MPIRUN  # node 0 of an MPI job: mpirun starts every rank on every host


class Role(enum.StrEnum):
    """TensorFlow task types (TF_CONFIG ``task.type``)."""

    CHIEF = "chief"
    WORKER = "worker"
    PS = "ps"
    EVALUATOR = rank_env.EVALUATOR


def _enum(cls, value):
    return None if value is None else cls(value)


@dataclasses.dataclass(frozen=True)
class ProcessPlan:
    """One process a node runtime starts."""

    label: str  # prefixed to every line it prints
    kind: ProcessKind = ProcessKind.RANK
    rank: int | None = None  # global rank; None for the rendezvous / mpirun
    local_rank: int | None = None
    role: Role | None = None  # its TF task type when the job has a TF cluster
    task_index: int | None = None  # its index among the tasks of that role
    port: int | None = None  # the port it listens on, on the node's host
    gpus: str | None = None  # its CUDA_VISIBLE_DEVICES ("" none); None: unset, every GPU of the node
    command: list[str] | None = None  # run ``python -u *command`` instead of the entry script
    daemon: bool = False  # serves until stopped: the node does not wait for it to exit
    max_restarts: int = 0  # restarts the node runtime grants it before the node fails

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ProcessPlan":
        fields = dict(data)
        fields["kind"] = ProcessKind(fields.get("kind", ProcessKind.RANK))
        fields["role"] = _enum(Role, fields.get("role"))
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class HorovodRendezvous:
    """Horovod over Gloo: where node 0 hosts the rendezvous, and the ranks per node."""

    address: str
    port: int
    timeout_s: int
    slots: list[int]  # ranks per node, in node order


@dataclasses.dataclass(frozen=True)
class ClusterPlan:
    """The cluster, stated once per job."""

    world_size: int
    tf_cluster: dict[str, list[str]] | None = None  # TF_CONFIG "cluster": task type -> host:port
    horovod: HorovodRendezvous | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ClusterPlan":
        fields = dict(data)
        if fields.get("horovod") is not None:
            fields["horovod"] = HorovodRendezvous(**fields["horovod"])
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class NodePlan:
    job_id: str
    node_index: int
    node_count: int
    host: str  # the address the other nodes reach this one at
    script: str  # relative to the source directory
    script_args: list[str]
    env: dict[str, str]  # plan-owned environment common to every process (never the user's values)
    processes: list[ProcessPlan]
    pip_packages: list[str] = dataclasses.field(default_factory=list)  # installed by the node runtime
    pip_index_url: str | None = None  # pip's --index-url for them (None: pip's default)
    pip_extra_index_urls: list[str] = dataclasses.field(default_factory=list)  # --extra-index-url
    pip_trusted_hosts: list[str] = dataclasses.field(default_factory=list)  # --trusted-host
    gpus: int = 0  # GPUs the node needs (0: a CPU node); e.g. Docker device requests
    conda_packages: list[str] = dataclasses.field(default_factory=list)  # installed by the node runtime
    conda_channels: list[str] = dataclasses.field(default_factory=list)  # where from (runtime.conda_env)
    keras_version: str | None = None  # "2" / "3": every process's TF_USE_LEGACY_KERAS (None: left alone)
    framework_version: str | None = None  # the TensorFlow version the node must have (runtime.frameworks)
    autolog: bool = True  # the node runtime records Keras fit's metrics (runtime.autolog)

    @property
    def ports(self) -> list[int]:
        """The ports this node's processes listen on (checked free on the host before it starts)."""
        return sorted(p.port for p in self.processes if p.port is not None)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "NodePlan":
        fields = dict(data)
        fields["processes"] = [ProcessPlan.from_json(p) for p in fields["processes"]]
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class JobPlan:
    job_id: str
    strategy: Strategy
    success_rule: SuccessRule
    source_directory: str
    cluster: ClusterPlan
    environment_names: list[str]  # the user's environment variables: names only, values at launch
    nodes: list[NodePlan]
    # secret_environment_variables: names only; their references stay in the DAG, values are
    # resolved by each launch and handed to its node outside node.json.
    secret_names: list[str] = dataclasses.field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.cluster.world_size

    def env_of(self, node: NodePlan, process: ProcessPlan, environment: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment the node runtime will set for ``process`` (with the user's values)."""
        return rank_env.process_env(node.to_json(), dataclasses.asdict(process), dataclasses.asdict(self.cluster),
                                    environment)

    def launch(self, node_index: int, environment: Mapping[str, str] | None = None) -> "NodeLaunch":
        return NodeLaunch(self.nodes[node_index], self.cluster, dict(environment or {}))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JobPlan":
        fields = dict(data)
        fields["strategy"] = Strategy(fields["strategy"])
        fields["success_rule"] = SuccessRule(fields["success_rule"])
        fields["cluster"] = ClusterPlan.from_json(fields["cluster"])
        fields["nodes"] = [NodePlan.from_json(node) for node in fields["nodes"]]
        return cls(**fields)


@dataclasses.dataclass(frozen=True)
class NodeLaunch:
    """What one node needs to start: its plan, the job's cluster, the user's environment values.

    Backends write it into the node's directory (``node.json``, private to the job's user) and
    the node runtime executes it; it never goes into XCom.
    """

    node: NodePlan
    cluster: ClusterPlan
    environment: dict[str, str]
    # The job's attempt: 1 for the launch tasks, +1 for each whole-job restart (max_restarts).
    # A re-run launch re-attaches to a healthy node only when that node runs this attempt.
    attempt: int = 1

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "NodeLaunch":
        return cls(NodePlan.from_json(data["node"]), ClusterPlan.from_json(data["cluster"]), dict(data["environment"]),
                   int(data.get("attempt", 1)))
