"""Golden tests for plan_tensorflow_job: the exact plan for a few fixed shapes, and the exact
environment (TF_CONFIG included) each of its processes gets.

The goldens live in tests/goldens/plan_<case>.json: ``{"plan": ..., "resolved_env": ...}``.
"plan" is the plan's JSON (what XCom stores), with the absolute source_directory replaced by
"<SRC>". "resolved_env" is derived, not part of the plan: for every process (keyed by its
label) the environment ``JobPlan.env_of`` computes for it (what the node runtime sets), so a
reviewer still sees every TF_CONFIG string. Regenerate with
``UPDATE_GOLDENS=1 pytest tests/unit/test_planner_golden.py`` and review the diff by eye before
committing: besides the golden comparison, every case is also checked structurally below, so a
wrong golden cannot silently pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_tf.cluster.plan import JobPlan, NodeLaunch, ProcessKind, Role, Strategy, SuccessRule
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job

GOLDENS = Path(__file__).resolve().parent.parent / "goldens"
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"
SRC = "<SRC>"
JOB_ID = "golden-job"

# case name -> (spec options, planner options)
CASES = {
    "single_1x1": (
        {"node_count": 1, "process_count_per_node": 1},
        {"hosts": ["127.0.0.1"]},
    ),
    "two_nodes_2x1_default_ports": (
        {
            "node_count": 2,
            "process_count_per_node": 1,
            "script_params": {"--epochs": 3, "--verbose": None},
            "environment_variables": {"MY_SETTING": "on"},
        },
        {"hosts": ["10.0.0.1", "10.0.0.2"]},
    ),
    "same_host_2x2_free_ports": (
        {"node_count": 2, "process_count_per_node": 2},
        {"hosts": ["127.0.0.1", "127.0.0.1"], "free_ports": {"127.0.0.1": [5001, 5002, 5003, 5004]}},
    ),
    "gpu_2x2": (
        {"node_count": 2, "process_count_per_node": 2, "use_gpu": True},
        {"hosts": ["10.0.0.1", "10.0.0.2"]},
    ),
}


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "train.py").write_text("print('train')\n")
    return src


def make_plan(source_dir: Path, case: str) -> JobPlan:
    spec_options, planner_options = CASES[case]
    spec = TrainingSpec(source_directory=str(source_dir), entry_script="train.py", **spec_options)
    return plan_tensorflow_job(spec, job_id=JOB_ID, **planner_options)


def all_processes(plan: JobPlan):
    return [(node, process) for node in plan.nodes for process in node.processes]


def resolved_env(plan: JobPlan) -> dict[str, dict[str, str]]:
    """Process label -> the environment the plan gives it (derived with ``JobPlan.env_of``)."""
    labels = [process.label for _, process in all_processes(plan)]
    assert len(set(labels)) == len(labels), f"process labels must be unique to key the goldens: {labels}"
    return {process.label: plan.env_of(node, process) for node, process in all_processes(plan)}


def normalise(plan: JobPlan, source_dir: Path) -> dict:
    """The golden document: the plan's JSON (source_directory -> <SRC>) and the derived envs."""
    data = plan.to_json()
    assert data["source_directory"] == os.path.abspath(source_dir)
    data["source_directory"] = SRC
    # Through JSON, so tuples/enums etc. compare the way the golden file stores them.
    return json.loads(json.dumps({"plan": data, "resolved_env": resolved_env(plan)}))


def check_golden(name: str, actual: dict) -> None:
    path = GOLDENS / f"{name}.json"
    if UPDATE:
        GOLDENS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"missing golden {path}; run with UPDATE_GOLDENS=1 and review it"
    expected = json.loads(path.read_text())
    assert actual == expected, f"plan for {name!r} differs from {path.name}; if intended, UPDATE_GOLDENS=1 and review"


def check_golden_file_is_consistent(path: Path) -> None:
    """A golden on its own: normalised, no env in the plan, and its resolved_env is what its plan derives."""
    data = json.loads(path.read_text())
    assert set(data) == {"plan", "resolved_env"}, path.name
    assert data["plan"]["source_directory"] == SRC, path.name
    plan_text = json.dumps(data["plan"])
    # The plan states the cluster once; TF_CONFIG strings are derived on the node, never stored.
    assert "TF_CONFIG" not in plan_text and "AIRFLOW_TF_RANK" not in plan_text, path.name
    plan = JobPlan.from_json(data["plan"])
    assert json.loads(json.dumps(resolved_env(plan))) == data["resolved_env"], path.name


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(source_dir, case):
    check_golden(f"plan_{case}", normalise(make_plan(source_dir, case), source_dir))


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_json_round_trip(source_dir, case):
    plan = make_plan(source_dir, case)
    data = plan.to_json()
    assert JobPlan.from_json(data) == plan
    # And through a real JSON string, as XCom stores it; the derived envs survive it unchanged.
    again = JobPlan.from_json(json.loads(json.dumps(data)))
    assert again == plan
    assert resolved_env(again) == resolved_env(plan)
    assert all(isinstance(p.kind, ProcessKind) for _, p in all_processes(again))
    assert isinstance(again.strategy, Strategy) and isinstance(again.success_rule, SuccessRule)


