"""Test DAG for the re-run launch rule (tests/e2e/test_launch_faults.py): the first launch of
each node holds after starting it (tests/faults.py), the test kills that task process, and
Airflow's retry must re-attach to the running node instead of starting a second copy. The nodes
install a pip package first, so the kill lands while they are still installing."""

import os
import sys
from datetime import timedelta

from airflow.sdk import DAG

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # the repo: tests.faults

from airflow_tf import TensorFlowTrainOperator  # noqa: E402
from tests.faults import HoldingLocalBackend  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

with DAG(dag_id="tf_launch_killed", schedule=None, catchup=False) as dag:
    TensorFlowTrainOperator(
        task_id="train", source_directory=os.path.join(HERE, "long_train"), entry_script="train.py",
        script_params={"--seconds": 12}, node_count=2, pip_packages=["pyjokes==0.8.3"], poll_interval=0.5,
        backend=HoldingLocalBackend(hold_s=120),
        retries=1, retry_delay=timedelta(seconds=1),  # on the group: every task gets them (task_args.py)
    )
