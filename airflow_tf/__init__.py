"""airflow-tf: distributed TensorFlow / Keras training as Airflow task groups.

Importing this package never imports TensorFlow or Horovod: DAG files are parsed all day.
Public names load on first use, so ``import airflow_tf`` itself stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0.dev0"  # the one place the version is set (setup.cfg reads it; see README)

_EXPORTS = {
    "TensorFlowTrainOperator": "airflow_tf.operators.tensorflow",
    "ParameterServerTrainOperator": "airflow_tf.operators.parameter_server",
    "HorovodTrainOperator": "airflow_tf.operators.horovod",
    "OnnxExportOperator": "airflow_tf.operators.onnx",
    "HyperparameterSweep": "airflow_tf.operators.sweep",
    "TrainingCompletionSensor": "airflow_tf.sensors.training",
    "LocalBackend": "airflow_tf.backends.local",
    "DockerBackend": "airflow_tf.backends.docker",
    "SSHBackend": "airflow_tf.backends.ssh",
    "KubernetesBackend": "airflow_tf.backends.kubernetes",
    "Backend": "airflow_tf.backends.base",
    "TrainingSpec": "airflow_tf.cluster.spec",
    "SpecError": "airflow_tf.cluster.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from airflow_tf.backends.base import Backend
    from airflow_tf.backends.docker import DockerBackend
    from airflow_tf.backends.kubernetes import KubernetesBackend
    from airflow_tf.backends.local import LocalBackend
    from airflow_tf.backends.ssh import SSHBackend
    from airflow_tf.cluster.errors import SpecError
    from airflow_tf.cluster.spec import TrainingSpec
    from airflow_tf.operators.horovod import HorovodTrainOperator
    from airflow_tf.operators.onnx import OnnxExportOperator
    from airflow_tf.operators.sweep import HyperparameterSweep
    from airflow_tf.sensors.training import TrainingCompletionSensor
    from airflow_tf.operators.parameter_server import ParameterServerTrainOperator
    from airflow_tf.operators.tensorflow import TensorFlowTrainOperator


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'airflow_tf' has no attribute {name!r}")
