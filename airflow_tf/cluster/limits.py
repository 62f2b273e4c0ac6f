"""Upper bounds on what a DAG file, or a run's conf, may ask for: a typo such as
``node_count=10**6`` (or a web-UI trigger form) must fail with a clear message at parse or plan
time, not ask a backend for a million hosts and ports.

The bounds are deployment settings, ``[airflow_tf] max_*`` (``airflow_tf.config``; also
``AIRFLOW__AIRFLOW_TF__MAX_NODE_COUNT`` and so on). Their defaults are far above any job this
project has run and above the 8192-rank plan benchmark (1024 nodes x 8 ranks; a
parameter-server job of 8192 tasks), so a valid DAG never meets them. Planning stays pure: the
config module answers from the environment and these defaults where Airflow is not installed.
"""

from __future__ import annotations

from airflow_tf.cluster.errors import SpecError

# [airflow_tf] option -> default.
DEFAULTS = {
    "max_node_count": 4096,  # nodes of one training step
    "max_processes_per_node": 256,  # ranks (processes) on one node
    "max_world_size": 65536,  # processes of one job: ranks, or PS tasks (chief + workers + ps)
    "max_sweep_trials": 256,  # trials one HyperparameterSweep may run (max_total_runs)
}


def limit(name: str) -> int:
    """The effective value of ``[airflow_tf] <name>``."""
    from airflow_tf import config  # Airflow's config when present; the defaults otherwise

    return config.limit(name)


def check_limit(field: str, value: int, name: str) -> int:
    maximum = limit(name)
    if value > maximum:
        raise SpecError(
            f"{field} must be at most {maximum} ([airflow_tf] {name}, AIRFLOW__AIRFLOW_TF__{name.upper()}), "
            f"got {value}; raise that setting if this job really is that large"
        )
    return value
