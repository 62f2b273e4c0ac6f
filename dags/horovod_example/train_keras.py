"""Horovod's Keras API (``horovod.tensorflow.keras``) with tf_keras ``Model.fit``.

On TF 2.21 Horovod's Keras module works with tf_keras only: set TF_USE_LEGACY_KERAS=1 before
TensorFlow is imported and take the module from ``airflow_tf.runtime.horovod.legacy_keras()``,
which points its ``K`` at tf_keras' backend.
"""

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from airflow_tf.runtime import horovod as hvd_helpers  # noqa: E402
from airflow_tf.runtime import training  # noqa: E402
from data import FEATURES, NUM_CLASSES, make_dataset  # noqa: E402

hvd = hvd_helpers.legacy_keras()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    hvd.init()
    print(f"horovod rank {hvd.rank()} of {hvd.size()}")
    features, labels = make_dataset(4096, seed=0)
    dataset = (tf.data.Dataset.from_tensor_slices((features, labels)).shard(hvd.size(), hvd.rank())
               .shuffle(4096).repeat().batch(args.batch_size))
    model = tf.keras.Sequential([
        tf.keras.layers.Input(shape=(FEATURES,)),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dense(NUM_CLASSES),
    ])
    model.compile(
        optimizer=hvd.DistributedOptimizer(tf.keras.optimizers.SGD(learning_rate=args.learning_rate * hvd.size())),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0), hvd.callbacks.MetricAverageCallback()]
    if hvd.rank() == 0:
        callbacks.append(training.metrics_callback())
    model.fit(dataset, epochs=args.epochs, steps_per_epoch=4096 // (args.batch_size * hvd.size()),
              callbacks=callbacks, verbose=2 if hvd.rank() == 0 else 0)
    if hvd.rank() == 0:
        training.save_model(model, "model.keras")


if __name__ == "__main__":
    main()