# Structural checks, independent of the golden files, so a wrongly regenerated golden is caught.


@pytest.mark.parametrize("case", sorted(CASES))
def test_common_tensorflow_shape(source_dir, case):
    spec_options, planner_options = CASES[case]
    plan = make_plan(source_dir, case)
    per_node = spec_options["process_count_per_node"]
    use_gpu = spec_options.get("use_gpu", False)
    assert plan.job_id == JOB_ID
    assert plan.success_rule == SuccessRule.ALL_RANKS_ZERO
    assert plan.world_size == plan.cluster.world_size == spec_options["node_count"] * per_node
    assert plan.cluster.horovod is None
    assert [node.host for node in plan.nodes] == planner_options["hosts"]
    assert [node.node_index for node in plan.nodes] == list(range(spec_options["node_count"]))
    assert plan.environment_names == sorted(spec_options.get("environment_variables", {}))
    for node in plan.nodes:
        assert node.job_id == JOB_ID and node.node_count == spec_options["node_count"]
        assert node.script == "train.py"
        assert node.env == {"PYTHONUNBUFFERED": "1"}  # plan-owned only, never the user's values
        assert node.gpus == (per_node if use_gpu else 0)
        assert [p.local_rank for p in node.processes] == list(range(per_node))
        assert node.ports == sorted(p.port for p in node.processes if p.port is not None)
    for node, process in all_processes(plan):
        assert process.kind == ProcessKind.RANK
        assert process.rank == node.node_index * per_node + process.local_rank
        assert process.label == f"node {node.node_index} rank {process.rank}"
        assert process.command is None and process.daemon is False and process.max_restarts == 0
        env = plan.env_of(node, process)
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["AIRFLOW_TF_JOB_ID"] == JOB_ID
        assert env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index)
        assert env["AIRFLOW_TF_NODE_COUNT"] == str(len(plan.nodes))
        assert env["AIRFLOW_TF_RANK"] == str(process.rank)
        assert env["AIRFLOW_TF_LOCAL_RANK"] == str(process.local_rank)
        assert env["AIRFLOW_TF_WORLD_SIZE"] == str(plan.world_size)
        assert env["AIRFLOW_TF_IS_CHIEF"] == ("1" if process.rank == 0 else "0")
        assert not any(name.startswith("HOROVOD_") for name in env)
        for name in plan.environment_names:
            assert name not in env  # user values come with the launch, not from the plan
    assert sorted(p.rank for _, p in all_processes(plan)) == list(range(plan.world_size))


