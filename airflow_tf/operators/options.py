"""Checks of a training group's own options (those that are not spec fields), and where a
relative ``source_directory`` is resolved.

A relative ``source_directory`` is resolved against the folder of the file that wrote it: the
DAG file, found as the first caller outside airflow_tf and Airflow on the stack. Not the working
directory, which differs between the dag-processor, the workers and ``airflow dags test``; and
not the DAG's ``fileloc``: the group is validated before it joins a DAG, a DAG object need not
exist yet (``dag=`` given later, or none in a helper that builds groups), and a helper module
that writes the path next to its own files means its own folder, as ``__file__`` would.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from airflow_tf.cluster.errors import SpecError


def caller_folder() -> str | None:
    """The folder of the nearest caller that is not airflow_tf or Airflow (None: no file, e.g. a REPL)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__") or ""
        if name != "airflow_tf" and not name.startswith(("airflow_tf.", "airflow.")):
            filename = frame.f_code.co_filename
            return os.path.dirname(os.path.abspath(filename)) if os.path.isfile(filename) else None
        frame = frame.f_back
    return None


def resolve_source_directory(value: Any, folder: str | None) -> Any:
    """``value`` made absolute against ``folder`` (the DAG file's); anything else is left for
    ``check_source`` to report."""
    if not isinstance(value, (str, os.PathLike)) or not str(value) or "\0" in str(value) or os.path.isabs(value) \
            or folder is None:
        return value
    resolved = os.path.normpath(os.path.join(folder, value))
    old = os.path.abspath(value)  # where airflow-tf < 0.2 looked: the working directory
    same = os.path.isdir(old) and os.path.isdir(resolved) and os.path.samefile(old, resolved)
    if os.path.isdir(old) and not same:
        where = (f"{resolved} does not exist" if not os.path.isdir(resolved)
                 else f"that is {resolved}, but {old} exists too")
        raise SpecError(
            f"source_directory {str(value)!r} is relative, so it is resolved against the DAG file's folder "
            f"{folder}: {where}. Earlier versions used the working directory ({old}), which differs between "
            f"the dag-processor, workers and the CLI. Write source_directory={os.path.relpath(old, folder)!r} "
            "(relative to the DAG file) or an absolute path, e.g. os.path.join(os.path.dirname(__file__), ...)"
        )
    return resolved


def check_seconds(field: str, value: Any, default: str) -> None:
    """A number of seconds > 0, or None (``default`` says what None means)."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
        hint = " (a number, not a string: drop the quotes)" if isinstance(value, str) else ""
        raise SpecError(f"{field} must be a number of seconds > 0 or None ({default}), got {value!r}{hint}")
