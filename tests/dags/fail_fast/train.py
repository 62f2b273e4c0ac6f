"""Stand-in training script for the fail-fast test: worker 1 fails after its first epoch while
worker 0 is stuck in a long one. Plain Python: the orchestration is what is under test."""

import os
import sys
import time

rank = int(os.environ["AIRFLOW_TF_RANK"])
print(f"worker {rank}: epoch 1/3 done", flush=True)
if rank == 1:
    print("worker 1: simulated failure: loss is NaN", flush=True)
    sys.exit(3)
print("worker 0: epoch 2/3 (a very long epoch)", flush=True)
time.sleep(int(os.environ.get("LONG_EPOCH_S", "600")))
print("worker 0: woke up", flush=True)
