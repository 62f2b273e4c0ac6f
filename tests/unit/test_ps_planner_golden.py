"""Golden tests for plan_parameter_server_job: the exact plan for every role layout, and the
exact environment (TF_CONFIG included) each task gets.

The goldens live in tests/goldens/ps_<case>.json, in the same form as the
plan_tensorflow_job goldens: ``{"plan": <plan JSON, source_directory -> "<SRC>">,
"resolved_env": <label -> JobPlan.env_of(...), derived>}``. Regenerate with
``UPDATE_GOLDENS=1 pytest tests/unit/test_ps_planner_golden.py`` and review the diff by eye:
besides the golden comparison, every case is checked structurally below, so a wrongly
regenerated golden cannot silently pass.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from airflow_tf.cluster.parameter_server import RUNTIME_SERVER, ParameterServerSpec, plan_parameter_server_job
from airflow_tf.cluster.plan import JobPlan, ProcessKind, Role, Strategy, SuccessRule
from tests.unit.test_planner_golden import (
    GOLDENS,
    all_processes,
    check_golden,
    check_golden_file_is_consistent,
    normalise,
    resolved_env,
)

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


def task_of(plan: JobPlan, node, process) -> tuple[str, int]:
    """The (type, index) the task's TF_CONFIG names (what TensorFlow will see)."""
    task = json.loads(plan.env_of(node, process)["TF_CONFIG"])["task"]
    return task["type"], task["index"]


def layout(plan: JobPlan) -> list[list[tuple[str, int]]]:
    """Per node, the (role, index) of its tasks in local-rank order."""
    return [[task_of(plan, node, process) for process in node.processes] for node in plan.nodes]


def training_cluster(plan: JobPlan) -> dict[str, list[str]]:
    node = plan.nodes[0]
    return json.loads(plan.env_of(node, node.processes[0])["TF_CONFIG"])["cluster"]


def process_of(plan: JobPlan, role: str, index: int = 0):
    [found] = [(node, p) for node, p in all_processes(plan) if task_of(plan, node, p) == (role, index)]
    return found


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(source_dir, case):
    check_golden(f"ps_{case}", normalise(make_plan(source_dir, case), source_dir))


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_json_round_trip(source_dir, case):
    plan = make_plan(source_dir, case)
    assert JobPlan.from_json(plan.to_json()) == plan
    again = JobPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert resolved_env(again) == resolved_env(plan)
    assert all(isinstance(p.role, Role) for _, p in all_processes(again))


# Structural checks, independent of the golden files, so a wrongly regenerated golden is caught.


@pytest.mark.parametrize("case", sorted(CASES))
def test_common_parameter_server_shape(source_dir, case):
    spec_options, planner_options = CASES[case]
    plan = make_plan(source_dir, case)
    assert plan.strategy == Strategy.PARAMETER_SERVER
    assert plan.success_rule == SuccessRule.CHIEF_ZERO
    assert plan.job_id == JOB_ID
    assert plan.cluster.horovod is None
    assert plan.environment_names == sorted(spec_options.get("environment_variables", {}))
    assert [node.host for node in plan.nodes] == planner_options["hosts"]
    assert [node.node_index for node in plan.nodes] == list(range(spec_options["node_count"]))

    processes = all_processes(plan)
    evaluator = spec_options.get("evaluator", False)
    tasks = 1 + spec_options["worker_count"] + spec_options["parameter_server_count"] + evaluator
    assert plan.world_size == plan.cluster.world_size == len(processes) == tasks
    assert sorted(p.rank for _, p in processes) == list(range(plan.world_size))

    # Exactly one chief, rank 0 on node 0.
    chiefs = [(node.node_index, p.rank, p.local_rank) for node, p in processes if p.role == Role.CHIEF]
    assert chiefs == [(0, 0, 0)]
    assert [p.rank for node, p in processes if plan.env_of(node, p)["AIRFLOW_TF_IS_CHIEF"] == "1"] == [0]

    cluster = training_cluster(plan)
    assert cluster == plan.cluster.tf_cluster  # stated once in the plan, handed to every task
    assert set(cluster) == {"chief", "worker", "ps"}  # never "evaluator"
    assert len(cluster["chief"]) == 1
    assert len(cluster["worker"]) == spec_options["worker_count"]
    assert len(cluster["ps"]) == spec_options["parameter_server_count"]
    addresses = [address for role in cluster.values() for address in role]
    assert len(set(addresses)) == len(addresses)  # host:port unique

    for node, process in processes:
        env = plan.env_of(node, process)
        config = json.loads(env["TF_CONFIG"])
        assert set(config) == {"cluster", "task"}
        assert config["cluster"] == cluster  # the evaluator gets the training cluster too
        role, index = task_of(plan, node, process)
        assert process.kind == ProcessKind.RANK
        assert (role, index) == (process.role, process.task_index)
        assert role == env["AIRFLOW_TF_ROLE"]
        assert process.daemon is (role != "chief")
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["AIRFLOW_TF_JOB_ID"] == JOB_ID
        assert env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index)
        assert env["AIRFLOW_TF_NODE_COUNT"] == str(len(plan.nodes))
        assert env["AIRFLOW_TF_RANK"] == str(process.rank)
        assert env["AIRFLOW_TF_LOCAL_RANK"] == str(process.local_rank)
        assert env["AIRFLOW_TF_WORLD_SIZE"] == str(plan.world_size)
        for name in plan.environment_names:
            assert name not in env  # user values come with the launch, not from the plan
        assert process.rank % len(plan.nodes) == node.node_index  # round-robin placement
        if role == "evaluator":
            # Not a member of the training cluster: it listens on nothing.
            assert config["task"] == {"type": "evaluator", "index": 0}
            assert process.port is None
        else:
            assert cluster[role][index] == f"{node.host}:{process.port}"
        who = "chief" if role == "chief" else f"{role} {index}"
        assert process.label == f"node {node.node_index} {who}"
    for node in plan.nodes:
        assert [p.local_rank for p in node.processes] == list(range(len(node.processes)))
        assert node.script == "train.py"
        assert node.env == {"PYTHONUNBUFFERED": "1"}  # plan-owned only, never the user's values
        assert node.ports == sorted(p.port for p in node.processes if p.role != Role.EVALUATOR)


