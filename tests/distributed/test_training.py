"""End to end on the multi-host deployment, through the REST API like a user: where each task
ran (the TI records' host names), what the nodes did, where the outputs went, and that nothing
is left running on any host. Order matters only for the last test, which kills a worker host."""

from __future__ import annotations

import os

import pytest

from tests.distributed.conftest import record
from tests.distributed.runs import (
    failure_logs,
    full_log,
    hosts,
    job_id,
    job_processes,
    run_record,
    run_to_end,
    seconds_between,
    states,
    xcom,
)
from tests.e2e.server import wait_until

pytestmark = pytest.mark.distributed
GROUP = ["train.plan", "train.launch[0]", "train.launch[1]", "train.wait", "train.teardown"]


def group_hosts(tis: dict) -> dict:
    return {name: host for name, host in hosts(tis).items() if name in GROUP}


def triggerer_log(deployment, host: str) -> str:
    with open(os.path.join(deployment.logs, f"{host}-triggerer.log"), errors="replace") as f:
        return f.read()


def trigger_hosts(deployment, dag_id: str, run_id: str) -> dict[str, list[str]]:
    """Per Airflow host, the wait's log files on its own disk: a triggerer writes the trigger's
    part of the task log (``*.trigger.<triggerer job id>.log``) where it runs."""
    found = {}
    for host in ("control", "host-a", "host-b"):
        root = deployment.hosts.disk_path(host, os.path.join(deployment.disk, "airflow", "logs", f"dag_id={dag_id}"))
        for folder, _, names in os.walk(root):
            if f"run_id={run_id}" in folder and folder.endswith("task_id=train.wait"):
                found.setdefault(host, []).extend(sorted(names))
    return found


def triggered_on(deployment, dag_id: str, run_id: str) -> list[str]:
    found = trigger_hosts(deployment, dag_id, run_id)
    return sorted(host for host, names in found.items() if any("trigger" in name for name in names))


def test_mwms_on_two_remote_docker_daemons_outputs_to_sftp(deployment):
    api = deployment.api
    run_id, run, tis = run_to_end(api, "atfd_docker_mwms", timeout=420)
    assert run["state"] == "success", failure_logs(api, run["dag_id"], run_id, tis)
    where = hosts(tis)
    record("docker_mwms_hosts", where)
    record("docker_mwms_trigger_to_end_s", seconds_between(run["queued_at"], run["end_date"]))
    record("docker_mwms_trigger_to_teardown_end_s",
           seconds_between(run["queued_at"], tis[("train.teardown", -1)]["end_date"]))
    # The launches ran on host-a's worker, the wait (and its trigger) on host-b: no shared disk needed.
    assert where["train.launch[0]"] == where["train.launch[1]"] == "host-a"
    assert where["train.wait"] == "host-b" and where["onnx"] == "host-b" and where["where"] == "host-a"
    job = job_id("atfd_docker_mwms", run_id)
    assert triggered_on(deployment, "atfd_docker_mwms", run_id) == ["host-b"], \
        trigger_hosts(deployment, "atfd_docker_mwms", run_id)
    # One node per daemon, both through TLS; nothing left on either after the teardown.
    plan = xcom(api, "atfd_docker_mwms", run_id, "train.plan")
    assert sorted(node["host"] for node in plan) == sorted(d.address for d in deployment.daemons.values())
    for name, client in deployment.docker_clients().items():
        assert client.containers(all=True, filters={"label": f"airflow_tf.job={job}"}) == [], name
    assert job_processes(job) == []
    # The model (and the chief's other outputs) were copied to sftp:// on gpu-0 ...
    results = xcom(api, "atfd_docker_mwms", run_id, "train.wait")
    sftp_root = os.path.join(deployment.workdir, "sftp-outputs", job)
    assert results["model_path"] == f"sftp://atfd_sftp@{sftp_root}/model.keras"
    assert results["node_model_path"].startswith("docker-volume://")
    for name in ("model.keras", "metrics.json", "curves.png"):
        assert os.path.getsize(os.path.join(sftp_root, name)) > 0, name
    assert os.listdir(os.path.join(sftp_root, "tensorboard"))
    # ... where host-b's ONNX export read it (and wrote model.onnx next to it), and host-a found it.
    onnx = xcom(api, "atfd_docker_mwms", run_id, "onnx")
    assert onnx["onnx_path"] == f"sftp://atfd_sftp@{sftp_root}/model.onnx"
    assert os.path.getsize(os.path.join(sftp_root, "model.onnx")) > 0
    found = xcom(api, "atfd_docker_mwms", run_id, "where")
    assert found["hostname"] == "host-a" and found["zip"]
    assert found["size"] == os.path.getsize(f"{sftp_root}/model.keras")
    # The model Asset event points at the copy.
    events = api.request("GET", "/api/v2/assets/events?limit=50&order_by=-timestamp")["asset_events"]
    event = next(e for e in events
                 if e["uri"] == "airflow-tf://models/atfd-docker-mwms" and e["extra"].get("job_id") == job)
    assert event["extra"]["model_path"] == results["model_path"]


