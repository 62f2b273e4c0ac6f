"""The deployment itself: every component up, each on its host."""

import pytest

pytestmark = pytest.mark.distributed


def test_components_run_on_their_hosts(deployment):
    jobs = deployment.api.request("GET", "/api/v2/jobs?is_alive=true&limit=100")["jobs"]
    by_type = {}
    for job in jobs:
        by_type.setdefault(job["job_type"], set()).add(job["hostname"])
    assert by_type["SchedulerJob"] == {"control"}
    assert by_type["TriggererJob"] == {"control", "host-a", "host-b"}
    assert by_type["DagProcessorJob"] == {"control"}


def test_queues_reach_their_hosts(deployment):
    api = deployment.api
    api.wait_for_dag("atfd_hello")
    run_id = api.trigger("atfd_hello")
    from tests.e2e.server import wait_until

    state = wait_until(lambda: (s := api.run_state("atfd_hello", run_id)) in ("success", "failed") and s, 120,
                       what="atfd_hello to finish")
    tis = api.task_instances("atfd_hello", run_id)
    assert state == "success", {k: v["state"] for k, v in tis.items()}
    assert tis[("on_a", -1)]["hostname"] == "host-a"
    assert tis[("on_b", -1)]["hostname"] == "host-b"
    assert "host-b" in api.task_log("atfd_hello", run_id, "on_b")  # fetched from host-b's log server
