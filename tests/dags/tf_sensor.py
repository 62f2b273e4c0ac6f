"""Test DAGs: sensors waiting for the example's training step (and for things that do not exist)."""

from airflow.sdk import DAG

from airflow_tf import TrainingCompletionSensor

with DAG(dag_id="tf_sensor_latest", schedule=None, catchup=False) as sensor_latest:
    TrainingCompletionSensor(task_id="trained", external_dag_id="tf_mwms_example", poke_interval=1)

with DAG(dag_id="tf_sensor_no_dag", schedule=None, catchup=False) as sensor_no_dag:
    TrainingCompletionSensor(task_id="trained", external_dag_id="no_such_dag", poke_interval=1)

with DAG(dag_id="tf_sensor_no_group", schedule=None, catchup=False) as sensor_no_group:
    TrainingCompletionSensor(task_id="trained", external_dag_id="tf_mwms_example", training_group_id="trian",
                             poke_interval=1)
