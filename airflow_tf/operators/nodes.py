"""The four operators a training group expands into: plan -> launch (one per node) -> wait -> teardown.

They know backends and plans as JSON, not TensorFlow. Users do not instantiate them: the
training groups in this package do (``airflow_tf.operators.group``).
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_tf import config
from airflow_tf.backends.base import Backend
from airflow_tf.cluster.checks import coerce_positive_int
from airflow_tf.cluster.plan import ClusterPlan, NodeLaunch, NodePlan
from airflow_tf.cluster.registry import PLANNERS, JobKind
from airflow_tf.cluster.spec import check_environment
from airflow_tf.operators.links import RESULT_LINKS
from airflow_tf.operators.placement import check_single_host
from airflow_tf.operators.restarts import current_tries, reattach
from airflow_tf.operators.resume import with_resume
from airflow_tf.operators.secrets import mask, resolve
from airflow_tf.results.progress import metrics_files
from airflow_tf.runtime import node_files
from airflow_tf.ui.names import node_title

# The estimator's max_run_duration_seconds: the job's wall clock from its first node's start. Generous
# (a week) so that by default nothing waits forever; None turns it off.
DEFAULT_MAX_RUN_DURATION_S = 7 * 24 * 3600
PLAN_XCOM_KEY = "plan"  # the whole job plan, for people (UI) and the wait / teardown tasks
# What the job page (airflow_tf/ui) needs besides plan and handles: the backend's settings, to
# read the nodes, and secret_environment_variables' references (never values), to mask their lines.
PAGE_XCOM_KEY = "job_page"
ATTEMPT_XCOM_KEY = "attempt"  # the wait's: the attempt running now (after a restart) and its handles
CLUSTER_XCOM_KEY = "cluster"  # the cluster alone: what each launch task needs besides its node


def job_id_for(dag_id: str, run_id: str, group_id: str) -> str:
    """A directory- and label-safe id, unique per (DAG, run, group) even after sanitising."""
    raw = f"{dag_id}.{run_id}.{group_id}"
    digest = hashlib.sha1(raw.encode()).hexdigest()[:8]
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("._-")[:150]
    return f"{readable}-{digest}"


class MasksEnvironment:
    """The user's ``environment_variables`` values are masked as soon as they are rendered, so
    the rendered-fields view and the task log show ``***`` (Airflow's masker; it skips values
    shorter than its minimum length)."""

    environment_variables: Any

    def render_template_fields(self, context, jinja_env=None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        if isinstance(self.environment_variables, dict):
            mask(str(value) for value in self.environment_variables.values())


class PlanTrainingJobOperator(MasksEnvironment, BaseOperator):
    """Render the spec (node_count and script_params may be templates) and plan every node.

    Its return value is the list of node plans (TF_CONFIG included, readable in the UI), which
    the mapped launch expands over; the ``plan`` XCom holds the whole job plan.
    """

    template_fields = ("node_count", "script_params", "environment_variables")
    template_fields_renderers = {"script_params": "json"}  # the UI shows the dict as JSON
    ui_color = "#e8f4fd"

    def __init__(self, *, strategy: str, spec_fields: dict[str, Any], node_count: Any, script_params: Any,
                 environment_variables: Any, backend: dict[str, Any], job_name: str, resume_from: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.resume_from = resume_from  # operators/resume.py: reaches every rank as AIRFLOW_TF_RESUME_FROM
        self.strategy = strategy
        self.spec_fields = spec_fields
        self.node_count = node_count
        self.script_params = script_params
        self.environment_variables = environment_variables
        self.backend = backend
        self.job_name = job_name

    def execute(self, context) -> list[dict[str, Any]]:
        spec_class, planner = PLANNERS[JobKind(self.strategy)]
        spec = spec_class(
            **self.spec_fields,
            node_count=coerce_positive_int("node_count", self.node_count),
            script_params=self.script_params,
            environment_variables=self.environment_variables,
        )
        # Every secret reference must resolve before any node starts (the values are not kept).
        resolve(spec.secret_environment_variables)
        backend = Backend.deserialize(self.backend)
        if backend.single_host:  # on a multi-host executor: pinned to one host, or refused here
            check_single_host(self, type(backend).__name__)
        hosts = backend.hosts(spec.node_count)
        job_id = job_id_for(context["dag"].dag_id, context["run_id"], self.job_name)
        # Plan once with default ports to learn how many ports each host needs, then again
        # with ports the backend found free there.
        draft = planner(spec, job_id=job_id, hosts=hosts)
        ports_per_host: dict[str, int] = {}
        for node in draft.nodes:
            ports_per_host[node.host] = ports_per_host.get(node.host, 0) + len(node.ports)
        found = {host: backend.free_ports(host, count) for host, count in ports_per_host.items()}
        free_ports = None if any(ports is None for ports in found.values()) else found
        plan = planner(spec, job_id=job_id, hosts=hosts, free_ports=free_ports)
        if self.resume_from:
            plan = with_resume(plan, self.resume_from, backend)
        self.log.info("job %s: %s over %d node(s), world size %d", job_id, plan.strategy, len(plan.nodes), plan.world_size)
        data = plan.to_json()
        context["ti"].xcom_push(key=PLAN_XCOM_KEY, value=data)
        context["ti"].xcom_push(key=CLUSTER_XCOM_KEY, value=data["cluster"])
        return data["nodes"]


class LaunchNodeOperator(MasksEnvironment, BaseOperator):
    """Start one node detached through the backend; return its handle. Takes seconds, not hours.

    The user's environment values come from this task's own templated field, never from the
    plan XCom (which only names them).
    """

    template_fields = ("node", "environment_variables")
    # The node's plan (its TF_CONFIG parts, command, ports) as JSON in the rendered-fields view.
    template_fields_renderers = {"node": "json"}
    ui_color = "#fdf6e3"

    def __init__(self, *, node: Any, backend: dict[str, Any], source_directory: str, plan_task_id: str,
                 environment_variables: Any = None, secret_environment_variables: dict[str, str] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.secret_environment_variables = secret_environment_variables or {}
        self.node = node
        self.backend = backend
        self.source_directory = source_directory
        self.plan_task_id = plan_task_id
        self.environment_variables = environment_variables

    def execute(self, context) -> dict[str, Any]:
        # Read by the map_index_template set in group.py: the UI lists "node 1 · worker 1 @ host".
        context["airflow_tf_node"] = node_title(self.node)
        node = NodePlan.from_json(self.node)
        cluster = ClusterPlan.from_json(context["ti"].xcom_pull(task_ids=self.plan_task_id, key=CLUSTER_XCOM_KEY))
        launch = NodeLaunch(node, cluster, check_environment(self.environment_variables))
        backend = Backend.deserialize(self.backend)
        attached = reattach(backend, launch)
        if attached is not None:
            self.log.info("node %s of job %s (attempt %s) is already running as try %s: re-attached, nothing started",
                          node.node_index, node.job_id, launch.attempt, attached.get("try"))
            return attached
        secrets = resolve(self.secret_environment_variables)  # looked up now, handed over, kept nowhere
        handle = backend.start(launch, self.source_directory, secrets=secrets)
        labels = ", ".join(process.label for process in node.processes)
        self.log.info("node %s started on %s (%s) as try %s: %s", node.node_index, node.host, labels,
                      handle.get("try"), handle)
        return handle


class WaitForTrainingJobOperator(MasksEnvironment, BaseOperator):
    """Defer to ``TrainingJobTrigger`` until the job ends; no worker slot is held meanwhile.

    It also owns job-level restarts (``max_restarts``, operators/restarts.py): a failed attempt
    with restarts left is stopped and started again as the next attempt, then watched again.
    """

    template_fields = ("handles", "environment_variables")
    ui_color = "#eaf7ea"
    # Job page, TensorBoard dir, curves picture, outputs, MLflow run (airflow_tf/operators/links.py).
    operator_extra_links = RESULT_LINKS

    def __init__(self, *, handles: Any, backend: dict[str, Any], plan_task_id: str, poll_interval: float | None = None,
                 timeout: float | None = None, model_asset: Any = None,
                 secret_environment_variables: dict[str, str] | None = None, error_budget: float | None = None,
                 max_run_duration_seconds: float | None = DEFAULT_MAX_RUN_DURATION_S,
                 tracking: dict[str, Any] | None = None, output_uri: dict[str, Any] | None = None,
                 restart_policy: dict[str, Any] | None = None, source_directory: str | None = None,
                 environment_variables: Any = None,
                 **kwargs):
        if model_asset is not None:
            kwargs["outlets"] = [*kwargs.get("outlets", []), model_asset]
        super().__init__(**kwargs)
        # What a restart needs to start the nodes again (like the launch tasks have).
        self.restart_policy = restart_policy or {}
        self.source_directory = source_directory
        self.environment_variables = environment_variables
        self.tracking = tracking  # results.tracking.Tracking as JSON; None: no MLflow run
        self.output_uri = output_uri  # results.outputs.to_setting(): where the chief's outputs are copied
        self.error_budget = error_budget  # None: the trigger's default (DEFAULT_ERROR_BUDGET_S)
        self.max_run_duration_seconds = max_run_duration_seconds
        self.model_asset = model_asset
        self.handles = handles
        self.backend = backend
        self.plan_task_id = plan_task_id
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.secret_environment_variables = secret_environment_variables or {}

    def execute(self, context) -> None:
        handles = list(self.handles[:])  # a mapped XCom: slice fetches all in one request
        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY)
        context["ti"].xcom_push(key=PAGE_XCOM_KEY, value={
            "backend": self.backend, "secret_references": self.secret_environment_variables,
        })
        handles = current_tries(Backend.deserialize(self.backend), sorted(handles, key=lambda h: h["node_index"]), self.log)
        attempt = max(int(h.get("attempt", 1)) for h in handles)
        if attempt > 1:
            self.log.info("job %s runs attempt %d (restarted before this try of the wait): watching that one",
                          plan["job_id"], attempt)
        self._defer(plan, handles, attempt=attempt, job_started_at=min(h["started_at"] for h in handles), earlier=[])

    def _defer(self, plan: dict[str, Any], handles: list[dict[str, Any]], *, attempt: int, job_started_at: float,
               earlier: list[dict[str, Any]]) -> None:
        from datetime import timedelta

        from airflow_tf.triggers.training_job import TrainingJobTrigger  # only workers need it

        self.defer(
            trigger=TrainingJobTrigger(
                backend=self.backend,
                job_id=plan["job_id"],
                handles=handles,
                success_rule=plan["success_rule"],
                # None: the deployment's [airflow_tf] settings, read here on the worker, not at parse.
                poll_interval=self.poll_interval or config.poll_interval(),
                stop_grace_s=config.stop_grace_seconds(),
                metrics_files=[metrics_files(node, plan["cluster"]["world_size"]) for node in plan["nodes"]],
                # References only: the trigger looks the values up itself to mask node log lines.
                secret_references=self.secret_environment_variables,
                **({"error_budget_s": self.error_budget} if self.error_budget is not None else {}),
                max_run_duration_s=self.max_run_duration_seconds,
                job_started_at=job_started_at,  # a restart does not reset the job's wall clock
                # Handed back in the event: this attempt's number and what the earlier ones did.
                resume={"attempt": attempt, "earlier": earlier},
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        event = dict(event)
        resume = event.pop("resume", None) or {}
        attempt, earlier, job_started_at = int(resume.get("attempt", 1)), list(resume.get("earlier") or []), \
            resume.get("job_started_at")
        if resume.get("handles"):
            self.handles = resume["handles"]  # this attempt's nodes (a restart started new ones)
        if event.get("message"):
            # The trigger could not tell how the job is doing (nodes unreachable past the error
            # budget, or out of its sight): no node is known to have failed. Unreachable may pass,
            # so that one is retryable (a retry resumes watching); out of sight is not.
            raise (AirflowException if event.get("retryable") else AirflowFailException)(event["message"])
        if event["status"] != "success":
            node, code = event["failed_node"], event["exit_code"]
            how = f"exited with code {code}" if code is not None else "ended without an exit code (its runtime was killed)"
            if code == node_files.LOG_FAILED:
                how += " (its log could not be written: disk full, or its directory was removed)"
            elif code == node_files.PORTS_TAKEN:
                how += " (ports planned for it were taken on its host before it started)"
            tail = "\n".join(event.get("tail") or ["<no output>"])
            from airflow_tf.operators.restarts import RestartPolicy

            policy = RestartPolicy(**self.restart_policy)
            why_not = policy.decide(code, attempt - 1)
            if why_not is None:
                self._restart(context, event, how, tail, attempt, job_started_at, earlier)  # defers again
            self._track(context, event, failed=True)
            note = f" Not restarted: {why_not}." if policy.max_restarts else ""
            # A training failure is not transient for this task: retrying the wait cannot help.
            raise AirflowFailException(
                f"training job {event['job_id']} failed in attempt {attempt}: node {node} {how}; all other nodes "
                f"were stopped.{note}\nLast lines of node {node}:\n{tail}"
            )
        for node in event["nodes"]:
            self.log.info("node %s on %s: exit %s after %ss", node["node_index"], node["host"], node["exit_code"], node["duration_s"])
        results = {key: value for key, value in event.items() if key != "status"}
        results["attempt"], results["earlier_attempts"] = attempt, earlier
        if earlier:  # the whole training's curve: earlier attempts' epochs, then this one's
            from airflow_tf.results.progress import merge_histories

            results["history"] = merge_histories([a.get("history") or [] for a in earlier] + [results["history"]])
        # The trigger drew it if the outputs are on its machine; here otherwise, or merged with earlier attempts.
        if earlier or not results.get("curves_png") or not os.path.isfile(results["curves_png"]):
            results["curves_png"] = self._write_curves(results)
        if self.output_uri:  # before the Asset event and the MLflow run, which then point at the copy
            results = self._publish(results)
        results["mlflow"] = self._track(context, results, failed=False)
        self.log.info("final metrics: %s; model: %s; curves: %s", results["metrics"], results["model_path"],
                      results["curves_png"])
        if self.model_asset is not None:
            # The trained model as an Airflow Asset event: downstream DAGs can be scheduled on it.
            context["outlet_events"][self.model_asset].extra = {
                "job_id": results["job_id"], "model_path": results["model_path"], "metrics": results["metrics"],
            }
        return results

    def _restart(self, context, event: dict[str, Any], how: str, tail: str, attempt: int,
                 job_started_at: float | None, earlier: list[dict[str, Any]]) -> None:
        """Stop the failed attempt, start the next one from the same plan, and defer again."""
        from airflow_tf.operators.restarts import restart_job
        from airflow_tf.results.progress import newest, read_all_records
        from airflow_tf.triggers.training_job import CHIEF_METRICS, HISTORY_READ_CHUNK

        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY)
        backend = Backend.deserialize(self.backend)
        handles = sorted(self.handles[:], key=lambda h: h["node_index"])
        policy = self.restart_policy
        self.log.warning("attempt %d of job %s failed: node %s %s. Restarting the whole job as attempt %d "
                         "(restart %d of max_restarts=%d). Its last lines:\n%s", attempt, event["job_id"],
                         event["failed_node"], how, attempt + 1, attempt, policy.get("max_restarts", 0), tail)
        try:  # the failed attempt's curve, kept for the results (its files stay in its try directories)
            history = read_all_records(lambda at, limit: backend.read_from(handles[0], CHIEF_METRICS, at, limit),
                                       HISTORY_READ_CHUNK).records
        except Exception as exc:  # noqa: BLE001 - the restart matters more than the old curve
            self.log.warning("could not read attempt %d's metrics: %s", attempt, exc)
            history = []
        earlier = [*earlier, {"attempt": attempt, "failed_node": event["failed_node"], "exit_code": event["exit_code"],
                              "epochs_logged": len(history), "history": newest(history)}]
        new = restart_job(
            backend, plan, handles, source_directory=self.source_directory,
            environment=check_environment(self.environment_variables),
            secrets=resolve(self.secret_environment_variables), attempt=attempt + 1, grace_s=config.stop_grace_seconds(),
        )
        for handle in new:
            self.log.info("node %s restarted on %s as try %s (attempt %d)", handle["node_index"], handle["host"],
                          handle.get("try"), attempt + 1)
        # What the UI shows: the attempt running now and its nodes.
        context["ti"].xcom_push(key=ATTEMPT_XCOM_KEY, value={"attempt": attempt + 1, "handles": new})
        self._defer(plan, new, attempt=attempt + 1, job_started_at=job_started_at or min(h["started_at"] for h in new),
                    earlier=earlier)

    def _publish(self, results: dict[str, Any]) -> dict[str, Any]:
        """Copy the chief's outputs (and metrics.json, curves.png) to ``output_uri``/<job_id>/
        through the backend; the results then point there (results/outputs.py)."""
        from airflow_tf.results import outputs

        chief = min(self.handles[:], key=lambda h: h["node_index"])
        destination = outputs.target(self.output_uri, results["job_id"])
        extra = {outputs.METRICS_FILE: outputs.metrics_payload(results)}
        curves = outputs.curves_png(results)
        if curves:
            extra[outputs.CURVES_FILE] = curves
        copied = outputs.copy_outputs(Backend.deserialize(self.backend).output_files(chief), destination, extra)
        self.log.info("copied %d file(s), %d bytes, of job %s's outputs to %s", len(copied), sum(copied.values()),
                      results["job_id"], outputs.uri(destination))
        published = outputs.relocate(results, results.get("output_dir"), destination)
        published["curves_png"] = outputs.uri(destination / outputs.CURVES_FILE) if curves else None
        return published

    def _track(self, context, results: dict[str, Any], *, failed: bool) -> dict[str, Any] | None:
        """The job as one MLflow run (``mlflow_tracking_uri`` / ``mlflow_conn_id``); None: not tracked."""
        if not self.tracking:
            return None
        from airflow_tf.results.tracking import track_job  # mlflow: only where tracking is on

        plan = context["ti"].xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY)
        return track_job(self.tracking, context=context, plan=plan, results=results, failed=failed,
                         backend=self.backend, handles=list(self.handles[:]), log=self.log)

    def _write_curves(self, results: dict[str, Any]) -> str | None:
        """curves.png next to the model when the outputs are on this machine."""
        from airflow_tf.results.curves import write_job_curves

        return write_job_curves(results.get("history"), results.get("output_dir"), results["job_id"])


class TeardownTrainingJobOperator(BaseOperator):
    """Stop whatever of the job still runs: after success, failure, timeout or mark-failed.

    It also fails when the wait did not succeed, so that a marked-failed run stays failed even
    when the group has downstream tasks (teardowns do not otherwise decide a run's state).
    """

    ui_color = "#f9e0e0"

    def __init__(self, *, backend: dict[str, Any], plan_task_id: str, wait_task_id: str, **kwargs):
        super().__init__(**kwargs)
        self.backend = backend
        self.plan_task_id = plan_task_id
        self.wait_task_id = wait_task_id

    def execute(self, context) -> None:
        ti = context["ti"]
        plan = ti.xcom_pull(task_ids=self.plan_task_id, key=PLAN_XCOM_KEY)
        if plan:
            backend = Backend.deserialize(self.backend)
            were_running = backend.stop_job(plan["job_id"], len(plan["nodes"]))
            if were_running:
                self.log.warning("stopped node(s) %s of job %s that were still running", were_running, plan["job_id"])
            else:
                self.log.info("no node of job %s was left running", plan["job_id"])
        if ti.xcom_pull(task_ids=self.wait_task_id) is None:
            raise AirflowFailException("the training step did not succeed (see the wait task); its nodes are stopped")

