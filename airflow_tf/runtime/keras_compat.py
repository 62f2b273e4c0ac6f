"""Horovod's Keras modules on TF 2.21, for scripts written for Keras 2 (no change to them).

Horovod 0.28.1 (the last release) was written for the Keras that TensorFlow 2.x bundled:

- ``horovod.tensorflow.keras`` (and its ``callbacks``) bind ``K`` with ``from keras import
  backend``; on TF 2.21 ``keras`` is Keras 3, whose backend lacks ``get_value`` / ``set_value``,
  so ``LearningRateWarmupCallback`` and friends fail (``module 'keras.backend' has no attribute
  'get_value'``) even under ``TF_USE_LEGACY_KERAS=1``. Once those modules are imported under
  tf_keras, their ``K`` is pointed at ``tf_keras.backend`` (what ``tf.keras.backend`` is then).
- its LR schedule / warmup callbacks correct ``optimizer.momentum`` with ``K.set_value``, which
  tf_keras' optimizers hold as a float: skipped for those (``skip_constant_momentum``).
- ``horovod.keras`` is for scripts that ``import keras`` as Keras 2. When the entry script
  imports it and the job runs Keras 2, ``keras`` (and every ``keras.*`` module) is made an alias
  of ``tf_keras`` in that process before the script runs.

Why here and not in the patched Horovod build: a rebuild takes minutes per TF version and the
node runtime runs every rank anyway; ``horovodrun`` users get the same fix from
``airflow_tf.runtime.horovod.legacy_keras()``. Standard library only at import.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.util
import os
import sys

HOROVOD_TF_KERAS = ("horovod.tensorflow.keras", "horovod.tensorflow.keras.callbacks")


def legacy_keras_on() -> bool:
    return os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")


def point_k_at_tf_keras(module) -> None:
    """Post-import hook of the ``horovod.tensorflow.keras`` modules."""
    if not legacy_keras_on():
        print("airflow-tf: horovod.tensorflow.keras needs Keras 2 on TensorFlow >= 2.16: set keras_version='2' "
              "(TF_USE_LEGACY_KERAS=1)", file=sys.stderr, flush=True)
        return
    import tf_keras  # noqa: PLC0415

    module.K = tf_keras.backend


def skip_constant_momentum(module) -> None:
    """Post-import hook of ``horovod._keras.callbacks``: the LR schedule/warmup callbacks'
    momentum correction ``K.set_value``s ``optimizer.momentum``, a variable in the Keras 2 of
    TF < 2.11 but a plain float in tf_keras' optimizers (``'float' object has no attribute
    'dtype'``). A float is a constant of the compiled train step: nothing to correct, so the
    correction is skipped for those optimizers and kept for the ones that have a variable."""
    impl = module.LearningRateScheduleCallbackImpl
    original = impl._adjust_learning_rate
    if getattr(original, "_airflow_tf", False):
        return

    def _adjust_learning_rate(self, epoch):
        if isinstance(getattr(self.model.optimizer, "momentum", None), (int, float)):
            self.momentum_correction = False
        return original(self, epoch)

    _adjust_learning_rate._airflow_tf = True
    impl._adjust_learning_rate = _adjust_learning_rate


def imports_horovod_keras(script: str) -> bool:
    """Does the script import ``horovod.keras`` (``import horovod.keras as hvd``, ``from horovod
    import keras``, ``from horovod.keras import ...``)? Read from its source, not run."""
    try:
        with open(script, "rb") as f:
            tree = ast.parse(f.read(), filename=script)
    except (OSError, SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "horovod.keras" or a.name.startswith("horovod.keras.")
                                                for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "horovod.keras" or node.module.startswith("horovod.keras.")
                or (node.module == "horovod" and any(a.name == "keras" for a in node.names))):
            return True
    return False


class _Existing(importlib.abc.Loader):
    """Loads a module that is already imported under another name."""

    def __init__(self, module):
        self.module = module

    def create_module(self, spec):
        return self.module

    def exec_module(self, module) -> None:
        pass


class KerasAlias(importlib.abc.MetaPathFinder):
    """``keras`` and ``keras.X`` resolve to ``tf_keras`` and ``tf_keras.X``: one module object
    under both names, never a second copy of tf_keras' modules (their state is global)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" and not fullname.startswith("keras."):
            return None
        module = importlib.import_module("tf_keras" + fullname[len("keras"):])
        return importlib.util.spec_from_loader(fullname, _Existing(module))


def alias_keras_to_tf_keras() -> None:
    if "keras" in sys.modules:
        return  # already imported as Keras 3: two Kerases in one process would be worse
    sys.meta_path.insert(0, KerasAlias())


def install(register_post_import_hook, script: str) -> None:
    for name in HOROVOD_TF_KERAS:
        register_post_import_hook(point_k_at_tf_keras, name)
    register_post_import_hook(skip_constant_momentum, "horovod._keras.callbacks")
    if legacy_keras_on() and imports_horovod_keras(script):
        alias_keras_to_tf_keras()
