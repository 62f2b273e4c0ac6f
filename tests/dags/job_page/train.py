"""Stand-in for training, for the job page tests: every rank 'trains' --epochs epochs of
--seconds each and logs made-up loss/accuracy through the runtime's helpers; the chief records a
TensorBoard directory and saves a small 'model' file. No TensorFlow: the page, not TF, is tested."""

import argparse
import os
import socket
import time

from airflow_tf.runtime import node_files, training

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--seconds", type=float, default=1.0)
args = parser.parse_args()
rank = training.rank()


def gang_barrier(timeout: float = 300.0) -> None:
    """Start together, as a real multi-worker job does (its collectives wait for every worker):
    listen on this task's TF_CONFIG port, then wait until every other worker's port answers."""
    config = training.tf_config()
    workers = config["cluster"]["worker"]
    own = workers[config["task"]["index"]]
    server = socket.create_server(("", int(own.rpartition(":")[2])))
    server.listen(len(workers))
    deadline = time.monotonic() + timeout
    for address in workers:
        host, _, port = address.rpartition(":")
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"worker {address} never came up")
                time.sleep(0.2)
    gang_barrier.server = server  # kept open: a peer still checking must find it


gang_barrier()
if training.is_chief():
    training.tensorboard_dir()
for epoch in range(1, args.epochs + 1):
    time.sleep(args.seconds)
    loss = 1.0 / (epoch + rank)
    training.log_metrics(epoch, {"loss": loss, "accuracy": 1.0 - loss / 2}, epochs=args.epochs)
    print(f"rank {rank} ({training.role()}): epoch {epoch}/{args.epochs} loss={loss:.4f}", flush=True)
if training.is_chief():
    path = os.path.join(training.output_dir(), "model.txt")
    with open(path, "w") as f:
        f.write(f"a model of {args.epochs} epochs\n")
    with open(os.path.join(training.node_dir(), node_files.MODEL_PATH), "w") as f:
        f.write(path)
print(f"rank {rank}: token is {os.environ.get('JOB_PAGE_TOKEN')}", flush=True)  # a careless script
