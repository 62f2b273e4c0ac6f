"""Dry run: the per-node plan of a training group, without launching anything.

    airflow-tf render dags/tf_mwms_example.py train [--conf '{"node_count": 3}'] [--json] [--dag-id ID]

Prints every node's tasks — role, host:port, TF_CONFIG, HOROVOD_* environment, command line —
rendered from the DAG's Params (defaults, overridden by --conf) the way a run would render them.
Ports are the planner's defaults (base 23456 per host); a real run picks free ports when its
plan task runs. Debugging TF_CONFIG is the top pain in this field: this shows it before a run.

    airflow-tf render dags/tf_mwms_example.py train --offline \
        [--backend KubernetesBackend --backend-kwargs '{"image": "...", "namespace": "ml"}']

``--offline`` contacts no backend (no pre-flight, no connection lookup; hosts come from the
backend's ``planned_hosts``). Templates always see a stub run context (``params``, ``ds``,
``ts``, ``ti``...; ``{{ ti.xcom_pull(...) }}`` renders as a ``<xcom ...>`` placeholder). For a
Kubernetes group it prints the plan as YAML comments followed by the exact Service, ConfigMap,
Secret and Pod manifests a launch creates: ``| kubectl create -f -`` input.

``--conf`` is validated against the DAG's Params the way a trigger is (``ParamsDict``): a value
a Param refuses is refused here with the Param's message. Every error is one line on stderr
(exit status 2); stdout only ever holds the plan.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import shlex
import sys
from typing import Any

from airflow_tf.backends.base import Backend
from airflow_tf.cluster.registry import PLANNERS, JobKind
from airflow_tf.runtime.rank_env import process_env

SHOWN_ENV_PREFIXES = ("HOROVOD_", "CUDA_VISIBLE_DEVICES", "NCCL_")


class RenderError(Exception):
    """A one-line reason the plan cannot be rendered (printed as ``airflow-tf render: ...``)."""


def last_line(text: str) -> str:
    """The line of an error text that says what went wrong (a traceback's last one)."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)


def find_group(dag_file: str, group_id: str, dag_id: str | None = None):
    if not os.path.isfile(dag_file):
        raise RenderError(f"no such DAG file: {dag_file}" + (" (a directory)" if os.path.isdir(dag_file) else ""))
    # Parse the file the way Airflow does (a DagBag), so unnamed `with DAG(...)` blocks count.
    import logging

    from airflow.dag_processing.dagbag import DagBag

    logging.getLogger("airflow.dag_processing.dagbag").setLevel(logging.WARNING)  # "Filling up the DagBag"
    bag = DagBag(dag_folder=dag_file)
    if bag.import_errors:
        raise RenderError(f"{dag_file} does not parse: " + "; ".join(last_line(e) for e in bag.import_errors.values()))
    dags = [dag for dag in bag.dags.values() if dag_id is None or dag.dag_id == dag_id]
    if not dags:
        raise RenderError(f"no DAG {dag_id!r} in {dag_file}; DAGs there: {sorted(bag.dags)}")
    from airflow_tf.operators.group import TrainingTaskGroup

    found = [(dag, dag.task_group_dict.get(group_id)) for dag in dags]
    found = [(dag, group) for dag, group in found if isinstance(group, TrainingTaskGroup)]
    if len(found) > 1:
        raise RenderError(f"training group {group_id!r} is in several DAGs of {dag_file} "
                          f"({sorted(dag.dag_id for dag, _ in found)}): choose one with --dag-id")
    if found:
        return found[0]
    groups = sorted(gid for dag in dags for gid, g in dag.task_group_dict.items() if isinstance(g, TrainingTaskGroup))
    raise RenderError(f"no training group {group_id!r} in {dag_file}; training groups there: {groups}")


def validated_params(dag, conf: dict[str, Any]) -> dict[str, Any]:
    """The DAG's Params with ``conf`` applied and checked, as a trigger with that conf would be."""
    import copy

    from airflow.sdk.exceptions import ParamValidationError

    params = copy.deepcopy(dag.params)
    try:
        params.update(conf)
        return params.validate()
    except ParamValidationError as exc:
        raise RenderError(f"--conf refused by the DAG's Params: {str(exc).strip().splitlines()[0]}") from None


class Placeholder(str):
    """What ``{{ ti.xcom_pull(...) }}`` renders to offline: the value is only known in a run, so
    it prints where it comes from; ``[key]`` and ``.attr`` on it give placeholders too."""

    def _then(self, suffix: str) -> "Placeholder":
        text = str.__str__(self)
        return Placeholder(f"{text[:-1] if text.endswith('>') else text}{suffix}>")

    def __getitem__(self, key):  # type: ignore[override]
        return self._then(f"[{key!r}]")

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._then(f".{name}")


class StubTaskInstance:
    """What ``{{ ti }}`` renders to without a database (``render`` launches nothing)."""

    def __init__(self, dag_id: str, task_id: str, run_id: str):
        self.dag_id, self.task_id, self.run_id = dag_id, task_id, run_id
        self.try_number, self.map_index = 1, -1

    def xcom_pull(self, task_ids: Any = None, *args, key: str = "return_value", **kwargs) -> Placeholder:
        task_ids = task_ids if task_ids is not None else kwargs.get("task_ids")
        return Placeholder(f"<xcom {task_ids}" + (f" key={key}" if key != "return_value" else "") + ">")

    def __str__(self) -> str:
        return f"<TaskInstance (render stub): {self.dag_id}.{self.task_id} {self.run_id} [try 1]>"


def stub_context(dag, op, params: dict[str, Any]) -> dict[str, Any]:
    """A run's template context without a run: ``params``, ``ds``, ``ts``, ``ti`` and friends
    (logical date: now), so the templates a DAG uses render as they would, offline or not."""
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    ti = StubTaskInstance(dag.dag_id, op.task_id, "render")
    return {
        "params": params, "dag": dag, "task": op, "run_id": "render", "ti": ti, "task_instance": ti,
        "logical_date": now, "data_interval_start": now, "data_interval_end": now,
        "ds": now.strftime("%Y-%m-%d"), "ds_nodash": now.strftime("%Y%m%d"), "ts": now.isoformat(),
        "ts_nodash": now.strftime("%Y%m%dT%H%M%S"), "conn": None, "var": {"value": None, "json": None},
    }


def render_fields(dag, group, conf: dict[str, Any]) -> dict[str, Any]:
    """The plan task's templated fields, rendered the way a run with ``conf`` would."""
    params = validated_params(dag, conf)
    op = group.plan_task
    context = stub_context(dag, op, params)
    return {name: op.render_template(getattr(op, name), context) for name in op.template_fields}


def plan_group(dag, group, conf: dict[str, Any], *, offline: bool = False,
               backend: Backend | None = None) -> dict[str, Any]:
    """The job plan the group's plan task would produce for a run with ``conf``.

    ``offline``: no backend pre-flight or connection lookup; hosts are the backend's
    ``planned_hosts`` (Kubernetes: the pods' DNS names), else placeholders. ``backend``: plan for
    this backend instead of the group's (``--backend``)."""
    op = group.plan_task
    rendered = render_fields(dag, group, conf)
    spec_class, planner = PLANNERS[JobKind(op.strategy)]
    from airflow_tf.cluster.checks import coerce_positive_int

    spec = spec_class(**op.spec_fields, **{**rendered, "node_count": coerce_positive_int("node_count", rendered["node_count"])})
    from airflow_tf.operators.nodes import job_id_for

    backend = backend or Backend.deserialize(op.backend)
    job_id = job_id_for(dag.dag_id, "render", group.group_id)
    plan = planner(spec, job_id=job_id, hosts=render_hosts(backend, spec.node_count, job_id, offline))
    return plan.to_json()


def render_hosts(backend: Backend, node_count: int, job_id: str, offline: bool) -> list[str]:
    from airflow_tf.backends.local import LocalBackend

    if offline and hasattr(backend, "planned_hosts"):
        return backend.planned_hosts(node_count, job_id)
    if offline and not isinstance(backend, LocalBackend):  # LocalBackend.hosts contacts nothing
        return [f"node-{i}.offline" for i in range(node_count)]
    if "job_id" in inspect.signature(backend.hosts).parameters:
        return backend.hosts(node_count, job_id=job_id)
    return backend.hosts(node_count)


def format_objects(backend: Backend, plan: dict[str, Any], dag, group, conf: dict[str, Any], text: str) -> str | None:
    """For a backend that creates cluster objects (KubernetesBackend): the plan as YAML comments,
    then the exact objects a launch would create, as one ``kubectl create -f -`` input."""
    build = getattr(backend, "render_objects", None)
    if build is None:
        return None
    from airflow_tf.cluster.plan import JobPlan

    environment = render_fields(dag, group, conf)["environment_variables"] or {}
    job = JobPlan.from_json(plan)
    comments = "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())
    if job.secret_names:
        comments += (f"# secret_environment_variables {', '.join(job.secret_names)}: resolved by each launch into "
                     "its node Secret's secrets.json (not shown here)\n")
    return comments + backend.render_objects(job, environment)


def format_plan(plan: dict[str, Any], relative_to: str | None = None) -> str:
    source = plan["source_directory"]
    if relative_to and source.startswith(relative_to.rstrip(os.sep) + os.sep):
        source = os.path.relpath(source, relative_to)
    lines = [
        f"job {plan['job_id']}",
        f"strategy {plan['strategy']}, world size {plan['cluster']['world_size']}, success rule {plan['success_rule']}",
        f"source {source}",
    ]
    for node in plan["nodes"]:
        lines.append("")
        lines.append(f"node {node['node_index']} on {node['host']}: {len(node['processes'])} task(s)")
        for rank in node["processes"]:
            env = process_env(node, rank, plan["cluster"])  # what the node runtime will set
            command = rank["command"] or [node["script"], *node["script_args"]]
            flags = [f for f, on in (("daemon", rank["daemon"]), (f"restarts<={rank['max_restarts']}", rank["max_restarts"])) if on]
            what = f"role={rank['role'] or 'worker'}" if rank["kind"] == "rank" else f"kind={rank['kind']}"
            where = f" rank={rank['rank']}" if rank["rank"] is not None else ""
            lines.append(f"  [{rank['label']}] {what}{where}" + (f" ({', '.join(flags)})" if flags else ""))
            lines.append(f"    command: python -u {shlex.join(command)}".replace("\n", "\\n"))
            if "TF_CONFIG" in env:
                config = json.loads(env["TF_CONFIG"])
                lines.append(f"    TF_CONFIG task: {json.dumps(config['task'])}")
                lines.append(f"    TF_CONFIG cluster: {json.dumps(config['cluster'], sort_keys=True)}")
            shown = {k: v for k, v in sorted(env.items()) if k.startswith(SHOWN_ENV_PREFIXES)}
            if shown:
                lines.append("    env: " + " ".join(f"{k}={v}" for k, v in shown.items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    # A command line tool: Airflow's info lines ("Filling up the DagBag ...") are noise here, so
    # Airflow (imported below, not at module import) logs warnings and errors only.
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    parser = argparse.ArgumentParser(prog="airflow-tf", description="airflow-tf tools")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render", help="print a training group's per-node plan without launching anything")
    render.add_argument("dag_file")
    render.add_argument("group_id", help="the training group's task_id (its group id)")
    render.add_argument("--conf", default="{}", help="run conf as JSON, as a trigger would pass it")
    render.add_argument("--json", action="store_true", help="print the plan as JSON")
    render.add_argument("--offline", action="store_true",
                        help="contact no backend (no pre-flight, no connection lookups); for a Kubernetes group, "
                             "print the exact Service, ConfigMap, Secret and Pod manifests as YAML")
    render.add_argument("--backend", help="plan for this backend instead of the group's: a name exported by "
                                          "airflow_tf (KubernetesBackend, DockerBackend, ...)")
    render.add_argument("--backend-kwargs", default="{}", help="the --backend's settings as a JSON object")
    render.add_argument("--dag-id", help="the DAG holding the group, when the file defines several")
    args = parser.parse_args(argv)
    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        parser.error(f"--conf must be a JSON object: {exc}")
    if not isinstance(conf, dict):
        parser.error("--conf must be a JSON object")
    from airflow_tf.cluster.errors import SpecError

    try:
        with contextlib.redirect_stdout(sys.stderr):  # parsing logs must not mix into the plan
            backend = chosen_backend(parser, args.backend, args.backend_kwargs)
            dag, group = find_group(args.dag_file, args.group_id, args.dag_id)
            plan = plan_group(dag, group, conf, offline=args.offline, backend=backend)
            text = format_plan(plan, os.getcwd())
            objects = None if args.json or not args.offline else format_objects(
                backend or Backend.deserialize(group.plan_task.backend), plan, dag, group, conf, text)
    except (SpecError, RenderError) as exc:
        parser.exit(2, f"airflow-tf render: {last_line(exc) if isinstance(exc, RenderError) else exc}\n")
    except Exception as exc:  # noqa: BLE001 - a template or backend error: one line, not a traceback
        where = f"{args.dag_file} {args.group_id}"
        parser.exit(2, f"airflow-tf render: {where}: {type(exc).__name__}: {last_line(exc)}\n")
    sys.stdout.write(json.dumps(plan, indent=2, sort_keys=True) + "\n" if args.json else objects or text)
    return 0


def chosen_backend(parser, name: str | None, kwargs_json: str) -> Backend | None:
    if name is None:
        return None
    import airflow_tf

    try:
        kwargs = json.loads(kwargs_json)
    except ValueError as exc:
        parser.error(f"--backend-kwargs must be a JSON object: {exc}")
    cls = getattr(airflow_tf, name, None)
    if not (isinstance(cls, type) and issubclass(cls, Backend)) or not isinstance(kwargs, dict):
        parser.error(f"--backend must name a backend exported by airflow_tf and --backend-kwargs be a JSON object, "
                     f"got {name!r}")
    return cls(**kwargs)


if __name__ == "__main__":
    sys.exit(main())
