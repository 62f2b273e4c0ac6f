"""Search spaces with the estimator's (HyperDrive's) parameter expressions. Pure: no Optuna here.

``choice``, ``randint``, ``uniform``, ``quniform``, ``loguniform``, ``qloguniform``, ``normal``,
``qnormal``, ``lognormal``, ``qlognormal`` build a ``Distribution``; a space maps script params
to them. A plain list is ``choice`` of its items (the 0.1 ``grid``), and HyperDrive's exported
form ``["uniform", [0.01, 0.1]]`` is read too, so a saved HyperDrive config translates as it is.

Each distribution says how the sampler should search it (``search``: what Optuna's
``FloatDistribution`` / ``IntDistribution`` / ``CategoricalDistribution`` get, built in
``operators/tuning_study.py``) and how a sampled number becomes the script's value (``value``).
Optuna has no unbounded distributions, so the normal family is searched over its quantile
(a uniform number in (0, 1)) and mapped through the inverse CDF: random sampling then draws
exactly the normal distribution, and TPE models the same space reparametrised.

One deliberate difference from HyperDrive: ``loguniform(low, high)`` / ``qloguniform`` take the
*values'* bounds (``loguniform(1e-4, 1e-1)``), not HyperDrive's natural-log exponents
(``loguniform(-9.2, -2.3)``); a bound <= 0 is refused with the translation spelled out.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import statistics
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.checks import SCALAR_TYPES, describe
from airflow_tf.cluster.errors import SpecError

QUANTILE_EPS = 1e-6  # the normal family's quantile stays inside (0, 1): the inverse CDF is finite


class DistributionKind(enum.StrEnum):
    CHOICE = "choice"
    RANDINT = "randint"
    UNIFORM = "uniform"
    QUNIFORM = "quniform"
    LOGUNIFORM = "loguniform"
    QLOGUNIFORM = "qloguniform"
    NORMAL = "normal"
    QNORMAL = "qnormal"
    LOGNORMAL = "lognormal"
    QLOGNORMAL = "qlognormal"


ARITY = {
    DistributionKind.RANDINT: ("upper",),
    DistributionKind.UNIFORM: ("low", "high"),
    DistributionKind.QUNIFORM: ("low", "high", "q"),
    DistributionKind.LOGUNIFORM: ("low", "high"),
    DistributionKind.QLOGUNIFORM: ("low", "high", "q"),
    DistributionKind.NORMAL: ("mu", "sigma"),
    DistributionKind.QNORMAL: ("mu", "sigma", "q"),
    DistributionKind.LOGNORMAL: ("mu", "sigma"),
    DistributionKind.QLOGNORMAL: ("mu", "sigma", "q"),
}
NORMAL_FAMILY = frozenset({DistributionKind.NORMAL, DistributionKind.QNORMAL, DistributionKind.LOGNORMAL,
                           DistributionKind.QLOGNORMAL})


def _number(field: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SpecError(f"{field}: {name} must be a finite number, got {describe(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class Distribution:
    """One parameter expression; ``field`` names it in errors (``parameter_space['--lr']``)."""

    kind: DistributionKind
    args: tuple
    field: str = "parameter_space"

    def __post_init__(self) -> None:
        kind, field = self.kind, self.field
        if kind is DistributionKind.CHOICE:
            if not self.args:
                raise SpecError(f"{field}: choice needs at least one option, got none")
            for option in self.args:
                if not isinstance(option, SCALAR_TYPES):
                    raise SpecError(f"{field}: choice options must be scalars (str, int, float, bool), got "
                                    f"{describe(option)}")
            return
        names = ARITY[kind]
        if len(self.args) != len(names):
            raise SpecError(f"{field}: {kind}({', '.join(names)}) takes {len(names)} number(s), got {list(self.args)}")
        values = dict(zip(names, (_number(field, n, v) for n, v in zip(names, self.args))))
        if kind is DistributionKind.RANDINT:
            if not isinstance(values["upper"], int) or values["upper"] < 1:
                raise SpecError(f"{field}: randint(upper) needs an integer upper >= 1, got {values['upper']!r}")
        if "low" in values and not values["low"] < values["high"]:
            raise SpecError(f"{field}: {kind} needs low < high, got low={values['low']!r}, high={values['high']!r}")
        if kind in (DistributionKind.LOGUNIFORM, DistributionKind.QLOGUNIFORM) and values["low"] <= 0:
            raise SpecError(
                f"{field}: {kind} needs low > 0, got low={values['low']!r}. Its bounds are the values' own "
                f"(loguniform(0.0001, 0.1)); HyperDrive's loguniform(a, b) took exponents: write "
                f"loguniform(math.exp(a), math.exp(b)) here")
        if "sigma" in values and values["sigma"] <= 0:
            raise SpecError(f"{field}: {kind} needs sigma > 0, got sigma={values['sigma']!r}")
        if "q" in values and values["q"] <= 0:
            raise SpecError(f"{field}: {kind} needs q > 0, got q={values['q']!r}")

    # -- how the sampler searches it -------------------------------------------------------------
    def search(self) -> dict[str, Any]:
        """``{"type": "categorical", "choices": [...]}``, ``{"type": "int", "low", "high", "step"}``
        or ``{"type": "float", "low", "high", "log"[, "step"]}``: what Optuna's distribution gets."""
        kind, a = self.kind, self.args
        if kind is DistributionKind.CHOICE:
            return {"type": "categorical", "choices": list(a)}
        if kind is DistributionKind.RANDINT:
            return {"type": "int", "low": 0, "high": a[0] - 1, "step": 1}
        if kind is DistributionKind.QUNIFORM and all(isinstance(v, int) for v in a):
            # Integer bounds and step (a batch size): the script gets ints, never "32.0".
            return {"type": "int", "low": a[0], "high": a[1], "step": a[2]}
        if kind is DistributionKind.QUNIFORM:
            return {"type": "float", "low": float(a[0]), "high": float(a[1]), "log": False, "step": float(a[2])}
        if kind in (DistributionKind.UNIFORM,):
            return {"type": "float", "low": float(a[0]), "high": float(a[1]), "log": False}
        if kind in (DistributionKind.LOGUNIFORM, DistributionKind.QLOGUNIFORM):
            return {"type": "float", "low": float(a[0]), "high": float(a[1]), "log": True}
        return {"type": "float", "low": QUANTILE_EPS, "high": 1.0 - QUANTILE_EPS, "log": False}  # normal family

    def value(self, sampled: Any) -> Any:
        """The script's value for what the sampler drew."""
        kind, a = self.kind, self.args
        if kind in (DistributionKind.CHOICE, DistributionKind.RANDINT, DistributionKind.UNIFORM,
                    DistributionKind.LOGUNIFORM, DistributionKind.QUNIFORM):
            return sampled
        if kind is DistributionKind.QLOGUNIFORM:
            return _quantise(sampled, a[2])
        normal = statistics.NormalDist(a[0], a[1]).inv_cdf(sampled)
        if kind is DistributionKind.NORMAL:
            return normal
        if kind is DistributionKind.QNORMAL:
            return _quantise(normal, a[2])
        if kind is DistributionKind.LOGNORMAL:
            return math.exp(normal)
        return _quantise(math.exp(normal), a[2])

    def to_json(self) -> list:
        """HyperDrive's exported form: ``["uniform", [0.01, 0.1]]``, ``["choice", [[16, 32]]]``."""
        return [self.kind.value, [list(self.args)] if self.kind is DistributionKind.CHOICE else list(self.args)]


