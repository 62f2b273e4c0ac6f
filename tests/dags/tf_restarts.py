"""Test DAGs for job-level restarts and resume_from (tests/integration/test_restarts.py)."""

import os

from airflow.sdk import DAG

from airflow_tf import TensorFlowTrainOperator

HERE = os.path.dirname(os.path.abspath(__file__))
LEGACY = {"TF_USE_LEGACY_KERAS": "1"}


def train(dag_id: str, source: str, script_params: dict, **options) -> DAG:
    with DAG(dag_id=dag_id, schedule=None, catchup=False) as dag:
        TensorFlowTrainOperator(task_id="train", source_directory=os.path.join(HERE, source), entry_script="train.py",
                                script_params=script_params, poll_interval=0.3, **options)
    return dag


# MWMS, 2 workers, 10 epochs: the test SIGKILLs worker 1's rank at epoch 5; one restart is allowed.
tf_restart_mwms = train("tf_restart_mwms", "restart_job", {"--epochs": 10, "--epoch-seconds": 0.6}, node_count=2,
                        max_restarts=1, environment_variables=LEGACY)
# Node 1 kills itself (137) with no restart allowed; exits 3, listed as permanent, with two allowed.
tf_restart_none = train("tf_restart_none", "restart_sleeper", {"--code": -9}, node_count=2)
tf_restart_permanent = train("tf_restart_permanent", "restart_sleeper", {"--code": 3}, node_count=2,
                             max_restarts=2, permanent_exit_codes=[3])
# A fresh run, then one that warm-starts from its outputs (the test sets the path).
tf_resume_fresh = train("tf_resume_fresh", "restart_job", {"--epochs": 2, "--learning-rate": 0.002})
tf_resume_warm = train("tf_resume_warm", "restart_job", {"--epochs": 2, "--learning-rate": 0.002},
                       resume_from=os.environ.get("AIRFLOW_TF_TEST_RESUME_FROM", HERE))

with DAG(dag_id="hvd_restart_gloo", schedule=None, catchup=False) as hvd_restart_gloo:
    from airflow_tf import HorovodTrainOperator

    HorovodTrainOperator(task_id="train", source_directory=os.path.join(HERE, "hvd_restart"), entry_script="train.py",
                         node_count=2, distributed_backend="gloo", poll_interval=0.3, max_restarts=1)
