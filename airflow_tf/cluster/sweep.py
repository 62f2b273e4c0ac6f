"""Hyperparameter trials: a grid of script params, or a seeded random sample of it. Pure."""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.spec import SCALAR_TYPES

MODES = ("max", "min")


def check_grid(grid: Any) -> dict[str, list[Any]]:
    if not isinstance(grid, Mapping) or not grid:
        raise SpecError(f"grid must be a non-empty dict of script param -> list of values, got {grid!r}")
    for key, values in grid.items():
        if not isinstance(key, str) or not key:
            raise SpecError(f"grid keys must be script param names such as '--learning-rate', got {key!r}")
        if not isinstance(values, (list, tuple)) or not values:
            raise SpecError(f"grid[{key!r}] must be a non-empty list of values, got {values!r}")
        for value in values:
            if not isinstance(value, SCALAR_TYPES):
                raise SpecError(f"grid[{key!r}] values must be scalars, got {value!r}")
    return {key: list(values) for key, values in grid.items()}


def trials(grid: Mapping[str, list[Any]], *, sample: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Every combination in key order, or ``sample`` of them drawn without replacement (seeded,
    so a DAG file parses to the same trials every time)."""
    grid = check_grid(grid)
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if sample is None:
        return combos
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= len(combos):
        raise SpecError(f"sample must be an integer in 1..{len(combos)} (the grid's size), got {sample!r}")
    return random.Random(seed).sample(combos, sample)


def best_trial(results: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any]:
    """The trial whose final ``metric`` is best; trials without results (failed) are skipped."""
    if mode not in MODES:
        raise SpecError(f"mode must be one of {list(MODES)}, got {mode!r}")
    finished = [r for r in results if r.get("metrics")]
    if not finished:
        raise SpecError("no trial finished with metrics: nothing to pick from")
    available = sorted({key for r in finished for key, value in r["metrics"].items() if isinstance(value, (int, float))})
    if metric not in available:
        raise SpecError(f"metric {metric!r} is not in the trials' final metrics; available: {available}")
    scored = [r for r in finished if isinstance(r["metrics"].get(metric), (int, float))]
    pick = max if mode == "max" else min
    return pick(scored, key=lambda r: r["metrics"][metric])
