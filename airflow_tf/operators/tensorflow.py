"""TensorFlowTrainOperator: one process, or MultiWorkerMirroredStrategy across nodes."""

from __future__ import annotations

from airflow_tf.operators.group import TrainingTaskGroup


class TensorFlowTrainOperator(TrainingTaskGroup):
    """Train with TensorFlow on ``node_count`` nodes x ``process_count_per_node`` processes.

    One process in total: a plain run, no TF_CONFIG. More: every process is a
    MultiWorkerMirroredStrategy worker with its own TF_CONFIG; worker 0 acts as chief.
    Success means every worker exited 0; the first failure stops all the others.
    """

    strategy = "tensorflow"
