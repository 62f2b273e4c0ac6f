"""A deterministic toy objective for sweep tests: no TensorFlow, fast.

loss(epoch) = (x - 0.3)^2 + (y + 0.2)^2 + bad + 1 / epoch, logged per epoch with airflow-tf's
log_metrics, so the sampler's and the policy's behaviour can be asserted exactly. ``--stamps``
names a folder where the process writes its own start and end times (to observe concurrency).
"""

import argparse
import os
import time

from airflow_tf.runtime.training import log_metrics

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--y", type=float, default=0.0)
parser.add_argument("--bad", type=float, default=0.0)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--epoch-seconds", type=float, default=0.0)
parser.add_argument("--stamps", default="")
parser.add_argument("--metric", default="loss")
args = parser.parse_args()

stamp = os.path.join(args.stamps, f"{os.getpid()}.txt") if args.stamps else None
if stamp:
    os.makedirs(args.stamps, exist_ok=True)
    with open(stamp, "w") as f:
        f.write(f"{time.time()}\n")
base = (args.x - 0.3) ** 2 + (args.y + 0.2) ** 2 + args.bad
for epoch in range(1, args.epochs + 1):
    time.sleep(args.epoch_seconds)
    log_metrics(epoch, {args.metric: base + 1.0 / epoch}, epochs=args.epochs)
if stamp:
    with open(stamp, "a") as f:
        f.write(f"{time.time()}\n")