def test_seed_example_layout_and_addresses(source_dir):
    plan = make_plan(source_dir, "seed_2_nodes_2w_1ps_default_ports")
    assert layout(plan) == [[("chief", 0), ("worker", 0)], [("ps", 0), ("worker", 1)]]
    assert training_cluster(plan) == {
        "chief": ["10.0.0.1:23456"],
        "ps": ["10.0.0.2:23456"],
        "worker": ["10.0.0.1:23457", "10.0.0.2:23457"],
    }
    assert [node.ports for node in plan.nodes] == [[23456, 23457], [23456, 23457]]
    assert plan.environment_names == ["MY_SETTING"]
    assert '"on"' not in json.dumps(plan.to_json())
    for node, process in all_processes(plan):
        assert node.script_args == ["--epochs", "3", "--verbose"]
        assert node.gpus == 0
        assert process.command is None  # server_mode="script": every task runs the entry script
        assert process.max_restarts == 0
        assert plan.env_of(node, process)["CUDA_VISIBLE_DEVICES"] == ""
    # The exact string matters: same cluster, byte-identical TF_CONFIG.
    assert plan.env_of(*process_of(plan, "ps"))["TF_CONFIG"] == (
        '{"cluster":{"chief":["10.0.0.1:23456"],"ps":["10.0.0.2:23456"],'
        '"worker":["10.0.0.1:23457","10.0.0.2:23457"]},"task":{"index":0,"type":"ps"}}'
    )


def test_one_node_takes_free_ports_in_task_order(source_dir):
    plan = make_plan(source_dir, "one_node_all_roles_free_ports")
    assert layout(plan) == [[("chief", 0), ("ps", 0), ("worker", 0), ("worker", 1), ("evaluator", 0)]]
    # chief, ps, workers take 6001..6004; the evaluator is not in the cluster and takes no port;
    # 6005 and 6006 stay unused.
    assert training_cluster(plan) == {
        "chief": ["127.0.0.1:6001"],
        "ps": ["127.0.0.1:6002"],
        "worker": ["127.0.0.1:6003", "127.0.0.1:6004"],
    }
    assert [p.port for p in plan.nodes[0].processes] == [6001, 6002, 6003, 6004, None]
    assert plan.nodes[0].ports == [6001, 6002, 6003, 6004]


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
    assert [node.ports for node in plan.nodes] == [[23456, 23457]] * 3
    node, evaluator = process_of(plan, "evaluator")
    assert node.node_index == 0 and evaluator.local_rank == 2 and evaluator.rank == 6
    assert (evaluator.role, evaluator.task_index, evaluator.port) == (Role.EVALUATOR, 0, None)
    assert evaluator.daemon is True
    assert evaluator.command is None  # no evaluator_script: the entry script, told it is the evaluator
    assert json.loads(plan.env_of(node, evaluator)["TF_CONFIG"]) == {
        "cluster": training_cluster(plan),
        "task": {"type": "evaluator", "index": 0},
    }


