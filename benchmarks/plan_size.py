"""Plan size and planning time at 512 / 2048 / 8192 ranks for every strategy, before and after
the linear plan (the cluster stated once per job; each process only its rank, role and port).

What the plan task stores in XCom: its return value (the node plans the launch maps over), the
``plan`` key (the whole job plan, for the UI, the wait and the teardown) and the ``cluster`` key
(what each launch task pulls besides its node). The biggest per-node file (``node.json``) is not
XCom, but each launch task writes one. "before" runs the planner of the commit given with
``--before`` (default: the last commit with the quadratic plan), from a ``git archive`` of it.
Writes the ``plan_size`` section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import common

BEFORE = "b4c6337"
PER_NODE = 8
RANKS = (512, 2048, 8192)
BEFORE_RANKS = (512, 2048)  # the quadratic MWMS/PS plan at 8192 ranks is ~1.4 GB per copy

# Runs in a subprocess (python -S, the package root on PYTHONPATH), so "before" and "after"
# import their own airflow_tf.cluster; it uses only what both versions have.
MEASURE = r'''
import json, sys, tempfile, time, os
strategy, ranks, per_node = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = tempfile.mkdtemp(); open(os.path.join(src, "train.py"), "w").write("")
def load(*names):
    for module, name in names:
        try:
            return getattr(__import__(module, fromlist=[name]), name)
        except (ImportError, AttributeError):
            continue
    raise ImportError(names)
common = dict(source_directory=src, entry_script="train.py", script_params={"--epochs": 3},
              environment_variables={"DATA_DIR": "/data"})
if strategy == "parameter_server":
    Spec = load(("airflow_tf.cluster.parameter_server", "ParameterServerSpec"), ("airflow_tf.cluster.spec", "ParameterServerSpec"))
    plan_job = load(("airflow_tf.cluster.parameter_server", "plan_parameter_server_job"))
    ps = max(1, ranks // 16)
    nodes = ranks // per_node
    spec = Spec(**common, node_count=nodes, worker_count=ranks - 1 - ps, parameter_server_count=ps)
elif strategy.startswith("horovod"):
    Spec = load(("airflow_tf.cluster.horovod", "HorovodSpec"), ("airflow_tf.cluster.spec", "HorovodSpec"))
    plan_job = load(("airflow_tf.cluster.horovod", "plan_horovod_job"))
    nodes = ranks // per_node
    spec = Spec(**common, node_count=nodes, process_count_per_node=per_node,
                distributed_backend=strategy.split("_")[1])
else:
    Spec = load(("airflow_tf.cluster.spec", "TrainingSpec"))
    plan_job = load(("airflow_tf.cluster.tensorflow", "plan_tensorflow_job"), ("airflow_tf.cluster.plan", "plan_tensorflow_job"))
    nodes = ranks // per_node
    spec = Spec(**common, node_count=nodes, process_count_per_node=per_node)
hosts = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(nodes)]
t = time.perf_counter()
plan = plan_job(spec, job_id="bench-plan-size", hosts=hosts)
data = plan.to_json()
nodes_json = [node.to_json() for node in plan.nodes]
build_s = time.perf_counter() - t
sizes = {"build_s": build_s, "return_value": len(json.dumps(nodes_json)), "plan": len(json.dumps(data)),
         "cluster": len(json.dumps(data["cluster"])) if "cluster" in data else 0,
         "largest_node": max(len(json.dumps(n)) for n in nodes_json)}
if hasattr(plan, "launch"):
    sizes["largest_node_file"] = max(len(json.dumps(plan.launch(i, {"DATA_DIR": "/data"}).to_json()))
                                     for i in range(len(plan.nodes)))
else:
    sizes["largest_node_file"] = sizes["largest_node"]
print(json.dumps(sizes))
'''


def measure(root: str, strategy: str, ranks: int) -> dict:
    out = subprocess.run([sys.executable, "-S", "-c", MEASURE, strategy, str(ranks), str(PER_NODE)], cwd=root,
                         env={**os.environ, "PYTHONPATH": root}, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{strategy} x {ranks} in {root}: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def unpack(commit: str) -> str:
    root = tempfile.mkdtemp(prefix="plan-size-")
    archive = subprocess.run(["git", "-C", common.REPO, "archive", commit, "airflow_tf"], capture_output=True, check=True)
    with tarfile.open(fileobj=__import__("io").BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    return root


def mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", default=BEFORE, help="commit with the plan to compare against")
    args = parser.parse_args()
    common.wait_for_quiet(max_wait_s=30)
    before_root = unpack(args.before)
    strategies = ("multi_worker_mirrored", "parameter_server", "horovod_gloo", "horovod_mpi")
    lines = [
        "## Plan size: XCom bytes and planning time at 512 / 2048 / 8192 ranks",
        "",
        common.machine_facts(),
        f"- command: `{common.command_line()}`; {PER_NODE} ranks per node (parameter server: 1 task per process, "
        f"ranks/16 ps, one chief, the rest workers, over ranks/{PER_NODE} nodes); one host per node; "
        f"before = commit {args.before}",
        "- XCom total = return value (node plans) + `plan` key (whole job plan) + `cluster` key (after only); "
        "node file = the biggest `node.json` one launch writes (not XCom)",
        "",
        "| strategy | ranks | XCom total before | XCom total after | `plan` key after | biggest node file after "
        "| build before | build after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for strategy in strategies:
        for ranks in RANKS:
            after = measure(common.REPO, strategy, ranks)
            before = measure(before_root, strategy, ranks) if ranks in BEFORE_RANKS else None
            total_after = after["return_value"] + after["plan"] + after["cluster"]
            total_before = (before["return_value"] + before["plan"]) if before else None
            before_cells = (mb(total_before), f"{before['build_s']:.2f} s") if before else ("not run", "-")
            lines.append(
                f"| {strategy} | {ranks} | {before_cells[0]} | {mb(total_after)} | {mb(after['plan'])} | "
                f"{mb(after['largest_node_file'])} | {before_cells[1]} | {after['build_s']:.2f} s |"
            )
            print(lines[-1], flush=True)
    lines += ["", "Horovod plans were linear before too (no TF_CONFIG); their rows show the cost of the "
              "per-process fields. MWMS and parameter-server plans were quadratic: every rank carried the "
              "whole TF_CONFIG."]
    common.write_section("plan_size", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
