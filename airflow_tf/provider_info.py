"""Registers airflow-tf as an Airflow provider (``airflow providers list`` shows it)."""

from airflow_tf import __version__


def get_provider_info() -> dict:
    return {
        "package-name": "airflow-tf",
        "name": "airflow-tf",
        "description": "Distributed TensorFlow / Keras / Horovod training as Airflow task groups.",
        "versions": [__version__],
        "triggers": [
            {"integration-name": "TensorFlow", "python-modules": ["airflow_tf.triggers.training_job"]},
        ],
        "operators": [
            {"integration-name": "TensorFlow", "python-modules": [
                "airflow_tf.operators.tensorflow",
                "airflow_tf.operators.parameter_server",
                "airflow_tf.operators.horovod",
                "airflow_tf.operators.nodes",
            ]},
        ],
    }