def test_local_backend_pinned_to_one_host(deployment):
    api = deployment.api
    run_id, run, tis = run_to_end(api, "atfd_local_pinned", timeout=300)
    assert run["state"] == "success", failure_logs(api, run["dag_id"], run_id, tis)
    record("local_pinned_hosts", hosts(tis))
    record("local_pinned_trigger_to_teardown_end_s",
           seconds_between(run["queued_at"], tis[("train.teardown", -1)]["end_date"]))
    assert set(group_hosts(tis).values()) == {"host-b"}, group_hosts(tis)
    job = job_id("atfd_local_pinned", run_id)
    assert triggered_on(deployment, "atfd_local_pinned", run_id) == ["host-b"], \
        trigger_hosts(deployment, "atfd_local_pinned", run_id)
    # The job directory is on host-b's own disk only; host-a read the model from the shared path.
    jobs = os.path.join(deployment.disk, "jobs")
    assert os.path.isdir(deployment.hosts.disk_path("host-b", os.path.join(jobs, job)))
    assert not os.path.exists(deployment.hosts.disk_path("host-a", os.path.join(jobs, job)))
    found = xcom(api, "atfd_local_pinned", run_id, "where")
    assert found["hostname"] == "host-a" and found["zip"]
    assert found["model_path"] == f"file://{deployment.shared}/models/{job}/model.keras"
    assert job_processes(job) == []


def test_local_backend_not_pinned_is_refused_before_any_node(deployment):
    api = deployment.api
    run_id, run, tis = run_to_end(api, "atfd_local_unpinned", timeout=180)
    assert run["state"] == "failed"
    assert states(tis)["train.plan"] == "failed"
    assert tis[("train.launch", -1)]["state"] == "upstream_failed"
    log = full_log(api, "atfd_local_unpinned", run_id, "train.plan")
    assert "default queue 'default'" in log and "airflow triggerer --queues" in log and "SSHBackend" in log
    job = job_id("atfd_local_unpinned", run_id)
    for host in ("host-a", "host-b"):
        assert not os.path.exists(deployment.hosts.disk_path(host, os.path.join(deployment.disk, "jobs", job)))
    assert job_processes(job) == []


