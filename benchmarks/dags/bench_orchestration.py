"""Benchmark-only DAGs of benchmarks/orchestration.py (not examples).

- bench_orch_job: a 2-node TensorFlowTrainOperator job on LocalBackend whose ranks only sleep
  (orchestration/sleep.py), then a report task: tf_mwms_example's task shape, with a node span
  that costs no CPU, so the run's time outside it is orchestration alone.
- bench_orch_job_polled: the same job watched the way the trigger did before node exits were
  heard by event (PollOnlyLocalBackend: no exit descriptor, the exit is seen at the next poll).
- bench_orch_control: the same task shape with no-op tasks; its wait defers until the first
  launch's start + ``seconds`` (a DateTimeTrigger): what Airflow itself costs for plan ->
  launch[2] -> deferred wait -> teardown + report around a span of the same length.
- bench_orch_control_direct: the same, but its trigger ends the wait itself (end_from_trigger:
  no resume on a worker): the floor of a wait whose trigger ends the task.
"""

import os
import time
from datetime import datetime, timezone

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk import DAG, BaseOperator, Param, TaskGroup, task

from airflow_tf import LocalBackend, TensorFlowTrainOperator
from benchmarks._poll_only_backend import PollOnlyLocalBackend  # the repository is on every component's path

HERE = os.path.dirname(os.path.abspath(__file__))
PARAMS = {"seconds": Param(10, type="number", minimum=0)}


for _dag_id, _backend in (("bench_orch_job", LocalBackend()), ("bench_orch_job_polled", PollOnlyLocalBackend())):
    with DAG(dag_id=_dag_id, schedule=None, catchup=False, params=PARAMS) as _dag:
        _train = TensorFlowTrainOperator(
            task_id="train", source_directory=os.path.join(HERE, "orchestration"), entry_script="sleep.py",
            script_params={"--seconds": "{{ params.seconds }}"}, node_count=2, backend=_backend,
        )

        @task
        def report(results):
            return {"nodes": len(results["nodes"])}

        report(_train.output)
    globals()[_dag_id] = _dag


class DeferUntil(BaseOperator):
    """The control's wait: defers until the first "node" started + ``seconds``, as the job's
    wait is deferred while its nodes run, so both hide the trigger's pickup the same way."""

    template_fields = ("handles", "seconds")

    def __init__(self, *, handles, seconds, direct: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.handles, self.seconds, self.direct = handles, seconds, direct

    def execute(self, context):
        first_up = min(h["started_at"] for h in self.handles[:])
        moment = datetime.fromtimestamp(first_up + float(self.seconds), tz=timezone.utc)
        # direct: the trigger ends the task itself (TaskSuccessEvent), no resume on a worker.
        self.defer(trigger=DateTimeTrigger(moment, end_from_trigger=self.direct), method_name="done")

    def done(self, context, event=None):
        return {"nodes": [], "span_end": datetime.fromisoformat(str(event)).timestamp() if event else None}


for _dag_id, _direct in (("bench_orch_control", False), ("bench_orch_control_direct", True)):
    with DAG(dag_id=_dag_id, schedule=None, catchup=False, params=PARAMS):
        with TaskGroup("train"):
            @task
            def plan():
                return [{"node_index": i} for i in range(2)]

            @task
            def launch(node):
                return {**node, "started_at": time.time()}  # "node up": the job's launch starts its node here

            @task
            def teardown():
                return None

            _planned = plan()
            _launched = launch.expand(node=_planned)
            _wait = DeferUntil(task_id="wait", handles=_launched, seconds="{{ params.seconds }}", direct=_direct)
            _down = teardown()
            _planned >> _launched >> _wait >> _down
            _down.as_teardown(setups=_launched)

        @task
        def report(results):
            return results

        report(_wait.output)
