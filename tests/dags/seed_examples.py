"""The seed's three estimator examples, copied as they are with ``compute_target`` replaced by
``backend=LocalBackend()`` and ``use_gpu=False`` (no GPU here), plus an unchanged tf.keras
MultiWorkerMirrored script. ``conda_channels`` points at the local channel the test builds
(public channels are unreachable here); ``AIRFLOW_TF_TEST_CONDA_CHANNEL`` says where it is."""

import os

from airflow.sdk import DAG

from airflow_tf import LocalBackend, TensorFlowTrainOperator
from airflow_tf.azureml import TensorFlow

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed_examples")
CHANNEL = os.environ.get("AIRFLOW_TF_TEST_CONDA_CHANNEL", "file:///nonexistent/channel")

with DAG(dag_id="seed_single_node", schedule=None, catchup=False) as seed_single_node:
    # training script parameters passed as command-line arguments
    script_params = {
        '--batch-size': 50,
        '--learning-rate': 0.01,
    }

    # TensorFlow constructor
    tf_est = TensorFlow(source_directory=os.path.join(HERE, 'single'),
                        script_params=script_params,
                        backend=LocalBackend(),
                        entry_script='train.py',  # relative path to your TensorFlow job
                        conda_packages=['scikit-learn'],
                        use_gpu=False,
                        task_id="train", conda_channels=[CHANNEL], poll_interval=0.5)

with DAG(dag_id="seed_horovod_mpi", schedule=None, catchup=False) as seed_horovod_mpi:
    tf_est = TensorFlow(source_directory=os.path.join(HERE, 'horovod'),
                        script_params={},
                        backend=LocalBackend(),
                        entry_script='train.py',  # relative path to your TensorFlow job
                        node_count=2,
                        process_count_per_node=1,
                        distributed_backend='mpi',  # specifies Horovod backend
                        use_gpu=False,
                        task_id="train", poll_interval=0.5)

with DAG(dag_id="seed_parameter_server", schedule=None, catchup=False) as seed_parameter_server:
    tf_est = TensorFlow(source_directory=os.path.join(HERE, 'ps'),
                        script_params={},
                        backend=LocalBackend(),
                        entry_script='train.py',  # relative path to your TensorFlow job
                        node_count=2,
                        worker_count=2,
                        parameter_server_count=1,
                        distributed_backend='ps',  # specifies parameter server backend
                        use_gpu=False,
                        task_id="train", poll_interval=0.5)

with DAG(dag_id="unchanged_mwms", schedule=None, catchup=False) as unchanged_mwms:
    TensorFlowTrainOperator(task_id="train", source_directory=os.path.join(HERE, "mwms"), entry_script="train.py",
                            node_count=2, poll_interval=0.5)

with DAG(dag_id="keras2_horovod_gloo", schedule=None, catchup=False) as keras2_horovod_gloo:
    # The same Keras-2-style Horovod script over Gloo (one node, two ranks) instead of MPI.
    TensorFlow(source_directory=os.path.join(HERE, 'horovod'), entry_script='train.py', node_count=1,
               process_count_per_node=2, distributed_backend='gloo', use_gpu=False, task_id="train",
               backend=LocalBackend(), poll_interval=0.5)
