"""The bad-input table: every public operator, backend and sensor, given a bad value, fails with a
SpecError whose message names the field and says what is allowed (or what to write instead).

At DAG-parse time where the value is known (constructing the object is what a DAG file does);
at plan time where it is a template (the plan task's own render + execute path, the one a run
takes), and then before any node starts: the plan task is the first task of a training group,
and no job directory exists afterwards. docs/security.md lists the rules these rows pin down.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_tf import (
    DockerBackend,
    HorovodTrainOperator,
    HyperparameterSweep,
    LocalBackend,
    OnnxExportOperator,
    ParameterServerTrainOperator,
    SpecError,
    SSHBackend,
    TensorFlowTrainOperator,
    TrainingCompletionSensor,
)

SOCK = "unix:///var/run/docker.sock"


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("table") / "project"
    source.mkdir()
    (source / "train.py").write_text("print('train')\n")
    (source / "eval.py").write_text("print('eval')\n")
    return source


def group(cls, src, **options):
    """A training group built the way a DAG file builds it."""
    options.setdefault("source_directory", str(src))
    options.setdefault("entry_script", "train.py")
    with DAG(dag_id="table", schedule=None):
        return cls("train", **options)


def tf(**o):
    return lambda src: group(TensorFlowTrainOperator, src, **o)


def ps(**o):
    return lambda src: group(ParameterServerTrainOperator, src, **o)


def hvd(**o):
    return lambda src: group(HorovodTrainOperator, src, **o)


def in_dag(factory):
    def build(src):
        with DAG(dag_id="table", schedule=None):
            return factory(src)
    return build


def onnx(**o):
    return in_dag(lambda src: OnnxExportOperator(task_id="onnx", **{"model_path": "/m.keras", **o}))


def sweep(**o):
    from airflow_tf.tuning import RandomParameterSampling, uniform

    base = {"hyperparameter_sampling": RandomParameterSampling({"--lr": uniform(0.1, 0.2)}), "max_total_runs": 2,
            "primary_metric_name": "accuracy", "source_directory": None, "entry_script": "train.py"}
    return in_dag(lambda src: HyperparameterSweep("sweep", **{**base, "source_directory": str(src), **o}))


def legacy_sweep(**o):  # the 0.1 keywords (deprecated, still checked under their own names)
    base = {"grid": {"--lr": [0.1, 0.2]}, "metric": "accuracy", "source_directory": None, "entry_script": "train.py"}
    return in_dag(lambda src: HyperparameterSweep("sweep", **{**base, "source_directory": str(src), **o}))


def sensor(**o):
    return in_dag(lambda src: TrainingCompletionSensor(task_id="wait", **{"external_dag_id": "train_dag", **o}))


def local(**o):
    return lambda src: LocalBackend(**o)


def docker(**o):
    return lambda src: DockerBackend(**{"image": "localhost/tf:1", "docker_urls": [SOCK], **o})


def ssh(**o):
    return lambda src: SSHBackend(**{"ssh_conn_ids": ["gpu1"], **o})


# (row id, what builds it, fragments the message must contain: the field, then what is allowed)
PARSE_TIME = [
    # TensorFlowTrainOperator (and what every training group shares)
    ("tf-node-count-zero", tf(node_count=0), ["node_count must be an integer >= 1", "got 0"]),
    ("tf-node-count-huge", tf(node_count=10**6), ["node_count must be at most 4096", "[airflow_tf] max_node_count"]),
    ("tf-node-count-bool", tf(node_count=True), ["node_count must be an integer >= 1", "(bool)"]),
    ("tf-ranks-per-node-huge", tf(process_count_per_node=1000), ["process_count_per_node must be at most 256"]),
    ("tf-world-size-huge", tf(node_count=4096, process_count_per_node=64),
     ["node_count x process_count_per_node (4096 x 64) must be at most 65536", "max_world_size"]),
    ("tf-use-gpu-str", tf(use_gpu="no"), ["use_gpu must be True or False", "'no' (str)"]),
    ("tf-pip-index-option", tf(pip_packages=["--index-url=http://mirror/simple", "numpy"]),
     ["pip_packages[0] is a pip option", "use pip_index_url='http://mirror/simple'"]),
    ("tf-pip-index-option-split", tf(pip_packages=["-i", "https://mirror/simple", "numpy"]),
     ["pip_packages[0] is a pip option", "use pip_index_url='https://mirror/simple'"]),
    ("tf-pip-editable", tf(pip_packages=["-e", "."]), ["pip_packages[0] is a pip option", "editable installs"]),
    ("tf-pip-extra-index-option", tf(pip_packages=["--extra-index-url", "https://x/simple", "numpy"]),
     ["pip_packages[0]", "use pip_extra_index_urls=['https://x/simple']"]),
    ("tf-pip-not-pep508", tf(pip_packages=["numpy", "numpy>=>1"]),
     ["pip_packages[1] must be a PEP 508 requirement such as 'numpy>=1.26'"]),
    ("tf-pip-bare-path", tf(pip_packages=["./wheels/pkg.whl"]),
     ["pip_packages[0] must be a PEP 508 requirement", "'name @ https://"]),
    ("tf-pip-credentials-redacted", tf(pip_packages=["pkg @ https://user:s3cret@host/x.whl", "-r", "req.txt"]),
     ["pip_packages[1] is a pip option", "list the requirements themselves"]),
    ("tf-pip-index-credentials", tf(pip_packages=["--index-url=https://user:s3cret@mirror/simple"]),
     ["pip_packages[0] is a pip option", "use pip_index_url='https://****@mirror/simple'"]),
    ("tf-pip-string", tf(pip_packages="numpy"), ["pip_packages must be a list of strings"]),
    ("tf-pip-index-ftp", tf(pip_packages=["numpy"], pip_index_url="ftp://mirror/simple"),
     ["pip_index_url must be an https://, http:// or file:// URL"]),
    ("tf-pip-index-spaces", tf(pip_packages=["numpy"], pip_index_url="https://a b/simple"),
     ["pip_index_url must be an index URL such as 'https://pypi.example.org/simple'"]),
    ("tf-pip-extra-index-str", tf(pip_packages=["numpy"], pip_extra_index_urls="https://x/simple"),
     ["pip_extra_index_urls must be a list of strings"]),
    ("tf-pip-trusted-host", tf(pip_packages=["numpy"], pip_trusted_hosts=["mirror;rm"]),
     ["pip_trusted_hosts[0] must be a host name or host:port"]),
    ("tf-pip-index-without-packages", tf(pip_index_url="https://mirror/simple"),
     ["pip_index_url: applies only to pip_packages, which is empty"]),
    ("tf-param-nul", tf(script_params={"--name": "a\0b"}), ["script_params['--name'] must not contain a NUL byte"]),
    ("tf-param-list-nul", tf(script_params=["--name", "a\0b"]), ["script_params[1] must not contain a NUL byte"]),
    ("tf-param-string", tf(script_params="--lr 0.1"),
     ["script_params must be a dict of flag -> scalar or a list", "render_template_as_native_obj=True"]),
    ("tf-param-nested", tf(script_params={"--lr": [0.1]}), ["script_params['--lr'] must be a scalar"]),
    ("tf-env-nul", tf(environment_variables={"DATA": "a\0b"}),
     ["environment_variables['DATA'] must not contain a NUL byte"]),
    ("tf-env-reserved", tf(environment_variables={"TF_CONFIG": "{}"}),
     ["environment_variables['TF_CONFIG'] is set by airflow-tf's plan"]),
    ("tf-env-bad-name", tf(environment_variables={"A=B": "1"}),
     ["environment_variables keys must be non-empty names without '='"]),
    ("tf-source-missing", tf(source_directory="/nonexistent/project"), ["source_directory must be an existing directory"]),
    ("tf-source-nul", tf(source_directory="/tmp\0x"), ["source_directory must not contain a NUL byte"]),
    ("tf-entry-script-escapes", tf(entry_script="../train.py"),
     ["entry_script must be a relative path inside source_directory"]),
    ("tf-poll-interval-str", tf(poll_interval="1"),
     ["poll_interval must be a number of seconds > 0 or None", "not a string"]),
    ("tf-timeout-bool", tf(timeout=True), ["timeout must be a number of seconds > 0 or None", "True"]),
    ("tf-conda-no-channel", tf(conda_packages=["numpy"], conda_channels=[]),
     ["conda_channels must list at least one channel"]),
    ("tf-unknown-option", tf(node_cout=2), ["unknown option(s) ['node_cout']", "did you mean 'node_count'"]),
    ("tf-backend-str", tf(backend="local"), ["backend must be an airflow_tf Backend"]),
    ("tf-model-asset", tf(model_asset=5), ["model_asset must be an airflow.sdk.Asset or a URI string"]),
    # Restarts, resume and task-level arguments (issue: retries that resume)
    ("tf-max-run-duration", tf(max_run_duration_seconds=0), ["max_run_duration_seconds must be"]),
    ("tf-max-restarts-negative", tf(max_restarts=-1), ["max_restarts must be an int >= 0", "got -1"]),
    ("tf-max-restarts-str", tf(max_restarts="2"), ["max_restarts must be an int >= 0", "got '2'"]),
    ("tf-restart-codes", tf(max_restarts=1, restart_on_exit_codes=[137, 0]),
     ["restart_on_exit_codes must be a list of exit codes, each an int 1-255"]),
    ("tf-permanent-codes", tf(max_restarts=1, permanent_exit_codes=["oom"]),
     ["permanent_exit_codes must be a list of exit codes, each an int 1-255"]),
    ("tf-codes-both", tf(max_restarts=1, restart_on_exit_codes=[1, 137], permanent_exit_codes=[1]),
     ["exit code(s) [1] are in both restart_on_exit_codes and permanent_exit_codes"]),
    ("tf-resume-relative", tf(resume_from="outputs/run1"), ["resume_from must be an absolute path"]),
    ("tf-resume-s3", tf(resume_from="s3://bucket/run1"), ["resume_from 's3://bucket/run1': only paths the nodes see"]),
    ("tf-resume-number", tf(resume_from=5), ["resume_from must be a path, a file:// URI or a model Asset"]),
    ("tf-retries-str", tf(retries="3"), ["retries must be an int >= 0", "got '3'"]),
    ("tf-retry-delay", tf(retry_delay="soon"), ["retry_delay must be a datetime.timedelta or a number of seconds"]),
    ("tf-execution-timeout", tf(execution_timeout=-5), ["execution_timeout must be a datetime.timedelta"]),
    ("tf-callback", tf(on_failure_callback="notify"), ["on_failure_callback must be a callable or a list of callables"]),
    ("tf-queue", tf(queue=""), ["queue must be a non-empty string"]),
    ("tf-priority", tf(priority_weight=1.5), ["priority_weight must be an int"]),
    ("tf-sla", tf(sla=60), ["sla: Airflow 3 removed task SLAs"]),
    # ParameterServerTrainOperator
    ("ps-worker-count-zero", ps(worker_count=0), ["worker_count must be an integer >= 1"]),
    ("ps-worker-count-huge", ps(worker_count=10**6), ["worker_count must be at most 65536"]),
    ("ps-ps-count-str", ps(parameter_server_count="2"), ["parameter_server_count must be an integer >= 1", "(str)"]),
    ("ps-evaluator-str", ps(evaluator="yes"), ["evaluator must be True or False"]),
    ("ps-server-mode", ps(server_mode="threads"), ["server_mode must be one of ['script', 'runtime']"]),
    ("ps-ranks-per-node", ps(process_count_per_node=2), ["process_count_per_node must be 1 for parameter-server"]),
    ("ps-too-many-nodes", ps(node_count=5), ["node_count is 5 but there are only 3 tasks", "lower node_count"]),
    ("ps-evaluator-script-alone", ps(evaluator_script="eval.py"),
     ["evaluator_script is set but evaluator is False", "set evaluator=True"]),
    ("ps-restarts-negative", ps(max_worker_restarts=-1), ["max_worker_restarts must be an integer >= 0"]),
    # HorovodTrainOperator
    ("hvd-backend", hvd(distributed_backend="nccl"), ["distributed_backend must be one of ['gloo', 'mpi']"]),
    ("hvd-mpirun-glued-np", hvd(distributed_backend="mpi", mpirun_options=["-np4"]),
     ["mpirun_options may not set '-np' (from '-np4')", "use node_count and process_count_per_node"]),
    ("hvd-mpirun-npernode", hvd(distributed_backend="mpi", mpirun_options=["-npernode", "2"]),
     ["mpirun_options may not set '-npernode'"]),
    ("hvd-mpirun-separator", hvd(distributed_backend="mpi", mpirun_options=["--"]),
     ["mpirun_options may not contain '--'"]),
    ("hvd-mpirun-export", hvd(distributed_backend="mpi", mpirun_options=["-x", "HOROVOD_RANK=1"]),
     ["mpirun_options may not export 'HOROVOD_RANK=1'"]),
    ("hvd-mpirun-on-gloo", hvd(mpirun_options=["--mca", "btl", "tcp"]),
     ["mpirun_options only apply to distributed_backend='mpi'"]),
    ("hvd-interface", hvd(network_interface="eth0; rm -rf /"), ["network_interface must be an interface name"]),
    ("hvd-start-timeout", hvd(start_timeout=0), ["start_timeout must be an integer >= 1"]),
    ("hvd-gpus", hvd(use_gpu=True, gpus_per_node=1, process_count_per_node=2),
     ["process_count_per_node is 2 but gpus_per_node is 1", "lower process_count_per_node"]),
    # OnnxExportOperator
    ("onnx-tolerance", onnx(tolerance=0), ["tolerance must be a number > 0"]),
    ("onnx-opset", onnx(opset=99), ["opset must be an integer in 7..21"]),
    ("onnx-samples-huge", onnx(samples=10**9), ["samples must be an integer in 1..100000"]),
    ("onnx-model-path-none", onnx(model_path=None), ["model_path must be a model file path"]),
    ("onnx-output-path-empty", onnx(output_path=""), ["output_path must be a path"]),
    ("onnx-python-nul", onnx(python="/usr/bin/python3\0"), ["python must be a path"]),
    # HyperparameterSweep
    ("sweep-grid-empty", legacy_sweep(grid={}), ["grid must be a non-empty dict of script param -> list of values"]),
    ("sweep-grid-too-big", legacy_sweep(grid={"--a": list(range(100)), "--b": list(range(100))}),
     ["grid has 10000 combinations, more than max_sweep_trials=256", "set sample=N"]),
    ("sweep-sample-zero", legacy_sweep(sample=0), ["sample must be an integer in 1..2"]),
    ("sweep-sample-huge", legacy_sweep(grid={"--a": list(range(1000))}, sample=500), ["sample must be at most 256"]),
    ("sweep-mode", legacy_sweep(mode="best"), ["mode must be one of ['max', 'min']"]),
    ("sweep-parallel-bool", legacy_sweep(max_parallel_trials=True), ["max_parallel_trials must be an integer >= 1"]),
    ("sweep-metric", legacy_sweep(metric=""), ["metric must be the name of a metric"]),
    ("sweep-seed", legacy_sweep(sample=1, seed="1"), ["seed must be an integer"]),
    ("sweep-operator", sweep(operator=dict), ["operator must be a training operator class"]),
    ("sweep-trial-bad-node-count", sweep(node_count=0), ["node_count must be an integer >= 1"]),
    ("sweep-goal", sweep(primary_metric_goal="up"), ["primary_metric_goal must be one of ['maximize', 'minimize']"]),
    ("sweep-concurrent-zero", sweep(max_concurrent_runs=0), ["max_concurrent_runs must be an integer >= 1"]),
    ("sweep-policy-unknown", sweep(policy="early"), ["unknown early termination policy 'early'", "'bandit'"]),
    ("sweep-total-huge", sweep(max_total_runs=10**6), ["max_total_runs must be at most 256"]),
    ("sweep-distribution-unknown", sweep(hyperparameter_sampling={"--lr": ["gauss", [0, 1]]}),
     ["hyperparameter_sampling must be GridParameterSampling"]),
    # TrainingCompletionSensor
    ("sensor-dag-id-empty", sensor(external_dag_id=""), ["external_dag_id must be a DAG / task group id"]),
    ("sensor-group-id", sensor(training_group_id="train; rm"), ["training_group_id must be a DAG / task group id"]),
    ("sensor-poke-bool", sensor(poke_interval=True), ["poke_interval must be a number of seconds > 0"]),
    ("sensor-poke-str", sensor(poke_interval="5"), ["poke_interval must be a number of seconds > 0", "not a string"]),
    ("sensor-run-id", sensor(external_run_id=""), ["external_run_id must be a run id string"]),
    # LocalBackend
    ("local-job-root-nul", local(job_root="/srv/jobs\0"), ["job_root must be a path or None"]),
    ("local-host-port", local(host="10.0.0.1:80"), ["host must be a host name or IPv4 address without port"]),
    ("local-python-empty", local(python=""), ["python must be a path or None"]),
    # DockerBackend
    ("docker-mount-root", docker(mounts=["/:/host"]),
     ["mounts[0] '/:/host' mounts a host-control path", "allow_privileged_mounts=True"]),
    ("docker-mount-socket", docker(mounts=["/var/run/docker.sock:/var/run/docker.sock"]),
     ["mounts[0]", "host-control path", "allow_privileged_mounts=True"]),
    ("docker-mount-parent", docker(mounts=["/var:/hostvar:ro"]),
     ["mounts[0]", "which holds /var/run/docker.sock", "Mount a narrower directory"]),
    ("docker-mount-dotdot", docker(mounts=["/data/../etc:/etc2:ro"]), ["mounts[0]", "host-control path"]),
    ("docker-plaintext-tcp", docker(docker_urls=["tcp://gpu1:2375"]),
     ["docker_urls[0] 'tcp://gpu1:2375' is plaintext TCP", "https://", "insecure_tcp=True"]),
    ("docker-cap-typo", docker(cap_drop=["NET_RAWW"]), ["cap_drop[0] must be a Linux capability name"]),
    ("docker-cap-str", docker(cap_add="NET_RAW"), ["cap_add must be a list of Linux capability names"]),
    ("docker-user", docker(user="root; id"), ["user must be 'name', 'uid' or 'uid:gid'"]),
    ("docker-insecure-str", docker(insecure_tcp="yes"), ["insecure_tcp must be True or False"]),
    ("docker-privileged-int", docker(allow_privileged_mounts=1), ["allow_privileged_mounts must be True or False"]),
    ("docker-image-space", docker(image="my image"), ["image must be an image reference"]),
    ("docker-env-nul", docker(environment={"A": "x\0"}), ["environment['A']", "without NUL"]),
    ("docker-shm-bool", docker(shm_size=True), ["shm_size must be bytes (int) or a size like '2g'"]),
    # SSHBackend
    ("ssh-root-substitution", ssh(remote_root="/srv/jobs$(touch x)"),
     ["remote_root must be an absolute path or '~/...' made of letters, digits", "'$'"]),
    ("ssh-root-backtick", ssh(remote_root="~/jobs`id`"), ["remote_root must be", "'`'"]),
    ("ssh-root-quote", ssh(remote_root='/srv/"jobs'), ["remote_root must be", "'\"'"]),
    ("ssh-root-relative", ssh(remote_root="jobs"), ["remote_root must be an absolute path or start with '~/'"]),
    ("ssh-python-args", ssh(python="python3 -u"), ["python must be one executable"]),
    ("ssh-python-substitution", ssh(python="python3$(id)"), ["python must be one executable", "'$'"]),
    ("ssh-shared-str", ssh(allow_shared_hosts="no"), ["allow_shared_hosts must be True or False", "'no' (str)"]),
    ("ssh-preflight-str", ssh(preflight="no"), ["preflight must be True or False"]),
    ("ssh-cleanup", ssh(cleanup="sometimes"), ["cleanup must be one of ['on_success', 'always', 'never']"]),
    ("ssh-attempts", ssh(connect_attempts=0), ["connect_attempts must be an integer >= 1"]),
]


def check_message(exc: SpecError, fragments: list[str]) -> None:
    message = str(exc)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"message lacks {missing}:\n{message}"


@pytest.mark.parametrize("build, fragments", [row[1:] for row in PARSE_TIME], ids=[row[0] for row in PARSE_TIME])
def test_bad_value_fails_at_parse_time_naming_field_and_allowed(src, build, fragments):
    with pytest.raises(SpecError) as info:
        build(src)
    check_message(info.value, fragments)
    assert "s3cret" not in str(info.value)  # credentials in URLs never reach a message


def test_the_table_covers_every_public_class_and_is_big_enough():
    prefixes = {row[0].split("-")[0] for row in PARSE_TIME}
    assert prefixes == {"tf", "ps", "hvd", "onnx", "sweep", "sensor", "local", "docker", "ssh"}
    assert len(PARSE_TIME) + len(PLAN_TIME) + len(MIGRATION) >= 60


# -- rules that change what an existing DAG may write: the message says what to write instead --
def relative_to_cwd(src):
    """airflow-tf < 0.2 resolved a relative source_directory against the working directory."""
    os.chdir(src.parent)
    return group(TensorFlowTrainOperator, src, source_directory=src.name)


MIGRATION = [
    ("relative-source-cwd", relative_to_cwd,
     ["source_directory 'project' is relative, so it is resolved against the DAG file's folder",
      "Write source_directory=", "or an absolute path"]),
    ("docker-tcp-connection-default", None,
     ["docker_conn_ids[0] ('gpu1_docker') 'tcp://gpu1:2375' is plaintext TCP", "tls_ca_cert", "insecure_tcp=True"]),
]


def test_relative_source_directory_resolves_against_the_dag_file(src, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = Path(__file__).parent
    made = group(TensorFlowTrainOperator, src, source_directory=os.path.relpath(src, here))
    assert made.plan_task.spec_fields["source_directory"] == str(src)
    with pytest.raises(SpecError) as info:
        MIGRATION[0][1](src)
    check_message(info.value, MIGRATION[0][2])
    # "/" is a valid source directory (an entry script anywhere below it).
    assert group(TensorFlowTrainOperator, src, source_directory="/", entry_script=str(src / "train.py")[1:])


def test_docker_connection_without_tls_fails_at_plan_time_before_any_container(monkeypatch):
    # A bare host in a connection became plaintext tcp://host:2375; now it needs TLS extras.
    monkeypatch.setenv("AIRFLOW_CONN_GPU1_DOCKER", json.dumps({"conn_type": "docker", "host": "gpu1"}))
    backend = DockerBackend(image="localhost/tf:1", docker_conn_ids=["gpu1_docker"])  # parse: no lookup yet
    with pytest.raises(SpecError) as info:
        backend.hosts(1)  # the plan task's pre-flight; no daemon is contacted before this check
    check_message(info.value, MIGRATION[1][2])
    monkeypatch.setenv("AIRFLOW_CONN_GPU1_DOCKER", json.dumps(
        {"conn_type": "docker", "host": "gpu1", "extra": {"tls_ca_cert": "/ca.pem", "tls_client_cert": "/c.pem",
                                                          "tls_client_key": "/k.pem"}}))
    tls = DockerBackend(image="localhost/tf:1", docker_conn_ids=["gpu1_docker"])
    assert tls.daemons()[0].tls and tls.daemons()[0].url == "tcp://gpu1:2375"


# -- plan time: templated values, rendered by the plan task as a run renders them ---------------
PLAN_TIME = [
    ("plan-node-count-zero", {"node_count": "{{ params.v }}"}, 0, False, ["node_count must be an integer >= 1"]),
    ("plan-node-count-huge", {"node_count": "{{ params.v }}"}, 10**6, False, ["node_count must be at most 4096"]),
    ("plan-node-count-word", {"node_count": "{{ params.v }}"}, "many", False,
     ["node_count must be an integer >= 1", "'many' (str)"]),
    ("plan-params-as-string", {"script_params": "{{ params.v }}"}, {"--lr": 0.1}, False,
     ["script_params must be a dict", "render_template_as_native_obj=True"]),
    ("plan-env-as-string", {"environment_variables": "{{ params.v }}"}, {"DATA": "/d"}, False,
     ["environment_variables must be a dict of name -> string", "render_template_as_native_obj=True"]),
    ("plan-env-reserved", {"environment_variables": "{{ params.v }}"}, {"HOROVOD_RANK": "0"}, True,
     ["environment_variables['HOROVOD_RANK'] is set by airflow-tf's plan"]),
    ("plan-param-nul", {"script_params": "{{ params.v }}"}, {"--name": "a\0b"}, True,
     ["script_params['--name'] must not contain a NUL byte"]),
]


class FakeTI:
    def xcom_push(self, key, value):
        raise AssertionError("the plan task must fail before it publishes a plan")


@pytest.mark.parametrize("options, value, native, fragments", [row[1:] for row in PLAN_TIME],
                         ids=[row[0] for row in PLAN_TIME])
def test_templated_bad_value_fails_at_plan_time_before_any_node(src, tmp_path, options, value, native, fragments):
    job_root = tmp_path / "jobs"
    with DAG(dag_id="table_plan", schedule=None, params={"v": value}, render_template_as_native_obj=native) as dag:
        train = TensorFlowTrainOperator("train", source_directory=str(src), entry_script="train.py",
                                        backend=LocalBackend(job_root=str(job_root)), **options)  # parses fine
    plan = train.plan_task
    context = {"params": {"v": value}, "dag": dag, "run_id": "manual__1", "ti": FakeTI()}
    plan.render_template_fields(context)
    with pytest.raises(SpecError) as info:
        plan.execute(context)
    check_message(info.value, fragments)
    assert not job_root.exists() or os.listdir(job_root) == []  # no node directory, no node


@pytest.fixture(autouse=True)
def _keep_cwd():
    cwd = os.getcwd()
    yield
    os.chdir(cwd)


def test_limits_are_configurable(src, monkeypatch):
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__MAX_NODE_COUNT", "8")
    with pytest.raises(SpecError, match=re.escape("node_count must be at most 8 ([airflow_tf] max_node_count")):
        tf(node_count=9)(src)
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__MAX_NODE_COUNT", "20000")
    assert tf(node_count=10_000)(src)
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__MAX_NODE_COUNT", "lots")
    with pytest.raises(SpecError, match=re.escape("[airflow_tf] max_node_count must be an integer >= 1, got 'lots'")):
        tf(node_count=2)(src)


def test_the_8192_rank_benchmark_fits_the_default_bounds(src):
    """benchmarks/plan_size.py's largest jobs (1024 nodes x 8 ranks; 8192 PS tasks) stay valid."""
    from airflow_tf.cluster.horovod import HorovodSpec
    from airflow_tf.cluster.parameter_server import ParameterServerSpec
    from airflow_tf.cluster.spec import TrainingSpec

    common = {"source_directory": str(src), "entry_script": "train.py"}
    TrainingSpec(**common, node_count=1024, process_count_per_node=8)
    HorovodSpec(**common, node_count=1024, process_count_per_node=8, distributed_backend="mpi")
    ParameterServerSpec(**common, node_count=1024, worker_count=8192 - 1 - 512, parameter_server_count=512)
