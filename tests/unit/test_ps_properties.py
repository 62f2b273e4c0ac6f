"""Hypothesis properties of the parameter-server planner and the chief_zero outcome rule."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.outcome import FAILED, RUNNING, SUCCESS, decide
from airflow_tf.cluster.parameter_server import RUNTIME_SERVER, plan_parameter_server_job
from airflow_tf.cluster.plan import CHIEF_ZERO, PARAMETER_SERVER, JobPlan
from airflow_tf.cluster.spec import ParameterServerSpec

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


def task_of(rank) -> tuple[str, int]:
    task = json.loads(rank.env["TF_CONFIG"])["task"]
    return task["type"], task["index"]


def check_plan_invariants(plan: JobPlan, options, hosts, free_ports):
    node_count, tasks = options["node_count"], task_count(options)
    assert plan.strategy == PARAMETER_SERVER
    assert plan.success_rule == CHIEF_ZERO
    assert plan.world_size == tasks
    assert [node.node_index for node in plan.nodes] == list(range(node_count))
    assert [node.host for node in plan.nodes] == list(hosts)

    ranks = [(node, rank) for node in plan.nodes for rank in node.ranks]
    assert sorted(rank.rank for _, rank in ranks) == list(range(tasks))

    # Exactly one chief, and it is on node 0 (rank 0, local rank 0).
    chiefs = [(node.node_index, rank.rank, rank.local_rank) for node, rank in ranks if rank.role == "chief"]
    assert chiefs == [(0, 0, 0)]
    assert [rank.rank for _, rank in ranks if rank.env["AIRFLOW_TF_IS_CHIEF"] == "1"] == [0]

    # Each (role, index) appears exactly once.
    expected_tasks = {("chief", 0)}
    expected_tasks |= {("worker", i) for i in range(options["worker_count"])}
    expected_tasks |= {("ps", i) for i in range(options["parameter_server_count"])}
    if options["evaluator"]:
        expected_tasks.add(("evaluator", 0))
    seen = Counter(task_of(rank) for _, rank in ranks)
    assert set(seen) == expected_tasks
    assert all(count == 1 for count in seen.values())

    # Every rank's TF_CONFIG carries the same training cluster (the evaluator's too).
    configs = [json.loads(rank.env["TF_CONFIG"]) for _, rank in ranks]
    cluster = configs[0]["cluster"]
    assert set(cluster) == {"chief", "worker", "ps"}
    assert len(cluster["chief"]) == 1
    assert len(cluster["worker"]) == options["worker_count"]
    assert len(cluster["ps"]) == options["parameter_server_count"]
    assert all(config["cluster"] == cluster for config in configs)

    # Unique host:port across all tasks of the cluster.
    addresses = [address for role in cluster.values() for address in role]
    assert len(set(addresses)) == len(addresses)

    for node, rank in ranks:
        role, index = task_of(rank)
        assert rank.role == role == rank.env["AIRFLOW_TF_ROLE"]
        assert rank.env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index)
        assert rank.env["AIRFLOW_TF_RANK"] == str(rank.rank)
        assert rank.env["AIRFLOW_TF_LOCAL_RANK"] == str(rank.local_rank)
        assert rank.env["AIRFLOW_TF_WORLD_SIZE"] == str(tasks)
        assert rank.rank % node_count == node.node_index  # round-robin placement
        assert rank.daemon is (role != "chief")
        assert rank.max_restarts == (options["max_worker_restarts"] if role == "worker" else 0)
        if role == "evaluator":
            assert index == 0
            assert rank.command == (["evaluate.py"] if options.get("evaluator_script") else None)
        else:
            # A task's own address is on its node's host.
            host, port = cluster[role][index].rsplit(":", 1)
            assert host == node.host
            assert 1 <= int(port) <= 65535
            if free_ports is not None:
                assert int(port) in free_ports[host]
            runtime_served = role in ("ps", "worker") and options["server_mode"] == "runtime"
            assert rank.command == (RUNTIME_SERVER if runtime_served else None)
        if not options["use_gpu"] or role == "ps":
            assert rank.env["CUDA_VISIBLE_DEVICES"] == ""
        else:
            assert "CUDA_VISIBLE_DEVICES" not in rank.env

    # local_rank numbers 0..k-1 on every node; every node has a task, none more than its share.
    per_node_limit = -(-tasks // node_count)
    for node in plan.nodes:
        assert [rank.local_rank for rank in node.ranks] == list(range(len(node.ranks)))
        assert 1 <= len(node.ranks) <= per_node_limit


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
    """The operator's two-pass planning: count tasks per host on a draft, ask for exactly that many."""
    options, hosts, _ = shape
    if options["node_count"] > task_count(options):
        return
    spec = make_spec(source_dir, options)
    draft = plan_parameter_server_job(spec, job_id="prop-ps-job", hosts=hosts)
    needed = Counter()
    for node in draft.nodes:
        needed[node.host] += len(node.ranks)
    free_ports = {
        host: list(range(7000 + 100 * i, 7000 + 100 * i + count)) for i, (host, count) in enumerate(needed.items())
    }
    plan = plan_parameter_server_job(spec, job_id="prop-ps-job", hosts=hosts, free_ports=free_ports)
    check_plan_invariants(plan, options, hosts, free_ports)


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
