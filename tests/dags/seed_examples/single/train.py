"""The seed's single-node example script: script params on argv, scikit-learn from
conda_packages (the test's local channel), tf.keras fit. No airflow_tf import."""

import argparse

import numpy as np
import sklearn
import tensorflow as tf

parser = argparse.ArgumentParser()
parser.add_argument("--batch-size", type=int, required=True)
parser.add_argument("--learning-rate", type=float, required=True)
args = parser.parse_args()
print(f"scikit-learn {sklearn.__version__} from {sklearn.__file__}")

rng = np.random.default_rng(0)
x = rng.normal(size=(400, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("int64")
model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="relu"),
                             tf.keras.layers.Dense(2)])
model.compile(optimizer=tf.keras.optimizers.SGD(args.learning_rate), metrics=["accuracy"],
              loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, batch_size=args.batch_size, epochs=2, verbose=2)
