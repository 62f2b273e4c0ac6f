"""Pure planning: spec validation, TF_CONFIG, ports, per-node plans. No airflow, no tensorflow."""

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.plan import JobPlan, NodePlan, RankPlan, plan_tensorflow_job
from airflow_tf.cluster.spec import TrainingSpec

__all__ = ["JobPlan", "NodePlan", "RankPlan", "SpecError", "TrainingSpec", "plan_tensorflow_job"]
