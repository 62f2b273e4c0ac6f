"""A benchmark-only backend (imported by benchmarks/dags/bench_orchestration.py and rebuilt from
its classpath by the triggerer, which has the repository on its path)."""

import dataclasses

from airflow_tf import LocalBackend


@dataclasses.dataclass(frozen=True, eq=False)
class PollOnlyLocalBackend(LocalBackend):
    """LocalBackend without exit descriptors: how the trigger watched nodes before (poll only)."""

    def exit_descriptor(self, handle):
        return None
