"""Dry run: the per-node plan of a training group, without launching anything.

    airflow-tf render dags/tf_mwms_example.py train [--conf '{"node_count": 3}'] [--json]

Prints every node's tasks — role, host:port, TF_CONFIG, HOROVOD_* environment, command line —
rendered from the DAG's Params (defaults, overridden by --conf) the way a run would render them.
Ports are the planner's defaults (base 23456 per host); a real run picks free ports when its
plan task runs. Debugging TF_CONFIG is the top pain in this field: this shows it before a run.
"""

from __future__ import annotations

import argparse
import contextlib
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


def plan_group(dag, group, conf: dict[str, Any]) -> dict[str, Any]:
    """The job plan the group's plan task would produce for a run with ``conf``."""
    params = {**dag.params.dump(), **conf}
    op = group.plan_task
    context = {"params": params, "dag": dag, "run_id": "render"}
    rendered = {name: op.render_template(getattr(op, name), context) for name in op.template_fields}
    spec_class, planner = PLANNERS[JobKind(op.strategy)]
    from airflow_tf.cluster.checks import coerce_positive_int

    spec = spec_class(**op.spec_fields, **{**rendered, "node_count": coerce_positive_int("node_count", rendered["node_count"])})
    backend = Backend.deserialize(op.backend)
    plan = planner(spec, job_id=job_id_for(dag.dag_id, "render", group.group_id), hosts=backend.hosts(spec.node_count))
    return plan.to_json()


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
    args = parser.parse_args(argv)
    try:
        conf = json.loads(args.conf)
    except ValueError as exc:
        parser.error(f"--conf must be a JSON object: {exc}")
    if not isinstance(conf, dict):
        parser.error("--conf must be a JSON object")
    with contextlib.redirect_stdout(sys.stderr):  # parsing logs must not mix into the plan
        dag, group = find_group(args.dag_file, args.group_id)
        plan = plan_group(dag, group, conf)
    sys.stdout.write(json.dumps(plan, indent=2, sort_keys=True) + "\n" if args.json else format_plan(plan, os.getcwd()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
