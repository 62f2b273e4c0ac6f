"""No shell interprets user input on an ssh host: every user-controlled string that reaches one is
refused when the DAG is parsed, or arrives as inert data.

Against the real sshd hosts (tests/ssh/conftest.py; they share this machine's filesystem, so a
marker file a payload would create is looked for directly). Each payload would create its own
marker if any shell on the host, ours or the ssh provider's remote-job wrapper (which splices
paths into a double-quoted ``bash -c`` script), evaluated it. The last test shows that the
wrapper does evaluate a path it is given, so the parse-time rule for paths is what stops it.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import uuid

import pytest

from airflow_tf import SpecError, TensorFlowTrainOperator
from airflow_tf.backends.ssh import SSHBackend
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.operators.nodes import job_id_for
from tests.helpers import job_pids, wait_until

pytestmark = pytest.mark.integration

SCRIPT = """\
import json, os, sys
seen = {"script": os.path.basename(sys.argv[0]), "argv": sys.argv[1:],
        "env": {k: v for k, v in os.environ.items() if k.startswith("INJ")}}
with open(os.path.join(os.environ["AIRFLOW_TF_OUTPUT_DIR"], "seen.json"), "w") as f:
    json.dump(seen, f)
"""


def payloads(markers: str) -> list[str]:
    """Command substitution, backticks, and breaking out of double / single quotes; each would
    touch its own marker under ``markers``."""
    m = os.path.join(markers, "PWNED")
    return [
        f"$(touch {m}-dollar)",
        f"`touch {m}-backtick`",
        f'"; touch {m}-dquote; echo "',
        f"'; touch {m}-squote; echo '",
        f"\\\"$(touch {m}-escaped)\\\"",
        f"x\n touch {m}-newline",
    ]


@pytest.fixture
def markers(tmp_path):
    path = tmp_path / "markers"
    path.mkdir()
    yield str(path)
    assert os.listdir(path) == [], f"a payload ran on the host: {os.listdir(path)}"


def test_paths_and_programs_with_shell_syntax_are_refused_at_parse_time(ssh_hosts, markers):
    conn = ssh_hosts.conn_id(0)
    for payload in payloads(markers):
        for kwargs, field in (({"remote_root": f"{ssh_hosts.remote_root}/{payload}"}, "remote_root"),
                              ({"remote_root": f"~/{payload}"}, "remote_root"),
                              ({"python": f"/usr/bin/python3{payload}"}, "python")):
            with pytest.raises(SpecError, match=f"^{field} must be "):
                SSHBackend([conn], **kwargs)
        with pytest.raises(SpecError, match=r"pip_packages\[0\] (must be a PEP 508 requirement|is a pip option)"):
            TrainingSpec(source_directory=markers, entry_script=".", pip_packages=[payload])
        # A connection id is looked up in Airflow, never sent to a host.
        with pytest.raises(SpecError, match=r"ssh_conn_ids\[0\] = .*: no such Airflow connection"):
            SSHBackend([f"gpu{payload}"]).hosts(1)


def test_params_env_script_and_run_id_arrive_as_data(ssh_hosts, markers, tmp_path):
    evil = payloads(markers)
    relative = "PWNED-relative"  # a relative marker: in whatever directory a shell ran it
    source = tmp_path / "src"
    source.mkdir()
    script = f"train $(touch {relative}) `touch {relative}` '\"q.py"  # a legal file name
    (source / script).write_text(SCRIPT)
    params = {"--plain": "ok", **{f"--p{i}": p for i, p in enumerate(evil)}, f"--k$(touch {relative})": None}
    env = {**{f"INJ{i}": p for i, p in enumerate(evil)}, f"INJ_NAME{evil[1]}": "a name is data too"}

    # The run id (from the UI or the API) and the group id become the job id: sanitised.
    job_id = job_id_for("inj", f"manual__{evil[0]}{evil[2]}", "train")
    assert set(job_id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    job_id = f"{job_id[:40]}-{uuid.uuid4().hex[:8]}"

    # Through a training group too: what a DAG file gives is accepted as-is (it is data).
    backend = SSHBackend([ssh_hosts.conn_id(0)], python=sys.executable, remote_root=ssh_hosts.remote_root,
                         connect_attempts=1, cleanup="never")
    from airflow.sdk import DAG

    with DAG(dag_id="inj", schedule=None):
        TensorFlowTrainOperator("train", source_directory=str(source), entry_script=script, script_params=params,
                                environment_variables=env, backend=backend)

    spec = TrainingSpec(source_directory=str(source), entry_script=script, script_params=params,
                        environment_variables=env)
    hosts = backend.hosts(1)
    plan = plan_tensorflow_job(spec, job_id=job_id, hosts=hosts)
    try:
        handle = backend.start(plan.launch(0, env), plan.source_directory)
        state = wait_until(lambda: (s := backend.poll(handle)) and not s["running"] and s, timeout=60,
                           what="the node to end")
        log = "".join(backend.read_tail(handle, 50))
        assert state["exit_code"] == 0, log
        with open(os.path.join(ssh_hosts.remote_root, job_id, "outputs", "seen.json")) as f:
            seen = json.load(f)
    finally:
        backend.stop_job(job_id, 1, grace_s=1)
        backend.close()
    # Every byte arrived as given: nothing was expanded, split or unquoted on the way.
    assert seen["script"] == script
    assert seen["argv"] == [a for k, v in params.items() for a in (k, v) if a is not None]
    assert seen["env"] == env
    job_dir = os.path.join(ssh_hosts.remote_root, job_id)
    left = glob.glob(os.path.join(job_dir, "**", "PWNED*"), recursive=True) + glob.glob(os.path.expanduser("~/PWNED*"))
    assert left == []
    assert job_pids(job_id) == []


def test_the_provider_wrapper_would_run_a_path_it_is_given(ssh_hosts, tmp_path):
    """Why remote paths are limited to a safe character set: the ssh provider's remote-job
    wrapper, which SSHBackend starts its nodes with, runs a path's command substitution on the
    host. (If this starts failing, the provider quotes paths now and the rule could be relaxed.)"""
    from airflow.providers.ssh.utils.remote_job import RemoteJobPaths, build_posix_wrapper_command

    marker = os.path.join(str(tmp_path), "canary")
    paths = RemoteJobPaths(job_id="node-0", remote_os="posix", base_dir=f"{tmp_path}/x$(touch {marker})")
    backend = SSHBackend([ssh_hosts.conn_id(0)], python=sys.executable, connect_attempts=1)
    try:
        backend.host(ssh_hosts.conn_id(0)).exec(["bash", "-c", build_posix_wrapper_command("true", paths, {})],
                                                timeout=30, what="the provider's wrapper")
        assert wait_until(lambda: os.path.exists(marker), timeout=10, what="the canary marker")
    finally:
        backend.close()
