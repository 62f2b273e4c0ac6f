"""Keras ``fit`` records itself: per-epoch metrics (and a TensorBoard directory) from scripts
that never call ``training.metrics_callback()``.

When the script imports ``tf_keras`` (Keras 2, ``tf.keras`` under ``TF_USE_LEGACY_KERAS=1``) or
``keras`` (Keras 3), their ``Model.fit`` is wrapped to add two callbacks unless the script
passed its own of that kind:

- a metrics callback writing the rank's ``metrics-rank<r>.jsonl`` (``training.log_metrics``),
  the file the wait task turns into progress lines, ``history`` and the curves picture;
- on the chief only, a ``TensorBoard`` callback writing ``outputs/tensorboard`` (epoch scalars;
  no graph, no profiler) -- except under MultiWorkerMirrored, where every worker needs the same
  callbacks (tf_keras writes the other workers' summaries to scratch directories).

A script that adds ``training.metrics_callback()`` itself is not logged twice (the callbacks
carry ``AIRFLOW_TF_METRICS``). The same mechanism as MLflow's autolog (patch ``fit`` after
import); written here because the node runtime cannot depend on MLflow. A failure to record
never fails the training: it is reported once on stderr.
"""

from __future__ import annotations

import functools
import json
import os
import sys

MARK = "AIRFLOW_TF_METRICS"  # class attribute of every callback that writes our metrics files
PATCHED = "_airflow_tf_autolog"


def _is_tensorboard(callback) -> bool:
    return any(klass.__name__ == "TensorBoard" for klass in type(callback).__mro__)


def _multi_worker() -> bool:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return False
    cluster = json.loads(raw).get("cluster", {})
    return "ps" not in cluster and len(cluster.get("worker", [])) + len(cluster.get("chief", [])) > 1


def _callbacks_for(keras_module, given: list) -> list:
    from airflow_tf.runtime import training  # noqa: PLC0415

    added = []
    if not any(getattr(type(cb), MARK, False) for cb in given):
        added.append(training.metrics_callback(keras_module.callbacks.Callback))
    if not any(_is_tensorboard(cb) for cb in given) and (training.is_chief() or _multi_worker()):
        added.append(keras_module.callbacks.TensorBoard(log_dir=training.tensorboard_dir(), write_graph=False,
                                                        profile_batch=0))
    return added


def _warn_once(exc: BaseException) -> None:
    if not getattr(_warn_once, "done", False):
        _warn_once.done = True
        print(f"airflow-tf autolog: not recording this fit ({exc!r})", file=sys.stderr, flush=True)


def patch_fit(model_class, keras_module) -> None:
    original = model_class.fit
    if getattr(original, PATCHED, False):
        return

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        # callbacks is fit's 6th parameter in tf_keras and Keras 3 (x, y, batch_size, epochs,
        # verbose, callbacks): given by position, it is replaced in place.
        positional = len(args) >= 6
        given = list((args[5] if positional else kwargs.get("callbacks")) or [])
        try:
            callbacks = given + _callbacks_for(keras_module, given)
        except Exception as exc:  # recording must never stop the training
            _warn_once(exc)
            callbacks = given
        if positional:
            args = (*args[:5], callbacks, *args[6:])
        else:
            kwargs["callbacks"] = callbacks
        return original(self, *args, **kwargs)

    setattr(fit, PATCHED, True)
    model_class.fit = fit


def on_tf_keras(module) -> None:
    patch_fit(module.Model, module)


def on_keras(module) -> None:
    if getattr(module, "__name__", "") == "tf_keras" or not hasattr(module, "Model"):
        return  # ``keras`` aliased to tf_keras (runtime.keras_compat): patched as tf_keras
    patch_fit(module.Model, module)


def install(register_post_import_hook) -> None:
    register_post_import_hook(on_tf_keras, "tf_keras")
    register_post_import_hook(on_keras, "keras")
