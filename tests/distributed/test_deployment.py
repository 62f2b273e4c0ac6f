"""The deployment itself: every component up, each on its host, each queue served where it should be."""

import os
import subprocess

import pytest

from tests.distributed.conftest import record
from tests.e2e.server import wait_until

pytestmark = pytest.mark.distributed


def test_components_run_on_their_hosts(deployment):
    jobs = deployment.api.request("GET", "/api/v2/jobs?is_alive=true&limit=100")["jobs"]
    by_type = {}
    for job in jobs:
        by_type.setdefault(job["job_type"], set()).add(job["hostname"])
    assert by_type["SchedulerJob"] == {"control"}
    assert by_type["TriggererJob"] == {"control", "host-a", "host-b"}
    assert by_type["DagProcessorJob"] == {"control"}
    record("idle_rss_mib", component_memory(deployment))
    record("idle_postgres_connections", postgres_connections(deployment))


def component_memory(deployment) -> dict[str, int]:
    """Resident memory of each component (its whole process group), idle: for the sizing notes."""
    import psutil

    out = {}
    for (host, name), proc in deployment.procs.items():
        total = 0
        for p in psutil.process_iter(["pid"]):
            try:
                if p.pid == proc.pid or os.getpgid(p.pid) == proc.pid:
                    total += p.memory_info().rss
            except (psutil.Error, ProcessLookupError):
                continue
        out[f"{host}/{name}"] = total >> 20
    return out


def postgres_connections(deployment) -> int:
    argv = deployment.hosts.enter("control") + ["psql", "-h", deployment.control, "-U", "postgres", "-tAc",
                                                "select count(*) from pg_stat_activity where datname = 'airflow'"]
    return int(subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip())


def test_queues_reach_their_hosts(deployment):
    api = deployment.api
    api.wait_for_dag("atfd_hello")
    run_id = api.trigger("atfd_hello")
    state = wait_until(lambda: (s := api.run_state("atfd_hello", run_id)) in ("success", "failed") and s, 120,
                       what="atfd_hello to finish")
    tis = api.task_instances("atfd_hello", run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items()}
    assert tis[("on_a", -1)]["hostname"] == "host-a"
    assert tis[("on_b", -1)]["hostname"] == "host-b"
    assert "host-b" in api.task_log("atfd_hello", run_id, "on_b")  # fetched from host-b's log server
