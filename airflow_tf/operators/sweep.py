"""HyperparameterSweep: HyperDrive's hyperparameter tuning as one task group.

    sweep = HyperparameterSweep(
        task_id="sweep",
        hyperparameter_sampling=BayesianParameterSampling({"--learning-rate": loguniform(1e-4, 1e-1),
                                                           "--batch-size": choice(32, 64, 128)}),
        policy=BanditPolicy(slack_factor=0.1, evaluation_interval=1, delay_evaluation=2),
        primary_metric_name="accuracy", primary_metric_goal="maximize",
        max_total_runs=20, max_concurrent_runs=2, max_duration_minutes=120,
        source_directory="mnist", entry_script="train.py", script_params={"--epochs": 10}, node_count=2,
    )

It renders three tasks: ``study`` (creates or resumes the Optuna study: the setup),
``controller`` (deferrable: it asks Optuna for trials at run time, plans and starts each trial's
nodes through the backend, watches them from a trigger, terminates trials early by the policy,
and returns the best trial) and ``teardown`` (stops every trial, whatever happened). Why not a training group per trial: trials are chosen at run time, and
Airflow cannot map a task group that holds a mapped launch (docs/tuning.md).

The 0.1 keywords (``grid``, ``sample``, ``seed``, ``metric``, ``mode``, ``max_parallel_trials``)
still work, with a DeprecationWarning naming today's.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from airflow.sdk import TaskGroup

from airflow_tf.backends.base import Backend
from airflow_tf.backends.local import LocalBackend
from airflow_tf.cluster.checks import check_positive_int
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.limits import check_limit, limit
from airflow_tf.cluster.registry import PLANNERS, JobKind
from airflow_tf.cluster.tuning import (
    DEFAULT_MAX_DURATION_MINUTES,
    LEGACY_NAMES,
    ParameterSampling,
    SweepSettings,
    from_legacy,
)
from airflow_tf.cluster.tuning_space import grid_size, parse_space
from airflow_tf.operators.group import TrainingTaskGroup, _as_asset
from airflow_tf.operators.options import caller_folder, check_seconds, resolve_source_directory
from airflow_tf.operators.sweep_controller import SweepControllerOperator, SweepStudyOperator, SweepTeardownOperator
from airflow_tf.operators.tensorflow import TensorFlowTrainOperator

# The controller's steps are at least this far apart: sooner, an open Airflow 3.3 scheduler race
# can fail a task resumed right after it deferred (apache/airflow#72716; triggers/sweep_watch.py).
DEFAULT_DECISION_INTERVAL_S = 10.0
# The training groups' own options a sweep uses (the rest of a trial's job are spec fields).
GROUP_ONLY = frozenset({"backend", "poll_interval", "model_asset"})


def _legacy(options: dict[str, Any]) -> dict[str, Any]:
    """Take the 0.1 keywords out of ``options``, checked under their own names, as today's."""
    legacy = {name: options.pop(name) for name in list(options) if name in LEGACY_NAMES}
    if not legacy:
        return {}
    warnings.warn(
        "HyperparameterSweep: " + ", ".join(f"{name} is deprecated, use {LEGACY_NAMES[name]}" for name in legacy),
        DeprecationWarning, stacklevel=3)
    if "metric" in legacy and (not isinstance(legacy["metric"], str) or not legacy["metric"]):
        raise SpecError(f"metric must be the name of a metric the training script logs, got {legacy['metric']!r} "
                        "(metric is deprecated: use primary_metric_name)")
    if "max_parallel_trials" in legacy:
        check_positive_int("max_parallel_trials", legacy["max_parallel_trials"])
    if "grid" in legacy:
        grid = legacy["grid"]
        if not isinstance(grid, dict) or not grid or not all(isinstance(v, (list, tuple)) for v in grid.values()):
            raise SpecError(f"grid must be a non-empty dict of script param -> list of values, got {grid!r}")
        size = grid_size(parse_space(grid, "grid"))
        seed, sample = legacy.get("seed", 0), legacy.get("sample")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise SpecError(f"seed must be an integer, got {seed!r}")
        if sample is None and size > limit("max_sweep_trials"):
            raise SpecError(f"grid has {size} combinations, more than max_sweep_trials={limit('max_sweep_trials')} "
                            "([airflow_tf] max_sweep_trials): set sample=N to run N of them (today: max_total_runs), "
                            "shrink the grid, or raise that setting")
        if sample is not None:
            if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= size:
                raise SpecError(f"sample must be an integer in 1..{size} (the grid's size), got {sample!r}")
            check_limit("sample", sample, "max_sweep_trials")
    return from_legacy(legacy)


