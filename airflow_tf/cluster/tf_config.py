"""TF_CONFIG, the JSON TensorFlow's cluster resolver reads from the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def tf_config(cluster: Mapping[str, Sequence[str]], task_type: str, task_index: int) -> dict:
    if task_type not in cluster or not 0 <= task_index < len(cluster[task_type]):
        raise ValueError(f"task {task_type}:{task_index} is not in cluster {dict(cluster)}")
    return {
        "cluster": {role: list(addresses) for role, addresses in cluster.items()},
        "task": {"type": task_type, "index": task_index},
    }


def dumps(config: Mapping) -> str:
    """Compact and key-sorted, so the same cluster always yields the same string."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"))


def multi_worker_cluster(addresses: Sequence[str]) -> dict[str, list[str]]:
    # MultiWorkerMirroredStrategy: no "chief" entry; worker 0 acts as chief.
    return {"worker": list(addresses)}
