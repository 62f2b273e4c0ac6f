"""Per-job pip packages: one environment per package set, built once per node and reused.

The estimator's ``pip_packages`` installed packages for each run. Here a node installs them with
``pip install --target`` into ``<cache>/<hash of the set and the Python version>`` and puts that
directory first on the ranks' PYTHONPATH; the next job asking for the same set finds it ready.
A file lock keeps two nodes on one host from building the same set at once, and the directory
only appears (by rename) once the install succeeded, so a half-built env is never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "airflow-tf", "pip-envs")
# The user[:password]@ of a URL: what an index token looks like (https://TOKEN@host, https://u:p@host).
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it replaced by ``****``."""
    return _CREDENTIALS.sub(r"\1****@", text)


def index_options(node: Mapping) -> dict:
    """The pip index settings of a node plan (JSON), as ``ensure_env`` keywords."""
    return {"index_url": node.get("pip_index_url"), "extra_index_urls": node.get("pip_extra_index_urls") or [],
            "trusted_hosts": node.get("pip_trusted_hosts") or []}


def pip_argv(packages: Sequence[str], target: str, *, index_url: str | None = None,
             extra_index_urls: Sequence[str] = (), trusted_hosts: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
            "--target", target]
    if index_url:
        argv += ["--index-url", index_url]
    for url in extra_index_urls:
        argv += ["--extra-index-url", url]
    for host in trusted_hosts:
        argv += ["--trusted-host", host]
    # "--": whatever follows is a requirement, never an option (the plan checked them; this is the
    # node's own guard for a plan written by hand).
    return [*argv, "--", *packages]


def env_key(packages: list[str], python_version: str, index: Mapping | None = None) -> str:
    payload = {"packages": sorted(packages), "python": python_version}
    if index and any(index.values()):  # packages from another index are another environment
        payload["index"] = {name: index[name] for name in sorted(index)}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


class Interrupted(Exception):
    """``should_stop`` said so while waiting for the lock or for pip: nothing was installed."""


def _lock(lock, should_stop) -> None:
    # Polled, not a blocking flock: a node told to stop while another one installs the same
    # set must not wait for that install to finish.
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if should_stop():
                raise Interrupted() from None
            time.sleep(0.2)


def _run_pip(argv: list[str], should_stop) -> tuple[int, str]:
    """pip's exit code and output; pip is stopped (TERM, then KILL) as soon as ``should_stop``."""
    with tempfile.TemporaryFile(mode="w+") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        while proc.poll() is None:
            if should_stop():
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                raise Interrupted()
            time.sleep(0.1)
        if should_stop():  # the stop reached pip too (one killpg signals the node's whole group)
            raise Interrupted()
        out.seek(0)
        return proc.returncode, out.read()


def ensure_env(packages: list[str], say, cache_root: str | None = None, *, index_url: str | None = None,
               extra_index_urls: Sequence[str] = (), trusted_hosts: Sequence[str] = (),
               should_stop=lambda: False) -> str:
    """Return a directory holding ``packages``; install them there first if needed.

    URLs (index URLs, ``name @ URL`` requirements) may carry credentials: every message this
    writes to the node log, and pip's output in an error, has them redacted. ``should_stop``
    (the launcher: "a signal came") is polled while waiting; then ``Interrupted`` is raised.
    """
    cache_root = cache_root or os.environ.get("AIRFLOW_TF_PACKAGE_CACHE") or DEFAULT_CACHE
    os.makedirs(cache_root, exist_ok=True)
    index = {"index_url": index_url, "extra_index_urls": list(extra_index_urls), "trusted_hosts": list(trusted_hosts)}
    key = env_key(packages, f"{sys.version_info.major}.{sys.version_info.minor}", index)
    target = os.path.join(cache_root, key)
    with open(os.path.join(cache_root, f"{key}.lock"), "w") as lock:
        _lock(lock, should_stop)
        if os.path.isdir(target):
            say(f"pip_packages: using cached environment {target}")
            return target
        building = f"{target}.building"
        shutil.rmtree(building, ignore_errors=True)
        shown = [redact(p) for p in packages]
        sources = [redact(url) for url in filter(None, [index_url, *extra_index_urls])]
        say(f"pip_packages: installing {shown} into {target}" + (f" from {', '.join(sources)}" if sources else ""))
        # argv list, no shell: package specs are data, not commands.
        try:
            code, output = _run_pip(pip_argv(packages, building, **index), should_stop)
        except Interrupted:
            shutil.rmtree(building, ignore_errors=True)
            raise
        if code != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"pip install of {shown} failed (exit {code}):\n{redact(output)[-2000:]}")
        os.replace(building, target)
        return target
