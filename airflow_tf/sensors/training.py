"""TrainingCompletionSensor: wait, deferred, for a training step in another DAG to succeed, and
hand back its results (metrics, model path) as this task's XCom.

The waiting is the standard provider's ``WorkflowTrigger`` (what ExternalTaskSensor defers to);
this class adds what it lacks for training steps: "the latest run" as a target, checks that
the DAG and the step exist, and fetching the step's results.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_tf.cluster.checks import check_name
from airflow_tf.cluster.errors import SpecError


class TrainingCompletionSensor(BaseOperator):
    """Wait until ``external_dag_id``'s training group ``training_group_id`` succeeded.

    :param external_dag_id: the DAG holding the training step.
    :param training_group_id: the training group's id in that DAG (e.g. "train").
    :param external_run_id: which run (templated); default: that DAG's latest run.
    :param poke_interval: seconds between checks (in the triggerer; no worker slot is held).
    """

    template_fields = ("external_run_id",)
    ui_color = "#e0f0ff"

    def __init__(self, *, external_dag_id: str, training_group_id: str = "train", external_run_id: str | None = None,
                 poke_interval: float = 5.0, **kwargs):
        for field, value in (("external_dag_id", external_dag_id), ("training_group_id", training_group_id)):
            # Airflow's own id alphabet (a group id nested in another has dots: "outer.train").
            check_name(field, value, "a DAG / task group id (letters, digits, _ . -)", allowed="_.-")
        if external_run_id is not None and (not isinstance(external_run_id, str) or not external_run_id.strip()
                                            or "\0" in external_run_id):
            raise SpecError(f"external_run_id must be a run id string (or a template) or None, got {external_run_id!r}")
        if isinstance(poke_interval, bool) or not isinstance(poke_interval, (int, float)) or not poke_interval > 0:
            hint = " (a number, not a string)" if isinstance(poke_interval, str) else ""
            raise SpecError(f"poke_interval must be a number of seconds > 0, got {poke_interval!r}{hint}")
        super().__init__(**kwargs)
        self.external_dag_id = external_dag_id
        self.training_group_id = training_group_id
        self.external_run_id = external_run_id
        self.poke_interval = poke_interval

    @property
    def wait_task_id(self) -> str:
        return f"{self.training_group_id}.wait"

    def _target_run(self) -> str:
        from airflow.sdk.execution_time.comms import GetPreviousDagRun
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS, RuntimeTaskInstance

        try:
            RuntimeTaskInstance.get_dag(self.external_dag_id)
        except Exception as exc:
            raise AirflowFailException(f"external_dag_id {self.external_dag_id!r}: no such DAG ({exc})") from None
        if self.external_run_id:
            return self.external_run_id
        latest = SUPERVISOR_COMMS.send(GetPreviousDagRun(dag_id=self.external_dag_id, logical_date=datetime.now(timezone.utc)))
        if latest.dag_run is None:
            raise AirflowFailException(f"external_dag_id {self.external_dag_id!r} has no run yet; pass external_run_id")
        return latest.dag_run.run_id

    def execute(self, context) -> None:
        from airflow.providers.standard.triggers.external_task import WorkflowTrigger
        from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

        run_id = self._target_run()
        if not RuntimeTaskInstance.get_ti_count(dag_id=self.external_dag_id, task_ids=[self.wait_task_id], run_ids=[run_id]):
            raise AirflowFailException(
                f"training_group_id {self.training_group_id!r}: DAG {self.external_dag_id!r} run {run_id!r} has no task "
                f"{self.wait_task_id!r}; is it the task_id of a training operator there?"
            )
        self.log.info("waiting for %s.%s in run %s", self.external_dag_id, self.wait_task_id, run_id)
        context["ti"].xcom_push(key="external_run_id", value=run_id)
        self.defer(
            trigger=WorkflowTrigger(
                external_dag_id=self.external_dag_id,
                run_ids=[run_id],
                external_task_ids=[self.wait_task_id],
                allowed_states=["success"],
                failed_states=["failed", "upstream_failed"],
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        run_id = context["ti"].xcom_pull(task_ids=self.task_id, key="external_run_id")
        if event.get("status") != "success":
            raise AirflowFailException(
                f"training step {self.external_dag_id}.{self.training_group_id} of run {run_id} did not succeed ({event})"
            )
        results = context["ti"].xcom_pull(dag_id=self.external_dag_id, task_ids=self.wait_task_id, run_id=run_id)
        self.log.info("training step %s.%s of run %s succeeded: metrics %s, model %s", self.external_dag_id,
                      self.training_group_id, run_id, (results or {}).get("metrics"), (results or {}).get("model_path"))
        return results
