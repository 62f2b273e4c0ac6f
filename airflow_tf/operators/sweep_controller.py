"""The sweep's controller and teardown tasks.

The controller is one deferrable task that runs the whole sweep as a loop of short steps on a
worker, separated by waits in the triggerer (``SweepTrigger``, no worker slot held). One step:

1. open the study (Optuna, its own SQLite file in the sweep's directory: a retried controller
   loads it and goes on where the last try stopped);
2. for every running trial, read its node states and new per-epoch metrics records through the
   backend, report the primary metric to Optuna per epoch, and end the trial when it ended
   (complete / failed) or when the early-termination policy prunes it (stopped through the
   backend's normal stop path, recorded as terminated: never a failure of the sweep);
3. while fewer than ``max_concurrent_runs`` run, fewer than ``max_total_runs`` were started and
   ``max_duration_minutes`` has not passed: ask Optuna for a trial (its sampler sees every
   finished trial: Bayesian sampling chooses at run time), plan it and start its nodes;
4. defer until a node ends or a new record arrives; or, with nothing running, pick the best trial.

The ``trials`` XCom (and a log line per change) shows every trial's params and state in the UI.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from airflow_tf import config
from airflow_tf.backends.base import Backend
from airflow_tf.cluster.tuning import PolicyKind, SweepSettings
from airflow_tf.operators.nodes import job_id_for
from airflow_tf.results.progress import progress_line

TRIALS_XCOM_KEY = "trials"
RUNNING, COMPLETED, TERMINATED, FAILED, CANCELED = "running", "completed", "terminated", "failed", "canceled"


def sweep_directory(backend: Backend, sweep_id: str) -> str:
    """``<job_root>/<sweep id>``: the study and the sweep's picture, beside its trials' job directories."""
    root = getattr(backend, "job_root", None) or config.job_root()
    return os.path.join(os.path.abspath(root), sweep_id)


class SweepMixin:
    settings: dict[str, Any]
    backend: dict[str, Any]
    job_name: str
    study_storage: str | None

    def _open(self, context, create: bool = True):
        from airflow_tf import extras

        extras.require("tuning", "optuna", "HyperparameterSweep")
        from airflow_tf.operators import tuning_study

        settings = SweepSettings.from_json(self.settings)
        backend = Backend.deserialize(self.backend)
        sweep_id = job_id_for(context["dag"].dag_id, context["run_id"], self.job_name)
        directory = sweep_directory(backend, sweep_id)
        if not create and not self.study_storage and not os.path.exists(os.path.join(directory, tuning_study.STUDY_FILE)):
            return settings, backend, sweep_id, directory, None
        storage = self.study_storage or tuning_study.storage_url(directory)
        return settings, backend, sweep_id, directory, tuning_study.open_study(storage, sweep_id, settings)


class SweepStudyOperator(SweepMixin, BaseOperator):
    """The sweep's setup task: creates (or, on a rerun, loads) the study and shows the sweep's
    settings. It is the teardown's setup, so the teardown runs even when the controller fails."""

    ui_color = "#f3e8fd"

    def __init__(self, *, settings: dict[str, Any], backend: dict[str, Any], job_name: str,
                 study_storage: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.settings, self.backend, self.job_name, self.study_storage = settings, backend, job_name, study_storage

    def execute(self, context) -> dict[str, Any]:
        settings, _, sweep_id, directory, study = self._open(context)
        if "started_at" not in study.user_attrs:
            study.set_user_attr("started_at", time.time())
        done = len(study.get_trials(deepcopy=False))
        self.log.info("sweep %s: study in %s (%s), %d trial(s) so far", sweep_id, directory,
                      "new" if not done else "resumed", done)
        return {"study": sweep_id, "directory": directory, "settings": settings.to_json(), "trials_so_far": done}


class SweepControllerOperator(SweepMixin, BaseOperator):
    ui_color = "#f3e8fd"

    def __init__(self, *, settings: dict[str, Any], strategy: str, spec_fields: dict[str, Any],
                 backend: dict[str, Any], job_name: str, poll_interval: float | None = None,
                 decision_interval: float = 10.0, study_storage: str | None = None, model_asset: Any = None,
                 **kwargs):
        if model_asset is not None:
            kwargs["outlets"] = [*kwargs.get("outlets", []), model_asset]
        super().__init__(**kwargs)
        self.settings, self.strategy, self.spec_fields = settings, strategy, spec_fields
        self.backend, self.job_name, self.poll_interval = backend, job_name, poll_interval
        self.study_storage, self.model_asset = study_storage, model_asset
        self.decision_interval = decision_interval

    def execute(self, context):
        return self._step(context)

    def execute_complete(self, context, event: dict[str, Any]):
        if event.get("message"):
            raise AirflowException(f"sweep: {event['message']}; a retry resumes the study")  # retryable
        self.log.info("woken by: %s", "; ".join(event.get("news") or []))
        return self._step(context)

    # -- one step ----------------------------------------------------------------------------------
    def _step(self, context):
        from optuna.trial import TrialState

        from airflow_tf.operators import tuning_study

        settings, backend, sweep_id, directory, study = self._open(context)
        if "started_at" not in study.user_attrs:
            study.set_user_attr("started_at", time.time())
            self.log.info("sweep %s: new study in %s", sweep_id, directory)
        deadline = study.user_attrs["started_at"] + settings.max_duration_minutes * 60
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self._advance(study, settings, backend, frozen)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if time.time() >= deadline:
            for frozen in running:
                self._end(study, backend, frozen.number, TrialState.FAIL, CANCELED,
                          f"stopped: max_duration_minutes={settings.max_duration_minutes:g} reached")
            running = []
        else:
            while (len(running) < settings.max_concurrent_runs
                   and len(study.get_trials(deepcopy=False)) < settings.max_total_runs
                   and not tuning_study.grid_exhausted(study, settings)):
                self._launch(study, settings, backend, sweep_id)
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        table = trial_table(study, settings)
        context["ti"].xcom_push(key=TRIALS_XCOM_KEY, value=table)
        if running:
            from airflow_tf.triggers.sweep_watch import SweepTrigger  # only workers need it

            trials = [{"number": t.number, "handles": t.user_attrs["job"]["handles"],
                       "metrics_offset": t.user_attrs["job"]["metrics_offset"]} for t in running]
            self.defer(
                trigger=SweepTrigger(backend=self.backend, trials=trials, deadline=deadline,
                                     watch_metrics=settings.policy.kind is not PolicyKind.NONE,
                                     poll_interval=self.poll_interval or config.poll_interval(),
                                     stop_grace_s=config.stop_grace_seconds(), min_wait_s=self.decision_interval),
                method_name="execute_complete",
                timeout=timedelta(seconds=max(deadline - time.time(), 0) + 600),
            )
        return self._finish(context, study, settings, directory, table)

    def _launch(self, study, settings: SweepSettings, backend: Backend, sweep_id: str) -> None:
        from optuna.trial import TrialState

        from airflow_tf.operators import sweep_trials, tuning_study

        trial, params = tuning_study.ask(study, settings)
        job_id = f"{sweep_id}.trial-{trial.number}"
        script_params = {**(self.spec_fields.get("script_params") or {}), **params}
        trial.set_user_attr("script_params", params)
        trial.set_user_attr("started_at", sweep_trials.now())
        self.log.info("trial %d: starting job %s with %s", trial.number, job_id, params)
        try:
            sweep_trials.start_trial(self.strategy, {**self.spec_fields, "script_params": script_params}, backend,
                                     job_id, on_started=lambda job: trial.set_user_attr("job", job.to_json()))
        except Exception as exc:  # noqa: BLE001 - one trial that cannot start is one failed trial
            self.log.warning("trial %d could not start: %s", trial.number, exc)
            trial.set_user_attr("reason", f"could not start: {exc}")
            trial.set_user_attr("outcome", FAILED)
            study.tell(trial.number, state=TrialState.FAIL)

    def _advance(self, study, settings: SweepSettings, backend: Backend, frozen) -> None:
        from optuna.trial import TrialState

        from airflow_tf.operators import sweep_trials, tuning_study

        attrs = frozen.user_attrs
        job = sweep_trials.TrialJob.from_json(attrs["job"]) if "job" in attrs else None
        if job is None or len(job.handles) < job.node_count:
            # An earlier try of the controller died while starting it: start it again (a backend's
            # start stops what an earlier start of the same node left).
            self.log.info("trial %d: restarting (an earlier controller try stopped while starting it)", frozen.number)
            live = tuning_study.trial_handle(study, frozen.number)
            params = attrs.get("script_params") or {}
            sweep_trials.start_trial(self.strategy, {**self.spec_fields, "script_params": {
                **(self.spec_fields.get("script_params") or {}), **params}}, backend,
                f"{study.study_name}.trial-{frozen.number}", on_started=lambda j: live.set_user_attr("job", j.to_json()))
            return
        news = sweep_trials.observe(backend, job)
        live = tuning_study.trial_handle(study, frozen.number)
        history = list(attrs.get("history") or [])
        metric, pruned_at = settings.primary_metric_name, None
        last = attrs.get("last_metrics")
        reported = set(frozen.intermediate_values)
        for problem in news.problems:
            self.log.warning("trial %d metrics: %s", frozen.number, problem)
        for position, record in enumerate(news.records):
            last = record
            self.log.info("trial %d %s", frozen.number, progress_line(record))
            step = int(record.get("epoch", len(history) + 1))
            value = record.get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                history.append([step, float(value)])
                if step not in reported:
                    live.report(float(value), step)
                    reported.add(step)
                    # Judge every epoch as it was reported (the policy's interval counts epochs),
                    # unless the trial already ended: then it is complete, not terminated.
                    if news.status == "running" and pruned_at is None and live.should_prune():
                        pruned_at = step
        live.set_user_attr("job", job.to_json())
        live.set_user_attr("history", history)
        if last is not None:
            live.set_user_attr("last_metrics", last)
        if pruned_at is not None:
            self._end(study, backend, frozen.number, TrialState.PRUNED, TERMINATED,
                      f"terminated by {settings.policy.kind} at epoch {pruned_at}", job)
        elif news.status == "failed":
            how = f"exited with code {news.exit_code}" if news.exit_code is not None else "ended without an exit code"
            lines = sweep_trials.tail(backend, job, news.failed_node)
            self.log.warning("trial %d failed: node %s %s; last lines:\n%s", frozen.number, news.failed_node, how,
                             "\n".join(lines))
            self._end(study, backend, frozen.number, TrialState.FAIL, FAILED, f"node {news.failed_node} {how}", job)
        elif news.status == "success":
            final = last or {}
            if not isinstance(final.get(metric), (int, float)):
                names = sorted(k for k, v in final.items() if isinstance(v, (int, float)) and k not in ("epoch", "epochs",
                                                                                                       "rank", "time"))
                self._stop_running(study, backend)
                self._end(study, backend, frozen.number, TrialState.FAIL, FAILED,
                          f"did not report primary_metric_name {metric!r}; it reported {names}", job)
                raise AirflowFailException(
                    f"primary_metric_name {metric!r} was not reported by trial {frozen.number} (job {job.job_id}); "
                    f"the metrics it reported: {names}. Set primary_metric_name to one of them, or log {metric!r} "
                    "(airflow_tf.runtime.training.log_metrics / metrics_callback). Every running trial was stopped")
            outputs = sweep_trials.trial_outputs(backend, job)
            for key, value in outputs.items():
                live.set_user_attr(key, value)
            backend.stop_job(job.job_id, job.node_count)  # releases what the backend holds (containers)
            live.set_user_attr("outcome", COMPLETED)
            live.set_user_attr("ended_at", sweep_trials.now())
            study.tell(frozen.number, float(final[metric]))
            self.log.info("trial %d completed: %s = %s (%d epoch(s))", frozen.number, metric, final[metric],
                          len(history))

    def _end(self, study, backend: Backend, number: int, state, outcome: str, reason: str, job=None) -> None:
        from airflow_tf.operators import sweep_trials, tuning_study

        frozen = study.get_trials(deepcopy=False)[number]
        if job is None and "job" in frozen.user_attrs:
            job = sweep_trials.TrialJob.from_json(frozen.user_attrs["job"])
        if job is not None:
            sweep_trials.stop_trial(backend, job, config.stop_grace_seconds())
        live = tuning_study.trial_handle(study, number)
        live.set_user_attr("outcome", outcome)
        live.set_user_attr("reason", reason)
        live.set_user_attr("ended_at", sweep_trials.now())
        study.tell(number, state=state)
        self.log.info("trial %d %s: %s", number, outcome, reason)

    def _stop_running(self, study, backend: Backend) -> None:
        from optuna.trial import TrialState

        for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if "job" in frozen.user_attrs:
                from airflow_tf.operators.sweep_trials import TrialJob, stop_trial

                stop_trial(backend, TrialJob.from_json(frozen.user_attrs["job"]), config.stop_grace_seconds())

    def _finish(self, context, study, settings: SweepSettings, directory: str, table: list[dict]) -> dict[str, Any]:
        from airflow_tf.results.sweep_curves import write_sweep_curves

        completed = [row for row in table if row["state"] == COMPLETED]
        if not completed:
            raise AirflowFailException(f"sweep: no trial completed ({[(r['number'], r['state'], r['reason']) for r in table]})")
        best = study.best_trial
        row = table[best.number]
        os.makedirs(directory, mode=0o700, exist_ok=True)  # absent when the study is in a shared database
        picture = write_sweep_curves(table, os.path.join(directory, "sweep.png"), settings.primary_metric_name,
                                     best.number, title=study.study_name)
        wall = (max(r["ended_at"] or 0 for r in table) - study.user_attrs["started_at"])
        result = {
            "best_trial": best.number, "best_params": row["params"], "best_metric": best.value,
            "metrics": row["metrics"], "model_path": row["model_path"],
            "primary_metric_name": settings.primary_metric_name,
            "primary_metric_goal": settings.primary_metric_goal.value,
            # the 0.1 keys, kept for DAGs that read them
            "metric": settings.primary_metric_name,
            "mode": "max" if settings.primary_metric_goal.value == "maximize" else "min",
            "trials": table,
            "terminated_early": sum(r["state"] == TERMINATED for r in table),
            "failed": sum(r["state"] == FAILED for r in table),
            "study": {"name": study.study_name, "directory": directory}, "picture": picture,
            "wall_s": round(wall, 3),
        }
        self.log.info("best of %d trial(s) by %s (%s): trial %d %s -> %s; %d terminated early; picture: %s",
                      len(table), settings.primary_metric_name, settings.primary_metric_goal, best.number,
                      row["params"], best.value, result["terminated_early"], picture)
        if self.model_asset is not None:
            context["outlet_events"][self.model_asset].extra = {
                "sweep": study.study_name, "trial": best.number, "params": row["params"],
                "model_path": row["model_path"], "metrics": row["metrics"],
            }
        return result


def trial_table(study, settings: SweepSettings) -> list[dict[str, Any]]:
    """Every trial as the UI shows it: params, state, its metric, epochs, why it ended."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        last = attrs.get("last_metrics") or {}
        rows.append({
            "number": t.number,
            "state": attrs.get("outcome", RUNNING) if t.state.name != "RUNNING" else RUNNING,
            "params": attrs.get("script_params", {}),
            "metric": t.value if t.value is not None else last.get(settings.primary_metric_name),
            "metrics": last,
            "epochs_logged": len(attrs.get("history") or []),
            "history": attrs.get("history") or [],
            "model_path": attrs.get("model_path"),
            "job_id": (attrs.get("job") or {}).get("job_id"),
            "reason": attrs.get("reason"),
            "started_at": attrs.get("started_at"),
            "ended_at": attrs.get("ended_at"),
        })
    return rows


class SweepTeardownOperator(SweepMixin, BaseOperator):
    """Stop every trial the sweep started (after success, failure, timeout or mark-failed), and
    fail when the controller did not succeed, so that a marked-failed run stays failed."""

    ui_color = "#f9e0e0"

    def __init__(self, *, settings: dict[str, Any], backend: dict[str, Any], job_name: str, controller_task_id: str,
                 study_storage: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.settings, self.backend, self.job_name = settings, backend, job_name
        self.controller_task_id, self.study_storage = controller_task_id, study_storage

    def execute(self, context) -> None:
        from optuna.trial import TrialState

        from airflow_tf.operators.sweep_trials import TrialJob

        _, backend, sweep_id, _, study = self._open(context, create=False)
        stopped = []
        for frozen in (study.get_trials(deepcopy=False) if study is not None else []):
            if "job" not in frozen.user_attrs:
                continue
            job = TrialJob.from_json(frozen.user_attrs["job"])
            if backend.stop_job(job.job_id, job.node_count):
                stopped.append(frozen.number)
            if frozen.state == TrialState.RUNNING:
                from airflow_tf.operators.tuning_study import trial_handle

                live = trial_handle(study, frozen.number)
                live.set_user_attr("outcome", CANCELED)
                live.set_user_attr("reason", "stopped by the teardown (the controller did not finish it)")
                study.tell(frozen.number, state=TrialState.FAIL)
        if stopped:
            self.log.warning("stopped trial(s) %s of sweep %s that were still running", stopped, sweep_id)
        else:
            self.log.info("no trial of sweep %s was left running", sweep_id)
        if context["ti"].xcom_pull(task_ids=self.controller_task_id) is None:
            raise AirflowFailException("the sweep did not succeed (see the controller task); its trials are stopped")