def test_single_process_plan(source_dir):
    plan = make_plan(source_dir, "single_1x1")
    assert plan.strategy == Strategy.SINGLE
    assert plan.cluster.tf_cluster is None
    [(node, process)] = all_processes(plan)
    assert node.host == "127.0.0.1"
    assert node.script_args == []
    assert node.ports == [] and node.gpus == 0
    # One process: no TF cluster, so no role, no port and no TF_CONFIG.
    assert (process.rank, process.local_rank) == (0, 0)
    assert (process.role, process.task_index, process.port) == (None, None, None)
    assert process.gpus == ""
    assert plan.env_of(node, process) == {
        "PYTHONUNBUFFERED": "1",
        "AIRFLOW_TF_JOB_ID": JOB_ID,
        "AIRFLOW_TF_NODE_INDEX": "0",
        "AIRFLOW_TF_NODE_COUNT": "1",
        "AIRFLOW_TF_RANK": "0",
        "AIRFLOW_TF_LOCAL_RANK": "0",
        "AIRFLOW_TF_WORLD_SIZE": "1",
        "AIRFLOW_TF_IS_CHIEF": "1",
        "AIRFLOW_TF_AUTOLOG": "1",  # Keras fit records itself (no TF_USE_LEGACY_KERAS: one process)
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_two_nodes_default_ports(source_dir):
    plan = make_plan(source_dir, "two_nodes_2x1_default_ports")
    assert plan.strategy == Strategy.MULTI_WORKER_MIRRORED
    assert plan.world_size == 2
    assert [node.host for node in plan.nodes] == ["10.0.0.1", "10.0.0.2"]
    workers = ["10.0.0.1:23456", "10.0.0.2:23456"]  # default base port, first task on each host
    assert plan.cluster.tf_cluster == {"worker": workers}
    for node, process in all_processes(plan):
        assert node.script_args == ["--epochs", "3", "--verbose"]
        assert node.ports == [23456]
        assert process.rank == node.node_index
        assert (process.role, process.task_index, process.port) == (Role.WORKER, process.rank, 23456)
        env = plan.env_of(node, process)
        assert json.loads(env["TF_CONFIG"]) == {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": process.rank},
        }
        assert env["AIRFLOW_TF_ROLE"] == "worker"
        assert env["CUDA_VISIBLE_DEVICES"] == ""


def test_user_environment_is_named_in_the_plan_and_valued_at_launch(source_dir):
    plan = make_plan(source_dir, "two_nodes_2x1_default_ports")
    assert plan.environment_names == ["MY_SETTING"]
    # The value never reaches the plan (its XCom is readable in the UI).
    assert '"on"' not in json.dumps(plan.to_json())
    launch = plan.launch(1, {"MY_SETTING": "on"})
    assert launch.node == plan.nodes[1] and launch.cluster == plan.cluster
    assert launch.environment == {"MY_SETTING": "on"}
    assert NodeLaunch.from_json(json.loads(json.dumps(launch.to_json()))) == launch
    assert plan.launch(0).environment == {}


def test_same_host_uses_free_ports_in_order(source_dir):
    plan = make_plan(source_dir, "same_host_2x2_free_ports")
    assert plan.world_size == 4
    workers = ["127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003", "127.0.0.1:5004"]
    assert plan.cluster.tf_cluster == {"worker": workers}
    assert [node.ports for node in plan.nodes] == [[5001, 5002], [5003, 5004]]
    seen = []
    for node, process in all_processes(plan):
        config = json.loads(plan.env_of(node, process)["TF_CONFIG"])
        assert config == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": process.rank}}
        assert process.rank == node.node_index * 2 + process.local_rank
        assert workers[process.task_index] == f"{node.host}:{process.port}"
        seen.append(process.rank)
    assert seen == [0, 1, 2, 3]
    chiefs = [p.rank for node, p in all_processes(plan) if plan.env_of(node, p)["AIRFLOW_TF_IS_CHIEF"] == "1"]
    assert chiefs == [0]


def test_gpu_one_device_per_local_rank(source_dir):
    plan = make_plan(source_dir, "gpu_2x2")
    visible = [(node.node_index, p.local_rank, plan.env_of(node, p)["CUDA_VISIBLE_DEVICES"])
               for node, p in all_processes(plan)]
    assert visible == [(0, 0, "0"), (0, 1, "1"), (1, 0, "0"), (1, 1, "1")]
    assert [p.gpus for _, p in all_processes(plan)] == ["0", "1", "0", "1"]
    assert [node.gpus for node in plan.nodes] == [2, 2]
    workers = ["10.0.0.1:23456", "10.0.0.1:23457", "10.0.0.2:23456", "10.0.0.2:23457"]
    assert plan.cluster.tf_cluster == {"worker": workers}
    for node, process in all_processes(plan):
        assert json.loads(plan.env_of(node, process)["TF_CONFIG"])["cluster"] == {"worker": workers}


def test_tf_config_is_compact_and_key_sorted(source_dir):
    # The exact string matters: the same cluster must always yield byte-identical TF_CONFIG.
    plan = make_plan(source_dir, "two_nodes_2x1_default_ports")
    node = plan.nodes[1]
    assert plan.env_of(node, node.processes[0])["TF_CONFIG"] == (
        '{"cluster":{"worker":["10.0.0.1:23456","10.0.0.2:23456"]},"task":{"index":1,"type":"worker"}}'
    )


def test_golden_files_are_normalised_and_consistent():
    # The goldens must not leak the machine-specific tmp path they were generated from, and
    # their resolved_env must be exactly what their own plan derives.
    for path in sorted(GOLDENS.glob("plan_*.json")):
        check_golden_file_is_consistent(path)
    assert {p.name for p in GOLDENS.glob("plan_*.json")} >= {f"plan_{case}.json" for case in CASES}
