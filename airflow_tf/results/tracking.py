"""MLflow tracking of a training job: one MLflow run per job, written by the wait task when the job
has ended (``execute_complete``, on the worker), from what the job left behind.

The run carries
- tags: ``airflow.dag_id`` / ``airflow.run_id`` / ``airflow.task_id`` (the wait task),
  ``airflow_tf.group`` / ``airflow_tf.job_id`` / ``airflow_tf.strategy``;
- params: the script's parameters (``--epochs 4`` -> ``epochs=4``), ``node_count``,
  ``world_size``, ``strategy``, ``entry_script``;
- metrics: every metrics record of rank 0 (``runtime.training.log_metrics``: one per epoch), as
  step = epoch; with ``mlflow_ranks="all"`` every rank's, rank r > 0 as ``rank<r>/<name>``;
- artifacts: the model (``model/``), the curves picture (``curves/``), the metrics history.

A wait task that is retried finds the run it made before (by the ``airflow_tf.job_id`` tag) and
updates it: one run per job. A failed job is recorded as a FAILED run (its params, tags and the
metrics its ranks wrote). MLflow is imported only here, and only when a job is tracked; a
tracking server that cannot be reached makes the wait log a warning, never fail a training job
that succeeded (its results say ``mlflow.error``).
"""

from __future__ import annotations

import dataclasses
import enum
import os
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from airflow_tf.cluster.errors import SpecError

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
BATCH = 1000  # MLflow's limit on metrics per log_batch


class TrackedRanks(enum.StrEnum):
    CHIEF = "chief"  # rank 0's metrics (what the chief's training helpers write; the default)
    ALL = "all"  # every rank's metrics file


