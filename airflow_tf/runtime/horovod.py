"""Keras 3 / TF 2.21 workarounds for Horovod 0.28.1 scripts. Imports TensorFlow and Horovod
lazily, inside each function.

Plain TF2 Horovod with Keras 3 models: Horovod's ``DistributedGradientTape`` and
``broadcast_variables`` expect ``tf.Variable``s, but Keras 3 hands out its own ``keras.Variable``
wrappers (``'Variable' object has no attribute 'ref'``). Pass the backing variables instead:

    with tf.GradientTape() as tape:
        loss = ...
    grads = horovod.allreduce_gradients(tape, loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    horovod.broadcast_variables(model.variables, root_rank=0)   # after the first step

``horovod.tensorflow.keras`` needs tf_keras (``TF_USE_LEGACY_KERAS=1`` before TensorFlow is
imported) and its module-level ``K`` pointed at ``tf_keras.backend``: use ``legacy_keras()``.
Scripts run by airflow-tf's node runtime need neither: ``runtime.keras_compat`` does both as
import hooks (and so does ``python -m airflow_tf.runtime.user_script SCRIPT`` under horovodrun).
"""

from __future__ import annotations

import os


def backing_variables(variables):
    """The tf.Variables behind Keras 3 variables (tf.Variables pass through)."""
    import keras  # noqa: PLC0415

    return [v.value if isinstance(v, keras.Variable) else v for v in variables]


def allreduce_gradients(tape, loss, variables):
    """Gradients of ``loss`` averaged over all ranks (DistributedGradientTape on backing vars)."""
    import horovod.tensorflow as hvd  # noqa: PLC0415

    return hvd.DistributedGradientTape(tape).gradient(loss, backing_variables(variables))


def broadcast_variables(variables, root_rank: int = 0) -> None:
    import horovod.tensorflow as hvd  # noqa: PLC0415

    hvd.broadcast_variables(backing_variables(variables), root_rank=root_rank)


def legacy_keras():
    """``horovod.tensorflow.keras``, working with tf_keras on TF 2.21.

    Horovod's Keras module was written for the Keras bundled in TF 2.x; on TF 2.21 that is
    tf_keras, and its ``K`` must be tf_keras' backend or callbacks fail.
    """
    if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        raise RuntimeError("set TF_USE_LEGACY_KERAS=1 before importing TensorFlow to use horovod.tensorflow.keras")
    import horovod._keras.callbacks as hvd_impl  # noqa: PLC0415
    import horovod.tensorflow.keras as hvd  # noqa: PLC0415
    import horovod.tensorflow.keras.callbacks as hvd_callbacks  # noqa: PLC0415
    import tf_keras  # noqa: PLC0415

    from airflow_tf.runtime.keras_compat import skip_constant_momentum  # noqa: PLC0415

    hvd.K = hvd_callbacks.K = tf_keras.backend
    skip_constant_momentum(hvd_impl)  # tf_keras optimizers' momentum is a float, not a variable
    return hvd
