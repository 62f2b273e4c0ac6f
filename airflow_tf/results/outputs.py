"""``output_uri``: the chief's outputs copied where any task on any worker can read them.

The copy runs in the wait task's ``execute_complete``, on a worker, once the job succeeded:
the worker has the target's Airflow connection and network, the trigger (an event loop shared
by many jobs) must not spend minutes moving a model, and a dedicated task would cost one more
scheduling round per job for nothing the wait cannot do. The job's nodes are still there (the
teardown runs after the wait), so the files are read through the backend
(``Backend.output_files``): a local directory, SFTP on the chief's host, or the chief
container's archive API. A failed copy fails the wait; a retry of the wait finds the ended job
and copies again (the copy overwrites, so it is idempotent).

The target is an Airflow ``ObjectStoragePath`` (fsspec): ``s3://``, ``gs://``, ``sftp://``,
``file://``..., given as a URI string (``sftp://<conn_id>@/srv/models``, Airflow's form) or as
an ``ObjectStoragePath`` (whose storage options, e.g. ``known_hosts``, are kept). Each job gets
its own folder ``<output_uri>/<job_id>/``, so runs never overwrite each other.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from airflow_tf.cluster.errors import SpecError

# Schemes an output_uri may use; "file" only for a path every worker sees (a shared mount).
SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "sftp", "ssh", "file", "hdfs",
                     "webhdfs", "http", "https"})
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
CHUNK = 8 << 20


def to_setting(value: Any) -> dict[str, Any] | None:
    """Parse-time check of ``output_uri``; returns its JSON form (what operators keep)."""
    if value is None:
        return None
    if hasattr(value, "serialize") and hasattr(value, "protocol"):  # an ObjectStoragePath
        data = value.serialize()
        return {"path": data["path"], "conn_id": data.get("conn_id"), "kwargs": data.get("kwargs") or {}}
    if not isinstance(value, str) or "\0" in value or "://" not in value:
        raise SpecError("output_uri must be an ObjectStoragePath or a URI string such as 's3://bucket/models', "
                        f"'sftp://<conn_id>@/srv/models' or 'file:///shared/models', got {value!r}")
    scheme = value.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise SpecError(f"output_uri: scheme {scheme!r} is not one of {sorted(SCHEMES)}, got {value!r}")
    return {"path": value, "conn_id": None, "kwargs": {}}


def target(setting: dict[str, Any], job_id: str):
    """The job's folder under the configured ``output_uri``."""
    from airflow.sdk import ObjectStoragePath

    from airflow_tf import extras

    if setting["path"].split("://", 1)[0].lower() in ("sftp", "ssh"):
        extras.require("sftp", "sshfs", f"output_uri {setting['path']!r}")
    base = ObjectStoragePath(setting["path"], conn_id=setting.get("conn_id"), **(setting.get("kwargs") or {}))
    return base / job_id


def uri(path) -> str:
    """The string form a downstream task passes to ``ObjectStoragePath`` (or opens, for file://)."""
    return str(path)


def _copy_stream(source: BinaryIO, destination) -> int:
    size = 0
    with destination.open("wb") as out:
        while chunk := source.read(CHUNK):
            out.write(chunk)
            size += len(chunk)
    return size


def copy_outputs(files: Iterator[tuple[str, BinaryIO]], destination, extra: dict[str, bytes]) -> dict[str, int]:
    """Copy ``(relative path, file)`` pairs, then ``extra`` files, under ``destination``.
    Returns the bytes copied per relative path."""
    destination.mkdir(parents=True, exist_ok=True)
    copied: dict[str, int] = {}
    for relative, source in files:
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:  # a member that would escape the folder: never written
            continue
        path = destination.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            copied["/".join(parts)] = _copy_stream(source, path)
        finally:
            source.close()
    for name, data in extra.items():
        with destination.joinpath(name).open("wb") as out:
            out.write(data)
        copied[name] = len(data)
    return copied


def relocate(results: dict[str, Any], node_outputs: str | None, destination) -> dict[str, Any]:
    """Results whose paths point at the copy: ``model_path``, ``tensorboard_dir`` and
    ``output_dir`` become URIs under ``destination``; the paths on the chief's host are kept as
    ``node_model_path`` / ``node_output_dir``."""
    out = dict(results)
    out["node_output_dir"] = results.get("output_dir")
    out["node_model_path"] = results.get("model_path")
    out["output_dir"] = uri(destination)
    for key in ("model_path", "tensorboard_dir"):
        value = results.get(key)
        if value and node_outputs and value.startswith(node_outputs.rstrip("/") + "/"):
            out[key] = uri(destination.joinpath(*value[len(node_outputs.rstrip("/")) + 1:].split("/")))
        elif value:
            out[key] = None  # outside the outputs folder: not copied, so no URI to give
    return out


def metrics_payload(results: dict[str, Any]) -> bytes:
    return json.dumps({"job_id": results.get("job_id"), "metrics": results.get("metrics"),
                       "epochs_logged": results.get("epochs_logged"), "history": results.get("history")},
                      indent=1).encode()


def curves_png(results: dict[str, Any]) -> bytes | None:
    """The curves picture of ``results`` (None: nothing to plot, or no matplotlib)."""
    from airflow_tf.results.curves import write_curves

    if not results.get("history"):
        return None
    with tempfile.TemporaryDirectory(prefix="airflow-tf-curves-") as folder:
        path = write_curves(results["history"], os.path.join(folder, CURVES_FILE), title=results.get("job_id", ""))
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()


def local_copy(model_uri: str) -> tuple[str, str | None]:
    """A model at a URI as a local path (downloaded into a temporary folder, removed by the
    caller through the second value); a plain or ``file://`` path as it is."""
    if "://" not in model_uri:
        return model_uri, None
    if model_uri.startswith("file://"):
        return model_uri[len("file://"):], None
    from airflow.sdk import ObjectStoragePath

    source = ObjectStoragePath(model_uri)
    folder = tempfile.mkdtemp(prefix="airflow-tf-model-")
    local = os.path.join(folder, source.name)
    try:
        if source.is_dir():
            for item in source.rglob("*"):
                if item.is_file():
                    relative = str(item)[len(str(source)):].lstrip("/")
                    os.makedirs(os.path.dirname(os.path.join(local, relative)), exist_ok=True)
                    with item.open("rb") as f, open(os.path.join(local, relative), "wb") as out:
                        shutil.copyfileobj(f, out, CHUNK)
        else:
            with source.open("rb") as f, open(local, "wb") as out:
                shutil.copyfileobj(f, out, CHUNK)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return local, folder


def upload(local_path: str, destination_uri: str) -> None:
    from airflow.sdk import ObjectStoragePath

    with open(local_path, "rb") as f:
        _copy_stream(f, ObjectStoragePath(destination_uri))
