"""Test DAGs: the Horovod TF2 example over Gloo and MPI in the layouts the tests check, plus a
mid-training failure and a rank that never joins."""

import os

from airflow.sdk import DAG

from airflow_tf import HorovodTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "dags", "horovod_example")

LAYOUTS = {
    "hvd_gloo_1x2": ("gloo", 1, 2),
    "hvd_gloo_2x1": ("gloo", 2, 1),
    "hvd_mpi_2x1": ("mpi", 2, 1),
    "hvd_mpi_1x2": ("mpi", 1, 2),
}

for dag_id, (backend, nodes, per_node) in LAYOUTS.items():
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        HorovodTrainOperator(
            task_id="train",
            source_directory=EXAMPLE,
            entry_script="train_tf2.py",
            script_params={"--epochs": 2, "--steps-per-epoch": 20},
            node_count=nodes,
            process_count_per_node=per_node,
            distributed_backend=backend,
            poll_interval=0.5,
        )
    globals()[dag_id] = dag

for backend in ("gloo", "mpi"):
    with DAG(dag_id=f"hvd_fail_{backend}", schedule=None, catchup=False) as dag:
        HorovodTrainOperator(
            task_id="train",
            source_directory=os.path.join(HERE, "hvd_fail"),
            entry_script="train.py",
            node_count=2,
            distributed_backend=backend,
            poll_interval=0.5,
        )
    globals()[f"hvd_fail_{backend}"] = dag

with DAG(dag_id="hvd_stall", schedule=None, catchup=False) as hvd_stall:
    HorovodTrainOperator(
        task_id="train",
        source_directory=os.path.join(HERE, "hvd_stall"),
        entry_script="train.py",
        node_count=2,
        start_timeout=15,
        poll_interval=0.5,
    )
