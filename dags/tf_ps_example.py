"""Example: parameter-server training, the retired estimator's example translated.

    TensorFlow(node_count=2, worker_count=2, parameter_server_count=1, distributed_backend="ps")

becomes ``ParameterServerTrainOperator(node_count=2, worker_count=2, parameter_server_count=1)``:
one chief + 2 workers + 1 ps over 2 local nodes. Two steps show the two working paths on
TF 2.21: tf_keras ``fit`` with DatasetCreator (every task runs the script; an evaluator scores
the chief's checkpoints alongside), then a Keras 3 model in a ClusterCoordinator loop (only the
chief runs the script; the node runtime serves ps and workers).
"""

import os

from airflow.sdk import DAG, Param

from airflow_tf import ParameterServerTrainOperator

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ps_example")

with DAG(
    dag_id="tf_ps_example",
    schedule=None,
    catchup=False,
    tags=["airflow-tf", "example"],
    params={"epochs": Param(4, type="integer", minimum=1, maximum=100, description="training epochs")},
    doc_md=__doc__,
) as dag:
    tf_keras_fit = ParameterServerTrainOperator(
        task_id="ps_tf_keras_fit",
        source_directory=SRC,
        entry_script="train_tf_keras.py",
        script_params={"--epochs": "{{ params.epochs }}"},
        node_count=2,
        worker_count=2,
        parameter_server_count=1,
        evaluator=True,
    )
    keras3_loop = ParameterServerTrainOperator(
        task_id="ps_keras3_loop",
        source_directory=SRC,
        entry_script="train_keras3.py",
        script_params={"--epochs": "{{ params.epochs }}"},
        node_count=2,
        worker_count=2,
        parameter_server_count=1,
        server_mode="runtime",
    )
    tf_keras_fit >> keras3_loop
