"""Checkpoints that survive restarts, and warm starts from an earlier run (``resume_from``).

Available as ``airflow_tf.runtime.training.checkpoint_dir()`` etc.::

    model.fit(..., callbacks=[training.backup_and_restore(), training.metrics_callback()])

``checkpoint_dir()`` is the same directory for every attempt of a job (``max_restarts``) and every
Airflow retry of the same run: ``<the job's outputs>/checkpoints``, unless the job's environment
sets ``AIRFLOW_TF_CHECKPOINT_DIR``. Nodes on several hosts must share it (an NFS/volume path in
``AIRFLOW_TF_CHECKPOINT_DIR``): Keras' BackupAndRestore and tf.train.CheckpointManager restore
every worker from the one directory. TensorFlow is imported only inside the functions.
"""

from __future__ import annotations

import os
import shutil

CHECKPOINT_VAR = "AIRFLOW_TF_CHECKPOINT_DIR"
RESUME_VAR = "AIRFLOW_TF_RESUME_FROM"
CHECKPOINTS = "checkpoints"
MODEL_SUFFIXES = (".keras", ".weights.h5", ".h5")


def resume_from() -> str | None:
    """The ``resume_from`` path the job was given (an earlier run's outputs, or a model file)."""
    return os.environ.get(RESUME_VAR) or None


def checkpoint_dir() -> str:
    """This job's checkpoint directory, created. On a job's first use, an earlier run's
    checkpoints (``resume_from``'s ``checkpoints/``) are copied in, so the restore callbacks
    continue that run."""
    from airflow_tf.runtime.training import output_dir

    path = os.environ.get(CHECKPOINT_VAR) or os.path.join(output_dir(), CHECKPOINTS)
    earlier = resume_from()
    seed = os.path.join(earlier, CHECKPOINTS) if earlier and os.path.isdir(earlier) else None
    if seed and os.path.isdir(seed) and not os.path.exists(path):
        scratch = f"{path}.seed-{os.getpid()}"
        shutil.copytree(seed, scratch)
        try:
            os.rename(scratch, path)  # atomic: ranks racing here see all of it or none
        except OSError:
            shutil.rmtree(scratch, ignore_errors=True)  # another rank seeded it first
    os.makedirs(path, exist_ok=True)
    return path


def _keras():
    """The Keras the script's models come from: tf_keras under TF_USE_LEGACY_KERAS=1, else Keras 3."""
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tf_keras  # noqa: PLC0415

        return tf_keras
    import keras  # noqa: PLC0415

    return keras


def backup_and_restore(**kwargs):
    """Keras' ``BackupAndRestore`` callback in ``checkpoint_dir()/backup``: a restarted attempt
    continues from the last finished epoch (epoch numbers and metrics go on from there)."""
    kwargs.setdefault("save_freq", "epoch")
    return _keras().callbacks.BackupAndRestore(backup_dir=os.path.join(checkpoint_dir(), "backup"), **kwargs)


def checkpoint_manager(checkpoint, max_to_keep: int = 3, restore: bool = True):
    """For custom loops: a ``tf.train.CheckpointManager`` in ``checkpoint_dir()/tf``, with the
    latest checkpoint restored into ``checkpoint`` when there is one. Call ``manager.save()``
    (on every worker: it is a collective under MultiWorkerMirrored). Under Horovod, restore on
    rank 0 and broadcast: ``restore=hvd.rank() == 0``, then ``hvd.broadcast_variables(...)``."""
    import tensorflow as tf  # noqa: PLC0415

    manager = tf.train.CheckpointManager(checkpoint, os.path.join(checkpoint_dir(), "tf"), max_to_keep=max_to_keep)
    if restore and manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
    return manager


def model_file(path: str | None = None) -> str | None:
    """The model file of ``resume_from`` (or ``path``): itself, or the newest model in that directory."""
    path = path or resume_from()
    if not path:
        return None
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        return None
    found = [os.path.join(path, name) for name in os.listdir(path) if name.endswith(MODEL_SUFFIXES)]
    return max(found, key=os.path.getmtime) if found else None


def warm_start(model) -> str | None:
    """Load ``resume_from``'s weights into ``model`` (same architecture). Returns the file loaded
    (None: no ``resume_from``, nothing loaded). Call it after building (and compiling) the model."""
    found = model_file()
    if found is None:
        if resume_from():
            raise FileNotFoundError(f"resume_from {resume_from()!r} holds no model file ({', '.join(MODEL_SUFFIXES)})")
        return None
    if found.endswith(".weights.h5"):
        model.load_weights(found)
    else:
        model.set_weights(_keras().models.load_model(found, compile=False).get_weights())
    print(f"airflow_tf: warm start from {found}", flush=True)
    return found
