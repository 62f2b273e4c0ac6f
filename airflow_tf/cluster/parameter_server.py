"""Parameter-server plans: one chief (coordinator), workers and ps tasks, plus an optional
evaluator, spread over the nodes, each task with its own port and TF_CONFIG.

Placement is round-robin in the order chief, ps..., workers..., evaluator: task i goes to node
i % node_count, so the chief is on node 0 and ps and workers alternate across nodes. The seed's
example (node_count=2, worker_count=2, parameter_server_count=1) gives node 0: chief, worker 0;
node 1: ps 0, worker 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from airflow_tf.cluster import tf_config as tfc
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.plan import CHIEF_ZERO, PARAMETER_SERVER, JobPlan, NodePlan, RankPlan, _check_hosts
from airflow_tf.cluster.ports import assign_ports
from airflow_tf.cluster.spec import ParameterServerSpec

# The module a node runtime runs to serve a ps/worker task itself (server_mode="runtime").
RUNTIME_SERVER = ["-m", "airflow_tf.runtime.tf_server"]


def task_list(spec: ParameterServerSpec) -> list[tuple[str, int]]:
    """(role, index) in placement order."""
    tasks = [("chief", 0)]
    tasks += [("ps", i) for i in range(spec.parameter_server_count)]
    tasks += [("worker", i) for i in range(spec.worker_count)]
    if spec.evaluator:
        tasks.append(("evaluator", 0))
    return tasks


def plan_parameter_server_job(
    spec: ParameterServerSpec,
    *,
    job_id: str,
    hosts: Sequence[str],
    free_ports: Mapping[str, Sequence[int]] | None = None,
) -> JobPlan:
    _check_hosts(spec, hosts)
    tasks = task_list(spec)
    placement = [i % spec.node_count for i in range(len(tasks))]
    task_hosts = [hosts[node] for node in placement]
    ports = assign_ports(task_hosts, free_ports=free_ports)
    address = {task: f"{host}:{port}" for task, host, port in zip(tasks, task_hosts, ports)}
    # The evaluator is not a member of the training cluster: TF hangs waiting for it otherwise
    # (tensorflow/tensorflow#46169). It gets the training cluster in its TF_CONFIG, no more.
    cluster = {
        role: [address[(r, i)] for r, i in tasks if r == role] for role in ("chief", "worker", "ps")
    }
    world_size = len(tasks)
    per_node: list[list[RankPlan]] = [[] for _ in hosts]
    for rank, ((role, index), node) in enumerate(zip(tasks, placement)):
        env = {
            "AIRFLOW_TF_JOB_ID": job_id,
            "AIRFLOW_TF_NODE_INDEX": str(node),
            "AIRFLOW_TF_RANK": str(rank),
            "AIRFLOW_TF_LOCAL_RANK": str(len(per_node[node])),
            "AIRFLOW_TF_WORLD_SIZE": str(world_size),
            "AIRFLOW_TF_ROLE": role,
            "AIRFLOW_TF_IS_CHIEF": "1" if role == "chief" else "0",
            "TF_CONFIG": tfc.dumps(
                {"cluster": cluster, "task": {"type": "evaluator", "index": 0}}
                if role == "evaluator" else tfc.tf_config(cluster, role, index)
            ),
        }
        if not spec.use_gpu or role == "ps":
            env["CUDA_VISIBLE_DEVICES"] = ""  # ps tasks hold variables, they need no GPU
        command = None
        if role in ("ps", "worker") and spec.server_mode == "runtime":
            command = list(RUNTIME_SERVER)
        elif role == "evaluator" and spec.evaluator_script:
            command = [spec.evaluator_script, *script_argv(spec.script_params)]
        per_node[node].append(
            RankPlan(
                rank=rank,
                local_rank=len(per_node[node]),
                label=f"node {node} {role} {index}" if role != "chief" else f"node {node} chief",
                env=env,
                role=role,
                command=command,
                daemon=role != "chief",
                max_restarts=spec.max_worker_restarts if role == "worker" else 0,
            )
        )
    nodes = [
        NodePlan(
            job_id=job_id,
            node_index=node,
            host=host,
            script=spec.entry_script,
            script_args=script_argv(spec.script_params),
            env={"PYTHONUNBUFFERED": "1", **spec.environment_variables},
            ranks=per_node[node],
            pip_packages=list(spec.pip_packages),
            use_gpu=spec.use_gpu,
            node_count=spec.node_count,
        )
        for node, host in enumerate(hosts)
    ]
    return JobPlan(
        job_id=job_id,
        strategy=PARAMETER_SERVER,
        success_rule=CHIEF_ZERO,
        world_size=world_size,
        source_directory=spec.source_directory,
        nodes=nodes,
    )
