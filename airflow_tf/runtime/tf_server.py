"""Serve this task's part of a parameter-server cluster: start ``tf.distribute.Server`` from
TF_CONFIG and block. Run by the node runtime for ps/worker tasks when server_mode="runtime",
and by ``training.serve_unless_chief()`` from a user's script in server_mode="script"."""

from __future__ import annotations

import json
import os
import sys


def serve(config: dict) -> None:
    import tensorflow as tf  # noqa: PLC0415 - lazy: the runtime package stays stdlib-only

    task = config["task"]
    server = tf.distribute.Server(
        tf.train.ClusterSpec(config["cluster"]),
        job_name=task["type"],
        task_index=task["index"],
        protocol="grpc",
        start=True,
    )
    print(f"{task['type']} {task['index']}: serving at {server.target}", flush=True)
    server.join()  # until the node runtime stops us


def main() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        print("TF_CONFIG is not set: nothing to serve", file=sys.stderr)
        return 2
    config = json.loads(raw)
    if config["task"]["type"] not in ("ps", "worker"):
        print(f"tf_server serves ps and worker tasks, not {config['task']['type']!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # servers' session dumps drown the job log
    serve(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
