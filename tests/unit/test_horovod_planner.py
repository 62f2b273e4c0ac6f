"""Horovod planning: rank assignment (checked against Horovod's own runner), Gloo env, hostfile,
mpirun command, and bad input."""

import json
import re

import pytest
from airflow.sdk import DAG

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.horovod import DistributedBackend, HorovodSpec, assign_slots, hostfile_text, plan_horovod_job
from airflow_tf.cluster.plan import HorovodRendezvous, JobPlan, ProcessKind, Strategy, SuccessRule


@pytest.fixture
def src(tmp_path):
    (tmp_path / "train.py").write_text("print('hi')\n")
    return str(tmp_path)


@pytest.mark.parametrize("slots", [[1], [2], [1, 1], [2, 2], [2, 1], [1, 3, 2], [4, 1, 1, 2]])
def test_assignment_matches_horovods_runner(slots):
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts

    names = [f"h{i}" for i in range(len(slots))]
    ours = assign_slots(names, slots)
    theirs = get_host_assignments(parse_hosts(",".join(f"{n}:{s}" for n, s in zip(names, slots))), sum(slots))
    assert [vars(s) for s in ours] == [
        {k: getattr(t, k) for k in ("hostname", "rank", "local_rank", "cross_rank", "size", "local_size", "cross_size")}
        for t in theirs
    ]


def test_uneven_slots_golden():
    slots = assign_slots(["a", "b", "c"], [2, 1, 3])
    assert [(s.hostname, s.rank, s.local_rank, s.cross_rank, s.cross_size, s.local_size) for s in slots] == [
        ("a", 0, 0, 0, 3, 2), ("a", 1, 1, 0, 2, 2),
        ("b", 2, 0, 1, 3, 1),
        ("c", 3, 0, 2, 3, 3), ("c", 4, 1, 1, 2, 3), ("c", 5, 2, 0, 1, 3),
    ]
    assert {s.size for s in slots} == {6}


def test_hostfile_merges_nodes_on_one_host():
    assert hostfile_text(["10.0.0.1", "10.0.0.2"], [2, 1]) == "10.0.0.1 slots=2\n10.0.0.2 slots=1\n"
    assert hostfile_text(["127.0.0.1", "127.0.0.1"], [1, 1]) == "127.0.0.1 slots=2\n"


def ranks_of(node):
    return [p for p in node.processes if p.kind == ProcessKind.RANK]