def _quantise(value: float, q: float) -> float | int:
    rounded = round(value / q) * q
    return int(rounded) if isinstance(q, int) else rounded


def _make(kind: DistributionKind, *args: Any) -> Distribution:
    return Distribution(kind, tuple(args))


def choice(*options: Any) -> Distribution:
    """One of ``options``: ``choice(16, 32, 64)`` or ``choice([16, 32, 64])``."""
    if len(options) == 1 and isinstance(options[0], (list, tuple, range)):
        options = tuple(options[0])
    return _make(DistributionKind.CHOICE, *options)


def randint(upper: int) -> Distribution:
    """An integer in ``[0, upper)``."""
    return _make(DistributionKind.RANDINT, upper)


def uniform(low: float, high: float) -> Distribution:
    return _make(DistributionKind.UNIFORM, low, high)


def quniform(low: float, high: float, q: float) -> Distribution:
    """``low``, ``low + q``, ... up to ``high`` (ints when all three are ints)."""
    return _make(DistributionKind.QUNIFORM, low, high, q)


def loguniform(low: float, high: float) -> Distribution:
    """Log-uniform between the values ``low`` > 0 and ``high`` (not HyperDrive's exponents)."""
    return _make(DistributionKind.LOGUNIFORM, low, high)


def qloguniform(low: float, high: float, q: float) -> Distribution:
    return _make(DistributionKind.QLOGUNIFORM, low, high, q)


def normal(mu: float, sigma: float) -> Distribution:
    return _make(DistributionKind.NORMAL, mu, sigma)


def qnormal(mu: float, sigma: float, q: float) -> Distribution:
    return _make(DistributionKind.QNORMAL, mu, sigma, q)


def lognormal(mu: float, sigma: float) -> Distribution:
    """``exp(normal(mu, sigma))``."""
    return _make(DistributionKind.LOGNORMAL, mu, sigma)


def qlognormal(mu: float, sigma: float, q: float) -> Distribution:
    return _make(DistributionKind.QLOGNORMAL, mu, sigma, q)


def parse_expression(field: str, value: Any) -> Distribution:
    """A Distribution, a plain list (choice), or HyperDrive's ``[name, [args]]``."""
    if isinstance(value, Distribution):
        return dataclasses.replace(value, field=field)
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str) \
            and isinstance(value[1], (list, tuple)):
        name, args = value
        try:
            kind = DistributionKind(name)
        except ValueError:
            raise SpecError(f"{field}: unknown distribution {name!r}; allowed: "
                            f"{[k.value for k in DistributionKind]}") from None
        if kind is DistributionKind.CHOICE and len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = args[0]
        return Distribution(kind, tuple(args), field)
    if isinstance(value, (list, tuple)):
        return Distribution(DistributionKind.CHOICE, tuple(value), field)
    raise SpecError(f"{field} must be a parameter expression (choice(...), uniform(low, high), ...; allowed: "
                    f"{[k.value for k in DistributionKind]}) or a list of values, got {describe(value)}")


def parse_space(value: Any, field: str = "parameter_space") -> dict[str, Distribution]:
    """script param -> Distribution, every expression checked."""
    if isinstance(value, Distribution) or not isinstance(value, Mapping) or not value:
        raise SpecError(f"{field} must be a non-empty dict of script param -> parameter expression, e.g. "
                        f"{{'--learning-rate': loguniform(1e-4, 1e-1)}}, got {value!r}")
    space = {}
    for key, expression in value.items():
        if not isinstance(key, str) or not key:
            raise SpecError(f"{field} keys must be script param names such as '--learning-rate', got {key!r}")
        space[key] = parse_expression(f"{field}[{key!r}]", expression)
    return space


def space_to_json(space: Mapping[str, Distribution]) -> dict[str, list]:
    return {key: dist.to_json() for key, dist in space.items()}


def grid_size(space: Mapping[str, Distribution]) -> int:
    return math.prod(len(dist.args) for dist in space.values())
