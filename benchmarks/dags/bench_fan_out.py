"""Benchmark-only DAG for benchmarks/fan_out.py: launch fan-out on a real scheduler.

One TensorFlowTrainOperator step (MultiWorkerMirrored plan, LocalBackend) of ``node_count``
nodes, one rank each; the rank is fan_out/sleeper.py, which imports no TensorFlow: it reports when
it came up and waits for the benchmark's release file. No DAG-level max_active_tasks: the
deployment's [core] settings decide how many launch tasks run at once, as they do for users.
"""

import os

from airflow.sdk import DAG, Param

from airflow_tf import LocalBackend, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))

with DAG(
    dag_id="bench_fan_out",
    schedule=None,
    catchup=False,
    params={
        "node_count": Param(8, type="integer", minimum=1, maximum=1024),
        "hold_dir": Param("/tmp", type="string", minLength=1),
        "max_s": Param(600, type="integer", minimum=1),
    },
):
    TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(HERE, "fan_out"),
        entry_script="sleeper.py",
        script_params={"--hold-dir": "{{ params.hold_dir }}", "--max-s": "{{ params.max_s }}"},
        node_count="{{ params.node_count }}",
        backend=LocalBackend(),
    )
