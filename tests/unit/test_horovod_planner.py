"""Horovod planning: rank assignment (checked against Horovod's own runner), Gloo env, hostfile,
mpirun command, and bad input."""

import json

import pytest
from airflow.sdk import DAG

from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.horovod import assign_slots, hostfile_text, plan_horovod_job
from airflow_tf.cluster.spec import HorovodSpec


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


def test_gloo_plan_env_per_rank(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, process_count_per_node=2,
                       script_params={"--lr": 0.1}, network_interface="eth0")
    plan = plan_horovod_job(spec, job_id="j", hosts=["10.0.0.1", "10.0.0.2"], free_ports={"10.0.0.1": [7000]})
    assert plan.success_rule == "all_ranks_zero" and plan.world_size == 4
    node0, node1 = plan.nodes
    workers0 = [r for r in node0.ranks if r.role == "worker"]
    assert [r.env["HOROVOD_RANK"] for r in workers0] == ["0", "1"]
    assert [r.env["HOROVOD_RANK"] for r in node1.ranks] == ["2", "3"]
    assert {r.env["HOROVOD_GLOO_RENDEZVOUS_ADDR"] for r in workers0 + node1.ranks} == {"10.0.0.1"}
    assert {r.env["HOROVOD_GLOO_RENDEZVOUS_PORT"] for r in workers0 + node1.ranks} == {"7000"}
    assert node1.ranks[1].env["HOROVOD_CROSS_RANK"] == "1" and node1.ranks[1].env["HOROVOD_LOCAL_RANK"] == "1"
    assert node0.env["HOROVOD_GLOO_IFACE"] == "eth0"
    # Node 0 also hosts the rendezvous, as a daemon (it serves until the ranks are done).
    (rendezvous,) = [r for r in node0.ranks if r.role == "rendezvous"]
    assert rendezvous.daemon and rendezvous.command[:2] == ["-m", "airflow_tf.runtime.hvd_rendezvous"]
    assert "node0-10.0.0.1:2,node1-10.0.0.2:2" in rendezvous.command
    assert all(r.env["CUDA_VISIBLE_DEVICES"] == "" for r in workers0)


def test_gpu_ranks_see_their_local_gpu(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=1, process_count_per_node=2,
                       use_gpu=True, gpus_per_node=2)
    plan = plan_horovod_job(spec, job_id="j", hosts=["h"])
    assert [r.env["CUDA_VISIBLE_DEVICES"] for r in plan.nodes[0].ranks if r.role == "worker"] == ["0", "1"]


def test_mpi_plan_runs_mpirun_on_node_0_only(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, distributed_backend="mpi",
                       script_params={"--lr": 0.1}, mpirun_options=["--mca", "btl", "^openib"])
    plan = plan_horovod_job(spec, job_id="j", hosts=["10.0.0.1", "10.0.0.2"])
    node0, node1 = plan.nodes
    assert node1.ranks == []
    (mpirun,) = node0.ranks
    command = mpirun.command
    assert command[:2] == ["-m", "airflow_tf.runtime.hvd_mpirun"]
    assert command[command.index("--hostfile-text") + 1] == "10.0.0.1 slots=1\n10.0.0.2 slots=1\n"
    mpirun_part = command[command.index("--") + 1:]
    options, rank = mpirun_part[: mpirun_part.index("--")], mpirun_part[mpirun_part.index("--") + 1:]
    assert options[:2] == ["-np", "2"] and ["-x", "AIRFLOW_TF_JOB_ID"] == options[6:8]
    assert options[-3:] == ["--mca", "btl", "^openib"]
    assert rank == ["-m", "airflow_tf.runtime.hvd_rank", "--no-gpu", "train.py", "--lr", "0.1"]


def test_mpirun_argv_adds_allow_run_as_root_only_for_root():
    from airflow_tf.runtime.hvd_mpirun import build_argv

    root = build_argv("hf", ["-np", "2"], ["-m", "x"], is_root=True, python="py", exported=["PYTHONPATH"])
    user = build_argv("hf", ["-np", "2"], ["-m", "x"], is_root=False, python="py", exported=[])
    assert root == ["mpirun", "--hostfile", "hf", "--allow-run-as-root", "-x", "PYTHONPATH", "-np", "2", "py", "-u", "-m", "x"]
    assert "--allow-run-as-root" not in user


def test_plan_is_json(src):
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2)
    plan = plan_horovod_job(spec, job_id="j", hosts=["a", "b"])
    assert json.loads(json.dumps(plan.to_json()))["nodes"][0]["ranks"][0]["env"]["HOROVOD_SIZE"] == "2"


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
