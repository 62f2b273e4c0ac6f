"""Per-job conda packages: one environment per package set, built once per node and reused.

The estimator's ``conda_packages`` built a conda environment for each run. Here a node builds
``<cache>/conda-<hash of packages, channels, platform, Python>`` once -- with conda, mamba or micromamba
when the node has one on its PATH, else with py-rattler (a library, no conda binary needed) --
and the next job asking for the same set finds it ready. Its ``site-packages`` joins the ranks'
PYTHONPATH after the pip packages and its ``bin`` goes first on PATH, so the node's own Python
(the one with TensorFlow) imports them. Locking and stopping on a signal are the pip
environments' (``runtime.packages``). Standard library only at import; the rattler
path runs in a child process (``python -m airflow_tf.runtime.conda_env``) so a stop can kill it.

A compiled conda package must be built for the node's Python version (what conda itself
would pin); the environment is never activated, so no activation scripts run.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import sys
from collections.abc import Sequence

from airflow_tf.runtime.packages import DEFAULT_CACHE, Interrupted, _lock, _run_pip, redact

COMPLETE = ".airflow_tf_complete"  # written last into a finished environment
TOOLS = ("micromamba", "mamba", "conda")  # preferred in this order (the mambas solve faster)


def env_key(packages: Sequence[str], channels: Sequence[str]) -> str:
    payload = {"packages": sorted(packages), "channels": list(channels),  # channel order is priority
               "platform": f"{sys.platform}-{platform.machine()}",
               "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def installer_argv(packages: Sequence[str], channels: Sequence[str], prefix: str) -> tuple[str, list[str]]:
    """(tool name, argv) that creates ``prefix`` holding ``packages`` from ``channels`` only."""
    for tool in TOOLS:
        path = shutil.which(tool)
        if path:
            argv = [path, "create", "--yes", "--quiet", "--prefix", prefix, "--override-channels"]
            for channel in channels:
                argv += ["--channel", channel]
            return tool, [*argv, *packages]  # specs were checked: none starts with "-"
    if importlib.util.find_spec("rattler") is not None:
        argv = [sys.executable, "-m", "airflow_tf.runtime.conda_env", "--prefix", prefix]
        for channel in channels:
            argv += ["--channel", channel]
        return "py-rattler", [*argv, "--", *packages]
    raise RuntimeError("conda_packages: this node has no conda, mamba or micromamba on its PATH and no py-rattler "
                       f"in its Python ({sys.executable}): install one of them (pip install py-rattler), or use "
                       "pip_packages")


def site_packages(prefix: str) -> str | None:
    """The environment's site-packages for this Python (another version's would not import)."""
    own = os.path.join(prefix, "lib", f"python{sys.version_info.major}.{sys.version_info.minor}", "site-packages")
    if os.path.isdir(own):
        return own
    others = sorted(glob.glob(os.path.join(prefix, "lib", "python3*", "site-packages")))
    return others[0] if others else None


def ensure_env(packages: list[str], channels: list[str], say, cache_root: str | None = None, *,
               should_stop=lambda: False) -> str:
    """Return the prefix of an environment holding ``packages``; build it first if needed."""
    cache_root = cache_root or os.environ.get("AIRFLOW_TF_PACKAGE_CACHE") or DEFAULT_CACHE
    os.makedirs(cache_root, exist_ok=True)
    key = f"conda-{env_key(packages, channels)}"
    target = os.path.join(cache_root, key)
    done = os.path.join(target, COMPLETE)
    with open(os.path.join(cache_root, f"{key}.lock"), "w") as lock:
        _lock(lock, should_stop)
        if os.path.isfile(done):
            say(f"conda_packages: using cached environment {target}")
            return target
        # Built in place, not renamed like the pip environments: conda bakes the prefix into
        # files (scripts, binaries' placeholders). The marker written last says it is complete.
        shutil.rmtree(target, ignore_errors=True)
        tool, argv = installer_argv(packages, channels, target)
        shown = [redact(c) for c in channels]
        say(f"conda_packages: installing {packages} from {shown} with {tool} into {target}")
        try:
            code, output = _run_pip(argv, should_stop)  # any installer: its output, stopped on a signal
        except Interrupted:
            shutil.rmtree(target, ignore_errors=True)
            raise
        if code != 0:
            shutil.rmtree(target, ignore_errors=True)
            raise RuntimeError(f"conda_packages: {tool} could not install {packages} from {shown} "
                               f"(exit {code}):\n{redact(output)[-2000:]}")
        with open(done, "w") as f:
            f.write(json.dumps({"packages": packages, "channels": shown, "tool": tool}) + "\n")
        return target


def _rattler_install(prefix: str, channels: list[str], specs: list[str]) -> None:
    import asyncio  # noqa: PLC0415

    import rattler  # noqa: PLC0415

    cache = os.path.join(os.environ.get("AIRFLOW_TF_PACKAGE_CACHE") or DEFAULT_CACHE, "rattler-cache")

    async def install() -> None:
        records = await rattler.solve(
            sources=channels, specs=specs, gateway=rattler.Gateway(cache_dir=cache),
            platforms=[rattler.Platform.current(), rattler.Platform("noarch")],
            virtual_packages=rattler.VirtualPackage.detect(),
        )
        print("solved:", ", ".join(f"{r.name.normalized}={r.version}" for r in records), flush=True)
        await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)

    asyncio.run(install())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_tf.runtime.conda_env", description="install conda packages "
                                     "into a new prefix with py-rattler")
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--channel", action="append", required=True)
    parser.add_argument("specs", nargs="+")
    args = parser.parse_args(argv)
    _rattler_install(args.prefix, args.channel, args.specs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
