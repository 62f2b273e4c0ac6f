"""Parameter-server training with tf_keras ``Model.fit`` + ``DatasetCreator``.

Keras 3's ``fit`` cannot train under ParameterServerStrategy on TF 2.21 (it has no
DatasetCreator), so this script uses tf_keras (``TF_USE_LEGACY_KERAS=1``). In server_mode
"script" every task runs this file: ps and worker tasks serve and never return, the chief trains,
and an evaluator task (evaluator=True) scores the chief's checkpoints with SidecarEvaluator.
"""

import argparse
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # must precede the TensorFlow import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from airflow_tf.runtime import training  # noqa: E402

training.serve_unless_chief()  # ps/worker tasks stop here (they are stopped when the chief ends)

import tensorflow as tf  # noqa: E402

from data import FEATURES, NUM_CLASSES, make_dataset  # noqa: E402


def build_model():
    return tf.keras.Sequential([
        tf.keras.layers.Input(shape=(FEATURES,)),
        tf.keras.layers.Dense(32, activation="relu"),
        tf.keras.layers.Dense(NUM_CLASSES),
    ])


def evaluate_alongside(checkpoint_dir: str) -> None:
    """The evaluator task: score each checkpoint the chief writes, until it is stopped."""
    model = build_model()
    model.compile(loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = make_dataset(1000, seed=99)
    os.makedirs(checkpoint_dir, exist_ok=True)
    tf.keras.utils.SidecarEvaluator(
        model, data=tf.data.Dataset.from_tensor_slices((x, y)).batch(100), checkpoint_dir=checkpoint_dir,
    ).start()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=40)
    parser.add_argument("--learning-rate", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    checkpoint_dir = os.path.join(training.output_dir(), "checkpoints")
    if training.role() == "evaluator":
        evaluate_alongside(checkpoint_dir)
        return

    strategy = training.strategy_from_env()
    print(f"{training.role()}: training with {type(strategy).__name__}")

    def dataset_fn(input_context):
        features, labels = make_dataset(4096, seed=input_context.input_pipeline_id)
        batch = input_context.get_per_replica_batch_size(args.batch_size)
        return tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(4096).repeat().batch(batch).prefetch(2)

    with strategy.scope():
        model = build_model()
        model.compile(
            optimizer=tf.keras.optimizers.SGD(learning_rate=args.learning_rate),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
            steps_per_execution=10,
        )
    model.fit(
        tf.keras.utils.experimental.DatasetCreator(dataset_fn),
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[
            training.metrics_callback(),
            # Weights-only checkpoints per epoch: what the evaluator task (if any) scores.
            tf.keras.callbacks.ModelCheckpoint(os.path.join(checkpoint_dir, "ckpt-{epoch}"), save_weights_only=True),
        ],
        verbose=2,
    )
    x, y = make_dataset(1000, seed=99)
    accuracy = float((model.predict(x, verbose=0).argmax(axis=1) == y).mean())
    training.log_metrics(args.epochs, {"holdout_accuracy": accuracy})
    print(f"chief: holdout accuracy {accuracy:.3f}")
    print(f"chief: model saved to {training.save_model(model, 'model.keras')}")


if __name__ == "__main__":
    main()
