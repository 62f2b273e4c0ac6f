"""Dry run: the per-node plan of a training group, without launching anything.

    airflow-tf render dags/tf_mwms_example.py train [--conf '{"node_count": 3}'] [--json]

Prints every node's tasks — role, host:port, TF_CONFIG, HOROVOD_* environment, command line —
rendered from the DAG's Params (defaults, overridden by --conf) the way a run would render them.
Ports are the planner's defaults (base 23456 per host); a real run picks free ports when its
plan task runs. Debugging TF_CONFIG is the top pain in this field: this shows it before a run.

    airflow-tf render dags/tf_mwms_example.py train --offline \
        [--backend KubernetesBackend --backend-kwargs '{"image": "...", "namespace": "ml"}']

``--offline`` contacts no backend (no pre-flight, no connection lookup; hosts come from the
backend's ``planned_hosts``); templates see a stub run context (``params``, ``ds``, ``ts``,
``ti``). For a Kubernetes group it prints the plan as YAML comments followed by the exact
Service, ConfigMap, Secret and Pod manifests a launch creates: ``| kubectl create -f -`` input.
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
from airflow_tf.operators.group import TrainingTaskGroup
from airflow_tf.operators.nodes import job_id_for
from airflow_tf.runtime.rank_env import process_env

SHOWN_ENV_PREFIXES = ("HOROVOD_", "CUDA_VISIBLE_DEVICES", "NCCL_")


def find_group(dag_file: str, group_id: str):
    # Parse the file the way Airflow does (a DagBag), so unnamed `with DAG(...)` blocks count.
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=dag_file)
    if bag.import_errors:
        raise SystemExit(f"{dag_file} does not parse:\n" + "\n".join(bag.import_errors.values()))
    dags = list(bag.dags.values())
    for dag in dags:
        group = dag.task_group_dict.get(group_id)
        if isinstance(group, TrainingTaskGroup):
            return dag, group
    groups = sorted(gid for dag in dags for gid, g in dag.task_group_dict.items() if isinstance(g, TrainingTaskGroup))
    raise SystemExit(f"no training group {group_id!r} in {dag_file}; training groups there: {groups}")


class StubTaskInstance:
    """What ``{{ ti }}`` renders to without a database (``render`` launches nothing)."""

    def __init__(self, dag_id: str, task_id: str, run_id: str):
        self.dag_id, self.task_id, self.run_id = dag_id, task_id, run_id
        self.try_number, self.map_index = 1, -1

    def xcom_pull(self, *args, **kwargs) -> None:
        return None

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
    params = {**dag.params.dump(), **conf}
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
            dag, group = find_group(args.dag_file, args.group_id)
            plan = plan_group(dag, group, conf, offline=args.offline, backend=backend)
            text = format_plan(plan, os.getcwd())
            objects = None if args.json or not args.offline else format_objects(
                backend or Backend.deserialize(group.plan_task.backend), plan, dag, group, conf, text)
    except SpecError as exc:
        parser.exit(2, f"airflow-tf render: {exc}\n")
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
