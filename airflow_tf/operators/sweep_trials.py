"""One sweep trial as a training job: planned, started, watched and stopped through the same
machinery as a training group's tasks (``cluster.registry.PLANNERS``, ``Backend.start / poll /
read_from / stop / stop_job``), just called from the sweep's controller instead of from
plan / launch / wait / teardown tasks.

Why not a training group per trial: trials are chosen at run time (Bayesian sampling needs the
finished ones' results) and Airflow cannot map a task group that holds a mapped launch. The
planning below mirrors ``PlanTrainingJobOperator`` / ``LaunchNodeOperator`` (operators/nodes.py)
step for step; only backend methods and handle fields touch a node, never a path of ours.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from airflow_tf.backends.base import Backend
from airflow_tf.cluster.outcome import decide
from airflow_tf.cluster.plan import NodeLaunch
from airflow_tf.cluster.registry import PLANNERS, JobKind
from airflow_tf.cluster.spec import check_environment
from airflow_tf.operators.secrets import resolve
from airflow_tf.results.progress import read_records
from airflow_tf.runtime import node_files

CHIEF_METRICS = node_files.metrics_file(0)
RECORDS_CHUNK = 1 << 20


@dataclasses.dataclass
class TrialJob:
    """What the controller keeps about a started trial (in the study's trial user attributes)."""

    job_id: str
    success_rule: str
    node_count: int
    handles: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    metrics_offset: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TrialJob":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


def plan_trial(strategy: str, spec_fields: Mapping[str, Any], backend: Backend, job_id: str):
    """The trial's JobPlan (as PlanTrainingJobOperator plans a group's job)."""
    spec_class, planner = PLANNERS[JobKind(strategy)]
    spec = spec_class(**spec_fields)
    resolve(spec.secret_environment_variables)  # every reference must resolve before a node starts
    hosts = backend.hosts(spec.node_count)
    draft = planner(spec, job_id=job_id, hosts=hosts)
    ports_per_host: dict[str, int] = {}
    for node in draft.nodes:
        ports_per_host[node.host] = ports_per_host.get(node.host, 0) + len(node.ports)
    found = {host: backend.free_ports(host, count) for host, count in ports_per_host.items()}
    free_ports = None if any(ports is None for ports in found.values()) else found
    return spec, planner(spec, job_id=job_id, hosts=hosts, free_ports=free_ports)


def start_trial(strategy: str, spec_fields: Mapping[str, Any], backend: Backend, job_id: str,
                on_started=None) -> TrialJob:
    """Plan and start every node; ``on_started(job)`` after each node, so a controller killed
    half-way knows the handles it has (a retried start stops what an earlier try left: the
    backends' start does that by itself)."""
    spec, plan = plan_trial(strategy, spec_fields, backend, job_id)
    job = TrialJob(job_id=job_id, success_rule=plan.success_rule.value, node_count=len(plan.nodes))
    secrets = resolve(spec.secret_environment_variables)
    environment = check_environment(spec.environment_variables)
    try:
        for node in plan.nodes:
            job.handles.append(backend.start(NodeLaunch(node, plan.cluster, environment), spec.source_directory,
                                             secrets=secrets))
            if on_started:
                on_started(job)
    except BaseException:
        stop_trial(backend, job)
        raise
    return job


@dataclasses.dataclass
class TrialNews:
    status: str  # cluster.outcome: running / success / failed
    records: list[dict[str, Any]]
    problems: list[str]
    failed_node: int | None = None
    exit_code: int | None = None


def observe(backend: Backend, job: TrialJob) -> TrialNews:
    """The trial's state by its success rule and the chief's metrics records since last time
    (``job.metrics_offset`` moves past them). Records are read after the states, so a trial
    seen ended has all its records read."""
    states = [backend.poll(handle) for handle in job.handles]
    chief = job.handles[0]
    batch = read_records(lambda at, limit: backend.read_from(chief, CHIEF_METRICS, at, limit), job.metrics_offset,
                         RECORDS_CHUNK)
    job.metrics_offset = batch.offset
    outcome = decide(job.success_rule, states)
    return TrialNews(outcome.status, batch.records, batch.problems, outcome.failed_node, outcome.exit_code)


def stop_trial(backend: Backend, job: TrialJob, grace_s: float = 10.0) -> None:
    """Stop every node of the trial through the normal stop path (the node's processes and
    whatever they started), then release what the backend holds for the job."""
    for handle in job.handles:
        backend.stop(handle, grace_s)
    if job.handles:
        backend.stop_job(job.job_id, job.node_count, grace_s)


def trial_outputs(backend: Backend, job: TrialJob) -> dict[str, Any]:
    """The model path and TensorBoard directory the chief recorded, as a user opens them."""
    chief = job.handles[0]
    model_path = backend.read_file(chief, node_files.MODEL_PATH)
    return {
        "model_path": backend.host_path(chief, model_path.strip()) if model_path else None,
        "output_dir": backend.output_location(job.job_id),
    }


def tail(backend: Backend, job: TrialJob, node: int, lines: int = 20) -> list[str]:
    try:
        return backend.read_tail(job.handles[node], lines)
    except Exception as exc:  # noqa: BLE001 - the failure is known; its tail is a bonus
        return [f"<its last lines could not be read: {exc}>"]


def now() -> float:
    return round(time.time(), 3)
