"""A Horovod Keras script written the way tf.keras 2 users wrote them (horovod's own
tensorflow2_keras example style): ``horovod.tensorflow.keras``, DistributedOptimizer, the
broadcast / metric-average / LR-warmup callbacks, ``experimental_run_tf_function=False`` and
checkpoints on rank 0. No airflow_tf import, no TF_USE_LEGACY_KERAS: it must run unchanged."""

import argparse
import os

import numpy as np
import tensorflow as tf
import horovod.tensorflow.keras as hvd

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--learning-rate", type=float, default=0.01)
# The estimator's ./outputs was the run's output folder; here the ranks' working directory is the
# source directory, so the test points checkpoints at the job's outputs (an environment lookup only).
parser.add_argument("--checkpoint-dir", default=os.environ.get("AIRFLOW_TF_OUTPUT_DIR", "./outputs"))
args = parser.parse_args()

hvd.init()

# Generated data: two Gaussian blobs (no downloads); every rank takes its shard.
rng = np.random.default_rng(0)
x = np.concatenate([rng.normal(-1, 1, (512, 8)), rng.normal(1, 1, (512, 8))]).astype("float32")
y = np.concatenate([np.zeros(512), np.ones(512)]).astype("int64")
dataset = (tf.data.Dataset.from_tensor_slices((x, y)).shard(hvd.size(), hvd.rank())
           .shuffle(1024, seed=hvd.rank()).repeat().batch(args.batch_size))

model = tf.keras.Sequential([
    tf.keras.layers.Dense(16, activation="relu", input_shape=(8,)),
    tf.keras.layers.Dense(2, activation="softmax"),
])
scaled_lr = args.learning_rate * hvd.size()
opt = hvd.DistributedOptimizer(tf.keras.optimizers.SGD(scaled_lr))
model.compile(loss=tf.losses.SparseCategoricalCrossentropy(), optimizer=opt, metrics=["accuracy"],
              experimental_run_tf_function=False)

callbacks = [
    hvd.callbacks.BroadcastGlobalVariablesCallback(0),
    hvd.callbacks.MetricAverageCallback(),
    hvd.callbacks.LearningRateWarmupCallback(initial_lr=scaled_lr, warmup_epochs=1, verbose=1),
]
if hvd.rank() == 0:
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    callbacks.append(tf.keras.callbacks.ModelCheckpoint(os.path.join(args.checkpoint_dir, "checkpoint-{epoch}.h5")))

history = model.fit(dataset, steps_per_epoch=1024 // (args.batch_size * hvd.size()), callbacks=callbacks,
                    epochs=args.epochs, verbose=2 if hvd.rank() == 0 else 0)
print(f"rank {hvd.rank()} of {hvd.size()}: final accuracy {history.history['accuracy'][-1]:.3f}, "
      f"lr {float(tf.keras.backend.get_value(model.optimizer.lr)):.4f}")
