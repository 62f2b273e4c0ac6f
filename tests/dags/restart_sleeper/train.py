"""No TensorFlow: node 1 ends itself at a chosen step, by SIGKILL or with an exit code; every
other rank steps until --steps (the restart policy tests: the wait task is what is under test)."""

import argparse
import os
import signal
import time

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--fail-at", type=int, default=2)
parser.add_argument("--code", type=int, default=-9, help="-9: SIGKILL itself; else exit with it")
args = parser.parse_args()
rank = int(os.environ["AIRFLOW_TF_RANK"])
for step in range(args.steps):
    print(f"rank {rank} step {step}", flush=True)
    if rank == 1 and step == args.fail_at:
        if args.code == -9:
            os.kill(os.getpid(), signal.SIGKILL)
        raise SystemExit(args.code)
    time.sleep(0.2)
