"""Helpers to run a DAG with dag.test() and read back what Airflow recorded."""

from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from sqlalchemy import select


def xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value", map_index: int = -1):
    with create_session() as session:
        row = session.execute(
            select(XComModel.value).where(
                XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id,
                XComModel.key == key, XComModel.map_index == map_index,
            )
        ).first()
    return XComModel.deserialize_value(row) if row else None


def task_states(dag_id: str, run_id: str) -> dict[tuple[str, int], str]:
    with create_session() as session:
        rows = session.execute(
            select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id
            )
        ).all()
    return {(task_id, map_index): str(state.value if hasattr(state, "value") else state) for task_id, map_index, state in rows}
