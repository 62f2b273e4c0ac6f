"""Stand-in for a long training run: prints an epoch line every second."""

import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=int, default=600)
args = parser.parse_args()
rank = os.environ["AIRFLOW_TF_RANK"]
for second in range(args.seconds):
    print(f"worker {rank}: step {second}", flush=True)
    time.sleep(1)
