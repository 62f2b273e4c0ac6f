"""A rank that only sleeps (orchestration benchmark): the node span is known and costs no CPU."""

import argparse
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=10.0)
args = parser.parse_args()
print(f"rank {os.environ.get('AIRFLOW_TF_RANK')} sleeping {args.seconds:g} s", flush=True)
time.sleep(args.seconds)
print("done", flush=True)
