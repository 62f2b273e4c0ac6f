"""Horovod over Gloo: in the job's first attempt rank 1 is SIGKILLed after two allreduce rounds
(a preemption); the restarted attempt runs five rounds and ends. The attempt is told by a marker
in the job's outputs directory, which every attempt shares."""

import os
import signal
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import horovod.tensorflow as hvd  # noqa: E402
import tensorflow as tf  # noqa: E402

from airflow_tf.runtime import training  # noqa: E402

hvd.init()
marker = os.path.join(training.output_dir(), f"killed-rank{hvd.rank()}")
print(f"rank {hvd.rank()} of {hvd.size()} joined", flush=True)
for step in range(5):
    total = hvd.allreduce(tf.constant(1.0), op=hvd.Sum)
    print(f"rank {hvd.rank()} step {step} sum {float(total)}", flush=True)
    if hvd.rank() == 1 and step == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)