def test_gloo_plan_env_per_rank(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, process_count_per_node=2,
                       script_params={"--lr": 0.1}, network_interface="eth0")
    plan = plan_horovod_job(spec, job_id="j", hosts=["10.0.0.1", "10.0.0.2"], free_ports={"10.0.0.1": [7000]})
    assert plan.strategy == Strategy.HOROVOD and plan.success_rule == SuccessRule.ALL_RANKS_ZERO
    assert plan.world_size == plan.cluster.world_size == 4
    assert plan.cluster.tf_cluster is None
    # The rendezvous is stated once, in the cluster; every rank's HOROVOD_* env is derived from it.
    assert plan.cluster.horovod == HorovodRendezvous(address="10.0.0.1", port=7000, timeout_s=120, slots=[2, 2])
    node0, node1 = plan.nodes
    ranks0, ranks1 = ranks_of(node0), ranks_of(node1)
    env_of = {p.rank: plan.env_of(node, p) for node in plan.nodes for p in ranks_of(node)}
    assert [p.rank for p in ranks0] == [0, 1] and [p.rank for p in ranks1] == [2, 3]
    assert [env_of[p.rank]["HOROVOD_RANK"] for p in ranks0] == ["0", "1"]
    assert [env_of[p.rank]["HOROVOD_RANK"] for p in ranks1] == ["2", "3"]
    assert {env["HOROVOD_GLOO_RENDEZVOUS_ADDR"] for env in env_of.values()} == {"10.0.0.1"}
    assert {env["HOROVOD_GLOO_RENDEZVOUS_PORT"] for env in env_of.values()} == {"7000"}
    assert {env["HOROVOD_GLOO_TIMEOUT_SECONDS"] for env in env_of.values()} == {"120"}
    assert {env["HOROVOD_SIZE"] for env in env_of.values()} == {"4"}
    assert env_of[3]["HOROVOD_CROSS_RANK"] == "1" and env_of[3]["HOROVOD_LOCAL_RANK"] == "1"
    assert env_of[3]["HOROVOD_HOSTNAME"] == "node1-10.0.0.2" and env_of[3]["HOROVOD_LOCAL_SIZE"] == "2"
    for node in plan.nodes:
        # Plan-owned only (the interface), never the user's values; every process gets it.
        assert node.env == {"PYTHONUNBUFFERED": "1", "HOROVOD_GLOO_IFACE": "eth0", "NCCL_SOCKET_IFNAME": "eth0"}
        assert node.gpus == 0
        for p in ranks_of(node):
            env = env_of[p.rank]
            assert (p.role, p.task_index, p.port) == (None, None, None)  # no TF cluster, ranks listen on nothing
            assert env["HOROVOD_GLOO_IFACE"] == "eth0"
            assert env["AIRFLOW_TF_RANK"] == str(p.rank) and env["AIRFLOW_TF_LOCAL_RANK"] == str(p.local_rank)
            assert env["AIRFLOW_TF_NODE_INDEX"] == str(node.node_index) and env["AIRFLOW_TF_NODE_COUNT"] == "2"
            assert env["AIRFLOW_TF_WORLD_SIZE"] == "4"
            assert env["AIRFLOW_TF_IS_CHIEF"] == ("1" if p.rank == 0 else "0")
            assert env["CUDA_VISIBLE_DEVICES"] == p.gpus == ""
            assert "TF_CONFIG" not in env and "AIRFLOW_TF_ROLE" not in env
            assert p.label == f"node {node.node_index} rank {p.rank}"
    # Node 0 also hosts the rendezvous, as a daemon (it serves until the ranks are done).
    (rendezvous,) = [p for p in node0.processes if p.kind == ProcessKind.RENDEZVOUS]
    assert [p.kind for p in node1.processes] == [ProcessKind.RANK] * 2
    assert (rendezvous.rank, rendezvous.local_rank, rendezvous.role) == (None, None, None)
    assert rendezvous.label == "node 0 rendezvous"
    assert rendezvous.daemon and rendezvous.command[:2] == ["-m", "airflow_tf.runtime.hvd_rendezvous"]
    assert "node0-10.0.0.1:2,node1-10.0.0.2:2" in rendezvous.command
    assert rendezvous.command[rendezvous.command.index("--port") + 1] == "7000"
    assert rendezvous.port == 7000 and node0.ports == [7000] and node1.ports == []
    # It is no rank: no rank numbers, no HOROVOD_* slot env, no GPU setting; it knows the world size.
    assert plan.env_of(node0, rendezvous) == {
        "PYTHONUNBUFFERED": "1", "HOROVOD_GLOO_IFACE": "eth0", "NCCL_SOCKET_IFNAME": "eth0",
        "AIRFLOW_TF_JOB_ID": "j", "AIRFLOW_TF_NODE_INDEX": "0", "AIRFLOW_TF_NODE_COUNT": "2",
        "AIRFLOW_TF_WORLD_SIZE": "4", "AIRFLOW_TF_AUTOLOG": "1",
        "TF_USE_LEGACY_KERAS": "1",  # keras_version "auto": Keras 2 for every Horovod process
    }


@pytest.mark.parametrize("slots", [(1, 1), (2, 2), (1, 3)])
def test_gloo_env_matches_horovods_own_slot_env(src, slots):
    """Every rank's HOROVOD_* env is what ``horovodrun --gloo`` would give it (create_slot_env_vars)."""
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts
    from horovod.runner.gloo_run import create_slot_env_vars

    node_count, per_node = slots
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=node_count,
                       process_count_per_node=per_node)
    hosts = [f"10.0.0.{i + 1}" for i in range(node_count)]
    plan = plan_horovod_job(spec, job_id="j", hosts=hosts)
    layout = ",".join(f"node{i}-{host}:{per_node}" for i, host in enumerate(hosts))
    theirs = get_host_assignments(parse_hosts(layout), node_count * per_node)
    ours = [plan.env_of(node, p) for node in plan.nodes for p in ranks_of(node)]
    assert len(ours) == len(theirs)
    for env, slot in zip(ours, theirs):
        assert {k: v for k, v in env.items() if k in create_slot_env_vars(slot)} == create_slot_env_vars(slot)


