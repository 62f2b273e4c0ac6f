"""pip_packages: the first job with a package set installs it, later jobs reuse the cached env.

Times the node runtime's ``ensure_env`` (what each node calls before starting its ranks) on an
empty cache and again on the warm one, for two package sets. Writes the `package_cache` section.
"""

import statistics
import sys
import tempfile
import time

import common

from airflow_tf.runtime.packages import ensure_env

SETS = (["pyjokes==0.8.3"], ["pyjokes==0.8.3", "tomli-w==1.0.0"])
ROUNDS = 3


def main() -> int:
    common.wait_for_quiet(max_wait_s=10)  # pip is mostly network-bound
    rows = []
    for packages in SETS:
        firsts, seconds = [], []
        for _ in range(ROUNDS):
            cache = tempfile.mkdtemp(prefix="bench-pip-")
            t = time.perf_counter()
            ensure_env(packages, lambda _m: None, cache)
            firsts.append(time.perf_counter() - t)
            t = time.perf_counter()
            ensure_env(packages, lambda _m: None, cache)
            seconds.append(time.perf_counter() - t)
        rows.append((packages, firsts, seconds))
    lines = [
        "## Per-job packages: first install vs cached environment",
        "",
        common.machine_facts(),
        f"- command: `{common.command_line()}`; {ROUNDS} rounds per set, each on a fresh empty cache "
        "(downloads come from the package index: network time included in the first install)",
        "",
        "| pip_packages | first job (install) median | later jobs (cached) median | raw first / cached (s) |",
        "|---|---|---|---|",
    ]
    for packages, firsts, seconds in rows:
        raw = ", ".join(f"{a:.2f}/{b * 1000:.1f}ms" for a, b in zip(firsts, seconds))
        lines.append(f"| `{packages}` | {statistics.median(firsts):.2f} s | "
                     f"{statistics.median(seconds) * 1000:.1f} ms | {raw} |")
    lines.append("")
    lines.append("The cached path is a lock and a directory check: no pip process runs "
                 "(tests/integration/test_pip_packages.py asserts the second job logs no install).")
    common.write_section("package_cache", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
