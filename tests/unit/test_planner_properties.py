"""Hypothesis properties of the pure planner: ports, ranks, TF_CONFIG, and the outcome rule."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.outcome import FAILED, RUNNING, SUCCESS, decide
from airflow_tf.cluster.plan import JobPlan, ProcessKind, Role, Strategy, SuccessRule
from airflow_tf.cluster.ports import DEFAULT_BASE_PORT, assign_ports
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job

# A small pool, so generated host lists often repeat a host (several nodes on one machine).
HOST_POOL = ["127.0.0.1", "10.0.0.1", "10.0.0.2", "node-a", "node-b.example.com", "localhost"]
hosts_st = st.sampled_from(HOST_POOL)

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "train.py").write_text("print('train')\n")
    return src


@st.composite
def job_shapes(draw, with_free_ports: bool):
    node_count = draw(st.integers(1, 6))
    per_node = draw(st.integers(1, 4))
    hosts = draw(st.lists(hosts_st, min_size=node_count, max_size=node_count))
    use_gpu = draw(st.booleans())
    free_ports = None
    if with_free_ports:
        needed = Counter(host for host in hosts for _ in range(per_node))
        free_ports = {}
        for host, count in needed.items():
            # Distinct ports per host (what a backend finds free), possibly more than needed,
            # in arbitrary order; different hosts may share port numbers.
            free_ports[host] = draw(st.lists(st.integers(1024, 65535), min_size=count, max_size=count + 3, unique=True))
    return node_count, per_node, hosts, use_gpu, free_ports


def make_plan(source_dir, node_count, per_node, hosts, use_gpu, free_ports):
    spec = TrainingSpec(
        source_directory=str(source_dir),
        entry_script="train.py",
        node_count=node_count,
        process_count_per_node=per_node,
        use_gpu=use_gpu,
    )
    return plan_tensorflow_job(spec, job_id="prop-job", hosts=hosts, free_ports=free_ports)


def check_plan_invariants(plan, node_count, per_node, hosts, use_gpu, free_ports):
    world_size = node_count * per_node
    assert plan.world_size == plan.cluster.world_size == world_size
    assert plan.strategy == (Strategy.SINGLE if world_size == 1 else Strategy.MULTI_WORKER_MIRRORED)
    assert plan.success_rule == SuccessRule.ALL_RANKS_ZERO
    assert plan.cluster.horovod is None
    assert plan.environment_names == []
    assert [node.node_index for node in plan.nodes] == list(range(node_count))
    assert [node.host for node in plan.nodes] == list(hosts)

    processes = [(node, process) for node in plan.nodes for process in node.processes]
    envs = [plan.env_of(node, process) for node, process in processes]
    # Exactly one rank per global index 0..world_size-1.
    assert sorted(process.rank for _, process in processes) == list(range(world_size))
    for (node, process), env in zip(processes, envs):
        assert len(node.processes) == per_node
        assert node.env == {"PYTHONUNBUFFERED": "1"}
        assert node.gpus == (per_node if use_gpu else 0)
        assert node.ports == sorted(p.port for p in node.processes if p.port is not None)
        assert process.kind == ProcessKind.RANK
        assert process.rank == node.node_index * per_node + process.local_rank
        assert 0 <= process.local_rank < per_node
        assert env["AIRFLOW_TF_RANK"] == str(process.rank)
        assert env["AIRFLOW_TF_LOCAL_RANK"] == str(process.local_rank)
        assert env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index)
        assert env["AIRFLOW_TF_NODE_COUNT"] == str(node_count)
        assert env["AIRFLOW_TF_WORLD_SIZE"] == str(world_size)
        if not use_gpu:
            assert env["CUDA_VISIBLE_DEVICES"] == process.gpus == ""
        elif per_node > 1:
            assert env["CUDA_VISIBLE_DEVICES"] == process.gpus == str(process.local_rank)
        else:
            assert "CUDA_VISIBLE_DEVICES" not in env and process.gpus is None

    # Exactly one chief, and it is rank 0.
    chiefs = [process.rank for (_, process), env in zip(processes, envs) if env["AIRFLOW_TF_IS_CHIEF"] == "1"]
    assert chiefs == [0]
    assert all(env["AIRFLOW_TF_IS_CHIEF"] in ("0", "1") for env in envs)

    if world_size == 1:
        # One process: no cluster, no port, no role, no TF_CONFIG.
        assert plan.cluster.tf_cluster is None
        assert all("TF_CONFIG" not in env and "AIRFLOW_TF_ROLE" not in env for env in envs)
        assert all((p.role, p.task_index, p.port) == (None, None, None) for _, p in processes)
        return

    configs = [(node, process, json.loads(env["TF_CONFIG"])) for (node, process), env in zip(processes, envs)]
    cluster = configs[0][2]["cluster"]
    assert cluster == plan.cluster.tf_cluster  # stated once in the plan, the same in every TF_CONFIG
    assert set(cluster) == {"worker"}
    workers = cluster["worker"]
    assert len(workers) == world_size
    # Unique host:port pairs among all workers.
    assert len(set(workers)) == world_size
    for (node, process, config), env in zip(configs, envs):
        assert set(config) == {"cluster", "task"}
        assert config["cluster"] == cluster  # identical across ranks
        assert config["task"] == {"type": "worker", "index": process.rank}
        assert (process.role, process.task_index) == (Role.WORKER, process.rank)
        assert env["AIRFLOW_TF_ROLE"] == "worker"
        host, port = workers[process.rank].rsplit(":", 1)
        assert host == node.host  # a rank listens on its own node's host
        assert int(port) == process.port
        assert 1 <= int(port) <= 65535
        if free_ports is not None:
            assert int(port) in free_ports[host]


@given(job_shapes(with_free_ports=False))
@PROPERTY_SETTINGS
def test_plan_invariants_default_ports(source_dir, shape):
    node_count, per_node, hosts, use_gpu, free_ports = shape
    plan = make_plan(source_dir, *shape)
    check_plan_invariants(plan, node_count, per_node, hosts, use_gpu, free_ports)
    # Default ports: the k-th task on a host gets base + k.
    if plan.world_size > 1:
        per_host = Counter()
        for address in plan.cluster.tf_cluster["worker"]:
            host, port = address.rsplit(":", 1)
            assert int(port) == DEFAULT_BASE_PORT + per_host[host]
            per_host[host] += 1


@given(job_shapes(with_free_ports=True))
@PROPERTY_SETTINGS
def test_plan_invariants_free_ports(source_dir, shape):
    node_count, per_node, hosts, use_gpu, free_ports = shape
    plan = make_plan(source_dir, *shape)
    check_plan_invariants(plan, node_count, per_node, hosts, use_gpu, free_ports)


@given(job_shapes(with_free_ports=False))
@PROPERTY_SETTINGS
def test_plan_json_round_trip(source_dir, shape):
    plan = make_plan(source_dir, *shape)
    again = JobPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert [again.env_of(n, p) for n in again.nodes for p in n.processes] == [
        plan.env_of(n, p) for n in plan.nodes for p in n.processes
    ]


@given(st.integers(1, 6), st.integers(1, 4), st.lists(hosts_st, max_size=8))
@PROPERTY_SETTINGS
def test_plan_rejects_host_count_mismatch(source_dir, node_count, per_node, hosts):
    if len(hosts) == node_count:
        hosts = hosts + ["extra-host"]
    with pytest.raises(SpecError, match="node_count"):
        make_plan(source_dir, node_count, per_node, hosts, False, None)


@pytest.mark.parametrize("bad_host", ["10.0.0.1:2222", "", "node a", None])
def test_plan_rejects_malformed_host(source_dir, bad_host):
    # A host with a port (or blank) would give "h:p:port" worker addresses.
    with pytest.raises(SpecError, match="host 1 must be a hostname or IPv4 address without port"):
        make_plan(source_dir, 2, 1, ["10.0.0.1", bad_host], False, None)


# Plan size: the cluster is stated once per job, so a plan grows linearly with the ranks.

ADDRESS = re.compile(r"\d+\.\d+\.\d+\.\d+(?::\d+)?")


def big_mwms_plan(source_dir, node_count, per_node=8):
    hosts = [f"10.{1 + i // 250}.{i % 250 // 10}.{i % 10 + 1}" for i in range(node_count)]
    assert len(set(hosts)) == node_count
    return make_plan(source_dir, node_count, per_node, hosts, True, None)


def test_plan_json_size_is_linear_in_ranks(source_dir):
    """2048 MWMS ranks (256 nodes x 8 on 256 hosts): under 2 MB, and no node states the cluster.

    Stating every worker's address in every rank's TF_CONFIG (as plans used to) makes this
    quadratic: ~2048 x 2048 addresses, well over 40 MB.
    """
    plan = big_mwms_plan(source_dir, 256)
    assert plan.world_size == 2048
    size = len(json.dumps(plan.to_json()))
    assert size <= 2 * 1024 * 1024, size
    # Twice the ranks, about twice the bytes (quadratic growth would give four times).
    half = len(json.dumps(big_mwms_plan(source_dir, 128).to_json()))
    assert size <= 2.2 * half, (half, size)
    # The cluster's addresses appear once in the whole plan: in plan.cluster, not per node or rank.
    text = json.dumps(plan.to_json())
    workers = plan.cluster.tf_cluster["worker"]
    assert len(workers) == 2048
    assert text.count(f'"{workers[-1]}"') == 1 and text.count(f'"{workers[0]}"') == 1
    for node in plan.nodes:
        node_text = json.dumps(node.to_json())
        # Only its own host, never another node's address or any host:port of the cluster.
        assert set(ADDRESS.findall(node_text)) == {node.host}, node.node_index
        assert len(node_text) < 4096, (node.node_index, len(node_text))
    # The node derives the full TF_CONFIG (all 2048 workers) from the cluster stated once.
    last = plan.nodes[-1]
    config = json.loads(plan.env_of(last, last.processes[-1])["TF_CONFIG"])
    assert config == {"cluster": {"worker": workers}, "task": {"type": "worker", "index": 2047}}
    assert workers[2047] == f"{last.host}:{DEFAULT_BASE_PORT + 7}"


# assign_ports


task_hosts_st = st.lists(hosts_st, min_size=0, max_size=24)


@given(task_hosts_st, st.integers(1, 65535))
@settings(max_examples=200, deadline=None)
def test_assign_ports_base_port_unique_per_host(task_hosts, base_port):
    try:
        ports = assign_ports(task_hosts, base_port=base_port)
    except SpecError as e:
        # Only legitimate failure: base_port + k runs past 65535.
        assert "65535" in str(e)
        assert base_port + max(Counter(task_hosts).values()) - 1 > 65535
        return
    assert len(ports) == len(task_hosts)
    pairs = list(zip(task_hosts, ports))
    assert len(set(pairs)) == len(pairs)
    assert all(1 <= port <= 65535 for port in ports)


@given(
    task_hosts_st,
    st.dictionaries(hosts_st, st.lists(st.integers(0, 70000), max_size=30)),
)
@settings(max_examples=300, deadline=None)
def test_assign_ports_free_ports_never_duplicates_on_a_host(task_hosts, free_ports):
    """Arbitrary (even bad: duplicated, short, out-of-range) free-port lists: either a SpecError
    or ports taken from each host's list in order, never one port twice on one host."""
    try:
        ports = assign_ports(task_hosts, free_ports=free_ports)
    except SpecError:
        # Must have had a reason: some host short of ports, a bad port, or a duplicate.
        needed = Counter(task_hosts)
        short = any(len(free_ports.get(h, ())) < n for h, n in needed.items())
        taken = {h: list(free_ports.get(h, ()))[:n] for h, n in needed.items()}
        bad = any(not 1 <= p <= 65535 for ps in taken.values() for p in ps)
        dup = any(len(set(ps)) != len(ps) for ps in taken.values())
        assert short or bad or dup
        return
    pairs = list(zip(task_hosts, ports))
    assert len(set(pairs)) == len(pairs)
    seen = Counter()
    for host, port in pairs:
        assert port == free_ports[host][seen[host]]
        seen[host] += 1