def test_gpu_ranks_see_their_local_gpu(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=1, process_count_per_node=2,
                       use_gpu=True, gpus_per_node=2)
    plan = plan_horovod_job(spec, job_id="j", hosts=["h"])
    node = plan.nodes[0]
    assert [plan.env_of(node, p)["CUDA_VISIBLE_DEVICES"] for p in ranks_of(node)] == ["0", "1"]
    assert [p.gpus for p in ranks_of(node)] == ["0", "1"]
    assert node.gpus == 2
    (rendezvous,) = [p for p in node.processes if p.kind == ProcessKind.RENDEZVOUS]
    assert rendezvous.gpus is None and "CUDA_VISIBLE_DEVICES" not in plan.env_of(node, rendezvous)


def test_mpi_plan_runs_mpirun_on_node_0_only(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, distributed_backend="mpi",
                       script_params={"--lr": 0.1}, mpirun_options=["--mca", "btl", "^openib"],
                       environment_variables={"MY_SETTING": "on"})
    assert spec.distributed_backend is DistributedBackend.MPI
    plan = plan_horovod_job(spec, job_id="j", hosts=["10.0.0.1", "10.0.0.2"])
    assert plan.world_size == 2 and plan.cluster.horovod is None and plan.cluster.tf_cluster is None
    node0, node1 = plan.nodes
    assert node1.processes == [] and node1.ports == []
    (mpirun,) = node0.processes
    assert (mpirun.kind, mpirun.rank, mpirun.local_rank, mpirun.role) == (ProcessKind.MPIRUN, None, None, None)
    assert mpirun.label == "node 0 mpirun" and not mpirun.daemon and node0.ports == []
    command = mpirun.command
    assert command[:2] == ["-m", "airflow_tf.runtime.hvd_mpirun"]
    assert command[command.index("--hostfile-text") + 1] == "10.0.0.1 slots=1\n10.0.0.2 slots=1\n"
    mpirun_part = command[command.index("--") + 1:]
    options, rank = mpirun_part[: mpirun_part.index("--")], mpirun_part[mpirun_part.index("--") + 1:]
    assert options[:2] == ["-np", "2"] and ["-x", "AIRFLOW_TF_JOB_ID"] == options[6:8]
    # The user's variables are exported by name; their values come with the launch, not the plan.
    assert ["-x", "MY_SETTING"] == options[8:10] and ["-x", "PYTHONUNBUFFERED"] == options[10:12]
    assert plan.environment_names == ["MY_SETTING"]
    assert '"on"' not in json.dumps(plan.to_json())
    assert options[-3:] == ["--mca", "btl", "^openib"]
    assert rank == ["-m", "airflow_tf.runtime.hvd_rank", "--no-gpu", "train.py", "--lr", "0.1"]
    # mpirun is no rank: mpirun -x hands the job marker on; the ranks get their numbers from MPI.
    assert plan.env_of(node0, mpirun) == {
        "PYTHONUNBUFFERED": "1", "AIRFLOW_TF_JOB_ID": "j", "AIRFLOW_TF_NODE_INDEX": "0",
        "AIRFLOW_TF_NODE_COUNT": "2", "AIRFLOW_TF_WORLD_SIZE": "2", "AIRFLOW_TF_AUTOLOG": "1",
        "TF_USE_LEGACY_KERAS": "1",  # handed on to every rank (hvd_mpirun exports it)
    }


def test_mpirun_argv_adds_allow_run_as_root_only_for_root():
    from airflow_tf.runtime.hvd_mpirun import build_argv

    root = build_argv("hf", ["-np", "2"], ["-m", "x"], is_root=True, python="py", exported=["PYTHONPATH"])
    user = build_argv("hf", ["-np", "2"], ["-m", "x"], is_root=False, python="py", exported=[])
    assert root == ["mpirun", "--hostfile", "hf", "--allow-run-as-root", "-x", "PYTHONPATH", "-np", "2", "py", "-u", "-m", "x"]
    assert "--allow-run-as-root" not in user


