"""Issue 18's options and runtime pieces: keras_version / framework_version / conda options and
the estimator drop-in refuse bad input naming the field; the node runtime's framework check,
empty-channel error, Keras alias for ``horovod.keras`` and autolog (no double logging) run for
real (launcher, py-rattler, tf_keras, Horovod)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from airflow.sdk import DAG

from airflow_tf import DockerBackend, LocalBackend, SpecError, TensorFlowTrainOperator
from airflow_tf.azureml import TensorFlow
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.runtime import conda_env, keras_compat
from tests.conda_channel import index
from tests.unit.test_launcher import REPO, make_node  # noqa: F401 - the fixture
from tests.unit.test_validation import raises_spec_error


@pytest.fixture
def src(tmp_path):
    source = tmp_path / "project"
    source.mkdir()
    (source / "train.py").write_text("print('train')\n")
    return source


def build(src, factory=TensorFlowTrainOperator, **options):
    options.setdefault("source_directory", str(src))
    options.setdefault("entry_script", "train.py")
    with DAG(dag_id="x", schedule=None):
        return factory(task_id="train", **options) if factory is TensorFlow else factory("train", **options)


BAD_INPUT = [
    ({"keras_version": "4"}, ["keras_version must be one of ['2', '3', 'auto']", "'4'"]),
    ({"keras_version": True}, ["keras_version must be one of", "True"]),
    ({"framework_version": 2.10}, ["framework_version must be a string", "2.1"]),
    ({"framework_version": "latest"}, ["framework_version must be a TensorFlow version", "'latest'"]),
    ({"conda_packages": ["numpy"], "conda_channels": []}, ["conda_channels must list at least one channel"]),
    ({"conda_packages": ["numpy"], "conda_channels": [""]}, ["conda_channels[0] must be a non-empty string"]),
    ({"conda_packages": ["numpy"], "conda_channels": [" conda-forge"]}, ["conda_channels[0]", "surrounding"]),
    ({"conda_channels": ["conda-forge"]}, ["conda_channels: applies only to conda_packages"]),
    ({"conda_packages": ["-c", "evil"]}, ["conda_packages[0] must be a conda package spec", "use conda_channels"]),
    ({"conda_packages": ["numpy; rm -rf /"]}, ["conda_packages[0] must be a conda package spec"]),
    ({"keras_version": "3", "environment_variables": {"TF_USE_LEGACY_KERAS": "1"}},
     ["environment_variables['TF_USE_LEGACY_KERAS']", "keep keras_version only"]),
    ({"autolog": "no"}, ["autolog must be True or False"]),
    ({"compute_target": "gpu-cluster"}, ["'compute_target': compute_target is Azure ML's", "backend=LocalBackend()"]),
    ({"compute_targt": "gpu-cluster"}, ["'compute_targt': compute_target is Azure ML's"]),
    ({"custom_docker_image": "img"}, ["'custom_docker_image'", "DockerBackend(image=...)"]),
]


@pytest.mark.parametrize(("options", "fragments"), BAD_INPUT, ids=[str(sorted(o)) for o, _ in BAD_INPUT])
def test_operator_bad_input_names_the_field(src, options, fragments):
    with raises_spec_error(*fragments):
        build(src, **options)


ESTIMATOR_BAD_INPUT = [
    ({"compute_target": object()}, ["TensorFlow(...): compute_target: compute_target is Azure ML's", "backend="]),
    ({"vm_size": "STANDARD_NC6"}, ["vm_size: machines come from the backend"]),
    ({"conda_dependencies_file_path": "env.yml"}, ["conda_dependencies_file_path", "conda_packages"]),
    ({"distributed_backend": "horovod"}, ["distributed_backend must be one of [None, 'mpi', 'gloo', 'ps']"]),
    ({"distributed_backend": "mpi", "worker_count": 2}, ["worker_count applies to distributed_backend='ps'"]),
    ({"custom_docker_image": "my/img"}, ["custom_docker_image needs a container backend", "LocalBackend"]),
    ({"shm_size": "2g"}, ["shm_size applies to containers"]),
    ({"inputs": {"data": "s3://bucket/mnist"}}, ["inputs['data']", "object-store inputs are not staged"]),
    ({"inputs": {"my-data": "/tmp"}}, ["inputs: name 'my-data'", "AZUREML_DATAREFERENCE_"]),
    ({"inputs": {"data": "/no/such/dir"}}, ["inputs['data']: /no/such/dir does not exist"]),
    ({"framework_version": "2.x"}, ["framework_version must be a TensorFlow version"]),
    ({"keras_version": 4}, ["keras_version must be one of"]),
    ({"pip_packges": ["numpy"]}, ["unknown option(s) ['pip_packges']", "did you mean 'pip_packages'"]),
    ({"entry_script": None}, ["entry_script is required"]),
]


@pytest.mark.parametrize(("options", "fragments"), ESTIMATOR_BAD_INPUT,
                         ids=[str(sorted(o)) for o, _ in ESTIMATOR_BAD_INPUT])
def test_estimator_bad_input_names_the_field(src, options, fragments):
    with raises_spec_error(*fragments):
        build(src, TensorFlow, **options)


def test_estimator_builds_the_group_its_distributed_backend_names(src):
    from airflow_tf.operators.horovod import HorovodTrainOperator
    from airflow_tf.operators.parameter_server import ParameterServerTrainOperator

    assert type(build(src, TensorFlow)) is TensorFlowTrainOperator
    hvd = build(src, TensorFlow, node_count=2, distributed_backend="mpi")
    assert type(hvd) is HorovodTrainOperator and hvd.plan_task.spec_fields["distributed_backend"] == "mpi"
    ps = build(src, TensorFlow, node_count=2, worker_count=2, parameter_server_count=1, distributed_backend="ps")
    assert type(ps) is ParameterServerTrainOperator
    assert (ps.plan_task.spec_fields["worker_count"], ps.plan_task.spec_fields["parameter_server_count"]) == (2, 1)
    assert build(src, TensorFlow, max_run_duration_seconds=60).max_run_duration_seconds == 60


def test_estimator_images_shm_and_inputs_go_to_the_backend(src, tmp_path):
    data = tmp_path / "mnist"
    data.mkdir()
    docker = DockerBackend(image="base:1", docker_urls=["unix:///nonexistent.sock"])
    group = build(src, TensorFlow, backend=docker, custom_docker_image="mine:2", shm_size="2g",
                  inputs={"mnist": str(data)}, environment_variables={"A": "1"})
    assert group.backend.image == "mine:2" and group.backend.shm_size == "2g"
    assert group.backend.mounts == [f"{data}:/mnt/inputs/mnist:ro"]
    assert group.launch_task.partial_kwargs["environment_variables"] == {
        "A": "1", "AZUREML_DATAREFERENCE_mnist": "/mnt/inputs/mnist"}
    local = build(src, TensorFlow, backend=LocalBackend(), inputs=[str(data)])
    assert local.launch_task.partial_kwargs["environment_variables"] == {"AZUREML_DATAREFERENCE_mnist": str(data)}


def test_estimator_resume_from_passes_through_or_says_not_yet(src):
    import inspect

    from airflow_tf.azureml import _spec_has

    accepted = "resume_from" in inspect.signature(TensorFlowTrainOperator.__init__).parameters or _spec_has(
        TensorFlowTrainOperator, "resume_from")
    if accepted:  # the restarts issue landed: the value reaches the group
        build(src, TensorFlow, resume_from="/checkpoints")
    else:
        with raises_spec_error("resume_from is not supported by this airflow-tf version yet"):
            build(src, TensorFlow, resume_from="/checkpoints")


def _node_env(src, hosts, **options):
    spec = TrainingSpec(source_directory=str(src), entry_script="train.py", node_count=len(hosts), **options)
    plan = plan_tensorflow_job(spec, job_id="j", hosts=hosts)
    return plan.env_of(plan.nodes[0], plan.nodes[0].processes[0], spec.environment_variables)


def test_keras_version_sets_tf_use_legacy_keras_per_strategy(src):
    assert "TF_USE_LEGACY_KERAS" not in _node_env(src, ["h0"])  # auto, one process: left alone
    assert _node_env(src, ["h0", "h1"])["TF_USE_LEGACY_KERAS"] == "1"  # auto under MultiWorkerMirrored
    assert _node_env(src, ["h0", "h1"], keras_version="3")["TF_USE_LEGACY_KERAS"] == "0"
    assert _node_env(src, ["h0"], keras_version=2)["TF_USE_LEGACY_KERAS"] == "1"
    # auto leaves the user's explicit choice in place
    user = {"TF_USE_LEGACY_KERAS": "0"}
    assert _node_env(src, ["h0", "h1"], environment_variables=user)["TF_USE_LEGACY_KERAS"] == "0"
    assert _node_env(src, ["h0"])["AIRFLOW_TF_AUTOLOG"] == "1"
    assert _node_env(src, ["h0"], autolog=False)["AIRFLOW_TF_AUTOLOG"] == "0"


def test_framework_version_mismatch_fails_the_node_before_any_rank(make_node):  # noqa: F811
    node = make_node("print('RANK RAN')\n", ranks=1)
    node.spec["node"]["framework_version"] = "1.15"
    (node.node_dir / "node.json").write_text(json.dumps(node.spec))
    assert node.start().wait() == 1
    log = node.log()
    assert "framework_version='1.15' does not match the TensorFlow on this node: 2.21.0" in log, log
    assert "Set framework_version='2.21'" in log and "RANK RAN" not in log
    assert node.exit_code_file() == "1\n"


def test_framework_version_match_runs_the_ranks(make_node):  # noqa: F811
    node = make_node("print('RANK RAN')\n", ranks=1)
    node.spec["node"]["framework_version"] = "2.21"
    (node.node_dir / "node.json").write_text(json.dumps(node.spec))
    assert node.start().wait() == 0, node.log()
    assert "RANK RAN" in node.log()


def test_empty_channel_fails_with_the_field_and_leaves_no_environment(tmp_path):
    channel = tmp_path / "empty-channel"
    index(channel)
    with pytest.raises(RuntimeError, match=r"conda_packages: py-rattler could not install \['scikit-learn'\]"):
        conda_env.ensure_env(["scikit-learn"], [channel.as_uri()], print, cache_root=str(tmp_path / "cache"))
    assert [p for p in os.listdir(tmp_path / "cache") if not p.endswith(".lock") and p != "rattler-cache"] == []


def test_conda_tools_are_preferred_when_the_node_has_one(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "micromamba"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    tool, argv = conda_env.installer_argv(["numpy>=1"], ["conda-forge", "file:///ch"], "/p")
    assert tool == "micromamba"
    assert argv == [str(fake), "create", "--yes", "--quiet", "--prefix", "/p", "--override-channels",
                    "--channel", "conda-forge", "--channel", "file:///ch", "numpy>=1"]


def test_horovod_keras_detection_reads_the_source(tmp_path):
    cases = {"import horovod.keras as hvd\n": True, "from horovod import keras as hvd\n": True,
             "from horovod.keras.callbacks import X\n": True, "import horovod.tensorflow.keras as hvd\n": False,
             "import keras\n": False}
    for text, expected in cases.items():
        (tmp_path / "s.py").write_text(text)
        assert keras_compat.imports_horovod_keras(str(tmp_path / "s.py")) is expected, text


def test_horovod_keras_script_gets_tf_keras_and_is_logged_once(tmp_path):
    """A standalone-Keras-2 ``horovod.keras`` script (``import keras``) with our own metrics
    callback as well: under keras 2 its ``keras`` is tf_keras, and autolog does not add a
    second metrics callback. One rank (Horovod runs size 1 without a launcher)."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import keras
        import numpy as np
        import horovod.keras as hvd
        from airflow_tf.runtime import training

        hvd.init()
        print("KERAS", keras.__name__, keras.__version__)
        model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        model.compile(optimizer=hvd.DistributedOptimizer(keras.optimizers.SGD(0.01)), loss="mse")
        x = np.zeros((16, 3), "float32")
        model.fit(x, np.zeros((16, 2), "float32"), epochs=2, verbose=0,
                  callbacks=[hvd.callbacks.BroadcastGlobalVariablesCallback(0), training.metrics_callback()])
    """))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", AIRFLOW_TF_NODE_DIR=str(tmp_path),
               AIRFLOW_TF_OUTPUT_DIR=str(tmp_path / "out"), AIRFLOW_TF_RANK="0", TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-m", "airflow_tf.runtime.user_script", str(script)], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "KERAS tf_keras 2.21" in out.stdout
    records = [json.loads(line) for line in (tmp_path / "metrics-rank0.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]  # once per epoch: ours, not ours + autolog's
    assert os.listdir(tmp_path / "out" / "tensorboard")  # autolog's TensorBoard callback (rank 0)
