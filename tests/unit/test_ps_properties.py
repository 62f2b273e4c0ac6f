"""Hypothesis properties of the parameter-server planner and the chief_zero outcome rule."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.outcome import FAILED, RUNNING, SUCCESS, decide
from airflow_tf.cluster.parameter_server import RUNTIME_SERVER, ParameterServerSpec, plan_parameter_server_job
from airflow_tf.cluster.plan import JobPlan, ProcessKind, Role, Strategy, SuccessRule

# A small pool, so generated host lists often repeat a host (several nodes on one machine).
HOST_POOL = ["127.0.0.1", "10.0.0.1", "10.0.0.2", "node-a", "localhost"]
hosts_st = st.sampled_from(HOST_POOL)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    src = tmp_path_factory.mktemp("src")
    (src / "train.py").write_text("print('train')\n")
    (src / "evaluate.py").write_text("print('evaluate')\n")
    return src


@st.composite
def ps_shapes(draw):
    node_count = draw(st.integers(1, 4))
    options = {
        "node_count": node_count,
        "worker_count": draw(st.integers(1, 5)),
        "parameter_server_count": draw(st.integers(1, 3)),
        "evaluator": draw(st.booleans()),
        "use_gpu": draw(st.booleans()),
        "server_mode": draw(st.sampled_from(["script", "runtime"])),
        "max_worker_restarts": draw(st.integers(0, 3)),
    }
    if options["evaluator"] and draw(st.booleans()):
        options["evaluator_script"] = "evaluate.py"
    hosts = draw(st.lists(hosts_st, min_size=node_count, max_size=node_count))
    use_free_ports = draw(st.booleans())
    # Drawn per host, possibly more than needed; only the first few are used.
    free_pool = {
        host: draw(st.lists(st.integers(1024, 65535), min_size=16, max_size=16, unique=True)) for host in set(hosts)
    }
    return options, hosts, free_pool if use_free_ports else None


def task_count(options) -> int:
    return 1 + options["worker_count"] + options["parameter_server_count"] + (1 if options["evaluator"] else 0)


def make_spec(source_dir, options) -> ParameterServerSpec:
    return ParameterServerSpec(source_directory=str(source_dir), entry_script="train.py", **options)


def check_plan_invariants(plan: JobPlan, options, hosts, free_ports):
    node_count, tasks = options["node_count"], task_count(options)
    assert plan.strategy == Strategy.PARAMETER_SERVER
    assert plan.success_rule == SuccessRule.CHIEF_ZERO
    assert plan.world_size == plan.cluster.world_size == tasks
    assert plan.cluster.horovod is None
    assert [node.node_index for node in plan.nodes] == list(range(node_count))
    assert [node.host for node in plan.nodes] == list(hosts)

    processes = [(node, process) for node in plan.nodes for process in node.processes]
    envs = [plan.env_of(node, process) for node, process in processes]
    assert sorted(process.rank for _, process in processes) == list(range(tasks))

    # Exactly one chief, and it is on node 0 (rank 0, local rank 0).
    chiefs = [(node.node_index, p.rank, p.local_rank) for node, p in processes if p.role == Role.CHIEF]
    assert chiefs == [(0, 0, 0)]
    assert [p.rank for (_, p), env in zip(processes, envs) if env["AIRFLOW_TF_IS_CHIEF"] == "1"] == [0]

    # Each (role, index) appears exactly once, as TF_CONFIG tells it and as the plan states it.
    expected_tasks = {("chief", 0)}
    expected_tasks |= {("worker", i) for i in range(options["worker_count"])}
    expected_tasks |= {("ps", i) for i in range(options["parameter_server_count"])}
    if options["evaluator"]:
        expected_tasks.add(("evaluator", 0))
    configs = [json.loads(env["TF_CONFIG"]) for env in envs]
    told = [(config["task"]["type"], config["task"]["index"]) for config in configs]
    assert told == [(p.role, p.task_index) for _, p in processes]
    seen = Counter(told)
    assert set(seen) == expected_tasks
    assert all(count == 1 for count in seen.values())

    # Every task's TF_CONFIG carries the same training cluster (the evaluator's too): the plan's.
    cluster = configs[0]["cluster"]
    assert cluster == plan.cluster.tf_cluster
    assert set(cluster) == {"chief", "worker", "ps"}
    assert len(cluster["chief"]) == 1
    assert len(cluster["worker"]) == options["worker_count"]
    assert len(cluster["ps"]) == options["parameter_server_count"]
    assert all(config["cluster"] == cluster for config in configs)

    # Unique host:port across all tasks of the cluster.
    addresses = [address for role in cluster.values() for address in role]
    assert len(set(addresses)) == len(addresses)

    for (node, process), env, (role, index) in zip(processes, envs, told):
        assert process.kind == ProcessKind.RANK
        assert role == env["AIRFLOW_TF_ROLE"]
        assert env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index)
        assert env["AIRFLOW_TF_NODE_COUNT"] == str(node_count)
        assert env["AIRFLOW_TF_RANK"] == str(process.rank)
        assert env["AIRFLOW_TF_LOCAL_RANK"] == str(process.local_rank)
        assert env["AIRFLOW_TF_WORLD_SIZE"] == str(tasks)
        assert process.rank % node_count == node.node_index  # round-robin placement
        assert process.daemon is (role != "chief")
        assert process.max_restarts == (options["max_worker_restarts"] if role == "worker" else 0)
        if role == "evaluator":
            assert index == 0
            assert process.port is None  # not in the cluster: it listens on nothing
            assert process.command == (["evaluate.py"] if options.get("evaluator_script") else None)
        else:
            # A task's own address is on its node's host, at the port the plan gives it.
            host, port = cluster[role][index].rsplit(":", 1)
            assert host == node.host
            assert int(port) == process.port
            assert 1 <= int(port) <= 65535
            if free_ports is not None:
                assert int(port) in free_ports[host]
            runtime_served = role in ("ps", "worker") and options["server_mode"] == "runtime"
            assert process.command == (RUNTIME_SERVER if runtime_served else None)
        if not options["use_gpu"] or role == "ps":
            assert env["CUDA_VISIBLE_DEVICES"] == process.gpus == ""
        else:
            assert "CUDA_VISIBLE_DEVICES" not in env and process.gpus is None

    # local_rank numbers 0..k-1 on every node; every node has a task, none more than its share.
    per_node_limit = -(-tasks // node_count)
    for node in plan.nodes:
        assert [p.local_rank for p in node.processes] == list(range(len(node.processes)))
        assert 1 <= len(node.processes) <= per_node_limit
        assert node.ports == sorted(p.port for p in node.processes if p.role != Role.EVALUATOR)
        needs_gpu = options["use_gpu"] and any(p.role != Role.PS for p in node.processes)
        assert node.gpus == (1 if needs_gpu else 0)
        assert node.env == {"PYTHONUNBUFFERED": "1"}


@given(ps_shapes())
@PROPERTY_SETTINGS
def test_ps_plan_invariants(source_dir, shape):
    options, hosts, free_ports = shape
    if options["node_count"] > task_count(options):
        with pytest.raises(SpecError, match="node_count is .* but there are only"):
            make_spec(source_dir, options)
        return
    spec = make_spec(source_dir, options)
    plan = plan_parameter_server_job(spec, job_id="prop-ps-job", hosts=hosts, free_ports=free_ports)
    check_plan_invariants(plan, options, hosts, free_ports)
    assert JobPlan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


@given(ps_shapes())
@PROPERTY_SETTINGS
def test_ps_plan_exact_free_ports_suffice(source_dir, shape):
    """The operator's two-pass planning: count the ports per host on a draft (the evaluator has
    none), ask for exactly that many; every one of them is used."""
    options, hosts, _ = shape
    if options["node_count"] > task_count(options):
        return
    spec = make_spec(source_dir, options)
    draft = plan_parameter_server_job(spec, job_id="prop-ps-job", hosts=hosts)
    needed = Counter()
    for node in draft.nodes:
        needed[node.host] += len(node.ports)  # as operators/nodes.py asks the backend
    free_ports = {
        host: list(range(7000 + 100 * i, 7000 + 100 * i + count)) for i, (host, count) in enumerate(needed.items())
    }
    plan = plan_parameter_server_job(spec, job_id="prop-ps-job", hosts=hosts, free_ports=free_ports)
    check_plan_invariants(plan, options, hosts, free_ports)
    used = Counter()
    for node in plan.nodes:
        used[node.host] += len(node.ports)
    assert used == needed
    assert sum(needed.values()) == task_count(options) - options["evaluator"]


@given(ps_shapes(), st.integers(0, 5))
@PROPERTY_SETTINGS
def test_ps_plan_rejects_host_count_mismatch(source_dir, shape, extra):
    options, hosts, _ = shape
    if options["node_count"] > task_count(options):
        return
    bad_hosts = hosts[:-1] if extra == 0 else hosts + ["extra-host"] * extra
    with pytest.raises(SpecError, match="node_count"):
        plan_parameter_server_job(make_spec(source_dir, options), job_id="j", hosts=bad_hosts)


@pytest.mark.parametrize("bad_host", ["10.0.0.1:2222", "", "node a", None])
def test_ps_plan_rejects_malformed_host(source_dir, bad_host):
    # As plan_tensorflow_job does: a host with a port (or blank) would give "h:p:port" addresses.
    options = {"node_count": 2, "worker_count": 2, "parameter_server_count": 1, "evaluator": False}
    with pytest.raises(SpecError, match="host 1 must be a hostname or IPv4 address without port"):
        plan_parameter_server_job(make_spec(source_dir, options), job_id="j", hosts=["10.0.0.1", bad_host])


# outcome.decide under chief_zero

exit_codes = st.one_of(st.none(), st.integers(-64, 255))
running = st.builds(lambda: {"running": True, "exit_code": None})
ended = st.builds(lambda code: {"running": False, "exit_code": code}, exit_codes)
ended_zero = st.builds(lambda: {"running": False, "exit_code": 0})
states_st = st.lists(st.one_of(running, ended, ended_zero), min_size=1, max_size=8)


@given(states_st)
@settings(max_examples=300, deadline=None)
def test_decide_chief_zero(states):
    outcome = decide("chief_zero", states)
    failed = [i for i, s in enumerate(states) if not s["running"] and s["exit_code"] != 0]
    if failed:
        assert (outcome.status, outcome.failed_node, outcome.exit_code) == (
            FAILED, failed[0], states[failed[0]]["exit_code"],
        )
    elif not states[0]["running"]:
        assert states[0]["exit_code"] == 0
        assert (outcome.status, outcome.failed_node, outcome.exit_code) == (SUCCESS, None, None)
    else:
        assert (outcome.status, outcome.failed_node, outcome.exit_code) == (RUNNING, None, None)


@given(st.lists(st.one_of(running, ended_zero), max_size=7))
def test_chief_node_zero_is_success_even_while_others_run(others):
    assert decide("chief_zero", [{"running": False, "exit_code": 0}, *others]).status == SUCCESS


@given(st.lists(st.one_of(running, ended_zero), max_size=7))
def test_chief_node_running_is_running_even_if_others_ended_zero(others):
    outcome = decide("chief_zero", [{"running": True, "exit_code": None}, *others])
    assert (outcome.status, outcome.failed_node) == (RUNNING, None)


@given(states_st, st.integers(0, 7), st.one_of(st.none(), st.integers(1, 255), st.integers(-64, -1)))
def test_chief_zero_first_failure_wins(states, where, code):
    """A node that ended non-zero or vanished (None) fails the job, whatever the chief's node does."""
    states = [dict(s) for s in states]
    index = where % len(states)
    states[index] = {"running": False, "exit_code": code}
    first = next(i for i, s in enumerate(states) if not s["running"] and s["exit_code"] != 0)
    outcome = decide("chief_zero", states)
    assert (outcome.status, outcome.failed_node, outcome.exit_code) == (FAILED, first, states[first]["exit_code"])
    assert first <= index


@given(st.lists(st.one_of(running, ended_zero), min_size=1, max_size=8))
def test_chief_zero_never_waits_on_other_nodes_unlike_all_ranks_zero(states):
    # Same states, the two rules differ only when node 0 is done and some other node still runs.
    chief, everyone = decide("chief_zero", states), decide("all_ranks_zero", states)
    if not states[0]["running"]:
        assert chief.status == SUCCESS
    if everyone.status == SUCCESS:
        assert chief.status == SUCCESS
    if chief.status == RUNNING:
        assert everyone.status == RUNNING