class HyperparameterSweep(TaskGroup):
    """
    :param hyperparameter_sampling: ``GridParameterSampling`` / ``RandomParameterSampling`` /
        ``BayesianParameterSampling`` over a space of script param -> ``choice(...)``,
        ``uniform(low, high)``, ``loguniform(low, high)``, ``quniform(low, high, q)``, ``normal(mu, sigma)``, ...
    :param primary_metric_name: the metric (from the chief's metrics records) that ranks trials.
    :param primary_metric_goal: "maximize" or "minimize".
    :param policy: early termination: ``BanditPolicy`` / ``MedianStoppingPolicy`` /
        ``TruncationSelectionPolicy`` / ``NoTerminationPolicy`` (None: none).
    :param max_total_runs: trials in all (default for grid sampling: the grid's size).
    :param max_concurrent_runs: trials running at once (each is a whole training job).
    :param max_duration_minutes: the sweep's wall clock; running trials are stopped past it.
    :param operator: the training group class whose job each trial is (TensorFlowTrainOperator).
    :param decision_interval: seconds, at least, between two controller steps (default 10):
        how soon a finished trial's slot is refilled or a bad trial is judged. Shorter is safe
        under ``dag.test()``; on a scheduler it works around apache/airflow#72716.
    :param study_storage: an Optuna storage URL (default: a SQLite file in the sweep's directory
        on the worker; give a shared database when controller retries may land on another worker).
    Other keywords are the training job's (``source_directory``, ``entry_script``, ``node_count``,
    ``backend``, ...); ``script_params`` is the base each trial's sampled values are merged into.

    ``sweep.output`` is the controller's return value: ``{"best_params", "best_metric", "metrics",
    "model_path", "best_trial", "trials": [...], "terminated_early", "picture", ...}``.
    """

    def __init__(self, task_id: str, *, hyperparameter_sampling: ParameterSampling | None = None,
                 primary_metric_name: str | None = None, primary_metric_goal: str = "maximize", policy: Any = None,
                 max_total_runs: int | None = None, max_concurrent_runs: int = 1,
                 max_duration_minutes: float = DEFAULT_MAX_DURATION_MINUTES,
                 operator: type[TrainingTaskGroup] = TensorFlowTrainOperator, study_storage: str | None = None,
                 decision_interval: float = DEFAULT_DECISION_INTERVAL_S, **options: Any):
        legacy = _legacy(options)
        given = {"hyperparameter_sampling": hyperparameter_sampling, "primary_metric_name": primary_metric_name}
        for name, value in legacy.items():
            if given.get(name) is not None:
                raise SpecError(f"{name} given twice (once through a deprecated keyword): give only {name}")
        hyperparameter_sampling = legacy.get("hyperparameter_sampling", hyperparameter_sampling)
        if hyperparameter_sampling is None:
            raise SpecError("hyperparameter_sampling is required: GridParameterSampling({...}), "
                            "RandomParameterSampling({...}) or BayesianParameterSampling({...})")
        settings = SweepSettings(
            sampling=hyperparameter_sampling,
            primary_metric_name=legacy.get("primary_metric_name", primary_metric_name),
            primary_metric_goal=legacy.get("primary_metric_goal", primary_metric_goal),
            policy=policy,
            max_total_runs=legacy.get("max_total_runs", max_total_runs),
            max_concurrent_runs=legacy.get("max_concurrent_runs", max_concurrent_runs),
            max_duration_minutes=max_duration_minutes,
        )
        if not (isinstance(operator, type) and issubclass(operator, TrainingTaskGroup)):
            raise SpecError(f"operator must be a training operator class such as TensorFlowTrainOperator, got {operator!r}")
        if study_storage is not None and (not isinstance(study_storage, str) or "://" not in study_storage):
            raise SpecError(f"study_storage must be an Optuna storage URL such as 'postgresql://...' or None, got "
                            f"{study_storage!r}")
        spec_class = PLANNERS[JobKind(operator.strategy)][0]
        spec_names = {f.name for f in dataclasses.fields(spec_class)}
        unknown = sorted(set(options) - spec_names - GROUP_ONLY)
        if unknown:
            raise SpecError(f"HyperparameterSweep got unknown option(s) {unknown}; allowed: "
                            f"{sorted(spec_names | GROUP_ONLY)} besides the sweep's own")
        if options.get("script_params") is not None and not isinstance(options["script_params"], dict):
            raise SpecError("script_params must be a dict for a sweep (trial values are merged into it)")
        if "source_directory" not in options or "entry_script" not in options:
            raise SpecError("HyperparameterSweep needs source_directory and entry_script (the trials' training job)")
        spec_fields = {k: v for k, v in options.items() if k in spec_names}
        spec_fields["source_directory"] = resolve_source_directory(spec_fields["source_directory"], caller_folder())
        spec_class.validate_fields(spec_fields)
        check_seconds("poll_interval", options.get("poll_interval"), "None: [airflow_tf] poll_interval")
        if decision_interval is None:
            raise SpecError("decision_interval must be a number of seconds > 0, got None")
        check_seconds("decision_interval", decision_interval, f"default {DEFAULT_DECISION_INTERVAL_S:g}")
        backend = options.get("backend") or LocalBackend()
        if not isinstance(backend, Backend):
            raise SpecError(f"backend must be an airflow_tf Backend (LocalBackend(), ...), got {backend!r}")
        super().__init__(group_id=task_id)
        self.settings = settings
        common = {"settings": settings.to_json(), "backend": backend.serialize(), "job_name": self.group_id,
                  "study_storage": study_storage}
        with self:
            study = SweepStudyOperator(task_id="study", **common)
            controller = SweepControllerOperator(
                task_id="controller", strategy=operator.strategy, spec_fields=spec_fields,
                poll_interval=options.get("poll_interval"), decision_interval=decision_interval,
                model_asset=_as_asset(options.get("model_asset")),
                **common)
            teardown = SweepTeardownOperator(task_id="teardown", controller_task_id=controller.task_id, **common)
            study >> controller >> teardown
            # The study task is the setup (it always succeeds quickly), not the controller: a
            # teardown whose setups all failed is skipped, and a failed controller's trials must stop.
            teardown.as_teardown(setups=study, on_failure_fail_dagrun=True)
        self.study, self.controller, self.teardown = study, controller, teardown

    @property
    def output(self):
        return self.controller.output

