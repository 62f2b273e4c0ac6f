"""Synthetic training throughput (benchmarks/throughput.py): images per second of a small CNN
on random data, the same script whoever launches it.

    --framework horovod   hvd.init(), DistributedGradientTape, weights broadcast from rank 0
    --framework mwms      MultiWorkerMirroredStrategy from TF_CONFIG, strategy.run per step

Every rank runs ``--warmup`` untimed steps, then ``--steps`` timed steps in ``--chunks`` equal
chunks; rank 0 writes {"images_per_s": ..., "chunks": [...]} to ``--out``. Nothing else is
printed per step: the launcher's log pumping is measured as it is used, not flooded.
"""

import argparse
import json
import os
import time

parser = argparse.ArgumentParser()
parser.add_argument("--framework", choices=("horovod", "mwms"), required=True)
parser.add_argument("--batch-size", type=int, default=32, help="per rank")
parser.add_argument("--image-size", type=int, default=64)
parser.add_argument("--warmup", type=int, default=5)
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--chunks", type=int, default=4)
parser.add_argument("--out", required=True)
args = parser.parse_args()

import tensorflow as tf  # noqa: E402 - after argparse: a bad flag fails before the 2-s import


def build_model():
    # Small on purpose: it builds and traces in seconds, and each step is compute-bound (a 2-core
    # CPU machine: what is measured is how much the launch path takes from training, not the net).
    layers = tf.keras.layers
    return tf.keras.Sequential([
        tf.keras.Input((args.image_size, args.image_size, 3)),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(128, 3, activation="relu"), layers.GlobalAveragePooling2D(),
        layers.Dense(10),
    ])


def random_batch():
    return (tf.random.uniform((args.batch_size, args.image_size, args.image_size, 3)),
            tf.random.uniform((args.batch_size,), maxval=10, dtype=tf.int64))


loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")

if args.framework == "horovod":
    import horovod.tensorflow as hvd

    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    images, labels = random_batch()
    model = build_model()
    optimizer = tf.keras.optimizers.SGD(0.01)

    @tf.function
    def step(first):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(labels, model(images, training=True)))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if first:
            hvd.broadcast_variables(model.variables, root_rank=0)
            hvd.broadcast_variables(optimizer.variables(), root_rank=0)
        return loss

    def run_step(first=False):
        return step(first)

    def barrier():
        hvd.allreduce(tf.constant(0.0), name="barrier")
else:
    strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other op: collectives are set up here
    resolver = strategy.cluster_resolver
    rank, size = resolver.task_id, strategy.num_replicas_in_sync
    images, labels = random_batch()
    with strategy.scope():
        model = build_model()
        optimizer = tf.keras.optimizers.SGD(0.01)

    @tf.function
    def replica_step():
        with tf.GradientTape() as tape:
            loss = tf.nn.compute_average_loss(loss_fn(labels, model(images, training=True)),
                                              global_batch_size=args.batch_size * size)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def run_step(first=False):
        return strategy.run(replica_step)

    def barrier():
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

run_step(first=True)
for _ in range(args.warmup - 1):
    run_step()
barrier()
chunk_steps = max(1, args.steps // args.chunks)
chunks = []
timed_from = time.time()  # wall clock: the benchmark counts each process's CPU in this window
for _ in range(args.chunks):
    start = time.perf_counter()
    for _ in range(chunk_steps):
        loss = run_step()
    float(tf.reduce_sum(strategy.experimental_local_results(loss)[0]) if args.framework == "mwms" else loss)
    chunks.append(args.batch_size * size * chunk_steps / (time.perf_counter() - start))
timed_to = time.time()
barrier()
if rank == 0:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    total = args.batch_size * size * chunk_steps * args.chunks / sum(args.batch_size * size * chunk_steps / c for c in chunks)
    with open(args.out, "w") as f:
        json.dump({"images_per_s": total, "chunks": chunks, "ranks": size, "framework": args.framework,
                   "batch_size": args.batch_size, "image_size": args.image_size, "steps": chunk_steps * args.chunks,
                   "timed": [timed_from, timed_to]}, f)
print(f"rank {rank}: {sum(chunks) / len(chunks):.1f} images/s", flush=True)
