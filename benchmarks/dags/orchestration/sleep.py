"""A rank that only sleeps (orchestration benchmark): the node span is known and costs no CPU.
Rank 0 logs an epoch record per second of it, as a training script does (so the job ends the
way real ones do: results with a history, curves drawn)."""

import argparse
import math
import os
import time

from airflow_tf.runtime.training import is_chief, log_metrics

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=10.0)
args = parser.parse_args()
print(f"rank {os.environ.get('AIRFLOW_TF_RANK')} sleeping {args.seconds:g} s", flush=True)
epochs = max(1, math.ceil(args.seconds))
for epoch in range(1, epochs + 1):
    time.sleep(args.seconds / epochs)
    if is_chief():
        log_metrics(epoch, {"loss": 1.0 / epoch, "accuracy": 1.0 - 1.0 / (epoch + 1)}, epochs=epochs)
print("done", flush=True)
