"""Parameter-server training of a Keras 3 model with a ``ClusterCoordinator`` loop.

Keras 3's ``fit`` cannot do parameter-server training on TF 2.21, so the chief schedules
``strategy.run`` steps on the workers itself. Note: under asynchronous PS training the Keras 3
optimizer's ``iterations`` counter loses updates (it read 39-52 of 60 steps here); count steps
yourself, as this script does, rather than trusting it.

Runs on the chief only: use it with server_mode="runtime", where the node runtime serves the
ps/worker tasks.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from airflow_tf.runtime import training  # noqa: E402
from data import FEATURES, NUM_CLASSES, make_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=30)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    strategy = training.strategy_from_env()
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)

    with strategy.scope():
        model = keras.Sequential([
            keras.layers.Input(shape=(FEATURES,)),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(NUM_CLASSES),
        ])
        optimizer = keras.optimizers.SGD(learning_rate=args.learning_rate)
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

    def dataset_fn():
        features, labels = make_dataset(4096, seed=0)
        return tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(4096).repeat().batch(args.batch_size)

    iterator = iter(coordinator.create_per_worker_dataset(dataset_fn))

    @tf.function
    def train_step(it):
        def replica_fn(x, y):
            with tf.GradientTape() as tape:
                loss = tf.nn.compute_average_loss(loss_fn(y, model(x, training=True)), global_batch_size=args.batch_size)
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        x, y = next(it)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_fn, args=(x, y)), axis=None)

    steps_done = 0
    for epoch in range(1, args.epochs + 1):
        losses = [coordinator.schedule(train_step, args=(iterator,)) for _ in range(args.steps_per_epoch)]
        coordinator.join()
        steps_done += args.steps_per_epoch
        loss = sum(float(r.fetch()) for r in losses) / len(losses)
        print(f"chief: epoch {epoch}/{args.epochs} loss={loss:.4f} steps={steps_done}")
        training.log_metrics(epoch, {"loss": loss, "steps": steps_done}, epochs=args.epochs)

    x, y = make_dataset(1000, seed=99)
    # Evaluate eagerly on the chief: Keras 3's predict() would want a per-worker dataset here.
    accuracy = float((model(x, training=False).numpy().argmax(axis=1) == y).mean())
    training.log_metrics(args.epochs, {"holdout_accuracy": accuracy, "steps": steps_done})
    print(f"chief: holdout accuracy {accuracy:.3f}")
    print(f"chief: model saved to {training.save_model(model, 'model.keras')}")


if __name__ == "__main__":
    main()
