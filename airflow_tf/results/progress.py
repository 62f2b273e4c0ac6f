"""Metrics records (one JSON line per epoch, ``runtime.training.log_metrics``) turned into
progress lines for the task log, and which metrics files a node's processes write."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow_tf.runtime import node_files

HIDDEN_KEYS = frozenset({"epoch", "epochs", "rank", "time"})


def progress_line(record: Mapping[str, Any]) -> str:
    """``rank 0: epoch 3/10 loss=0.1234 accuracy=0.9876`` from one metrics record."""
    epoch = f"epoch {record.get('epoch')}" + (f"/{record['epochs']}" if record.get("epochs") else "")
    values = " ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in sorted(record.items()) if key not in HIDDEN_KEYS
    )
    return f"rank {record.get('rank', '?')}: {epoch} {values}".rstrip()


def metrics_files(node: Mapping[str, Any], world_size: int) -> list[str]:
    """The metrics files a node's processes write (JSON of a NodePlan). Under MPI every rank
    runs from node 0's directory, so node 0 holds all of them."""
    ranks: set[int] = set()
    for process in node["processes"]:
        if process["kind"] == "mpirun":
            ranks.update(range(world_size))
        elif process["kind"] == "rank":
            ranks.add(process["rank"])
    return [node_files.metrics_file(rank) for rank in sorted(ranks)]