def test_ps_and_horovod_gloo_on_ssh_hosts(deployment):
    """The seed's parameter-server example and Horovod over Gloo, both across the two ssh hosts
    (run at the same time: they share nothing but the hosts)."""
    api = deployment.api
    runs = {}
    for dag_id in ("atfd_ssh_ps", "atfd_ssh_horovod"):
        api.wait_for_dag(dag_id)
        runs[dag_id] = api.trigger(dag_id)
    for dag_id, run_id in runs.items():
        wait_until(lambda: api.run_state(dag_id, run_id) in ("success", "failed"), 300, 1, what=f"{dag_id} to end")
    gpu_hosts = sorted(deployment.hosts.address(g) for g in ("gpu-0", "gpu-1"))
    for dag_id, run_id in runs.items():
        tis = api.task_instances(dag_id, run_id)
        assert api.run_state(dag_id, run_id) == "success", failure_logs(api, dag_id, run_id, tis)
        record(f"{dag_id}_hosts", hosts(tis))
        assert set(group_hosts(tis).values()) <= {"host-a", "host-b"}
        plan = xcom(api, dag_id, run_id, "train.plan")
        assert sorted({node["host"] for node in plan}) == gpu_hosts
        assert job_processes(job_id(dag_id, run_id)) == []
    # Horovod's chief outputs, read from gpu-0 over SFTP, are on the shared path.
    job = job_id("atfd_ssh_horovod", runs["atfd_ssh_horovod"])
    results = xcom(api, "atfd_ssh_horovod", runs["atfd_ssh_horovod"], "train.wait")
    assert results["model_path"] == f"file://{deployment.shared}/models/{job}/model.keras"
    assert results["node_model_path"].startswith(f"ssh://{deployment.hosts.address('gpu-0')}/")
    with open(os.path.join(deployment.shared, "models", job, "model.keras"), "rb") as f:
        assert f.read(4) == b"PK\x03\x04"  # a .keras file is a zip


def start_sleeping_job(api, seconds: int):
    api.wait_for_dag("atfd_ssh_sleep")
    run_id = api.trigger("atfd_ssh_sleep", {"seconds": seconds})
    job = job_id("atfd_ssh_sleep", run_id)

    def training() -> bool:
        tis = api.task_instances("atfd_ssh_sleep", run_id)
        return tis.get(("train.wait", -1), {}).get("state") == "deferred" and len(job_processes(job)) >= 2

    wait_until(training, 180, 0.5, what="both sleeping nodes to run and the wait to defer")
    return run_id, job


def test_mark_failed_mid_training_leaves_nothing_running(deployment):
    api = deployment.api
    run_id, job = start_sleeping_job(api, 600)
    api.request("PATCH", f"/api/v2/dags/atfd_ssh_sleep/dagRuns/{run_id}/taskInstances/train.wait",
                {"new_state": "failed"})
    wait_until(lambda: api.run_state("atfd_ssh_sleep", run_id) in ("success", "failed"), 120, 1,
               what="the marked-failed run to end")
    tis = api.task_instances("atfd_ssh_sleep", run_id)
    assert api.run_state("atfd_ssh_sleep", run_id) == "failed"
    assert tis[("train.teardown", -1)]["state"] in ("failed", "success"), states(tis)
    wait_until(lambda: job_processes(job) == [], 30, 0.5, what="every node process to be gone")


def test_worker_host_killed_mid_training_leaves_nothing_running(deployment):
    """host-a launched the nodes and dies while they train; the wait's trigger (default queue,
    the control host's triggerer) goes on, host-b's worker finishes the run, nothing is left."""
    api = deployment.api
    run_id, job = start_sleeping_job(api, 20)
    tis = api.task_instances("atfd_ssh_sleep", run_id)
    assert tis[("train.launch", 0)]["hostname"] == "host-a"
    deployment.kill_host("host-a")
    wait_until(lambda: api.run_state("atfd_ssh_sleep", run_id) in ("success", "failed"), 240, 1,
               what="the run to end after host-a died")
    run = run_record(api, "atfd_ssh_sleep", run_id)
    tis = api.task_instances("atfd_ssh_sleep", run_id)
    record("host_killed_hosts", hosts(tis))
    assert run["state"] == "success", states(tis)
    assert tis[("train.teardown", -1)]["hostname"] == "host-b"
    assert job_processes(job) == []