def test_runtime_server_mode_commands(source_dir):
    plan = make_plan(source_dir, "runtime_server_mode")
    commands = {task_of(plan, node, p): p.command for node, p in all_processes(plan)}
    assert commands == {
        ("chief", 0): None,
        ("ps", 0): ["-m", "airflow_tf.runtime.tf_server"],
        ("worker", 0): ["-m", "airflow_tf.runtime.tf_server"],
        ("worker", 1): ["-m", "airflow_tf.runtime.tf_server"],
    }
    assert RUNTIME_SERVER == ["-m", "airflow_tf.runtime.tf_server"]
    # A copy per task, never the module constant itself.
    assert all(command is not RUNTIME_SERVER for command in commands.values())


def test_evaluator_script_runs_with_script_args(source_dir):
    plan = make_plan(source_dir, "evaluator_script")
    assert layout(plan) == [[("chief", 0), ("worker", 0)], [("ps", 0), ("evaluator", 0)]]
    commands = {task_of(plan, node, p): p.command for node, p in all_processes(plan)}
    assert commands == {
        ("chief", 0): None,
        ("ps", 0): None,
        ("worker", 0): None,
        ("evaluator", 0): ["evaluate.py", "--epochs", "3", "--verbose"],
    }
    for node in plan.nodes:
        assert node.script == "train.py"  # the node's script stays the entry script
    assert [node.ports for node in plan.nodes] == [[23456, 23457], [23456]]  # none for the evaluator


def test_gpu_hidden_from_ps_only(source_dir):
    plan = make_plan(source_dir, "gpu")
    visible = {task_of(plan, node, p): plan.env_of(node, p).get("CUDA_VISIBLE_DEVICES")
               for node, p in all_processes(plan)}
    assert visible == {("chief", 0): None, ("ps", 0): "", ("worker", 0): None, ("worker", 1): None}
    for node, process in all_processes(plan):
        assert ("CUDA_VISIBLE_DEVICES" in plan.env_of(node, process)) is (process.role == Role.PS)
        assert process.gpus == ("" if process.role == Role.PS else None)
    # Node 0 (chief, worker 0) and node 1 (ps 0, worker 1) both have a task that needs a GPU.
    assert [node.gpus for node in plan.nodes] == [1, 1]


def test_cpu_job_hides_gpus_from_every_task(source_dir):
    for case in CASES:
        if CASES[case][0].get("use_gpu"):
            continue
        plan = make_plan(source_dir, case)
        assert [node.gpus for node in plan.nodes] == [0] * len(plan.nodes), case
        for node, process in all_processes(plan):
            assert plan.env_of(node, process)["CUDA_VISIBLE_DEVICES"] == "", (case, process.label)


def test_only_workers_get_restarts(source_dir):
    plan = make_plan(source_dir, "max_worker_restarts_2")
    restarts = {task_of(plan, node, p): p.max_restarts for node, p in all_processes(plan)}
    assert restarts == {("chief", 0): 0, ("ps", 0): 0, ("worker", 0): 2, ("worker", 1): 2}


def test_ports_unique_per_host_in_every_golden(source_dir):
    for case in CASES:
        plan = make_plan(source_dir, case)
        per_host = Counter(address for role in training_cluster(plan).values() for address in role)
        assert all(count == 1 for count in per_host.values()), case
        pairs = [(node.host, port) for node in plan.nodes for port in node.ports]
        assert len(set(pairs)) == len(pairs) == sum(per_host.values()), case


def test_ps_golden_files_are_normalised_and_consistent():
    # The goldens must not leak the machine-specific tmp path they were generated from, and
    # their resolved_env must be exactly what their own plan derives.
    for path in sorted(GOLDENS.glob("ps_*.json")):
        check_golden_file_is_consistent(path)
        plan = json.loads(path.read_text())["plan"]
        assert plan["strategy"] == Strategy.PARAMETER_SERVER, path.name
        assert plan["success_rule"] == SuccessRule.CHIEF_ZERO, path.name
    assert {p.name for p in GOLDENS.glob("ps_*.json")} >= {f"ps_{case}.json" for case in CASES}
