"""A picture of a sweep: the primary metric of every trial over its epochs, the best trial
highlighted, trials terminated early drawn dashed and ending where they were stopped. matplotlib
(the ``plots`` extra) is optional, as for ``curves.py``: without it there is no picture, never a
failed sweep."""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)


def write_sweep_curves(trials: list[dict[str, Any]], path: str, metric: str, best: int | None,
                       title: str) -> str | None:
    """``trials``: rows of the sweep's trial table (``number``, ``state``, ``history`` = [[epoch, value]])."""
    drawn = [t for t in trials if t.get("history")]
    if not drawn:
        return None
    if importlib.util.find_spec("matplotlib") is None:
        log.warning("no sweep picture: matplotlib is not installed (pip install \"airflow-tf[plots]\")")
        return None
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.2))
    # The other trials in the tab10 colours but its red, which only the best trial wears.
    others = [colour for index, colour in enumerate(plt.get_cmap("tab10").colors) if index != 3]
    for position, trial in enumerate(drawn):
        epochs = [point[0] for point in trial["history"]]
        values = [point[1] for point in trial["history"]]
        is_best = trial["number"] == best
        ax.plot(epochs, values, marker="o", markersize=3,
                linestyle="--" if trial["state"] == "terminated" else "-",
                linewidth=2.8 if is_best else 1.0, alpha=1.0 if is_best else 0.55,
                color="tab:red" if is_best else others[position % len(others)], zorder=3 if is_best else 2,
                label=f"trial {trial['number']} ({trial['state']})" + (" best" if is_best else ""))
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small", ncol=2)
    ax.set_title(title, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