@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_plan_is_json(src, backend):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, distributed_backend=backend)
    plan = plan_horovod_job(spec, job_id="j", hosts=["a", "b"])
    again = JobPlan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan
    assert all(isinstance(p.kind, ProcessKind) for n in again.nodes for p in n.processes)
    assert [again.env_of(n, p) for n in again.nodes for p in n.processes] == [
        plan.env_of(n, p) for n in plan.nodes for p in n.processes
    ]
    if backend == "gloo":
        node = again.nodes[1]
        assert again.env_of(node, node.processes[0])["HOROVOD_SIZE"] == "2"


@pytest.mark.parametrize("bad_host", ["10.0.0.1:2222", "", "node a", None])
@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_plan_rejects_malformed_host(src, bad_host, backend):
    # Like the TensorFlow and parameter-server planners: a host is a name or address, no port.
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, distributed_backend=backend)
    with pytest.raises(SpecError, match="host 1 must be a hostname or IPv4 address without port"):
        plan_horovod_job(spec, job_id="j", hosts=["10.0.0.1", bad_host])


def test_plan_rejects_host_count_mismatch(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2)
    with pytest.raises(SpecError, match="node_count is 2 but the backend offered 1 host"):
        plan_horovod_job(spec, job_id="j", hosts=["10.0.0.1"])


def test_gloo_plan_json_size_is_linear_in_ranks(src):
    """2048 ranks (256 nodes x 8): the rendezvous is stated once, so no node but node 0 (which
    hosts the rendezvous and passes it the host layout) names another node's host."""
    hosts = [f"10.{1 + i // 250}.{i % 250 // 10}.{i % 10 + 1}" for i in range(256)]
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=256, process_count_per_node=8)
    plan = plan_horovod_job(spec, job_id="j", hosts=hosts)
    assert plan.world_size == 2048
    assert len(json.dumps(plan.to_json())) <= 2 * 1024 * 1024
    for node in plan.nodes[1:]:
        assert set(re.findall(r"\d+\.\d+\.\d+\.\d+", json.dumps(node.to_json()))) == {node.host}
    last = plan.nodes[-1]
    env = plan.env_of(last, last.processes[-1])
    assert (env["HOROVOD_RANK"], env["HOROVOD_SIZE"], env["HOROVOD_CROSS_RANK"]) == ("2047", "2048", "255")
    assert env["HOROVOD_GLOO_RENDEZVOUS_ADDR"] == hosts[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"distributed_backend": "nccl"}, "distributed_backend must be one of ['gloo', 'mpi'], got 'nccl'"),
        ({"process_count_per_node": 0}, "process_count_per_node must be an integer >= 1, got 0"),
        ({"use_gpu": True, "process_count_per_node": 4, "gpus_per_node": 2},
         "process_count_per_node is 4 but gpus_per_node is 2"),
        ({"distributed_backend": "mpi", "mpirun_options": ["-np", "8"]}, "mpirun_options may not set '-np'"),
        ({"distributed_backend": "mpi", "mpirun_options": ["--host=a,b"]}, "mpirun_options may not set '--host'"),
        ({"distributed_backend": "mpi", "mpirun_options": ["-x", "HOROVOD_RANK=3"]}, "may not export 'HOROVOD_RANK=3'"),
        ({"mpirun_options": ["--mca", "btl", "tcp"]}, "mpirun_options only apply to distributed_backend='mpi'"),
        ({"network_interface": "eth0; rm -rf /"}, "network_interface must be an interface name"),
        ({"start_timeout": 0}, "start_timeout must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_fails_at_parse_time_naming_the_field(src, options, message):
    from airflow_tf import HorovodTrainOperator

    with DAG(dag_id="bad_hvd", schedule=None):
        with pytest.raises(SpecError) as err:
            HorovodTrainOperator(task_id="train", source_directory=src, entry_script="train.py", **options)
    assert message in str(err.value)
