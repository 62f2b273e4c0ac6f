"""Registers airflow-tf as an Airflow provider (``airflow providers list`` shows it).

Airflow calls :func:`get_provider_info` through the ``apache_airflow_provider`` entry point when
it discovers providers (CLI, api-server, ``airflow config list``). It must stay cheap: no
operator module is imported here, only their names are listed.
"""

from __future__ import annotations

# Also the package's "Documentation" project URL (setup.cfg); Airflow 3.3 shows that one as
# ``documentation-url``, older 3.x releases show this key. tests/package checks they agree.
DOCUMENTATION_URL = "docs/installation.md"

OPERATOR_MODULES = [
    "airflow_tf.operators.tensorflow",
    "airflow_tf.operators.parameter_server",
    "airflow_tf.operators.horovod",
    "airflow_tf.operators.onnx",
    "airflow_tf.operators.sweep",
    "airflow_tf.operators.sweep_controller",
    "airflow_tf.operators.nodes",
]
SENSOR_MODULES = ["airflow_tf.sensors.training"]
TRIGGER_MODULES = ["airflow_tf.triggers.training_job", "airflow_tf.triggers.sweep_watch"]
# The wait task's extra links (airflow_tf/operators/links.py: LINK_CLASSES; tests/package checks they agree).
EXTRA_LINKS = [
    "airflow_tf.operators.links.JobPageLink",
    "airflow_tf.operators.links.TensorBoardLink",
    "airflow_tf.operators.links.CurvesLink",
    "airflow_tf.operators.links.OutputsLink",
    "airflow_tf.operators.links.MlflowRunLink",
]
# The job page (an Airflow 3 UI plugin) is registered through the ``airflow.plugins`` entry point
# (setup.cfg), not a "plugins" entry here: Airflow loads provider plugins only with
# lazy_discover_providers off, and both ways at once would report the plugin as a duplicate.

CONFIG_OPTIONS = {
    "job_root": {
        "description": (
            "Directory holding one sub-directory per training job (each node's plan, log, pid "
            "and exit code, and the job's outputs) for LocalBackend, and the host side of "
            "DockerBackend's bind-mounted outputs. Must be on the machine running the nodes "
            "and the triggerer. The airflow-tf 0.1 variable AIRFLOW_TF_JOB_ROOT is still read "
            "when this option is not set.\n"
        ),
        "version_added": "0.2.0",
        "type": "string",
        "example": "/srv/airflow-tf/jobs",
        "default": "{AIRFLOW_HOME}/airflow_tf_jobs",
    },
    "package_cache": {
        "description": (
            "Where nodes keep the environments built for pip_packages (one per package set, "
            "reused by later jobs). Empty: ~/.cache/airflow-tf/pip-envs of the user each node "
            "runs as. The airflow-tf 0.1 variable AIRFLOW_TF_PACKAGE_CACHE is still read when "
            "this option is not set.\n"
        ),
        "version_added": "0.2.0",
        "type": "string",
        "example": "/srv/airflow-tf/pip-envs",
        "default": None,
    },
    "poll_interval": {
        "description": (
            "Default seconds between two polls of a job's nodes by the deferred wait task "
            "(a training group's own poll_interval argument wins). Must be > 0.\n"
        ),
        "version_added": "0.2.0",
        "type": "float",
        "example": "5.0",
        "default": "1.0",
    },
    "stop_grace_seconds": {
        "description": (
            "Seconds a node that is being stopped gets between SIGTERM and SIGKILL (teardown, "
            "fail-fast, mark-failed). Must be >= 0.\n"
        ),
        "version_added": "0.2.0",
        "type": "float",
        "example": "30",
        "default": "10",
    },
    # Upper bounds (airflow_tf.cluster.limits): a value above one fails at DAG parse or plan time.
    "max_node_count": {
        "description": "Most nodes one training step may ask for (node_count).\n",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "8192",
        "default": "4096",
    },
    "max_processes_per_node": {
        "description": "Most processes (ranks) per node (process_count_per_node).\n",
        "version_added": "0.2.0",
        "type": "integer",
        "example": "512",
        "default": "256",
    },
    "max_world_size": {
        "description": (
            "Most processes one job may have in total: node_count x process_count_per_node, or a "
            "parameter-server job's chief + workers + ps (worker_count, parameter_server_count).\n"
        ),
        "version_added": "0.2.0",
        "type": "integer",
        "example": "131072",
        "default": "65536",
    },
    "max_sweep_trials": {
        "description": (
            "Most trials one HyperparameterSweep may run (max_total_runs; for the deprecated grid=, "
            "the grid's size or sample): a bound against typos, checked when the DAG is parsed.\n"
        ),
        "version_added": "0.2.0",
        "type": "integer",
        "example": "1000",
        "default": "256",
    },
}


def package_version() -> str:
    """The installed distribution's version; the source tree's when not installed."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version("airflow-tf")
    except PackageNotFoundError:
        from airflow_tf import __version__

        return __version__


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-tf",
        "name": "airflow-tf",
        "description": "Distributed TensorFlow / Keras / Horovod training as Airflow task groups.",
        "documentation-url": DOCUMENTATION_URL,
        "versions": [package_version()],
        "integrations": [
            {
                "integration-name": "TensorFlow",
                "external-doc-url": "https://www.tensorflow.org/guide/distributed_training",
                "tags": ["ml", "software"],
            },
            {
                "integration-name": "Horovod",
                "external-doc-url": "https://horovod.readthedocs.io/",
                "tags": ["ml", "software"],
            },
            {
                "integration-name": "ONNX",
                "external-doc-url": "https://onnx.ai/",
                "tags": ["ml", "software"],
            },
        ],
        "operators": [
            {"integration-name": "TensorFlow", "python-modules": [
                m for m in OPERATOR_MODULES if not m.endswith((".horovod", ".onnx"))
            ]},
            {"integration-name": "Horovod", "python-modules": ["airflow_tf.operators.horovod"]},
            {"integration-name": "ONNX", "python-modules": ["airflow_tf.operators.onnx"]},
        ],
        "sensors": [
            {"integration-name": "TensorFlow", "python-modules": list(SENSOR_MODULES)},
        ],
        "triggers": [
            {"integration-name": "TensorFlow", "python-modules": list(TRIGGER_MODULES)},
        ],
        "extra-links": list(EXTRA_LINKS),
        "config": {
            "airflow_tf": {
                "description": "Settings of the airflow-tf provider (distributed TensorFlow training).",
                "options": CONFIG_OPTIONS,
            },
        },
    }
