"""Rank 1 is stuck before hvd.init() (say, loading data forever): it never joins."""

import os
import time

if os.environ.get("HOROVOD_RANK") == "1":
    print("rank 1: stuck before joining", flush=True)
    time.sleep(600)
import horovod.tensorflow as hvd  # noqa: E402

hvd.init()
print(f"rank {hvd.rank()} joined", flush=True)
