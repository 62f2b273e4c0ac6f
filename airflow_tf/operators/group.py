"""TrainingTaskGroup: one user-facing object rendered into plan -> launch[n] -> wait -> teardown.

The astronomer-cosmos shape: a TaskGroup subclass, so ``prepare >> train >> export`` wires to
its first and last tasks and the UI shows one collapsible step. ``_build`` is the one place
that instantiates operators.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import attrs
from airflow.sdk import TaskGroup

from airflow_tf.backends.base import Backend
from airflow_tf.backends.local import LocalBackend
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.registry import PLANNERS, JobKind
from airflow_tf.operators.nodes import (
    DEFAULT_MAX_RUN_DURATION_S,
    LaunchNodeOperator,
    PlanTrainingJobOperator,
    TeardownTrainingJobOperator,
    WaitForTrainingJobOperator,
)
from airflow_tf.operators import task_args
from airflow_tf.operators.options import caller_folder, check_seconds, resolve_source_directory
from airflow_tf.operators.restarts import RestartPolicy
from airflow_tf.operators.resume import resume_path
from airflow_tf.operators.task_args import split_task_args
from airflow_tf.results import outputs
from airflow_tf.results.tracking import tracking_from_options

# Which spec fields may be Jinja templates (set per run from DAG Params / conf): the plan task's.
TEMPLATED_FIELDS = PlanTrainingJobOperator.template_fields
TASK_GROUP_OPTIONS = frozenset(f.name for f in attrs.fields(TaskGroup) if f.init) - {"_group_id", "group_id"}


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


BASE_OPTIONS = frozenset({
    "source_directory", "entry_script", "script_params", "node_count", "process_count_per_node", "pip_packages",
    "conda_packages", "use_gpu", "environment_variables", "backend", "poll_interval", "timeout", "model_asset",
    "error_budget", "max_run_duration_seconds", "output_uri",
    "mlflow_tracking_uri", "mlflow_conn_id", "mlflow_experiment_name", "mlflow_ranks",
    "max_restarts", "restart_on_exit_codes", "permanent_exit_codes", "resume_from",
})


def _as_asset(value: Any):
    """``model_asset`` may be an Asset or its URI."""
    if value is None:
        return None
    from airflow.sdk import Asset  # only DAGs that publish a model pay for the import

    if isinstance(value, Asset):
        return value
    if isinstance(value, str) and value:
        return Asset(value)
    raise SpecError(f"model_asset must be an airflow.sdk.Asset or a URI string, got {value!r}")


class TrainingTaskGroup(TaskGroup):
    """Shared by every *TrainOperator; subclasses set ``strategy`` (a key of ``PLANNERS``).

    Options beyond the common ones are the fields the strategy's spec class adds (for example
    ``worker_count`` for parameter-server training); they are validated by that class.
    """

    strategy: ClassVar[str]

    def __init__(
        self,
        task_id: str,
        *,
        source_directory: str,
        entry_script: str,
        script_params: dict[str, Any] | list[str] | str | None = None,
        node_count: int | str = 1,
        process_count_per_node: int = 1,
        pip_packages: list[str] | None = None,
        conda_packages: list[str] | None = None,
        use_gpu: bool = False,
        environment_variables: dict[str, str] | str | None = None,
        backend: Backend | None = None,
        poll_interval: float | None = None,
        timeout: float | None = None,
        model_asset: Any = None,
        error_budget: float | None = None,
        max_run_duration_seconds: float | None = DEFAULT_MAX_RUN_DURATION_S,
        output_uri: Any = None,
        mlflow_tracking_uri: str | None = None,
        mlflow_conn_id: str | None = None,
        mlflow_experiment_name: str | None = None,
        mlflow_ranks: str = "chief",
        max_restarts: int = 0,
        restart_on_exit_codes: list[int] | None = None,
        permanent_exit_codes: list[int] | None = None,
        resume_from: Any = None,
        **options: Any,
    ):
        # Airflow's task-level arguments (retries, queue, pool, callbacks, ...): checked here and
        # given to the tasks where they mean something (operators/task_args.py says which).
        given_task_args, options = split_task_args(options)
        spec_class = PLANNERS[JobKind(self.strategy)][0]
        strategy_options = {f.name for f in dataclasses.fields(spec_class)} - BASE_OPTIONS
        group_kwargs = {k: v for k, v in options.items() if k not in strategy_options}
        unknown = sorted(set(group_kwargs) - TASK_GROUP_OPTIONS)
        if unknown:
            allowed = sorted(TASK_GROUP_OPTIONS | BASE_OPTIONS | strategy_options | task_args.TASK_ARGS)
            import difflib  # only on this error path: DAG parsing should not pay for it

            from airflow_tf.cluster.estimator_names import INSTEAD  # the estimator's names: where they went

            hints = {name: difflib.get_close_matches(name, [*allowed, *INSTEAD], n=1) for name in unknown}
            hint = "; ".join(f"{name!r}: {INSTEAD[h[0]]}" if h[0] in INSTEAD else f"did you mean {h[0]!r} for {name!r}?"
                             for name, h in hints.items() if h)
            raise SpecError(f"{type(self).__name__} got unknown option(s) {unknown}. {hint} Allowed: {allowed}")
        fields = {
            # Relative: against the DAG file's folder, not the working directory (operators/options.py).
            "source_directory": resolve_source_directory(source_directory, caller_folder()),
            "entry_script": entry_script,
            "script_params": script_params,
            "node_count": node_count,
            "process_count_per_node": process_count_per_node,
            "pip_packages": pip_packages,
            "conda_packages": conda_packages,
            "use_gpu": use_gpu,
            "environment_variables": environment_variables,
            **{k: v for k, v in options.items() if k in strategy_options},
        }
        templated = {name for name in TEMPLATED_FIELDS if _is_template(fields[name])}
        spec_class.validate_fields(fields, skip=templated)
        check_seconds("poll_interval", poll_interval, "None: [airflow_tf] poll_interval")
        check_seconds("timeout", timeout, "None: no timeout")
        check_seconds("max_run_duration_seconds", max_run_duration_seconds, "None: no limit")
        # Seconds of consecutive backend errors the wait rides out (docs/reliability.md).
        check_seconds("error_budget", error_budget, "None: 60")
        # Where the chief's outputs are copied at the end (results/outputs.py); checked here, at parse.
        output_setting = outputs.to_setting(output_uri)
        # One MLflow run per job (results/tracking.py; mlflow itself is imported only by the wait task).
        tracking = tracking_from_options(mlflow_tracking_uri, mlflow_conn_id, mlflow_experiment_name, mlflow_ranks)
        # Whole-job restarts, owned by the wait task (operators/restarts.py).
        restart_policy = RestartPolicy(max_restarts, restart_on_exit_codes, permanent_exit_codes)
        resume = resume_path(resume_from)
        if backend is None:
            backend = LocalBackend()
        if not isinstance(backend, Backend):
            raise SpecError(f"backend must be an airflow_tf Backend (LocalBackend(), ...), got {backend!r}")
        if output_setting and type(backend).output_files is Backend.output_files:
            raise SpecError(f"output_uri: {type(backend).__name__} cannot read a job's outputs to copy them; "
                            "let the training script write them to the target itself")
        # Registered with the DAG only once valid: a failed construction leaves no half group.
        super().__init__(group_id=task_id, **group_kwargs)
        self.backend = backend
        self.model_asset = _as_asset(model_asset)
        self.error_budget = error_budget
        self.max_run_duration_seconds = max_run_duration_seconds
        self.output_uri = output_setting
        self.tracking = tracking
        self.restart_policy = restart_policy
        self.resume_from = resume
        self.task_args = given_task_args
        self._build(fields, poll_interval=poll_interval, timeout=timeout)

    def _build(self, fields: dict[str, Any], *, poll_interval: float | None, timeout: float | None) -> None:
        backend = self.backend.serialize()
        static = {k: v for k, v in fields.items() if k not in TEMPLATED_FIELDS}
        default_args = {**((self.dag.default_args or {}) if self.dag else {}), **(self.default_args or {})}

        def args(task: str) -> dict[str, Any]:
            return task_args.for_task(task, self.task_args, default_args)

        with self:
            plan = PlanTrainingJobOperator(
                task_id="plan",
                strategy=self.strategy,
                spec_fields=static,
                node_count=fields["node_count"],
                script_params=fields["script_params"] or {},
                environment_variables=fields["environment_variables"] or {},
                backend=backend,
                job_name=self.group_id,
                resume_from=self.resume_from,
                **args(task_args.PLAN),
            )
            launch = LaunchNodeOperator.partial(
                # The UI names each mapped launch "node 1 · worker 1 @ host" (set by its execute()).
                task_id="launch", map_index_template="{{ airflow_tf_node }}", backend=backend,
                source_directory=fields["source_directory"],
                plan_task_id=plan.task_id, environment_variables=fields["environment_variables"] or {},
                secret_environment_variables=fields.get("secret_environment_variables") or {},
                **args(task_args.LAUNCH),
            ).expand(node=plan.output)
            wait = WaitForTrainingJobOperator(
                task_id="wait", handles=launch.output, backend=backend, plan_task_id=plan.task_id,
                poll_interval=poll_interval, timeout=timeout, model_asset=self.model_asset,
                error_budget=self.error_budget, max_run_duration_seconds=self.max_run_duration_seconds,
                tracking=self.tracking.to_json() if self.tracking else None, output_uri=self.output_uri,
                secret_environment_variables=fields.get("secret_environment_variables") or {},
                restart_policy=self.restart_policy.to_json(), source_directory=fields["source_directory"],
                environment_variables=fields["environment_variables"] or {},
                **args(task_args.WAIT),
            )
            teardown = TeardownTrainingJobOperator(
                task_id="teardown", backend=backend, plan_task_id=plan.task_id, wait_task_id=wait.task_id,
                **args(task_args.TEARDOWN),
            )
            plan >> launch >> wait >> teardown
            teardown.as_teardown(setups=launch, on_failure_fail_dagrun=True)
        self.plan_task, self.launch_task, self.wait_task, self.teardown_task = plan, launch, wait, teardown

    @property
    def output(self):
        """The job's results (per-node exit codes and durations, final metrics, model path)."""
        return self.wait_task.output