@given(st.lists(hosts_st, min_size=1, max_size=12))
def test_assign_ports_duplicate_free_port_rejected(task_hosts):
    host = task_hosts[0]
    count = task_hosts.count(host)
    if count < 2:
        task_hosts = task_hosts + [host]
        count = 2
    free_ports = {h: list(range(6000, 6000 + task_hosts.count(h))) for h in set(task_hosts)}
    free_ports[host] = [7000] * count
    with pytest.raises(SpecError):
        assign_ports(task_hosts, free_ports=free_ports)


@pytest.mark.parametrize("base_port", [0, -1, 65536])
def test_assign_ports_rejects_bad_base_port(base_port):
    with pytest.raises(SpecError, match="base_port must be in 1..65535"):
        assign_ports(["h"], base_port=base_port)


# outcome.decide

exit_codes = st.one_of(st.none(), st.integers(-64, 255))
states_st = st.lists(
    st.one_of(
        st.builds(lambda: {"running": True, "exit_code": None}),
        st.builds(lambda code: {"running": False, "exit_code": code}, exit_codes),
    ),
    min_size=1,
    max_size=8,
)


@given(states_st)
@settings(max_examples=300, deadline=None)
def test_decide_all_ranks_zero(states):
    outcome = decide("all_ranks_zero", states)
    failed = [i for i, s in enumerate(states) if not s["running"] and s["exit_code"] != 0]
    if failed:
        assert outcome.status == FAILED
        assert outcome.failed_node == failed[0]
        assert outcome.exit_code == states[failed[0]]["exit_code"]
    elif all(not s["running"] for s in states):
        assert all(s["exit_code"] == 0 for s in states)
        assert outcome.status == SUCCESS
        assert outcome.failed_node is None and outcome.exit_code is None
    else:
        assert outcome.status == RUNNING
        assert outcome.failed_node is None and outcome.exit_code is None


@given(states_st, st.integers(0, 7), st.one_of(st.none(), st.integers(1, 255)))
def test_decide_failure_wins_over_running_nodes(states, where, code):
    """A node that vanished (None) or exited non-zero fails the job even while others still run."""
    states = [{"running": True, "exit_code": None} for _ in states]
    index = where % len(states)
    states[index] = {"running": False, "exit_code": code}
    outcome = decide("all_ranks_zero", states)
    assert (outcome.status, outcome.failed_node, outcome.exit_code) == (FAILED, index, code)


@given(st.integers(1, 8))
def test_decide_all_zero_is_success(n):
    assert decide("all_ranks_zero", [{"running": False, "exit_code": 0}] * n).status == SUCCESS


def test_decide_unknown_rule():
    with pytest.raises(ValueError, match="unknown success rule"):
        decide("any_rank_zero", [{"running": False, "exit_code": 0}])
