"""Benchmark-only DAGs (benchmarks/ps_overhead.py, benchmarks/horovod_overhead.py); not examples.

- bench_ps: the seed's parameter-server shape, as the ps_keras3_loop step of dags/tf_ps_example.py
  (chief + 2 workers + 1 ps over 2 local nodes, Keras 3 ClusterCoordinator loop, server_mode
  "runtime"), followed by a report task so the DAG has the shape of job_overhead's control DAG.
- bench_hvd_gloo_2x1, bench_hvd_mpi_2x1: tests/dags/hvd_matrix.py's hvd_gloo_2x1 / hvd_mpi_2x1,
  same parameters. Kept here so dag.test() re-parses only this small folder (its bundle), not
  every test DAG.
"""

import os

from airflow.sdk import DAG, Param, task

from airflow_tf import HorovodTrainOperator, ParameterServerTrainOperator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PS_SRC = os.path.join(REPO, "dags", "ps_example")
HVD_SRC = os.path.join(REPO, "dags", "horovod_example")

with DAG(dag_id="bench_ps", schedule=None, catchup=False,
         params={"epochs": Param(4, type="integer", minimum=1), "node_count": Param(2, type="integer", minimum=1)}):
    train = ParameterServerTrainOperator(
        task_id="train",
        source_directory=PS_SRC,
        entry_script="train_keras3.py",
        script_params={"--epochs": "{{ params.epochs }}"},
        node_count=2,
        worker_count=2,
        parameter_server_count=1,
        server_mode="runtime",
    )

    @task
    def report(results):
        return {"model_path": results["model_path"]}

    report(train.output)

for _dag_id, _backend in (("bench_hvd_gloo_2x1", "gloo"), ("bench_hvd_mpi_2x1", "mpi")):
    with DAG(dag_id=_dag_id, schedule=None, catchup=False) as _dag:
        HorovodTrainOperator(
            task_id="train",
            source_directory=HVD_SRC,
            entry_script="train_tf2.py",
            script_params={"--epochs": 2, "--steps-per-epoch": 20},
            node_count=2,
            process_count_per_node=1,
            distributed_backend=_backend,
            poll_interval=0.5,
        )
    globals()[_dag_id] = _dag
