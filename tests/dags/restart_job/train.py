"""A tiny Keras regression that checkpoints every epoch (training.backup_and_restore) and can
warm-start (training.warm_start): for the restart and resume tests. Paced, so a test can kill a
rank at a chosen epoch."""

import argparse
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # MultiWorkerMirrored fit needs tf.keras 2

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from airflow_tf.runtime import training  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--epoch-seconds", type=float, default=0.0)
parser.add_argument("--learning-rate", type=float, default=0.01)
args = parser.parse_args()

strategy = training.strategy_from_env()
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 8)).astype("float32")
y = (x @ rng.normal(size=(8, 1)) + 0.05 * rng.normal(size=(256, 1))).astype("float32")
with strategy.scope():
    model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(1)])
    model.compile(optimizer=tf.keras.optimizers.SGD(args.learning_rate), loss="mse")
training.warm_start(model)


class Pace(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        time.sleep(args.epoch_seconds)


model.fit(x, y, batch_size=32, epochs=args.epochs, verbose=2,
          callbacks=[training.backup_and_restore(), training.metrics_callback(), Pace()])
training.save_model(model, "model.keras")
