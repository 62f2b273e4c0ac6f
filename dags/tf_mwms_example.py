"""Example: a small Keras classifier trained on 2 nodes with MultiWorkerMirroredStrategy.

Trigger it from the UI with the Params form (epochs, learning rate, node count), or run
``./scripts/demo.sh``. Nodes are local processes (LocalBackend), the embedded default.
"""

import os

from airflow.sdk import DAG, Param, task

from airflow_tf import LocalBackend, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))

with DAG(
    dag_id="tf_mwms_example",
    schedule=None,
    catchup=False,
    tags=["airflow-tf", "example"],
    params={
        "epochs": Param(4, type="integer", minimum=1, maximum=100, description="training epochs"),
        "learning_rate": Param(0.05, type="number", exclusiveMinimum=0, description="SGD learning rate"),
        "node_count": Param(2, type="integer", minimum=1, maximum=8, description="number of training nodes"),
    },
    doc_md=__doc__,
):
    train = TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(HERE, "mwms_example"),
        entry_script="train.py",
        script_params={
            "--epochs": "{{ params.epochs }}",
            "--learning-rate": "{{ params.learning_rate }}",
            "--batch-size": 64,
        },
        node_count="{{ params.node_count }}",
        backend=LocalBackend(),
        model_asset="airflow-tf://models/mwms-example",  # an Asset event per trained model
    )

    @task
    def report(results: dict) -> dict:
        """Where to find what the training step produced."""
        print(f"model:   {results['model_path']}")
        print(f"metrics: {results['metrics']}")
        for node in results["nodes"]:
            print(f"node {node['node_index']}: exit {node['exit_code']} in {node['duration_s']} s")
        return {"model_path": results["model_path"], "accuracy": results["metrics"].get("accuracy")}

    train >> report(train.output)
