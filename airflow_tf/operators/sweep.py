"""HyperparameterSweep: one training step per trial of a grid (or a random sample of it), at
most ``max_parallel_trials`` at once, then the best trial by a named metric.

Trials are rendered as static training groups (``trial_0``, ``trial_1``, ...) from the grid at
parse time rather than as mapped task groups: each training group already maps its launch over
nodes, and Airflow cannot map a task inside a mapped task group.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import TaskGroup, task

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.sweep import MODES, trials
from airflow_tf.operators.group import TrainingTaskGroup
from airflow_tf.operators.tensorflow import TensorFlowTrainOperator


class HyperparameterSweep(TaskGroup):
    """
    :param grid: script param -> values, e.g. ``{"--learning-rate": [0.01, 0.1], "--epochs": [2, 4]}``.
    :param sample: run this many trials drawn from the grid (seeded by ``seed``) instead of all.
    :param metric: the final metric (from the chief's metrics file) that ranks trials.
    :param mode: "max" or "min".
    :param max_parallel_trials: trials in flight at once (each is a distributed job).
    :param operator: the training group class (TensorFlowTrainOperator by default).
    Other keywords go to every trial's training group; ``script_params`` are the base the
    trial's values are merged into.

    The ``select_best`` task returns ``{"best_params", "best_metric", "model_path", "trials"}``;
    ``sweep.output`` is that XCom.
    """

    def __init__(self, task_id: str, *, grid: dict[str, list[Any]], metric: str, mode: str = "max",
                 sample: int | None = None, seed: int = 0, max_parallel_trials: int = 1,
                 operator: type[TrainingTaskGroup] = TensorFlowTrainOperator, script_params: dict | None = None,
                 **training_kwargs: Any):
        if not isinstance(metric, str) or not metric:
            raise SpecError(f"metric must be the name of a metric the training script logs, got {metric!r}")
        if mode not in MODES:
            raise SpecError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if isinstance(max_parallel_trials, bool) or not isinstance(max_parallel_trials, int) or max_parallel_trials < 1:
            raise SpecError(f"max_parallel_trials must be an integer >= 1, got {max_parallel_trials!r}")
        if not (isinstance(operator, type) and issubclass(operator, TrainingTaskGroup)):
            raise SpecError(f"operator must be a training operator class such as TensorFlowTrainOperator, got {operator!r}")
        if script_params is not None and not isinstance(script_params, dict):
            raise SpecError("script_params must be a dict for a sweep (trial values are merged into it)")
        self.trial_params = trials(grid, sample=sample, seed=seed)
        super().__init__(group_id=task_id)
        with self:
            groups = []
            for index, params in enumerate(self.trial_params):
                trial = operator(task_id=f"trial_{index}", script_params={**(script_params or {}), **params},
                                 tooltip=f"trial {index}: {params}", **training_kwargs)
                if index >= max_parallel_trials:
                    # At most max_parallel_trials in flight: trial i starts when trial i-N ended.
                    groups[index - max_parallel_trials] >> trial
                    trial.plan_task.trigger_rule = "all_done"
                groups.append(trial)

            @task(task_id="select_best", trigger_rule="all_done")
            def select_best(results: list) -> dict:
                from airflow_tf.cluster.sweep import best_trial

                rows = [{"params": params, **(result or {})} for params, result in zip(self.trial_params, results)]
                best = best_trial(rows, metric, mode)
                summary = [{"params": r["params"], "metric": (r.get("metrics") or {}).get(metric),
                            "model_path": r.get("model_path")} for r in rows]
                print(f"best of {len(rows)} trial(s) by {metric} ({mode}): {best['params']} -> {best['metrics'][metric]}")
                return {"best_params": best["params"], "best_metric": best["metrics"][metric],
                        "model_path": best.get("model_path"), "metric": metric, "mode": mode, "trials": summary}

            self.select_best = select_best([group.output for group in groups])
        self.trials = groups

    @property
    def output(self):
        return self.select_best
