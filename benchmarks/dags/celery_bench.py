"""The DAG benchmarks/celery_overhead.py triggers on the multi-host CeleryExecutor deployment.

bench_celery_mwms: dags/tf_mwms_example.py's training step (2-node MultiWorkerMirrored on
LocalBackend, the operator's defaults, poll_interval included) and its report task, all pinned
to one worker host's queue as tests/distributed's atfd_local_pinned is (LocalBackend needs its
launches, trigger and teardown on the host that runs the nodes). Small by default: the benchmark
measures what is around the training, not the training. Its floor control is
benchmarks/job_overhead.py's control DAG, which the benchmark writes to its own bundle.
"""

import os

from airflow.sdk import DAG, Param, task

from airflow_tf import LocalBackend, TensorFlowTrainOperator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUEUE = "host_b"  # tests/distributed/deployment.py's WORKER_QUEUES["host-b"]

with DAG(
    dag_id="bench_celery_mwms",
    schedule=None,
    catchup=False,
    params={
        "epochs": Param(1, type="integer", minimum=1),
        "samples": Param(1024, type="integer", minimum=64),
        "node_count": Param(2, type="integer", minimum=1),
    },
):
    train = TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(REPO, "dags", "mwms_example"),
        entry_script="train.py",
        script_params={"--epochs": "{{ params.epochs }}", "--samples": "{{ params.samples }}", "--batch-size": 64},
        node_count="{{ params.node_count }}",
        # benchmarks/common.py's MARKER_VAR: the nodes carry the benchmark's marker, so its
        # ForeignCpu counts them as the benchmark's own processes (LocalBackend passes a node
        # only the environment it names).
        backend=LocalBackend(pass_environment=["BENCH_AIRFLOW_TF_TAG"]),
        default_args={"queue": QUEUE},
    )

    @task(queue=QUEUE)
    def report(results: dict) -> dict:
        return {"model_path": results["model_path"], "nodes": len(results["nodes"])}

    report(train.output)
