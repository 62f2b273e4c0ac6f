"""Helpers a training script may use. TensorFlow is imported inside the functions that need it.

    from airflow_tf.runtime import training
    strategy = training.strategy_from_env()
    ...
    model.fit(..., callbacks=[training.metrics_callback()])
    training.save_model(model, "model.keras")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any

from airflow_tf.runtime import node_files


def tf_config() -> dict | None:
    raw = os.environ.get("TF_CONFIG")
    return json.loads(raw) if raw else None


def rank() -> int:
    """Ours, else Horovod's or OpenMPI's (a script started by horovodrun / mpirun by hand)."""
    for name in ("AIRFLOW_TF_RANK", "HOROVOD_RANK", "OMPI_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def world_size() -> int:
    return int(os.environ.get("AIRFLOW_TF_WORLD_SIZE", "1"))


def is_chief() -> bool:
    """Worker 0 under MultiWorkerMirrored; the single process otherwise."""
    if "AIRFLOW_TF_IS_CHIEF" in os.environ:
        return os.environ["AIRFLOW_TF_IS_CHIEF"] == "1"
    config = tf_config()
    if not config:
        return True
    task = config["task"]
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0 and "chief" not in config["cluster"])


def output_dir() -> str:
    """Where the chief writes what the job produces (the estimator's ``./outputs``)."""
    path = os.environ.get("AIRFLOW_TF_OUTPUT_DIR", os.path.abspath(node_files.OUTPUTS))
    os.makedirs(path, exist_ok=True)
    return path


def node_dir() -> str:
    return os.environ.get("AIRFLOW_TF_NODE_DIR", os.getcwd())


def strategy_from_env():
    """The tf.distribute strategy TF_CONFIG calls for (default strategy for a single process).

    Create it before building the model: MultiWorkerMirroredStrategy must be created first thing.
    """
    import tensorflow as tf  # noqa: PLC0415 - lazy: the runtime package stays stdlib-only

    config = tf_config()
    if config and len(config["cluster"].get("worker", [])) + len(config["cluster"].get("chief", [])) > 1:
        if "ps" in config["cluster"]:
            resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
            return tf.distribute.ParameterServerStrategy(resolver)
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def role() -> str:
    """chief / worker / ps / evaluator from TF_CONFIG ("worker" for single-process runs)."""
    config = tf_config()
    return config["task"]["type"] if config else "worker"


def serve_unless_chief() -> None:
    """In a parameter-server script: ps and worker tasks serve here and never return.

    The chief (and an evaluator) return and go on with the script. Call it before anything
    else touches TensorFlow's distribution state.
    """
    if role() in ("ps", "worker") and tf_config() and "ps" in tf_config()["cluster"]:
        from airflow_tf.runtime.tf_server import serve  # noqa: PLC0415

        os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
        serve(tf_config())
        raise SystemExit(0)


def log_metrics(epoch: int, metrics: dict[str, Any], *, epochs: int | None = None) -> None:
    """Append one epoch's metrics as a JSON line to this rank's metrics file (for custom loops)."""
    record = {"epoch": epoch, "rank": rank(), "time": round(time.time(), 3)}
    if epochs is not None:
        record["epochs"] = epochs
    record.update({key: float(value) for key, value in metrics.items()})
    path = os.path.join(node_dir(), node_files.metrics_file(rank()))
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _scalars(logs: dict[str, Any] | None) -> dict[str, float]:
    """The logs' numbers (a metric that is not one scalar is left out, never an error)."""
    scalars = {}
    for key, value in (logs or {}).items():
        try:
            scalars[key] = float(value)
        except (TypeError, ValueError):
            pass
    return scalars


def metrics_callback(base=None):
    """A Keras callback that calls ``log_metrics`` at the end of every epoch.

    It subclasses ``base``, by default ``tf.keras.callbacks.Callback`` (tf_keras when
    TF_USE_LEGACY_KERAS=1, Keras 3 otherwise), so it fits whichever ``fit`` the script uses.
    The node runtime adds one to every ``fit`` by itself (``runtime.autolog``) and skips that
    when the script passed this one: nothing is logged twice.
    """
    if base is None:
        import tensorflow as tf  # noqa: PLC0415

        base = tf.keras.callbacks.Callback

    class MetricsLogger(base):
        AIRFLOW_TF_METRICS = True  # runtime.autolog.MARK

        def on_epoch_end(self, epoch, logs=None):
            log_metrics(epoch + 1, _scalars(logs), epochs=(self.params or {}).get("epochs"))

    return MetricsLogger()


def tensorboard_dir() -> str:
    """The job's TensorBoard log directory (``outputs/tensorboard``), recorded in the results."""
    path = os.path.join(output_dir(), "tensorboard")
    os.makedirs(path, exist_ok=True)
    if is_chief():
        with open(os.path.join(node_dir(), node_files.TENSORBOARD_DIR), "w") as f:
            f.write(path)
    return path


def tensorboard_callback(**kwargs):
    """``tf.keras.callbacks.TensorBoard`` writing to the job's TensorBoard directory.

    Under MultiWorkerMirrored, tf_keras' callback writes the chief's summaries there and the
    other workers' to temporary directories it removes.
    """
    import tensorflow as tf  # noqa: PLC0415

    return tf.keras.callbacks.TensorBoard(log_dir=tensorboard_dir(), **kwargs)


def save_model(model, filename: str = "model.keras") -> str | None:
    """Save on every worker, as MultiWorkerMirrored requires; only the chief's copy is kept.

    Saving is a collective under MultiWorkerMirroredStrategy: a chief that saves while the other
    workers do not waits forever. So every worker saves, non-chiefs into a scratch directory that
    is deleted right after. Returns the chief's path (None on other workers).
    """
    if is_chief():
        path = os.path.join(output_dir(), filename)
        model.save(path)
        with open(os.path.join(node_dir(), node_files.MODEL_PATH), "w") as f:
            f.write(path)
        return path
    scratch = tempfile.mkdtemp(prefix=f"airflow-tf-rank{rank()}-")
    try:
        model.save(os.path.join(scratch, filename))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return None


# Checkpoints across restarts and warm starts from an earlier run (runtime/checkpoints.py).
from airflow_tf.runtime.checkpoints import (  # noqa: E402
    backup_and_restore,
    checkpoint_dir,
    checkpoint_manager,
    resume_from,
    warm_start,
)

