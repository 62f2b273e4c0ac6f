"""Horovod with a Keras 3 model and a plain TF2 training loop (works over Gloo and MPI).

Keras 3 needs the backing-variable workaround for Horovod's DistributedGradientTape and
broadcast_variables: ``airflow_tf.runtime.horovod`` wraps both.
"""

import argparse
import hashlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import horovod.tensorflow as hvd  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from airflow_tf.runtime import horovod as hvd_keras3  # noqa: E402
from airflow_tf.runtime import training  # noqa: E402
from data import FEATURES, NUM_CLASSES, make_dataset  # noqa: E402


def weights_checksum(model) -> str:
    return hashlib.sha256(b"".join(np.asarray(w).tobytes() for w in model.get_weights())).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32, help="per-rank batch size")
    args = parser.parse_args()

    hvd.init()
    print(f"horovod rank {hvd.rank()} of {hvd.size()}, local {hvd.local_rank()}/{hvd.local_size()}, "
          f"cross {hvd.cross_rank()}/{hvd.cross_size()}")

    keras.utils.set_random_seed(1000 + hvd.rank())  # different start per rank: the broadcast must align them
    model = keras.Sequential([
        keras.layers.Input(shape=(FEATURES,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(NUM_CLASSES),
    ])
    optimizer = keras.optimizers.SGD(learning_rate=args.learning_rate * hvd.size())
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    hvd_keras3.broadcast_variables(model.variables + optimizer.variables, root_rank=0)

    features, labels = make_dataset(4096, seed=0)
    dataset = (tf.data.Dataset.from_tensor_slices((features, labels)).shard(hvd.size(), hvd.rank())
               .shuffle(4096, seed=hvd.rank()).repeat().batch(args.batch_size))
    batches = iter(dataset)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = hvd_keras3.allreduce_gradients(tape, loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return hvd.allreduce(loss)

    for epoch in range(1, args.epochs + 1):
        for _ in range(args.steps_per_epoch):
            loss = train_step(*next(batches))
        print(f"epoch {epoch}/{args.epochs} loss={float(loss):.4f}")
        training.log_metrics(epoch, {"loss": float(loss)}, epochs=args.epochs)

    x, y = make_dataset(1000, seed=99)
    accuracy = float((model(x, training=False).numpy().argmax(axis=1) == y).mean())
    print(f"final weights checksum {weights_checksum(model)} holdout accuracy {accuracy:.3f}")
    if hvd.rank() == 0:  # every rank holds the same weights: one saves
        training.log_metrics(args.epochs, {"holdout_accuracy": accuracy})
        training.save_model(model, "model.keras")


if __name__ == "__main__":
    main()