@dataclasses.dataclass(frozen=True)
class Tracking:
    """Where a group's job is tracked: an MLflow tracking URI or an Airflow connection holding it."""

    tracking_uri: str | None = None
    conn_id: str | None = None
    experiment_name: str | None = None  # None: the DAG id
    ranks: TrackedRanks = TrackedRanks.CHIEF

    def __post_init__(self):
        if (self.tracking_uri is None) == (self.conn_id is None):
            raise SpecError("give one of mlflow_tracking_uri (e.g. 'http://mlflow:5000') and mlflow_conn_id "
                            "(an Airflow connection whose host is the tracking server), not both")
        for field, value in (("mlflow_tracking_uri", self.tracking_uri), ("mlflow_conn_id", self.conn_id),
                             ("mlflow_experiment_name", self.experiment_name)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise SpecError(f"{field} must be a non-empty string or None, got {value!r}")
        if self.tracking_uri is not None and "://" not in self.tracking_uri:
            raise SpecError(f"mlflow_tracking_uri must be a URI such as 'http://mlflow:5000' or "
                            f"'file:///srv/mlruns', got {self.tracking_uri!r}")
        try:
            object.__setattr__(self, "ranks", TrackedRanks(self.ranks))
        except ValueError:
            raise SpecError(f"mlflow_ranks must be one of {[r.value for r in TrackedRanks]}, got {self.ranks!r}") from None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ranks": self.ranks.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Tracking":
        return cls(**data)


def tracking_from_options(tracking_uri: Any, conn_id: Any, experiment_name: Any, ranks: Any) -> Tracking | None:
    """The group's tracking options (parse time); None when neither a URI nor a connection is given."""
    if tracking_uri is None and conn_id is None:
        if experiment_name is not None or ranks != TrackedRanks.CHIEF:
            raise SpecError("mlflow_experiment_name / mlflow_ranks need mlflow_tracking_uri or mlflow_conn_id")
        return None
    from airflow_tf.extras import require

    require("mlflow", "mlflow", "MLflow tracking (mlflow_tracking_uri / mlflow_conn_id)")
    return Tracking(tracking_uri, conn_id, experiment_name, ranks)


def without_credentials(uri: str) -> str:
    """``http://user:pw@host:5000`` -> ``http://host:5000`` (what may go into XCom and logs)."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def resolve_uri(tracking: Tracking) -> str:
    """The tracking URI; from a connection: its ``extra.tracking_uri``, else scheme (the connection's
    schema, default http) + host + port. Its login / password become MLflow's basic-auth variables
    for this process (masked)."""
    if tracking.tracking_uri is not None:
        return tracking.tracking_uri
    from airflow.sdk import BaseHook

    from airflow_tf.operators.secrets import mask

    conn = BaseHook.get_connection(tracking.conn_id)
    uri = conn.extra_dejson.get("tracking_uri")
    if not uri:
        if not conn.host:
            raise SpecError(f"mlflow_conn_id {tracking.conn_id!r}: the connection has no host (nor extra.tracking_uri)")
        uri = conn.host if "://" in conn.host else f"{conn.schema or 'http'}://{conn.host}"
        if conn.port:
            uri = f"{uri.rstrip('/')}:{conn.port}"
    if conn.login:
        os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
    if conn.password:
        mask([conn.password])
        os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password
    return uri


def script_params(args: list[str]) -> dict[str, str]:
    """``["--epochs", "4", "--verbose", "data.csv"]`` -> ``{"epochs": "4", "verbose": "true", "args": "data.csv"}``."""
    params: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = str(args[i])
        if arg.startswith("-") and len(arg) > 1:
            key, eq, value = arg.lstrip("-").partition("=")
            if not eq:
                if i + 1 < len(args) and not str(args[i + 1]).startswith("-"):
                    value, i = str(args[i + 1]), i + 1
                else:
                    value = "true"
            params[key] = value
        else:
            positional.append(arg)
        i += 1
    if positional:
        params["args"] = " ".join(positional)
    return params


def job_params(plan: dict[str, Any]) -> dict[str, str]:
    node0 = plan["nodes"][0]
    params = {k: v for k, v in script_params(node0["script_args"]).items()}
    params.update({
        "node_count": str(len(plan["nodes"])), "world_size": str(plan["cluster"]["world_size"]),
        "strategy": plan["strategy"], "entry_script": node0["script"],
        "process_count_per_node": str(max(sum(p["kind"] == "rank" for p in n["processes"]) for n in plan["nodes"])),
    })
    return {k[:250]: str(v)[:MAX_PARAM_LENGTH] for k, v in params.items()}


def metric_points(records: list[dict[str, Any]], prefix: str = "") -> list[tuple[str, float, int, int]]:
    """(name, value, timestamp ms, step) per numeric value of each record (step: its epoch)."""
    from airflow_tf.results.progress import HIDDEN_KEYS

    points = []
    for position, record in enumerate(records):
        step = record.get("epoch", position)
        stamp = int(float(record.get("time") or time.time()) * 1000)
        for key, value in record.items():
            if key in HIDDEN_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            points.append((f"{prefix}{key}", float(value), stamp, int(step) if isinstance(step, (int, float)) else position))
    return points


def rank_records(backend_json: dict[str, Any], handles: list[dict[str, Any]], plan: dict[str, Any]) -> dict[int, list]:
    """Every rank's metrics records, read through the backend (``mlflow_ranks="all"``)."""
    from airflow_tf.backends.base import Backend
    from airflow_tf.results.progress import metrics_files, read_all_records

    backend = Backend.deserialize(backend_json)
    by_rank: dict[int, list] = {}
    for node, handle in zip(plan["nodes"], sorted(handles, key=lambda h: h["node_index"])):
        for name in metrics_files(node, plan["cluster"]["world_size"]):
            records = read_all_records(lambda at, limit, n=name: backend.read_from(handle, n, at, limit)).records
            for record in records:
                by_rank.setdefault(int(record.get("rank", 0)), []).append(record)
    return by_rank


def _experiment(client, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # noqa: BLE001 - another job created it meanwhile
        return client.get_experiment_by_name(name).experiment_id


def run_url(uri: str, experiment_id: str, run_id: str) -> str | None:
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{without_credentials(uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def log_job(tracking: Tracking, *, uri: str, ids: dict[str, str], plan: dict[str, Any], results: dict[str, Any],
            records: dict[int, list], failed: bool) -> dict[str, Any]:
    """Create (or find again) the job's MLflow run and log into it; returns its ids and URL."""
    import json
    import tempfile

    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunStatus

    # An explicit client, no global mlflow state: the worker process may run other tasks' code.
    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment(client, tracking.experiment_name or ids["dag_id"])
    job_id = plan["job_id"]
    found = client.search_runs([experiment_id], filter_string=f"tags.`airflow_tf.job_id` = '{job_id}'", max_results=1)
    tags = {
        "airflow.dag_id": ids["dag_id"], "airflow.run_id": ids["run_id"], "airflow.task_id": ids["task_id"],
        "airflow_tf.group": ids["group"], "airflow_tf.job_id": job_id, "airflow_tf.strategy": plan["strategy"],
    }
    if found:
        run_id = found[0].info.run_id
        client.update_run(run_id, status="RUNNING")
    else:
        run_id = client.create_run(experiment_id, tags=tags, run_name=f"{ids['group']} {ids['run_id']}").info.run_id
    existing = set(found[0].data.params) if found else set()
    params = [Param(k, v) for k, v in job_params(plan).items() if k not in existing]
    metrics = []
    for rank, rank_history in sorted(records.items()):
        if tracking.ranks == TrackedRanks.CHIEF and rank != 0:
            continue
        metrics += [Metric(*point) for point in metric_points(rank_history, "" if rank == 0 else f"rank{rank}/")]
    for start in range(0, max(len(params), 1), 100):
        client.log_batch(run_id, params=params[start:start + 100])
    for start in range(0, len(metrics), BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + BATCH])
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    artifacts = []
    model = results.get("model_path")
    if model and os.path.exists(model):  # on this machine (Local/Docker backends); else named in a tag
        (client.log_artifacts if os.path.isdir(model) else client.log_artifact)(run_id, model, "model")
        artifacts.append("model")
    elif model:
        client.set_tag(run_id, "airflow_tf.model_path", model)
    curves = results.get("curves_png")
    if curves and os.path.isfile(curves):
        client.log_artifact(run_id, curves, "curves")
        artifacts.append("curves")
    with tempfile.TemporaryDirectory(prefix="airflow-tf-mlflow-") as folder:
        path = os.path.join(folder, "history.json")
        with open(path, "w") as f:
            json.dump(records.get(0, []), f)
        client.log_artifact(run_id, path, "metrics")
        artifacts.append("metrics")
    status = RunStatus.to_string(RunStatus.FAILED if failed else RunStatus.FINISHED)
    client.set_terminated(run_id, status=status)
    return {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": without_credentials(uri),
            "url": run_url(uri, experiment_id, run_id), "metrics_logged": len(metrics), "artifacts": artifacts,
            "status": status}


def track_job(tracking_json: dict[str, Any], *, context, plan: dict[str, Any], results: dict[str, Any], failed: bool,
              backend: dict[str, Any], handles: list[dict[str, Any]], log) -> dict[str, Any]:
    """The wait task's entry point: never raises (a tracking failure is a warning and ``error``)."""
    tracking = Tracking.from_json(tracking_json)
    ti = context["ti"]
    ids = {"dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id, "group": ti.task_id.rpartition(".")[0]}
    try:
        uri = resolve_uri(tracking)
        if tracking.ranks == TrackedRanks.ALL or failed or not results.get("history"):
            try:
                records = rank_records(backend, handles, plan)
            except Exception as exc:  # noqa: BLE001 - the nodes may be gone; log what the results hold
                log.warning("MLflow: could not read every rank's metrics (%s); logging rank 0's history only", exc)
                records = {0: list(results.get("history") or [])}
        else:
            records = {0: list(results["history"])}
        if results.get("history"):
            records[0] = list(results["history"])  # what the trigger read: the same records, read once
        tracked = log_job(tracking, uri=uri, ids=ids, plan=plan, results=results, records=records, failed=failed)
    except Exception as exc:  # noqa: BLE001 - the training result stands; the warning says what is missing
        where = tracking.conn_id and f"connection {tracking.conn_id!r}" or without_credentials(tracking.tracking_uri)
        log.warning("MLflow tracking to %s failed: %s: %s", where, type(exc).__name__, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    log.info("MLflow run %s (%d metric points, artifacts %s)%s", tracked["run_id"], tracked["metrics_logged"],
             tracked["artifacts"], f": {tracked['url']}" if tracked["url"] else "")
    return tracked
