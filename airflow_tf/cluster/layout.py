"""What every planner shares: the node plan's common fields, and the job plan around the nodes."""

from __future__ import annotations

import dataclasses

from airflow_tf.cluster.frameworks import DEFAULT_CONDA_CHANNELS, resolve_keras
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.plan import ClusterPlan, JobPlan, NodePlan, ProcessPlan, Strategy, SuccessRule
from airflow_tf.cluster.spec import TrainingSpec

# Every rank's output goes through a pipe to the node log: unbuffered, or lines arrive late.
COMMON_ENV = {"PYTHONUNBUFFERED": "1"}


def node_plan(spec: TrainingSpec, job_id: str, node_index: int, host: str, processes: list[ProcessPlan], *,
              gpus: int, env: dict[str, str] | None = None) -> NodePlan:
    return NodePlan(
        job_id=job_id, node_index=node_index, node_count=spec.node_count, host=host, script=spec.entry_script,
        script_args=script_argv(spec.script_params), env={**COMMON_ENV, **(env or {})}, processes=processes,
        pip_packages=list(spec.pip_packages), pip_index_url=spec.pip_index_url,
        pip_extra_index_urls=list(spec.pip_extra_index_urls), pip_trusted_hosts=list(spec.pip_trusted_hosts), gpus=gpus,
        conda_packages=list(spec.conda_packages),
        conda_channels=list(spec.conda_channels or DEFAULT_CONDA_CHANNELS) if spec.conda_packages else [],
        framework_version=spec.framework_version, autolog=spec.autolog,
    )


def job_plan(spec: TrainingSpec, job_id: str, strategy: Strategy, success_rule: SuccessRule, cluster: ClusterPlan,
             nodes: list[NodePlan]) -> JobPlan:
    # "auto" Keras depends on the strategy, known here: Keras 2 wherever fit is distributed.
    keras = resolve_keras(spec.keras_version, distributed=strategy is not Strategy.SINGLE)
    nodes = [dataclasses.replace(node, keras_version=keras) for node in nodes]
    return JobPlan(
        job_id=job_id, strategy=strategy, success_rule=success_rule, source_directory=spec.source_directory,
        cluster=cluster, environment_names=sorted(spec.environment_variables), nodes=nodes,
        secret_names=sorted(spec.secret_environment_variables),
    )
