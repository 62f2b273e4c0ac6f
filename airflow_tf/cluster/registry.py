"""Which spec and planner serve each kind of training group (the operators' ``strategy``)."""

from __future__ import annotations

import enum
from typing import Callable

from airflow_tf.cluster.horovod import HorovodSpec, plan_horovod_job
from airflow_tf.cluster.parameter_server import ParameterServerSpec, plan_parameter_server_job
from airflow_tf.cluster.plan import JobPlan
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job


class JobKind(enum.StrEnum):
    TENSORFLOW = "tensorflow"
    PARAMETER_SERVER = "parameter_server"
    HOROVOD = "horovod"


# kind -> (spec class, pure planner(spec, job_id=, hosts=, free_ports=) -> JobPlan)
PLANNERS: dict[JobKind, tuple[type[TrainingSpec], Callable[..., JobPlan]]] = {
    JobKind.TENSORFLOW: (TrainingSpec, plan_tensorflow_job),
    JobKind.PARAMETER_SERVER: (ParameterServerSpec, plan_parameter_server_job),
    JobKind.HOROVOD: (HorovodSpec, plan_horovod_job),
}


def plan_job(kind: str, spec: TrainingSpec, **planner_options) -> JobPlan:
    return PLANNERS[JobKind(kind)][1](spec, **planner_options)
