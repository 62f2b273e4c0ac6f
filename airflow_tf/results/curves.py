"""Loss/accuracy curves as a PNG next to the model: people would rather look at a curve than
read numbers. Uses matplotlib's Agg backend (no display), imported only when a job ends and
only if installed (the ``plots`` extra): without it there is no picture, never a failed job."""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from typing import Any

from airflow_tf.results.progress import HIDDEN_KEYS

_DRAWING = threading.Lock()
_preloaded = False

log = logging.getLogger(__name__)


def write_curves(history: list[dict[str, Any]], path, title: str) -> str | None:
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
    # The object API, not pyplot: no global figure registry, so the triggerer can draw in a worker
    # thread (see preload); the lock keeps two jobs' drawings from sharing matplotlib's font caches.
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    with _DRAWING:
        fig = Figure(figsize=(4.5 * len(series), 3.5))
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, len(series), squeeze=False)
        for ax, (key, points) in zip(axes[0], sorted(series.items())):
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o")
            ax.set_title(key)
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    return path


def write_job_curves(history: list[dict[str, Any]], output_dir: str | None, job_id: str) -> str | None:
    """``<output_dir>/curves.png`` when the job's outputs are on this machine (else None): where
    the trigger and the wait task both put the picture."""
    if not history or not output_dir or not os.path.isdir(output_dir):
        return None
    return write_curves(history, os.path.join(output_dir, "curves.png"), title=job_id)


def preload_in_background() -> None:
    """preload() in a daemon thread at the lowest CPU priority (Linux: niceness is per thread),
    so the one-off import never competes with training ranks sharing the triggerer's machine."""

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass  # not Linux, or not allowed: an ordinary thread then
        try:
            preload()
        except Exception as exc:  # noqa: BLE001 - a head start only: the drawing imports it itself
            log.debug("matplotlib preload failed: %s", exc)

    if not _preloaded:
        threading.Thread(target=run, name="airflow-tf-curves-preload", daemon=True).start()


def preload() -> None:
    """Import matplotlib ahead of time (≈1 s cold): the wait trigger calls it while the job runs,
    so the curves it draws when the job ends cost the drawing alone (≈0.1 s), not the import."""
    global _preloaded
    if _preloaded or importlib.util.find_spec("matplotlib") is None:
        return
    _preloaded = True
    import io  # noqa: PLC0415

    write_curves([{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}], io.BytesIO(), title="")  # fonts, caches
