"""Pure planning: spec validation, ports, the job plan (cluster once, processes per node).
No airflow, no tensorflow; it shares the node-side contract in ``airflow_tf.runtime``."""

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import ClusterPlan, JobPlan, NodeLaunch, NodePlan, ProcessPlan
from airflow_tf.cluster.spec import TrainingSpec

__all__ = ["ClusterPlan", "JobPlan", "NodeLaunch", "NodePlan", "ProcessPlan", "SpecError", "TrainingSpec"]
