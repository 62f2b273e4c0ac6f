"""Train a small classifier with MultiWorkerMirroredStrategy (or alone, without TF_CONFIG).

Keras 3's ``Model.fit`` fails under MultiWorkerMirroredStrategy on TF 2.21
(keras-team/keras#20585), so this script uses tf_keras (``TF_USE_LEGACY_KERAS=1``), whose
``fit`` works with the strategy and is what most existing training scripts are written for.
"""

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # must precede the TensorFlow import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from airflow_tf.runtime import training  # noqa: E402
from data import FEATURES, NUM_CLASSES, make_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--data", help="an .npz with x/y arrays (default: generate the data)")
    args = parser.parse_args()

    strategy = training.strategy_from_env()  # first: MWMS must exist before any other TF op
    print(f"rank {training.rank()} of {training.world_size()}, replicas in sync: {strategy.num_replicas_in_sync}")

    if args.data:
        with np.load(args.data) as arrays:
            features, labels = arrays["x"], arrays["y"]
        args.samples = len(labels)
    else:
        features, labels = make_dataset(args.samples, seed=0)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(args.samples, seed=0).repeat()
    dataset = dataset.batch(args.batch_size)
    options = tf.data.Options()
    # In-memory data has no files to shard by: let each worker take every n-th batch instead.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)

    with strategy.scope():
        model = tf.keras.Sequential([
            tf.keras.layers.Input(shape=(FEATURES,)),
            tf.keras.layers.Dense(32, activation="relu"),
            tf.keras.layers.Dense(NUM_CLASSES),
        ])
        model.compile(
            optimizer=tf.keras.optimizers.SGD(learning_rate=args.learning_rate),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )

    model.fit(
        dataset,
        epochs=args.epochs,
        steps_per_epoch=args.samples // args.batch_size,
        callbacks=[training.metrics_callback(), training.tensorboard_callback()],
        verbose=2,
    )
    path = training.save_model(model, "model.keras")
    if path:
        print(f"model saved to {path}")


if __name__ == "__main__":
    main()
