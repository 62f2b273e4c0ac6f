"""Run the example DAG once through real Airflow (dag.test: in-process, SQLite) and say where
the model, metrics and logs are. Usage: run_demo.py [--epochs N] [--node-count N]."""

import argparse
import json
import os
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select

DAG_ID = "tf_mwms_example"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--node-count", type=int, default=2)
    args = parser.parse_args()

    dag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"]).get_dag(DAG_ID)
    run = dag.test(run_conf={"epochs": args.epochs, "node_count": args.node_count})
    with create_session() as session:
        rows = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id,
                XComModel.task_id == "train.wait", XComModel.key == "return_value",
            )
        ).all()
    print(f"\nrun {run.run_id}: {run.state}")
    if run.state != "success" or not rows:
        print("the training step failed: see the log above", file=sys.stderr)
        return 1
    results = XComModel.deserialize_value(rows[0])
    job_dir = os.path.dirname(results["output_dir"])
    print(f"model:        {results['model_path']}")
    print(f"metrics:      {json.dumps(results['metrics'])}")
    print(f"curves:       {results.get('curves_png')}")
    print(f"tensorboard:  {results.get('tensorboard_dir')}")
    print(f"metrics file: {os.path.join(job_dir, 'node-0', 'try-1', 'metrics-rank0.jsonl')}")
    print(f"node logs:    {os.path.join(job_dir, 'node-*', 'try-*', 'node.log')}")
    print(f"airflow logs: {os.path.join(os.environ['AIRFLOW_HOME'], 'logs')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
