"""HyperDrive's names for a sweep's search space, sampling and early termination, in one place:

    from airflow_tf.tuning import BayesianParameterSampling, BanditPolicy, choice, loguniform

Pure definitions (``cluster/tuning_space.py``, ``cluster/tuning.py``): importing them never
imports Optuna, which only the sweep's tasks load at run time.
"""

from airflow_tf.cluster.tuning import (
    BanditPolicy,
    BayesianParameterSampling,
    GridParameterSampling,
    Goal as PrimaryMetricGoal,
    MedianStoppingPolicy,
    NoTerminationPolicy,
    RandomParameterSampling,
    TruncationSelectionPolicy,
)
from airflow_tf.cluster.tuning_space import (
    choice,
    lognormal,
    loguniform,
    normal,
    qlognormal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
)

__all__ = [
    "BanditPolicy", "BayesianParameterSampling", "GridParameterSampling", "MedianStoppingPolicy",
    "NoTerminationPolicy", "PrimaryMetricGoal", "RandomParameterSampling", "TruncationSelectionPolicy",
    "choice", "lognormal", "loguniform", "normal", "qlognormal", "qloguniform", "qnormal", "quniform",
    "randint", "uniform",
]
