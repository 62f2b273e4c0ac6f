"""ParameterServerTrainOperator: chief + workers + parameter servers (+ evaluator)."""

from __future__ import annotations

from airflow_tf.operators.group import TrainingTaskGroup


class ParameterServerTrainOperator(TrainingTaskGroup):
    """Parameter-server training (``tf.distribute.ParameterServerStrategy``).

    ``worker_count`` workers and ``parameter_server_count`` ps tasks plus one chief
    (coordinator) are spread over ``node_count`` nodes, chief on node 0, each with its own port
    and TF_CONFIG. Options: ``evaluator`` (+ ``evaluator_script``), ``server_mode`` ("script":
    the entry script runs on every task; "runtime": only on the chief and evaluator, the node
    runtime serves ps/worker tasks), ``max_worker_restarts`` (a worker that dies is restarted
    up to this many times; 0: the job fails), ``max_tasks_per_node``.

    The chief decides: chief exits 0 → success, then every ps/worker/evaluator is stopped.
    Chief fails, a ps dies, or a worker dies beyond its restarts → the job fails at once.
    """

    strategy = "parameter_server"
