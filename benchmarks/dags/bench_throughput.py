"""Benchmark-only DAGs of benchmarks/throughput.py (not examples): the synthetic throughput
script (throughput/synthetic.py) through each operator, 2 ranks on this machine, the ranks'
result file at ``params.out``. The same ranks as the hand launches they are compared with:
Horovod 1 node x 2 processes (horovodrun -np 2 -H localhost:2), MWMS 2 single-worker nodes."""

import os

from airflow.sdk import DAG, Param

from airflow_tf import HorovodTrainOperator, LocalBackend, TensorFlowTrainOperator

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "throughput")
PARAMS = {"out": Param("/tmp/airflow-tf-throughput.json", type="string"), "steps": Param(40, type="integer"),
          "warmup": Param(5, type="integer")}
ARGS = {"--out": "{{ params.out }}", "--steps": "{{ params.steps }}", "--warmup": "{{ params.warmup }}"}
# The benchmark's marker reaches the ranks, so its "others' CPU" does not count them (benchmarks/common.py).
BACKEND = LocalBackend(pass_environment=["BENCH_AIRFLOW_TF_TAG"])

for _name, _backend in (("gloo", "gloo"), ("mpi", "mpi")):
    with DAG(dag_id=f"bench_tp_{_name}", schedule=None, catchup=False, params=PARAMS) as _dag:
        HorovodTrainOperator(
            task_id="train", source_directory=SRC, entry_script="synthetic.py",
            script_params={"--framework": "horovod", **ARGS},
            node_count=1, process_count_per_node=2, distributed_backend=_backend, backend=BACKEND,
        )
    globals()[_dag.dag_id] = _dag

with DAG(dag_id="bench_tp_mwms", schedule=None, catchup=False, params=PARAMS) as bench_tp_mwms:
    TensorFlowTrainOperator(
        task_id="train", source_directory=SRC, entry_script="synthetic.py",
        script_params={"--framework": "mwms", **ARGS}, node_count=2, backend=BACKEND,
    )
