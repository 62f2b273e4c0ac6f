"""Golden tests for plan_tensorflow_job: the exact plan (TF_CONFIG included) for a few fixed shapes.

The goldens live in tests/goldens/plan_<case>.json, with the plan's absolute source_directory
replaced by "<SRC>". Regenerate with ``UPDATE_GOLDENS=1 pytest tests/unit/test_planner_golden.py``
and review the diff by eye before committing: besides the golden comparison, every case is also
checked structurally below, so a wrong golden cannot silently pass.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from airflow_tf.cluster.plan import ALL_RANKS_ZERO, MULTI_WORKER_MIRRORED, SINGLE, JobPlan, plan_tensorflow_job
from airflow_tf.cluster.spec import TrainingSpec

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


def normalise(plan: JobPlan, source_dir: Path) -> dict:
    data = plan.to_json()
    assert data["source_directory"] == os.path.abspath(source_dir)
    data["source_directory"] = SRC
    # Through JSON, so tuples/lists etc. compare the way the golden file stores them.
    return json.loads(json.dumps(data))


def check_golden(case: str, actual: dict) -> None:
    path = GOLDENS / f"plan_{case}.json"
    if UPDATE:
        GOLDENS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert path.exists(), f"missing golden {path}; run with UPDATE_GOLDENS=1 and review it"
    expected = json.loads(path.read_text())
    assert actual == expected, f"plan for {case!r} differs from {path.name}; if intended, UPDATE_GOLDENS=1 and review"


def all_ranks(plan: JobPlan):
    return [(node, rank) for node in plan.nodes for rank in node.ranks]


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(source_dir, case):
    check_golden(case, normalise(make_plan(source_dir, case), source_dir))


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_json_round_trip(source_dir, case):
    plan = make_plan(source_dir, case)
    data = plan.to_json()
    assert JobPlan.from_json(data) == plan
    # And through a real JSON string, as XCom stores it.
    assert JobPlan.from_json(json.loads(json.dumps(data))) == plan


# Structural checks, independent of the golden files, so a wrongly regenerated golden is caught.


def test_single_process_plan(source_dir):
    plan = make_plan(source_dir, "single_1x1")
    assert plan.strategy == SINGLE
    assert plan.success_rule == ALL_RANKS_ZERO
    assert plan.world_size == 1
    assert plan.job_id == JOB_ID
    [(node, rank)] = all_ranks(plan)
    assert node.host == "127.0.0.1"
    assert node.script == "train.py"
    assert node.script_args == []
    assert node.env == {"PYTHONUNBUFFERED": "1"}
    assert "TF_CONFIG" not in rank.env
    assert rank.env == {
        "AIRFLOW_TF_JOB_ID": JOB_ID,
        "AIRFLOW_TF_NODE_INDEX": "0",
        "AIRFLOW_TF_RANK": "0",
        "AIRFLOW_TF_LOCAL_RANK": "0",
        "AIRFLOW_TF_WORLD_SIZE": "1",
        "AIRFLOW_TF_IS_CHIEF": "1",
        "CUDA_VISIBLE_DEVICES": "",
    }


def test_two_nodes_default_ports(source_dir):
    plan = make_plan(source_dir, "two_nodes_2x1_default_ports")
    assert plan.strategy == MULTI_WORKER_MIRRORED
    assert plan.world_size == 2
    assert [node.host for node in plan.nodes] == ["10.0.0.1", "10.0.0.2"]
    workers = ["10.0.0.1:23456", "10.0.0.2:23456"]  # default base port, first task on each host
    for node, rank in all_ranks(plan):
        assert node.script_args == ["--epochs", "3", "--verbose"]
        assert node.env == {"PYTHONUNBUFFERED": "1", "MY_SETTING": "on"}
        assert json.loads(rank.env["TF_CONFIG"]) == {
            "cluster": {"worker": workers},
            "task": {"type": "worker", "index": rank.rank},
        }
        assert rank.rank == node.node_index
        assert rank.env["AIRFLOW_TF_IS_CHIEF"] == ("1" if rank.rank == 0 else "0")
        assert rank.env["CUDA_VISIBLE_DEVICES"] == ""
        assert rank.label == f"node {node.node_index} rank {rank.rank}"


def test_same_host_uses_free_ports_in_order(source_dir):
    plan = make_plan(source_dir, "same_host_2x2_free_ports")
    assert plan.world_size == 4
    workers = ["127.0.0.1:5001", "127.0.0.1:5002", "127.0.0.1:5003", "127.0.0.1:5004"]
    seen = []
    for node, rank in all_ranks(plan):
        config = json.loads(rank.env["TF_CONFIG"])
        assert config == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": rank.rank}}
        assert rank.rank == node.node_index * 2 + rank.local_rank
        assert rank.env["AIRFLOW_TF_WORLD_SIZE"] == "4"
        seen.append(rank.rank)
    assert seen == [0, 1, 2, 3]
    chiefs = [rank.rank for _, rank in all_ranks(plan) if rank.env["AIRFLOW_TF_IS_CHIEF"] == "1"]
    assert chiefs == [0]


def test_gpu_one_device_per_local_rank(source_dir):
    plan = make_plan(source_dir, "gpu_2x2")
    visible = [(node.node_index, rank.local_rank, rank.env["CUDA_VISIBLE_DEVICES"]) for node, rank in all_ranks(plan)]
    assert visible == [(0, 0, "0"), (0, 1, "1"), (1, 0, "0"), (1, 1, "1")]
    workers = ["10.0.0.1:23456", "10.0.0.1:23457", "10.0.0.2:23456", "10.0.0.2:23457"]
    for _, rank in all_ranks(plan):
        assert json.loads(rank.env["TF_CONFIG"])["cluster"] == {"worker": workers}


def test_tf_config_is_compact_and_key_sorted(source_dir):
    # The exact string matters: the same cluster must always yield byte-identical TF_CONFIG.
    plan = make_plan(source_dir, "two_nodes_2x1_default_ports")
    assert plan.nodes[1].ranks[0].env["TF_CONFIG"] == (
        '{"cluster":{"worker":["10.0.0.1:23456","10.0.0.2:23456"]},"task":{"index":1,"type":"worker"}}'
    )


def test_golden_files_have_no_absolute_source_path():
    # The goldens must not leak the machine-specific tmp path they were generated from.
    for path in sorted(GOLDENS.glob("plan_*.json")):
        data = json.loads(path.read_text())
        assert data["source_directory"] == SRC, path.name
    assert {p.name for p in GOLDENS.glob("plan_*.json")} >= {f"plan_{case}.json" for case in CASES}
