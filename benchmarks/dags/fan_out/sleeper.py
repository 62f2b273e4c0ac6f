"""A node that only waits, for benchmarks/fan_out.py: no TensorFlow, one rank per node.

Writes the wall time it came up to <hold-dir>/up-<rank> (atomically), prints one line (so the
wait trigger has something to stream and saves its offsets on its first poll), then sleeps until
<hold-dir>/release exists or --max-s seconds have passed (a benchmark that died must not leave
nodes behind for long), and exits 0.
"""

import argparse
import os
import time

started = time.time()
parser = argparse.ArgumentParser()
parser.add_argument("--hold-dir", required=True)
parser.add_argument("--max-s", type=float, default=600.0)
args = parser.parse_args()
rank = int(os.environ["AIRFLOW_TF_RANK"])
path = os.path.join(args.hold_dir, f"up-{rank}")
with open(path + ".tmp", "w") as f:
    f.write(repr(started))
os.replace(path + ".tmp", path)
print(f"rank {rank} up", flush=True)
release = os.path.join(args.hold_dir, "release")
while not os.path.exists(release) and time.time() - started < args.max_s:
    time.sleep(0.5)
print(f"rank {rank} released after {time.time() - started:.1f} s", flush=True)
