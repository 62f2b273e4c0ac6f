"""Rank 1 fails after its first allreduce round; rank 0 would go on for 10 minutes."""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import horovod.tensorflow as hvd  # noqa: E402
import tensorflow as tf  # noqa: E402

hvd.init()
print(f"rank {hvd.rank()} of {hvd.size()} joined", flush=True)
for step in range(600):
    total = hvd.allreduce(tf.constant(1.0), op=hvd.Sum)
    if step == 0:
        print(f"step 0 allreduce sum {float(total)}", flush=True)
    if hvd.rank() == 1 and step == 1:
        print("rank 1: simulated crash", flush=True)
        sys.exit(5)
    time.sleep(1)
