"""Backends with a fault built in, for fault-injection tests (importable by every Airflow
component, unlike a class defined in a DAG file: a backend is rebuilt from its classpath)."""

from __future__ import annotations

import dataclasses
import os
import time

from airflow_tf import LocalBackend


@dataclasses.dataclass(frozen=True, eq=False)
class HoldingLocalBackend(LocalBackend):
    """LocalBackend whose first start of each node holds the launch task ``hold_s`` seconds
    after the node started, before the handle is returned: the window in which a test kills the
    task process (a worker dying between starting a node and reporting it)."""

    hold_s: float = 60.0

    def start(self, launch, source_directory, secrets=None):
        handle = super().start(launch, source_directory, secrets)
        marker = os.path.join(self.job_dir(launch.node.job_id), f".held-{launch.node.node_index}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(self.hold_s)
        return handle
