"""One MPI rank: map OpenMPI's rank variables to ours, pick the rank's GPU, run the script with
every output line prefixed ``[rank R]``.

    mpirun ... python -u -m airflow_tf.runtime.hvd_rank --use-gpu|--no-gpu SCRIPT ARGS...
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from airflow_tf.runtime.rank_env import airflow_env


def rank_env(environ: dict[str, str], *, use_gpu: bool) -> dict[str, str]:
    """The rank's environment: OpenMPI's numbers in the names every other rank gets."""
    env = dict(environ)
    local_rank = environ.get("OMPI_COMM_WORLD_LOCAL_RANK", "0")
    env.update(airflow_env(
        job_id=environ.get("AIRFLOW_TF_JOB_ID", ""),
        node_index=environ.get("AIRFLOW_TF_NODE_INDEX"),
        node_count=environ.get("AIRFLOW_TF_NODE_COUNT", "1"),
        world_size=environ.get("OMPI_COMM_WORLD_SIZE", "1"),
        rank=int(environ.get("OMPI_COMM_WORLD_RANK", "0")), local_rank=int(local_rank),
    ))
    env["CUDA_VISIBLE_DEVICES"] = local_rank if use_gpu else ""
    return env


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("--use-gpu", "--no-gpu") or len(argv) < 2:
        print("usage: hvd_rank --use-gpu|--no-gpu SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    env = rank_env(dict(os.environ), use_gpu=argv[0] == "--use-gpu")
    prefix = f"[rank {env['AIRFLOW_TF_RANK']}] ".encode()
    # Through user_script, as the launcher runs every other rank: Horovod's Keras fixes, autolog.
    child = subprocess.Popen([sys.executable, "-u", "-m", "airflow_tf.runtime.user_script", *argv[1:]], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    for line in iter(child.stdout.readline, b""):
        sys.stdout.buffer.write(prefix + (line if line.endswith(b"\n") else line + b"\n"))
        sys.stdout.buffer.flush()
    return child.wait() if child.wait() >= 0 else 128 - child.returncode


if __name__ == "__main__":
    sys.exit(main())
