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
import shutil
import subprocess
import sys

DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "airflow-tf", "pip-envs")


def env_key(packages: list[str], python_version: str) -> str:
    payload = json.dumps({"packages": sorted(packages), "python": python_version})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def ensure_env(packages: list[str], say, cache_root: str | None = None) -> str:
    """Return a directory holding ``packages``; install them there first if needed."""
    cache_root = cache_root or os.environ.get("AIRFLOW_TF_PACKAGE_CACHE") or DEFAULT_CACHE
    os.makedirs(cache_root, exist_ok=True)
    key = env_key(packages, f"{sys.version_info.major}.{sys.version_info.minor}")
    target = os.path.join(cache_root, key)
    with open(os.path.join(cache_root, f"{key}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(target):
            say(f"pip_packages: using cached environment {target}")
            return target
        building = f"{target}.building"
        shutil.rmtree(building, ignore_errors=True)
        say(f"pip_packages: installing {packages} into {target}")
        # argv list, no shell: package specs are data, not commands.
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet",
             "--target", building, *packages],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        if result.returncode != 0:
            shutil.rmtree(building, ignore_errors=True)
            raise RuntimeError(f"pip install of {packages} failed:\n{result.stdout[-2000:]}")
        os.replace(building, target)
        return target
