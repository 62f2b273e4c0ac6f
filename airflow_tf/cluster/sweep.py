"""Hyperparameter trials: a grid of script params, or a seeded random sample of it. Pure."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from typing import Any

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.limits import check_limit, limit
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
    size = math.prod(len(values) for values in grid.values())
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError(f"seed must be an integer, got {seed!r}")
    if sample is None:
        # Each trial is a training group built at every DAG parse: bounded, like node_count.
        if size > limit("max_sweep_trials"):
            raise SpecError(f"grid has {size} combinations, more than max_sweep_trials={limit('max_sweep_trials')} "
                            "([airflow_tf] max_sweep_trials): set sample=N to run N of them, shrink the grid, "
                            "or raise that setting")
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    if isinstance(sample, bool) or not isinstance(sample, int) or not 1 <= sample <= size:
        raise SpecError(f"sample must be an integer in 1..{size} (the grid's size), got {sample!r}")
    check_limit("sample", sample, "max_sweep_trials")
    # Draw indexes, not combinations: a huge grid is never materialised.
    picks = random.Random(seed).sample(range(size), sample)
    keys, lists = list(grid), list(grid.values())
    return [dict(zip(keys, _combination(lists, index))) for index in picks]


def _combination(lists: list[list[Any]], index: int) -> list[Any]:
    """The ``index``-th item of ``itertools.product(*lists)``."""
    values = []
    for options in reversed(lists):
        index, position = divmod(index, len(options))
        values.append(options[position])
    return values[::-1]


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
