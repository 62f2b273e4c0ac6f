"""Loss/accuracy curves as a PNG next to the model: people would rather look at a curve than
read numbers. Uses matplotlib's Agg backend (no display), imported only when a job ends and
only if installed (the ``plots`` extra): without it there is no picture, never a failed job."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from airflow_tf.results.progress import HIDDEN_KEYS

log = logging.getLogger(__name__)


def write_curves(history: list[dict[str, Any]], path: str, title: str) -> str | None:
    """One panel per metric over epochs; returns ``path``, or None when there is nothing to plot."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in history:
        for key, value in record.items():
            if key not in HIDDEN_KEYS and isinstance(value, (int, float)) and "epoch" in record:
                series.setdefault(key, []).append((record["epoch"], float(value)))
    series = {key: points for key, points in series.items() if len(points) > 1}
    if not series:
        return None
    if importlib.util.find_spec("matplotlib") is None:
        log.warning("no curves picture: matplotlib is not installed (pip install \"airflow-tf[plots]\")")
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(series), figsize=(4.5 * len(series), 3.5), squeeze=False)
    for ax, (key, points) in zip(axes[0], sorted(series.items())):
        ax.plot([e for e, _ in points], [v for _, v in points], marker="o")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
