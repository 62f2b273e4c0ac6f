"""Node 0 of an MPI Horovod job: write the planned hostfile and exec ``mpirun``.

    python -m airflow_tf.runtime.hvd_mpirun --hostfile-text TEXT -- MPIRUN_OPTIONS -- RANK_COMMAND

What only the node can know is added here: ``--allow-run-as-root`` when running as root (never
otherwise), and the interpreter that runs the ranks. mpirun replaces this process, so the node
runtime's SIGTERM reaches mpirun, which stops every rank on every host.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from airflow_tf.runtime import node_files


def build_argv(hostfile: str, mpirun_options: list[str], rank_command: list[str], *, is_root: bool,
               python: str, exported: list[str]) -> list[str]:
    argv = ["mpirun", "--hostfile", hostfile]
    if is_root:
        argv.append("--allow-run-as-root")
    for name in exported:  # the ranks on other hosts need these too
        argv += ["-x", name]
    return [*argv, *mpirun_options, python, "-u", *rank_command]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="airflow_tf.runtime.hvd_mpirun")
    parser.add_argument("--hostfile-text", required=True)
    split = argv.index("--")
    args = parser.parse_args(argv[:split])
    rest = argv[split + 1:]
    second = rest.index("--")
    mpirun_options, rank_command = rest[:second], rest[second + 1:]

    if shutil.which("mpirun") is None:
        print("mpirun not found on this node: install OpenMPI (Debian: openmpi-bin)", file=sys.stderr)
        return 127
    node_dir = os.environ.get("AIRFLOW_TF_NODE_DIR", os.getcwd())
    hostfile = os.path.join(node_dir, node_files.HOSTFILE)
    with open(hostfile, "w") as f:
        f.write(args.hostfile_text)
    exported = [name for name in ("PYTHONPATH", "PATH", "AIRFLOW_TF_NODE_DIR", "AIRFLOW_TF_OUTPUT_DIR",
                                 "AIRFLOW_TF_NODE_COUNT", "AIRFLOW_TF_AUTOLOG", "TF_USE_LEGACY_KERAS")
                if name in os.environ]
    final = build_argv(hostfile, mpirun_options, rank_command, is_root=os.geteuid() == 0,
                       python=sys.executable, exported=exported)
    print("mpirun:", " ".join(final), flush=True)
    os.execvp(final[0], final)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
