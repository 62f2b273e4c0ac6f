"""Stand-in training for the watch-side fault tests: numbered lines and metrics records, written
the awkward ways real scripts write them. Plain Python: the trigger is what is under test.

--lines N --interval S   print ``rank R line K`` for K in 0..N-1, S seconds apart
--epochs E               a metrics record after every N/E lines, written in two pieces
                         (``--split-pause`` seconds between them: a half-written record)
--garbage                one line that is not JSON in the metrics file, before the first record
--until-file PATH        after the numbered lines, keep printing until PATH exists
--big-metrics-mb M       first, M MiB of small per-step records (a metrics file past 16 MiB)
"""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lines", type=int, default=20)
parser.add_argument("--interval", type=float, default=0.1)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--split-pause", type=float, default=0.0)
parser.add_argument("--garbage", action="store_true")
parser.add_argument("--until-file")
parser.add_argument("--big-metrics-mb", type=float, default=0)
args = parser.parse_args()

rank = int(os.environ["AIRFLOW_TF_RANK"])
path = os.path.join(os.environ["AIRFLOW_TF_NODE_DIR"], f"metrics-rank{rank}.jsonl")
metrics = open(path, "a", buffering=1 << 16)


def record(epoch: int) -> str:
    return json.dumps({"epoch": epoch, "epochs": args.epochs, "rank": rank, "loss": 1.0 / (epoch + 1),
                       "time": round(time.time(), 3)}, sort_keys=True) + "\n"


if args.big_metrics_mb:
    steps, written = 0, 0
    while written < args.big_metrics_mb * (1 << 20):
        line = json.dumps({"epoch": 0, "rank": rank, "step": steps, "loss": 1.0 / (steps + 1)}) + "\n"
        metrics.write(line)
        written += len(line)
        steps += 1
    metrics.flush()
    print(f"rank {rank}: wrote {steps} step records ({written} bytes)", flush=True)
if args.garbage:
    metrics.write("this is not JSON\n")
    metrics.flush()

per_epoch = max(1, args.lines // max(1, args.epochs))
epoch = 0
for k in range(args.lines):
    print(f"rank {rank} line {k}", flush=True)
    if (k + 1) % per_epoch == 0 and epoch < args.epochs:
        epoch += 1
        text = record(epoch)
        half = len(text) // 2
        metrics.write(text[:half])  # a plain write of part of the record ...
        metrics.flush()
        time.sleep(args.split_pause)  # ... the trigger polls meanwhile ...
        metrics.write(text[half:])  # ... and the rest, newline last
        metrics.flush()
    time.sleep(args.interval)
tick = 0
while args.until_file and not os.path.exists(args.until_file):
    print(f"rank {rank} waiting {tick}", flush=True)
    tick += 1
    time.sleep(0.2)
print(f"rank {rank} done", flush=True)
