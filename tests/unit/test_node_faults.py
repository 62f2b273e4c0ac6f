"""Node-side faults on a real LocalBackend node: the node's disk fills up mid-training.

Needs root (it mounts a small tmpfs as the job root); CI runs as root, and a missing privilege
is a failure here, not a skip.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import time
import uuid

import pytest

from airflow_tf.backends.local import LocalBackend
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.runtime.launcher import LOG_FAILED
from tests.helpers import job_pids, wait_until


@pytest.fixture
def small_disk(tmp_path):
    root = tmp_path / "tmpfs"
    root.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(root)], capture_output=True, text=True)
    assert out.returncode == 0, f"cannot mount a tmpfs (these tests need root): {out.stderr}"
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_a_full_disk_fails_the_node_clearly_and_never_hangs(small_disk, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    # Two ranks print far more than the 256 KiB disk holds, then would sleep for a long time: a
    # node whose log stops draining would hang with them.
    (src / "train.py").write_text(textwrap.dedent("""
        import sys, time
        for i in range(20000):
            print(f"step {i} " + "x" * 100, flush=True)
        time.sleep(300)
    """))
    backend = LocalBackend(job_root=str(small_disk))
    spec = TrainingSpec(source_directory=str(src), entry_script="train.py", node_count=1, process_count_per_node=2)
    job_id = f"full-{uuid.uuid4().hex[:8]}"
    plan = plan_tensorflow_job(spec, job_id=job_id, hosts=backend.hosts(1), free_ports={"127.0.0.1": backend.free_ports("127.0.0.1", 2)})
    handle = backend.start(plan.launch(0), str(src))
    started = time.monotonic()
    try:
        state = wait_until(lambda: (s := backend.poll(handle)) and not s["running"] and s, timeout=60,
                           what="the node to end on a full disk")
        detected_s = time.monotonic() - started
        assert state["exit_code"] == LOG_FAILED, state  # written although the disk is full
        assert detected_s < 60
        print(f"full disk: node ended {detected_s:.2f} s after its start")
        # Both ranks stopped, nothing left (the launcher exits right after writing its code).
        wait_until(lambda: job_pids(job_id) == [], timeout=10, what="no process of the job")
        log = open(os.path.join(handle["node_dir"], "node.log"), "rb").read()
        assert b"step 0 " in log  # it did write until the disk was full
    finally:
        backend.stop_job(job_id, 1, grace_s=1)
    assert job_pids(job_id) == []


def test_sigterm_during_the_pip_install_stops_the_node_at_once(tmp_path):
    import socket
    import threading

    # A package index that accepts connections and never answers: pip would wait for minutes.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(16)), daemon=True).start()
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('never reached')\n")
    # A package cache of the test's own (the node's cache setting passed on by name).
    backend = LocalBackend(job_root=str(tmp_path / "jobs"), pass_environment=["AIRFLOW_TF_PACKAGE_CACHE"])
    spec = TrainingSpec(source_directory=str(src), entry_script="train.py",
                        pip_packages=["airflow-tf-absent-package==1.0"],
                        pip_index_url=f"http://127.0.0.1:{server.getsockname()[1]}/simple",
                        pip_trusted_hosts=["127.0.0.1"])
    job_id = f"pipstop-{uuid.uuid4().hex[:8]}"
    plan = plan_tensorflow_job(spec, job_id=job_id, hosts=backend.hosts(1))
    os.environ["AIRFLOW_TF_PACKAGE_CACHE"] = str(tmp_path / "cache")
    try:
        handle = backend.start(plan.launch(0), str(src))
        log_path = os.path.join(handle["node_dir"], "node.log")
        wait_until(lambda: b"pip_packages: installing" in open(log_path, "rb").read(), timeout=30,
                   what="the install to start")
        pip = wait_until(lambda: [p for p in job_pids(job_id) if b"pip" in open(f"/proc/{p}/cmdline", "rb").read()],
                         timeout=30, what="pip to run")
        started = time.monotonic()
        backend.stop(handle, grace_s=10)
        stopped_s = time.monotonic() - started
        print(f"SIGTERM during pip install: node ended {stopped_s:.2f} s after the stop")
        state = backend.poll(handle)
        # TERM honoured in the install phase: the launcher's own code for it, long before the grace.
        assert state["exit_code"] == 143, (state, open(log_path).read())
        assert stopped_s < 8, stopped_s
        assert all(not os.path.exists(f"/proc/{p}") or b"Z" == open(f"/proc/{p}/stat", "rb").read().rsplit(b")", 1)[1].split()[0]
                   for p in pip)
        assert job_pids(job_id) == []
        assert "never reached" not in open(log_path).read()
    finally:
        os.environ.pop("AIRFLOW_TF_PACKAGE_CACHE", None)
        backend.stop_job(job_id, 1, grace_s=1)
        server.close()


def test_the_launcher_carries_the_job_marker_before_its_ranks_start(tmp_path):
    """A launcher still installing packages (or killed before it started its ranks) is found by
    the job's sweep: the marker is in its environment from its first instant."""
    from airflow_tf.runtime import procfs

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("import time\ntime.sleep(300)\n")
    backend = LocalBackend(job_root=str(tmp_path / "jobs"))
    spec = TrainingSpec(source_directory=str(src), entry_script="train.py")
    job_id = f"marker-{uuid.uuid4().hex[:8]}"
    handle = backend.start(plan_tensorflow_job(spec, job_id=job_id, hosts=backend.hosts(1)).launch(0), str(src))
    try:
        assert wait_until(lambda: handle["pid"] in procfs.job_processes(job_id, 0), timeout=10,
                          what="the launcher to carry the marker")
    finally:
        assert backend.stop_job(job_id, 1, grace_s=2) == [0]
    assert job_pids(job_id) == []


def test_max_run_duration_seconds_stops_the_job_with_that_reason(airflow_db, capfd):
    from airflow.dag_processing.dagbag import DagBag

    from tests.integration.dagrun import xcom

    dag_file = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dags", "tf_max_run_duration.py")
    bag = DagBag(dag_folder=dag_file)
    assert not bag.import_errors, bag.import_errors
    dag = bag.get_dag("tf_max_run_duration")
    started = time.monotonic()
    run = dag.test()
    took = time.monotonic() - started
    output = capfd.readouterr().out
    assert run.state == "failed"
    assert "ran longer than max_run_duration_seconds (4 s, counted from its first node's start)" in output
    assert took < 120  # the nodes would have run for 10 minutes
    job_id = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")["job_id"]
    assert job_pids(job_id) == []


@pytest.mark.parametrize("value", [0, -1, "60", True])
def test_max_run_duration_seconds_must_be_a_positive_number(tmp_path, value):
    from airflow.sdk import DAG

    from airflow_tf import SpecError, TensorFlowTrainOperator

    (tmp_path / "train.py").write_text("")
    with DAG(dag_id="bad_duration", schedule=None), pytest.raises(
            SpecError, match=r"max_run_duration_seconds must be a number of seconds > 0 or None \(None: no limit\)"):
        TensorFlowTrainOperator(task_id="t", source_directory=str(tmp_path), entry_script="train.py",
                                max_run_duration_seconds=value)
