"""Golden tests for plan_parameter_server_job: the exact plan (TF_CONFIG included) for every role layout.

The goldens live in tests/goldens/ps_<case>.json, normalised the same way as the
plan_tensorflow_job goldens (absolute source_directory -> "<SRC>"). Regenerate with
``UPDATE_GOLDENS=1 pytest tests/unit/test_ps_planner_golden.py`` and review the diff by eye:
besides the golden comparison, every case is checked structurally below, so a wrongly
regenerated golden cannot silently pass.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from airflow_tf.cluster.parameter_server import RUNTIME_SERVER, plan_parameter_server_job
from airflow_tf.cluster.plan import CHIEF_ZERO, PARAMETER_SERVER, JobPlan
from airflow_tf.cluster.spec import ParameterServerSpec
from tests.unit.test_planner_golden import GOLDENS, SRC, UPDATE, normalise

JOB_ID = "golden-ps-job"
TWO_HOSTS = ["10.0.0.1", "10.0.0.2"]

# case name -> (spec options, planner options)
CASES = {
    # (a) The seed example: node 0: chief, worker 0; node 1: ps 0, worker 1.
    "seed_2_nodes_2w_1ps_default_ports": (
        {
            "node_count": 2,
            "worker_count": 2,
            "parameter_server_count": 1,
            "script_params": {"--epochs": 3, "--verbose": None},
            "environment_variables": {"MY_SETTING": "on"},
        },
        {"hosts": TWO_HOSTS},
    ),
    # (b) Every task on one host, ports from the backend's free list (one spare left unused).
    "one_node_all_roles_free_ports": (
        {"node_count": 1, "worker_count": 2, "parameter_server_count": 1, "evaluator": True},
        {"hosts": ["127.0.0.1"], "free_ports": {"127.0.0.1": [6001, 6002, 6003, 6004, 6005, 6006]}},
    ),
    # (c) Three nodes, evaluator placed last (round-robin lands it on node 0).
    "three_nodes_3w_2ps_evaluator": (
        {"node_count": 3, "worker_count": 3, "parameter_server_count": 2, "evaluator": True},
        {"hosts": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]},
    ),
    # (d) The node runtime serves ps/worker tasks; only the chief runs the entry script.
    "runtime_server_mode": (
        {"node_count": 2, "worker_count": 2, "parameter_server_count": 1, "server_mode": "runtime"},
        {"hosts": TWO_HOSTS},
    ),
    # (e) The evaluator runs its own script, with the job's script arguments.
    "evaluator_script": (
        {
            "node_count": 2,
            "worker_count": 1,
            "parameter_server_count": 1,
            "evaluator": True,
            "evaluator_script": "evaluate.py",
            "script_params": {"--epochs": 3, "--verbose": None},
        },
        {"hosts": TWO_HOSTS},
    ),
    # (f) GPUs for chief/workers; ps tasks are hidden from them.
    "gpu": (
        {"node_count": 2, "worker_count": 2, "parameter_server_count": 1, "use_gpu": True},
        {"hosts": TWO_HOSTS},
    ),
    # (g) Workers may be restarted twice; nobody else may.
    "max_worker_restarts_2": (
        {"node_count": 2, "worker_count": 2, "parameter_server_count": 1, "max_worker_restarts": 2},
        {"hosts": TWO_HOSTS},
    ),
}


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "train.py").write_text("print('train')\n")
    (src / "evaluate.py").write_text("print('evaluate')\n")
    return src


def make_plan(source_dir: Path, case: str) -> JobPlan:
    spec_options, planner_options = CASES[case]
    spec = ParameterServerSpec(source_directory=str(source_dir), entry_script="train.py", **spec_options)
    return plan_parameter_server_job(spec, job_id=JOB_ID, **planner_options)


def check_golden(case: str, actual: dict) -> None:
    path = GOLDENS / f"ps_{case}.json"
    if UPDATE:
        GOLDENS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"missing golden {path}; run with UPDATE_GOLDENS=1 and review it"
    expected = json.loads(path.read_text())
    assert actual == expected, f"plan for {case!r} differs from {path.name}; if intended, UPDATE_GOLDENS=1 and review"


def all_ranks(plan: JobPlan):
    return [(node, rank) for node in plan.nodes for rank in node.ranks]


def task_of(rank) -> tuple[str, int]:
    task = json.loads(rank.env["TF_CONFIG"])["task"]
    return task["type"], task["index"]


def layout(plan: JobPlan) -> list[list[tuple[str, int]]]:
    """Per node, the (role, index) of its ranks in local-rank order."""
    return [[task_of(rank) for rank in node.ranks] for node in plan.nodes]


def training_cluster(plan: JobPlan) -> dict[str, list[str]]:
    return json.loads(plan.nodes[0].ranks[0].env["TF_CONFIG"])["cluster"]


def rank_of(plan: JobPlan, role: str, index: int = 0):
    [found] = [(node, rank) for node, rank in all_ranks(plan) if task_of(rank) == (role, index)]
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(source_dir, case):
    check_golden(case, normalise(make_plan(source_dir, case), source_dir))


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_json_round_trip(source_dir, case):
    plan = make_plan(source_dir, case)
    assert JobPlan.from_json(plan.to_json()) == plan
    assert JobPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


# Structural checks, independent of the golden files, so a wrongly regenerated golden is caught.


@pytest.mark.parametrize("case", sorted(CASES))
def test_common_parameter_server_shape(source_dir, case):
    spec_options, planner_options = CASES[case]
    plan = make_plan(source_dir, case)
    assert plan.strategy == PARAMETER_SERVER
    assert plan.success_rule == CHIEF_ZERO
    assert plan.job_id == JOB_ID
    assert [node.host for node in plan.nodes] == planner_options["hosts"]
    assert [node.node_index for node in plan.nodes] == list(range(spec_options["node_count"]))

    ranks = all_ranks(plan)
    evaluator = spec_options.get("evaluator", False)
    tasks = 1 + spec_options["worker_count"] + spec_options["parameter_server_count"] + evaluator
    assert plan.world_size == len(ranks) == tasks
    assert sorted(rank.rank for _, rank in ranks) == list(range(plan.world_size))

    # Exactly one chief, rank 0 on node 0.
    chiefs = [(node.node_index, rank.rank, rank.local_rank) for node, rank in ranks if rank.role == "chief"]
    assert chiefs == [(0, 0, 0)]
    assert [rank.rank for _, rank in ranks if rank.env["AIRFLOW_TF_IS_CHIEF"] == "1"] == [0]

    cluster = training_cluster(plan)
    assert set(cluster) == {"chief", "worker", "ps"}  # never "evaluator"
    assert len(cluster["chief"]) == 1
    assert len(cluster["worker"]) == spec_options["worker_count"]
    assert len(cluster["ps"]) == spec_options["parameter_server_count"]
    addresses = [address for role in cluster.values() for address in role]
    assert len(set(addresses)) == len(addresses)  # host:port unique

    for node, rank in ranks:
        config = json.loads(rank.env["TF_CONFIG"])
        assert set(config) == {"cluster", "task"}
        assert config["cluster"] == cluster  # the evaluator gets the training cluster too
        role, index = task_of(rank)
        assert role == rank.role == rank.env["AIRFLOW_TF_ROLE"]
        assert rank.daemon is (role != "chief")
        assert rank.env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index)
        assert rank.env["AIRFLOW_TF_RANK"] == str(rank.rank)
        assert rank.env["AIRFLOW_TF_LOCAL_RANK"] == str(rank.local_rank)
        assert rank.env["AIRFLOW_TF_WORLD_SIZE"] == str(plan.world_size)
        assert rank.rank % len(plan.nodes) == node.node_index  # round-robin placement
        if role == "evaluator":
            assert config["task"] == {"type": "evaluator", "index": 0}
        else:
            assert cluster[role][index].rsplit(":", 1)[0] == node.host
        who = "chief" if role == "chief" else f"{role} {index}"
        assert rank.label == f"node {node.node_index} {who}"
    for node in plan.nodes:
        assert [rank.local_rank for rank in node.ranks] == list(range(len(node.ranks)))
        assert node.script == "train.py"


def test_seed_example_layout_and_addresses(source_dir):
    plan = make_plan(source_dir, "seed_2_nodes_2w_1ps_default_ports")
    assert layout(plan) == [[("chief", 0), ("worker", 0)], [("ps", 0), ("worker", 1)]]
    assert training_cluster(plan) == {
        "chief": ["10.0.0.1:23456"],
        "ps": ["10.0.0.2:23456"],
        "worker": ["10.0.0.1:23457", "10.0.0.2:23457"],
    }
    for node, rank in all_ranks(plan):
        assert node.script_args == ["--epochs", "3", "--verbose"]
        assert node.env == {"PYTHONUNBUFFERED": "1", "MY_SETTING": "on"}
        assert rank.command is None  # server_mode="script": every task runs the entry script
        assert rank.max_restarts == 0
        assert rank.env["CUDA_VISIBLE_DEVICES"] == ""
    # The exact string matters: same cluster, byte-identical TF_CONFIG.
    assert rank_of(plan, "ps")[1].env["TF_CONFIG"] == (
        '{"cluster":{"chief":["10.0.0.1:23456"],"ps":["10.0.0.2:23456"],'
        '"worker":["10.0.0.1:23457","10.0.0.2:23457"]},"task":{"index":0,"type":"ps"}}'
    )


def test_one_node_takes_free_ports_in_task_order(source_dir):
    plan = make_plan(source_dir, "one_node_all_roles_free_ports")
    assert layout(plan) == [[("chief", 0), ("ps", 0), ("worker", 0), ("worker", 1), ("evaluator", 0)]]
    # chief, ps, workers take 6001..6004; the evaluator takes 6005 without being listed; 6006 unused.
    assert training_cluster(plan) == {
        "chief": ["127.0.0.1:6001"],
        "ps": ["127.0.0.1:6002"],
        "worker": ["127.0.0.1:6003", "127.0.0.1:6004"],
    }


def test_three_nodes_evaluator_placement(source_dir):
    plan = make_plan(source_dir, "three_nodes_3w_2ps_evaluator")
    assert layout(plan) == [
        [("chief", 0), ("worker", 0), ("evaluator", 0)],
        [("ps", 0), ("worker", 1)],
        [("ps", 1), ("worker", 2)],
    ]
    assert training_cluster(plan) == {
        "chief": ["10.0.0.1:23456"],
        "ps": ["10.0.0.2:23456", "10.0.0.3:23456"],
        "worker": ["10.0.0.1:23457", "10.0.0.2:23457", "10.0.0.3:23457"],
    }
    node, evaluator = rank_of(plan, "evaluator")
    assert node.node_index == 0 and evaluator.local_rank == 2 and evaluator.rank == 6
    assert evaluator.daemon is True
    assert evaluator.command is None  # no evaluator_script: the entry script, told it is the evaluator
    assert json.loads(evaluator.env["TF_CONFIG"]) == {
        "cluster": training_cluster(plan),
        "task": {"type": "evaluator", "index": 0},
    }


def test_runtime_server_mode_commands(source_dir):
    plan = make_plan(source_dir, "runtime_server_mode")
    commands = {task_of(rank): rank.command for _, rank in all_ranks(plan)}
    assert commands == {
        ("chief", 0): None,
        ("ps", 0): ["-m", "airflow_tf.runtime.tf_server"],
        ("worker", 0): ["-m", "airflow_tf.runtime.tf_server"],
        ("worker", 1): ["-m", "airflow_tf.runtime.tf_server"],
    }
    assert RUNTIME_SERVER == ["-m", "airflow_tf.runtime.tf_server"]
    # A copy per rank, never the module constant itself.
    assert all(command is not RUNTIME_SERVER for command in commands.values())


def test_evaluator_script_runs_with_script_args(source_dir):
    plan = make_plan(source_dir, "evaluator_script")
    assert layout(plan) == [[("chief", 0), ("worker", 0)], [("ps", 0), ("evaluator", 0)]]
    commands = {task_of(rank): rank.command for _, rank in all_ranks(plan)}
    assert commands == {
        ("chief", 0): None,
        ("ps", 0): None,
        ("worker", 0): None,
        ("evaluator", 0): ["evaluate.py", "--epochs", "3", "--verbose"],
    }
    for node in plan.nodes:
        assert node.script == "train.py"  # the node's script stays the entry script


def test_gpu_hidden_from_ps_only(source_dir):
    plan = make_plan(source_dir, "gpu")
    visible = {task_of(rank): rank.env.get("CUDA_VISIBLE_DEVICES") for _, rank in all_ranks(plan)}
    assert visible == {("chief", 0): None, ("ps", 0): "", ("worker", 0): None, ("worker", 1): None}
    for _, rank in all_ranks(plan):
        assert ("CUDA_VISIBLE_DEVICES" in rank.env) is (rank.role == "ps")


def test_cpu_job_hides_gpus_from_every_task(source_dir):
    for case in CASES:
        if CASES[case][0].get("use_gpu"):
            continue
        for _, rank in all_ranks(make_plan(source_dir, case)):
            assert rank.env["CUDA_VISIBLE_DEVICES"] == "", (case, rank.label)


def test_only_workers_get_restarts(source_dir):
    plan = make_plan(source_dir, "max_worker_restarts_2")
    restarts = {task_of(rank): rank.max_restarts for _, rank in all_ranks(plan)}
    assert restarts == {("chief", 0): 0, ("ps", 0): 0, ("worker", 0): 2, ("worker", 1): 2}


def test_ports_unique_per_host_in_every_golden(source_dir):
    for case in CASES:
        plan = make_plan(source_dir, case)
        per_host = Counter(address for role in training_cluster(plan).values() for address in role)
        assert all(count == 1 for count in per_host.values()), case


def test_ps_golden_files_are_normalised():
    # The goldens must not leak the machine-specific tmp path they were generated from.
    for path in sorted(GOLDENS.glob("ps_*.json")):
        data = json.loads(path.read_text())
        assert data["source_directory"] == SRC, path.name
        assert data["strategy"] == PARAMETER_SERVER and data["success_rule"] == CHIEF_ZERO, path.name
    assert {p.name for p in GOLDENS.glob("ps_*.json")} >= {f"ps_{case}.json" for case in CASES}
