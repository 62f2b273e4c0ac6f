"""A local conda channel built by the tests (public channels are unreachable here): noarch
packages in the ``.tar.bz2`` format, indexed with py-rattler, served as ``file://``."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import sys
import tarfile
import time
from pathlib import Path

SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def build_package(channel: Path, name: str, version: str, files: dict[str, str], depends: list[str] = ()) -> Path:
    """A ``noarch: generic`` package holding ``files`` (prefix-relative path -> text)."""
    noarch = channel / "noarch"
    noarch.mkdir(parents=True, exist_ok=True)
    build = "airflowtf_0"
    index = {"name": name, "version": version, "build": build, "build_number": 0, "depends": list(depends),
             "noarch": "generic", "subdir": "noarch", "license": "Apache-2.0", "timestamp": int(time.time() * 1000)}
    paths = [{"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(text.encode()).hexdigest(),
              "size_in_bytes": len(text.encode())} for path, text in files.items()]
    archive = noarch / f"{name}-{version}-{build}.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        _add(tar, "info/index.json", json.dumps(index).encode())
        _add(tar, "info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode())
        _add(tar, "info/files", "".join(f"{path}\n" for path in files).encode())
        for path, text in files.items():
            _add(tar, path, text.encode())
    return archive


def index(channel: Path) -> None:
    import rattler.index

    (channel / "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel_directory=channel))


def seed_channel(channel: Path) -> str:
    """The channel the seed's single-node example installs ``scikit-learn`` from: a stand-in
    package of that name (a tiny ``sklearn`` module that says where it was imported from),
    depending on a second package so the solve has something to resolve."""
    build_package(channel, "airflow-tf-test-dep", "1.0", {f"{SITE}/airflow_tf_test_dep.py": "VALUE = 42\n"})
    build_package(channel, "scikit-learn", "1.0.0.airflowtf", {
        f"{SITE}/sklearn/__init__.py": "import airflow_tf_test_dep\n__version__ = '1.0.0.airflowtf'\n",
    }, depends=["airflow-tf-test-dep >=1.0"])
    index(channel)
    return channel.resolve().as_uri()
