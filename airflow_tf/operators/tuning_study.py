"""The sweep's Optuna study: its storage, sampler, pruner and the params of a new trial.

Optuna is the optimiser (its samplers: GridSampler, RandomSampler, TPESampler; its pruners:
MedianPruner, PercentilePruner); nothing here chooses params or compares trials by itself,
except ``BanditPruner``: Optuna has no pruner with HyperDrive's slack rule (a fixed ratio or
distance from the best trial at the same step; its Threshold/Percentile/Median pruners compare
with fixed bounds or with the other trials' distribution), so it is written against Optuna's
``BasePruner`` interface and reads the trials from the study like Optuna's own pruners.

Imported only by the sweep's tasks at run time: ``import airflow_tf`` and DAG parsing never
import Optuna (the ``tuning`` extra).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from airflow_tf.cluster.tuning import Goal, PolicyKind, SamplingKind, SweepSettings
from airflow_tf.cluster.tuning_space import Distribution

STUDY_FILE = "study.db"
# Optuna logs every trial at INFO; the controller logs its own lines (with the script params).
optuna.logging.set_verbosity(optuna.logging.WARNING)


def storage_url(study_dir: str) -> str:
    """The study's own SQLite file in the sweep's directory (never Airflow's metadata DB)."""
    os.makedirs(study_dir, mode=0o700, exist_ok=True)
    return f"sqlite:///{os.path.join(os.path.abspath(study_dir), STUDY_FILE)}"


class BanditPruner(optuna.pruners.BasePruner):
    """HyperDrive's Bandit policy: at every ``interval`` steps from ``delay`` on, prune a trial
    whose value at that step is worse than the best trial's at the same step by more than the
    slack: ``best / (1 + factor)`` (maximize) or ``best * (1 + factor)`` (minimize), or
    ``best -/+ amount``."""

    def __init__(self, *, slack_factor: float | None, slack_amount: float | None, interval: int, delay: int):
        self.slack_factor, self.slack_amount = slack_factor, slack_amount
        self.interval, self.delay = interval, delay

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.delay or (step - self.delay) % self.interval:
            return False
        value = trial.intermediate_values[step]
        peers = [t.intermediate_values[step] for t in study.get_trials(deepcopy=False)
                 if step in t.intermediate_values and t.number != trial.number
                 and math.isfinite(t.intermediate_values[step])]
        if not peers:
            return False
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best = max(peers) if maximize else min(peers)
        if self.slack_factor is not None:
            bound = best / (1 + self.slack_factor) if maximize else best * (1 + self.slack_factor)
        else:
            bound = best - self.slack_amount if maximize else best + self.slack_amount
        return value < bound if maximize else value > bound


class AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler, minus its ``study.stop()`` once the grid is covered: that call is
    for ``study.optimize`` loops and raises under ask/tell (before the trial's result is stored).
    The controller stops asking by itself (``grid_exhausted``, ``max_total_runs``)."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    policy = settings.policy
    common = {"n_warmup_steps": policy.delay_evaluation, "interval_steps": policy.evaluation_interval,
              # Compare with the finished trials from the first one on (HyperDrive has no start-up phase;
              # Optuna's pruners need one finished trial to compare with).
              "n_startup_trials": 1}
    if policy.kind is PolicyKind.MEDIAN_STOPPING:
        return optuna.pruners.MedianPruner(**common)
    if policy.kind is PolicyKind.TRUNCATION_SELECTION:
        # Truncating the worst X % keeps the best (100 - X) %: Optuna's percentile pruner.
        return optuna.pruners.PercentilePruner(100.0 - policy.truncation_percentage, **common)
    if policy.kind is PolicyKind.BANDIT:
        return BanditPruner(slack_factor=policy.slack_factor, slack_amount=policy.slack_amount,
                            interval=policy.evaluation_interval, delay=policy.delay_evaluation)
    return optuna.pruners.NopPruner()


def sampler(settings: SweepSettings, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """A fresh sampler per controller step. A random / TPE seed moves on with the study's trial
    count, so a resumed (or re-deferred) controller neither repeats a draw nor loses determinism."""
    sampling = settings.sampling
    if sampling.kind is SamplingKind.GRID:
        # Not moved on: Optuna's grid sampler maps trial numbers onto a seeded shuffle of the
        # grid, so the same seed in every step is what keeps each combination run once.
        return AskTellGridSampler({k: list(d.args) for k, d in sampling.parameter_space.items()}, seed=sampling.seed)
    seed = None if sampling.seed is None else sampling.seed + trials_so_far
    if sampling.kind is SamplingKind.RANDOM:
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials still running count as "bad so far", so concurrent trials spread out.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=sampling.n_startup_trials, constant_liar=True)


def _patient(storage: str) -> str | optuna.storages.RDBStorage:
    """A SQLite study waits up to a minute for a lock: whoever reads the file meanwhile
    (optuna-dashboard, a notebook) must not fail the sweep with SQLite's "database is locked"
    after its default 5 s."""
    if storage.startswith("sqlite:"):
        return optuna.storages.RDBStorage(storage, engine_kwargs={"connect_args": {"timeout": 60}})
    return storage


def open_study(storage: str, study_name: str, settings: SweepSettings) -> optuna.Study:
    """Create the study, or load the one an earlier try of the controller left (it resumes)."""
    direction = "maximize" if settings.primary_metric_goal is Goal.MAXIMIZE else "minimize"
    study = optuna.create_study(storage=_patient(storage), study_name=study_name, direction=direction,
                                pruner=pruner(settings), load_if_exists=True)
    study.sampler = sampler(settings, len(study.get_trials(deepcopy=False)))
    return study


def optuna_distribution(dist: Distribution):
    search = dist.search()
    if search["type"] == "categorical":
        return CategoricalDistribution(search["choices"])
    if search["type"] == "int":
        return IntDistribution(search["low"], search["high"], step=search["step"])
    return FloatDistribution(search["low"], search["high"], log=search["log"], step=search.get("step"))


def ask(study: optuna.Study, settings: SweepSettings) -> tuple[optuna.trial.Trial, dict[str, Any]]:
    """A new trial and the script params it runs with (the space's values, mapped back)."""
    space: Mapping[str, Distribution] = settings.sampling.parameter_space
    trial = study.ask({key: optuna_distribution(dist) for key, dist in space.items()})
    return trial, {key: dist.value(trial.params[key]) for key, dist in space.items()}


def grid_exhausted(study: optuna.Study, settings: SweepSettings) -> bool:
    """Grid sampling ran every combination already (no more trials to ask for)."""
    if settings.sampling.kind is not SamplingKind.GRID:
        return False
    return len(study.get_trials(deepcopy=False)) >= math.prod(len(d.args) for d in settings.sampling.parameter_space.values())


def trial_handle(study: optuna.Study, number: int) -> optuna.trial.Trial:
    """A live Trial for reporting a running trial's steps from a later controller step."""
    frozen = study.get_trials(deepcopy=False)[number]
    return optuna.trial.Trial(study, frozen._trial_id)


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
