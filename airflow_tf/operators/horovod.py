"""HorovodTrainOperator: Horovod over Gloo or MPI."""

from __future__ import annotations

from airflow_tf.operators.group import TrainingTaskGroup


class HorovodTrainOperator(TrainingTaskGroup):
    """Run ``node_count`` x ``process_count_per_node`` Horovod ranks.

    ``distributed_backend="gloo"`` (default): every node starts its own ranks with the HOROVOD_*
    environment ``horovodrun --gloo`` would give them, against Horovod's rendezvous server hosted
    by node 0's runtime — no ssh between nodes, so it works in plain containers. ``"mpi"``: node
    0 runs ``mpirun`` over a generated hostfile (``mpirun_options`` adds options; the rank
    layout is the plan's). Options: ``network_interface`` (Gloo/NCCL/MPI TCP interface),
    ``gpus_per_node`` (checked against process_count_per_node when use_gpu), ``start_timeout``
    (seconds for every rank to join; the error names the ranks and nodes that did not).

    Success: every rank exits 0. One rank failing stops every rank on every node.
    """

    strategy = "horovod"
