"""A parameter-server script written the way the estimator's users wrote them: TF_CONFIG parsed
by hand, ps and worker tasks serve with ``tf.distribute.Server(...).join()``, the chief trains
with tf.keras ``fit``. No airflow_tf import, no TF_USE_LEGACY_KERAS, no metrics callback."""

import argparse
import json
import os

import numpy as np
import tensorflow as tf

tf_config = os.environ.get("TF_CONFIG")
if not tf_config or tf_config == "":
    raise ValueError("TF_CONFIG not found.")
tf_config_json = json.loads(tf_config)
cluster_spec = tf.train.ClusterSpec(tf_config_json["cluster"])
task = tf_config_json["task"]

if task["type"] in ("ps", "worker"):
    os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
    server = tf.distribute.Server(cluster_spec, job_name=task["type"], task_index=task["index"], protocol="grpc")
    print(f"{task['type']} {task['index']} serving", flush=True)
    server.join()

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--steps-per-epoch", type=int, default=10)
args = parser.parse_args()

strategy = tf.distribute.ParameterServerStrategy(tf.distribute.cluster_resolver.TFConfigClusterResolver())


def dataset_fn(input_context):
    rng = np.random.default_rng(input_context.input_pipeline_id)
    x = rng.normal(size=(512, 4)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("int64")
    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(512).repeat().batch(32)


with strategy.scope():
    model = tf.keras.Sequential([tf.keras.layers.Dense(8, activation="relu", input_shape=(4,)),
                                 tf.keras.layers.Dense(2)])
    model.compile(optimizer=tf.keras.optimizers.SGD(0.1), metrics=["accuracy"],
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(tf.keras.utils.experimental.DatasetCreator(dataset_fn), epochs=args.epochs,
          steps_per_epoch=args.steps_per_epoch, verbose=2)
print("chief: done")
