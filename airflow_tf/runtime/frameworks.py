"""The node's TensorFlow version against the job's ``framework_version``, checked before any
rank starts. Read from the installed distributions' metadata (``importlib.metadata``): the
node runtime never imports TensorFlow. Standard library only."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from collections.abc import Sequence

# The distributions that provide ``import tensorflow``.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel",
                            "tensorflow-macos", "tf-nightly", "tf-nightly-cpu")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_tensorflow(paths: Sequence[str]) -> str | None:
    """The TensorFlow version the ranks would import, searching ``paths`` in order (the job's
    package directories first, then the interpreter's own), or None when there is none."""
    wanted = set(TENSORFLOW_DISTRIBUTIONS)
    for path in paths:
        for dist in importlib.metadata.distributions(path=[path]):
            if _canonical(dist.metadata["Name"] or "") in wanted:
                return dist.version
    return None


def _release(version: str) -> list[int]:
    match = re.match(r"^(\d+(?:\.\d+)*)", version)
    return [int(part) for part in match.group(1).split(".")] if match else []


def matches(wanted: str, installed: str) -> bool:
    """'2.21' matches 2.21.0 and 2.21.3; '2.21.0' only 2.21.0; '2' every 2.x."""
    want = _release(wanted)
    return bool(want) and _release(installed)[:len(want)] == want


def check(wanted: str | None, extra_paths: Sequence[str] = ()) -> str | None:
    """None when the node fits; otherwise the error to fail the node with (names the field)."""
    if not wanted:
        return None
    installed = installed_tensorflow([*[p for p in extra_paths if p], *sys.path])
    if installed is None:
        return (f"framework_version={wanted!r}: TensorFlow is not installed on this node ({sys.executable}); "
                "install it in the node's environment or image, or add it to pip_packages")
    if not matches(wanted, installed):
        return (f"framework_version={wanted!r} does not match the TensorFlow on this node: {installed} "
                f"({sys.executable}). Set framework_version={'.'.join(map(str, _release(installed)[:2]))!r}, "
                f"drop it, or run on a node (image) with TensorFlow {wanted}")
    return None
