"""A scheduled retraining pipeline: prepare data -> train (2-node MultiWorkerMirrored) -> export
to ONNX (verified in ONNX Runtime) -> evaluate the ONNX model on held-out data -> publish the
model as an Airflow Asset event. ``tf_model_deployment`` is scheduled on that asset.

Runs weekly; trigger it by hand from the UI with the Params form (epochs, node count, the
accuracy the model must reach to be published).
"""

import os

import numpy as np
from airflow.sdk import DAG, Asset, Param, task

from airflow_tf import OnnxExportOperator, TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL_ASSET = Asset("airflow-tf://models/blob-classifier")


def data_dir(run_id: str) -> str:
    root = os.environ.get("AIRFLOW_TF_DATA_ROOT") or os.path.join(os.environ.get("AIRFLOW_HOME", "."), "airflow_tf_data")
    return os.path.join(root, "retraining", run_id.replace(":", "_").replace("+", "_"))


with DAG(
    dag_id="tf_retraining_pipeline",
    schedule="@weekly",
    catchup=False,
    tags=["airflow-tf", "example"],
    params={
        "epochs": Param(4, type="integer", minimum=1, maximum=100),
        "node_count": Param(2, type="integer", minimum=1, maximum=8),
        "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1, description="publish only above this"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def prepare_data(run_id=None) -> dict:
        """Stand-in for an extract step: this week's training data and a held-out set."""
        import sys

        sys.path.insert(0, os.path.join(HERE, "mwms_example"))
        from data import make_dataset

        out = data_dir(run_id)
        os.makedirs(out, exist_ok=True)
        for name, n, seed in (("train", 4096, 0), ("holdout", 1000, 99)):
            x, y = make_dataset(n, seed=seed)
            np.savez(os.path.join(out, f"{name}.npz"), x=x, y=y)
        return {"train": os.path.join(out, "train.npz"), "holdout": os.path.join(out, "holdout.npz")}

    data = prepare_data()
    train = TensorFlowTrainOperator(
        task_id="train",
        source_directory=os.path.join(HERE, "mwms_example"),
        entry_script="train.py",
        script_params={"--epochs": "{{ params.epochs }}", "--data": "{{ ti.xcom_pull('prepare_data')['train'] }}"},
        node_count="{{ params.node_count }}",
    )
    export = OnnxExportOperator(task_id="export_onnx", model_path=train.output, tolerance=1e-4)

    @task
    def evaluate(onnx: dict, datasets: dict, params=None) -> dict:
        """Accuracy of the exported ONNX model (what gets deployed) on the held-out set."""
        import onnxruntime

        session = onnxruntime.InferenceSession(onnx["onnx_path"], providers=["CPUExecutionProvider"])
        with np.load(datasets["holdout"]) as holdout:
            logits = session.run(None, {session.get_inputs()[0].name: holdout["x"]})[0]
            accuracy = float((logits.argmax(axis=1) == holdout["y"]).mean())
        print(f"holdout accuracy of {onnx['onnx_path']}: {accuracy:.4f}")
        if accuracy < params["min_accuracy"]:
            raise ValueError(f"accuracy {accuracy:.4f} is below min_accuracy {params['min_accuracy']}: not publishing")
        return {"holdout_accuracy": accuracy}

    @task(outlets=[MODEL_ASSET])
    def publish(results: dict, onnx: dict, evaluation: dict, outlet_events=None) -> dict:
        """One Asset event per published model; its extra carries where it is and how good."""
        extra = {"model_path": results["model_path"], "onnx_path": onnx["onnx_path"], "job_id": results["job_id"],
                 "curves_png": results.get("curves_png"), **evaluation}
        outlet_events[MODEL_ASSET].extra = extra
        return extra

    evaluation = evaluate(export.output, data)
    data >> train >> export
    publish(train.output, export.output, evaluation)


with DAG(
    dag_id="tf_model_deployment",
    schedule=[MODEL_ASSET],
    catchup=False,
    tags=["airflow-tf", "example"],
    doc_md="Runs whenever tf_retraining_pipeline publishes a new model: 'deploys' its ONNX file.",
) as deployment:

    @task
    def deploy(triggering_asset_events=None) -> dict:
        import shutil

        (event,) = triggering_asset_events[MODEL_ASSET][-1:]
        target_dir = os.path.join(os.environ.get("AIRFLOW_HOME", "."), "airflow_tf_deployed")
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, "blob-classifier.onnx")
        shutil.copyfile(event.extra["onnx_path"], target)
        print(f"deployed {event.extra['onnx_path']} (holdout accuracy {event.extra['holdout_accuracy']:.4f}) to {target}")
        return {"deployed": target, **event.extra}

    deploy()
