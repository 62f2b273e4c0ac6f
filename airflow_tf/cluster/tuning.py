"""A hyperparameter sweep's settings, named as the estimator's HyperDrive named them. Pure.

    sampling: GridParameterSampling / RandomParameterSampling / BayesianParameterSampling(space)
    policy:   BanditPolicy / MedianStoppingPolicy / TruncationSelectionPolicy / NoTerminationPolicy
    SweepSettings: primary_metric_name, primary_metric_goal, max_total_runs, max_concurrent_runs,
              max_duration_minutes

Everything here is a frozen dataclass checked in ``__post_init__`` with the field's name in the
message, and travels as JSON (``to_json`` / ``from_json``) into the sweep's controller task.
Which Optuna sampler and pruner each becomes is ``operators/tuning_study.py``'s business.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any, ClassVar

from airflow_tf.cluster.checks import check_non_negative_int, check_positive_int, describe
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.limits import check_limit
from airflow_tf.cluster.tuning_space import DistributionKind, grid_size, parse_space, space_to_json

DEFAULT_MAX_DURATION_MINUTES = 10080  # HyperDrive's default: a week


class SamplingKind(enum.StrEnum):
    GRID = "grid"
    RANDOM = "random"
    BAYESIAN = "bayesian"


class PolicyKind(enum.StrEnum):
    NONE = "none"
    BANDIT = "bandit"
    MEDIAN_STOPPING = "median_stopping"
    TRUNCATION_SELECTION = "truncation_selection"


class Goal(enum.StrEnum):
    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"


def _seed(field: str, value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise SpecError(f"{field} must be an integer >= 0 or None, got {describe(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class ParameterSampling:
    """How trials' params are drawn from ``parameter_space`` (script param -> expression)."""

    parameter_space: Mapping[str, Any]
    seed: int | None = None
    kind: ClassVar[SamplingKind]

    def __post_init__(self) -> None:
        name = type(self).__name__
        object.__setattr__(self, "parameter_space", parse_space(self.parameter_space, f"{name}.parameter_space"))
        _seed(f"{name}.seed", self.seed)

    def to_json(self) -> dict[str, Any]:
        data = {"sampling": self.kind.value, "parameter_space": space_to_json(self.parameter_space), "seed": self.seed}
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                     if f.name not in ("parameter_space", "seed")})
        return data


@dataclasses.dataclass(frozen=True)
class GridParameterSampling(ParameterSampling):
    """Every combination of ``choice`` expressions (in an order seeded by ``seed``), as HyperDrive."""

    kind: ClassVar[SamplingKind] = SamplingKind.GRID

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, dist in self.parameter_space.items():
            if dist.kind is not DistributionKind.CHOICE:
                raise SpecError(f"GridParameterSampling.parameter_space[{key!r}]: grid sampling takes only choice "
                                f"expressions (or lists), got {dist.kind}; use RandomParameterSampling or "
                                "BayesianParameterSampling for continuous ranges")


@dataclasses.dataclass(frozen=True)
class RandomParameterSampling(ParameterSampling):
    kind: ClassVar[SamplingKind] = SamplingKind.RANDOM


@dataclasses.dataclass(frozen=True)
class BayesianParameterSampling(ParameterSampling):
    """Optuna's TPE: ``n_startup_trials`` random trials first, then each trial chosen from the
    finished ones' results (so trials are chosen at run time)."""

    n_startup_trials: int = 10
    kind: ClassVar[SamplingKind] = SamplingKind.BAYESIAN

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("BayesianParameterSampling.n_startup_trials", self.n_startup_trials)


SAMPLINGS = {cls.kind: cls for cls in (GridParameterSampling, RandomParameterSampling, BayesianParameterSampling)}


def sampling_from_json(data: Mapping[str, Any]) -> ParameterSampling:
    data = dict(data)
    return SAMPLINGS[SamplingKind(data.pop("sampling"))](**data)


