"""Run the user's entry script as ``__main__``, with the node's import hooks in place first.

    python -u -m airflow_tf.runtime.user_script SCRIPT [ARGS...]

Every rank that runs the entry script starts here (the launcher, and ``hvd_rank`` under MPI),
so scripts written for the retired estimator run unchanged:

- ``runtime.keras_compat``: Horovod's Keras modules get tf_keras (Keras 2) where they need it;
- ``runtime.autolog``: Keras ``fit`` records its per-epoch metrics in the rank's metrics file.

Nothing is imported eagerly: the hooks fire when the script itself imports Keras or Horovod
(wrapt's post-import hooks, which TensorFlow already depends on), so a script that sets
``TF_USE_LEGACY_KERAS`` itself before importing TensorFlow still gets what it set. When wrapt is
missing (a script that does not use TensorFlow) the script simply runs without them.

``runpy.run_path`` gives the script what ``python SCRIPT`` would: ``__name__ == "__main__"``,
``__file__``, ``sys.argv`` and its folder first on ``sys.path``.
"""

from __future__ import annotations

import os
import runpy
import sys


def install_hooks(script: str) -> None:
    try:
        import wrapt  # noqa: PLC0415
    except ImportError:
        return
    from airflow_tf.runtime import autolog, keras_compat  # noqa: PLC0415

    keras_compat.install(wrapt.register_post_import_hook, script)
    if os.environ.get("AIRFLOW_TF_AUTOLOG", "1") != "0":
        autolog.install(wrapt.register_post_import_hook)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m airflow_tf.runtime.user_script SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    script = os.path.abspath(argv[0])
    sys.argv = argv
    # ``python -m`` put the working directory first on sys.path; ``python SCRIPT`` puts the
    # script's folder there instead.
    sys.path[0] = os.path.dirname(script)
    install_hooks(script)
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
