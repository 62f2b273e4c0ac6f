"""HorovodTrainOperator through real Airflow (dag.test) with real Horovod over Gloo and MPI."""

import os
import re

import pytest

from tests.helpers import job_pids
from tests.integration.dagrun import task_states, xcom
from tests.integration.test_tensorflow_dag import REPO, load_dag

pytestmark = pytest.mark.integration

MATRIX = os.path.join(REPO, "tests", "dags", "hvd_matrix.py")


# local_size: under Gloo every node is its own Horovod host; MPI counts real hosts, and the
# local backend's nodes all share one, so MPI's 2 x 1 has local size 2.
@pytest.mark.parametrize(
    ("dag_id", "world_size", "local_size"),
    [("hvd_gloo_1x2", 2, 2), ("hvd_gloo_2x1", 2, 1), ("hvd_mpi_2x1", 2, 2), ("hvd_mpi_1x2", 2, 2)],
)
def test_ranks_train_in_sync(airflow_db, capfd, dag_id, world_size, local_size):
    dag = load_dag(MATRIX, dag_id)
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "success", output[-3000:]

    joined = re.findall(r"horovod rank (\d) of (\d), local (\d)/(\d)", output)
    assert sorted(int(rank) for rank, *_ in joined) == list(range(world_size))
    assert {int(size) for _, size, *_ in joined} == {world_size}
    assert {int(size) for *_, size in joined} == {local_size}
    # Every rank ends with the same weights: the broadcast aligned them and allreduce kept them so.
    checksums = re.findall(r"final weights checksum ([0-9a-f]{16})", output)
    assert len(checksums) == world_size and len(set(checksums)) == 1
    results = xcom(dag.dag_id, run.run_id, "train.wait")
    assert os.path.exists(results["model_path"])
    assert job_pids(results["job_id"]) == []


@pytest.mark.parametrize("backend", ["gloo", "mpi"])
def test_one_failing_rank_stops_every_rank(airflow_db, capfd, backend):
    dag = load_dag(MATRIX, f"hvd_fail_{backend}")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "failed"
    assert task_states(dag.dag_id, run.run_id)[("train.wait", -1)] == "failed"
    assert "rank 1: simulated crash" in output.split("Last lines of node")[1]
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == []


def test_a_rank_that_never_joins_is_named(airflow_db, capfd):
    dag = load_dag(MATRIX, "hvd_stall")
    run = dag.test()
    output = capfd.readouterr().out
    assert run.state == "failed"
    tail = output.split("Last lines of node 0")[1]
    assert "start timeout after 15s: never joined: node1-127.0.0.1: rank(s) [1]" in tail
    plan = xcom(dag.dag_id, run.run_id, "train.plan", key="plan")
    assert job_pids(plan["job_id"]) == []


def test_example_dag_gloo_mpi_keras_and_mpi4py(airflow_db, capfd):
    dag = load_dag(os.path.join(REPO, "dags", "tf_horovod_example.py"), "tf_horovod_example")
    run = dag.test(run_conf={"epochs": 2})
    output = capfd.readouterr().out
    assert run.state == "success"
    for rank in (0, 1):
        assert f"[node 0 mpirun] [rank {rank}] horovod rank {rank} of 2" in output  # Keras API over MPI
        assert f"[node 0 mpirun] [rank {rank}] mpi4py rank {rank} of 2: allreduce sum 3 (expected 3)" in output
    for group in ("gloo_tf2_loop", "mpi_keras_fit"):
        results = xcom(dag.dag_id, run.run_id, f"{group}.wait")
        assert os.path.exists(results["model_path"])
        assert job_pids(results["job_id"]) == []