@dataclasses.dataclass(frozen=True)
class EarlyTerminationPolicy:
    """Applied after a trial reports its primary metric for an epoch: every
    ``evaluation_interval`` epochs, from epoch ``delay_evaluation`` on (HyperDrive's meaning)."""

    evaluation_interval: int = 1
    delay_evaluation: int = 0
    kind: ClassVar[PolicyKind]

    def __post_init__(self) -> None:
        check_positive_int(f"{type(self).__name__}.evaluation_interval", self.evaluation_interval)
        check_non_negative_int(f"{type(self).__name__}.delay_evaluation", self.delay_evaluation)

    def to_json(self) -> dict[str, Any]:
        return {"policy": self.kind.value, **{f.name: getattr(self, f.name) for f in dataclasses.fields(self)}}


@dataclasses.dataclass(frozen=True)
class NoTerminationPolicy(EarlyTerminationPolicy):
    kind: ClassVar[PolicyKind] = PolicyKind.NONE


@dataclasses.dataclass(frozen=True)
class BanditPolicy(EarlyTerminationPolicy):
    """Stop a trial whose metric falls outside the slack of the best trial's at the same epoch:
    ``slack_factor`` (a ratio) or ``slack_amount`` (an absolute distance), exactly one."""

    slack_factor: float | None = None
    slack_amount: float | None = None
    kind: ClassVar[PolicyKind] = PolicyKind.BANDIT

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.slack_factor is None) == (self.slack_amount is None):
            raise SpecError("BanditPolicy needs exactly one of slack_factor or slack_amount, got "
                            f"slack_factor={self.slack_factor!r}, slack_amount={self.slack_amount!r}")
        for name in ("slack_factor", "slack_amount"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise SpecError(f"BanditPolicy.{name} must be a number > 0, got {describe(value)}")


@dataclasses.dataclass(frozen=True)
class MedianStoppingPolicy(EarlyTerminationPolicy):
    kind: ClassVar[PolicyKind] = PolicyKind.MEDIAN_STOPPING


@dataclasses.dataclass(frozen=True)
class TruncationSelectionPolicy(EarlyTerminationPolicy):
    """At each evaluation, stop a trial in the worst ``truncation_percentage`` percent."""

    truncation_percentage: int = 0
    kind: ClassVar[PolicyKind] = PolicyKind.TRUNCATION_SELECTION

    def __post_init__(self) -> None:
        super().__post_init__()
        value = self.truncation_percentage
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 99:
            raise SpecError(f"TruncationSelectionPolicy.truncation_percentage must be an integer in 1..99, got "
                            f"{describe(value)}")


POLICIES = {cls.kind: cls for cls in (NoTerminationPolicy, BanditPolicy, MedianStoppingPolicy,
                                      TruncationSelectionPolicy)}


def parse_policy(value: Any) -> EarlyTerminationPolicy:
    """A policy object, None (no early termination), a policy's name, or its JSON."""
    if value is None:
        return NoTerminationPolicy()
    if isinstance(value, EarlyTerminationPolicy):
        return value
    data = {"policy": value} if isinstance(value, str) else value
    if not isinstance(data, Mapping) or not isinstance(data.get("policy"), str):
        raise SpecError(f"policy must be BanditPolicy(...), MedianStoppingPolicy(...), TruncationSelectionPolicy(...), "
                        f"NoTerminationPolicy() or None, got {describe(value)}")
    data = dict(data)
    name = data.pop("policy")
    try:
        kind = PolicyKind(name)
    except ValueError:
        raise SpecError(f"policy: unknown early termination policy {name!r}; allowed: "
                        f"{[k.value for k in PolicyKind]}") from None
    try:
        return POLICIES[kind](**data)
    except TypeError as exc:
        raise SpecError(f"policy {name!r}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class SweepSettings:
    """What the controller needs besides the training job's own fields."""

    sampling: ParameterSampling
    primary_metric_name: str
    primary_metric_goal: Goal = Goal.MAXIMIZE
    policy: EarlyTerminationPolicy = dataclasses.field(default_factory=NoTerminationPolicy)
    max_total_runs: int | None = None
    max_concurrent_runs: int = 1
    max_duration_minutes: float = DEFAULT_MAX_DURATION_MINUTES

    def __post_init__(self) -> None:
        if not isinstance(self.sampling, ParameterSampling):
            raise SpecError("hyperparameter_sampling must be GridParameterSampling(...), RandomParameterSampling(...) "
                            f"or BayesianParameterSampling(...), got {describe(self.sampling)}")
        if not isinstance(self.primary_metric_name, str) or not self.primary_metric_name.strip():
            raise SpecError("primary_metric_name must be the name of a metric the training script logs (e.g. "
                            f"'accuracy'), got {describe(self.primary_metric_name)}")
        try:
            object.__setattr__(self, "primary_metric_goal", Goal(str(self.primary_metric_goal).lower()
                                                                 if isinstance(self.primary_metric_goal, str)
                                                                 else self.primary_metric_goal))
        except ValueError:
            raise SpecError(f"primary_metric_goal must be one of {[g.value for g in Goal]}, got "
                            f"{self.primary_metric_goal!r}") from None
        object.__setattr__(self, "policy", parse_policy(self.policy))
        size = grid_size(self.sampling.parameter_space) if self.sampling.kind is SamplingKind.GRID else None
        if self.max_total_runs is None:
            if size is None:
                raise SpecError("max_total_runs is required for random and Bayesian sampling (an integer >= 1)")
            object.__setattr__(self, "max_total_runs", size)
        check_positive_int("max_total_runs", self.max_total_runs)
        check_limit("max_total_runs", self.max_total_runs, "max_sweep_trials")
        if size is not None and self.max_total_runs > size:
            raise SpecError(f"max_total_runs must be at most {size} (the grid's size) for grid sampling, got "
                            f"{self.max_total_runs}")
        check_positive_int("max_concurrent_runs", self.max_concurrent_runs)
        value = self.max_duration_minutes
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise SpecError(f"max_duration_minutes must be a number of minutes > 0, got {describe(value)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "sampling": self.sampling.to_json(), "primary_metric_name": self.primary_metric_name,
            "primary_metric_goal": self.primary_metric_goal.value, "policy": self.policy.to_json(),
            "max_total_runs": self.max_total_runs, "max_concurrent_runs": self.max_concurrent_runs,
            "max_duration_minutes": self.max_duration_minutes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "SweepSettings":
        return cls(**{**data, "sampling": sampling_from_json(data["sampling"]), "policy": parse_policy(data["policy"])})


# The 0.1 names -> today's (docs/tuning.md): they keep working with a DeprecationWarning.
LEGACY_NAMES = {
    "metric": "primary_metric_name",
    "mode": "primary_metric_goal",
    "max_parallel_trials": "max_concurrent_runs",
    "grid": "hyperparameter_sampling=GridParameterSampling({...})",
    "sample": "max_total_runs (with GridParameterSampling(..., seed=seed))",
    "seed": "GridParameterSampling(..., seed=...)",
}
LEGACY_MODES = {"max": Goal.MAXIMIZE, "min": Goal.MINIMIZE}


def from_legacy(legacy: Mapping[str, Any]) -> dict[str, Any]:
    """The 0.1 keywords (grid, sample, seed, metric, mode, max_parallel_trials) as today's."""
    out: dict[str, Any] = {}
    if "metric" in legacy:
        out["primary_metric_name"] = legacy["metric"]
    if "mode" in legacy:
        mode = legacy["mode"]
        if mode not in LEGACY_MODES:
            raise SpecError(f"mode must be one of {list(LEGACY_MODES)}, got {mode!r} (mode is deprecated: use "
                            f"primary_metric_goal, one of {[g.value for g in Goal]})")
        out["primary_metric_goal"] = LEGACY_MODES[mode]
    if "max_parallel_trials" in legacy:
        out["max_concurrent_runs"] = legacy["max_parallel_trials"]
    if "grid" in legacy:
        # The 0.1 sample drew N combinations without replacement in a seeded order: a seeded grid
        # sampler cut at N trials does the same.
        out["hyperparameter_sampling"] = GridParameterSampling(legacy["grid"], seed=legacy.get("seed", 0))
        if legacy.get("sample") is not None:
            out["max_total_runs"] = legacy["sample"]
    elif "sample" in legacy or "seed" in legacy:
        raise SpecError("sample and seed (deprecated) only go with grid; use "
                        "hyperparameter_sampling=...ParameterSampling(space, seed=...) and max_total_runs")
    return out
