"""The one source bundle a remote node gets: the node runtime (standard library only, under a
stub package), the user's source directory, and extra files (the node's ``node.json``).

Docker copies it into the container with ``put_archive``; SSH uploads it and unpacks it in the
node's directory. One stub and one set of exclusions for both: version-control metadata,
virtual environments and bytecode caches never travel.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping

import airflow_tf.runtime

EXCLUDED = frozenset({".git", ".hg", ".svn", ".venv", "venv", "__pycache__", ".mypy_cache", ".pytest_cache"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
# Stands in for airflow_tf/__init__.py, whose lazy exports would reach for airflow.
STUB = b'"""airflow_tf node runtime only (shipped by an airflow-tf backend; Airflow is not needed here)."""\n'
RUNTIME_DIR = os.path.dirname(os.path.abspath(airflow_tf.runtime.__file__))


def excluded(name: str) -> bool:
    return any(part in EXCLUDED for part in name.split("/")) or name.endswith(EXCLUDED_SUFFIXES)


def runtime_files(modules: Iterable[str] | None = None) -> dict[str, bytes]:
    """The runtime package as ``{path inside the package root: bytes}`` (``modules``: only those)."""
    names = sorted(n for n in os.listdir(RUNTIME_DIR) if n.endswith(".py"))
    if modules is not None:
        names = [n for n in names if n[:-3] in set(modules) or n == "__init__.py"]
    files = {"airflow_tf/__init__.py": STUB}
    for name in names:
        with open(os.path.join(RUNTIME_DIR, name), "rb") as f:
            files[f"airflow_tf/runtime/{name}"] = f.read()
    return files


def _add(tar: tarfile.TarFile, name: str, payload: bytes, mode: int, owner: int = 0) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime, info.uid, info.gid = len(payload), mode, int(time.time()), owner, owner
    tar.addfile(info, io.BytesIO(payload))


def build(source_directory: str, *, runtime_at: str, source_at: str, files: Mapping[str, tuple[bytes, int]],
          dirs: Iterable[str] = (), dir_mode: int | None = None, gzip: bool = False, private: bool = False,
          owner: int = 0):
    """A spooled tar (a big source directory goes to disk, not memory), rewound.

    ``runtime_at`` / ``source_at``: where the runtime's package root and the sources go in the
    archive; ``files``: name -> (bytes, mode); ``dirs``: directories to create first (with
    ``dir_mode``, which also applies to the source tree's directories when given); ``private``:
    every file 0600 and directory 0700 (an ssh host's job directory); ``owner``: the uid of
    ``files`` (a container's user).
    """

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if excluded(info.name):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        if private:
            info.mode = 0o700 if info.isdir() else 0o600
        elif info.isdir() and dir_mode is not None:
            info.mode = dir_mode
        return info

    data = tempfile.SpooledTemporaryFile(max_size=16 << 20)
    with tarfile.open(fileobj=data, mode="w:gz" if gzip else "w", **({"compresslevel": 1} if gzip else {})) as tar:
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, dir_mode or 0o755, int(time.time())
            tar.addfile(info)
        for name, payload in runtime_files().items():
            _add(tar, f"{runtime_at}/{name}", payload, 0o600 if private else 0o644)
        tar.add(source_directory, arcname=source_at, filter=clean)
        for name, (payload, mode) in files.items():
            _add(tar, name, payload, mode, owner)
    data.seek(0)
    return data
