"""Code that runs on a training node, outside Airflow.

Standard library only at import time: backends copy this package next to the user's code (into a
container or onto an ssh host) and start it with the node's own Python. TensorFlow is imported
lazily, and only by the helpers a training script calls (see ``airflow_tf.runtime.training``).
"""
