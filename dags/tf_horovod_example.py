"""Example: Horovod, the retired estimator's MPI example and its Gloo twin.

    TensorFlow(node_count=2, process_count_per_node=1, distributed_backend="mpi")

becomes ``HorovodTrainOperator(node_count=2, process_count_per_node=1, distributed_backend="mpi")``.
Three steps: a TF2 loop with a Keras 3 model over Gloo, the same estimator shape over MPI with
Horovod's Keras API (tf_keras), and an mpi4py program under the MPI backend.
"""

import os

from airflow.sdk import DAG, Param

from airflow_tf import HorovodTrainOperator

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "horovod_example")

with DAG(
    dag_id="tf_horovod_example",
    schedule=None,
    catchup=False,
    tags=["airflow-tf", "example"],
    params={"epochs": Param(3, type="integer", minimum=1, maximum=100, description="training epochs")},
    doc_md=__doc__,
) as dag:
    gloo_tf2 = HorovodTrainOperator(
        task_id="gloo_tf2_loop",
        source_directory=SRC,
        entry_script="train_tf2.py",
        script_params={"--epochs": "{{ params.epochs }}"},
        node_count=2,
        process_count_per_node=1,
        distributed_backend="gloo",
    )
    mpi_keras = HorovodTrainOperator(
        task_id="mpi_keras_fit",
        source_directory=SRC,
        entry_script="train_keras.py",
        script_params={"--epochs": "{{ params.epochs }}"},
        node_count=2,
        process_count_per_node=1,
        distributed_backend="mpi",
    )
    mpi4py = HorovodTrainOperator(
        task_id="mpi4py_allreduce",
        source_directory=SRC,
        entry_script="mpi4py_allreduce.py",
        node_count=2,
        distributed_backend="mpi",
    )
    gloo_tf2 >> mpi_keras >> mpi4py
