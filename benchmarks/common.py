"""Shared by the benchmarks: machine facts, statistics, and writing one section of docs/benchmarks.md.

Benchmarks measure and report; they never assert. Each one owns a section of the report between
``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` and replaces only that section, so re-running
one benchmark leaves the others' numbers alone.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(REPO, "docs", "benchmarks.md")
SECTIONS = ("parse_cost", "throughput", "throughput_more", "throughput_mpi", "throughput_mwms", "orchestration", "orchestration_direct", "job_overhead", "parameter_server", "horovod", "worker_slots",
            "celery_overhead", "docker",
            "ssh", "plan_size", "trigger_cost", "fan_out")  # order in the report
LOAD_AT_START = os.getloadavg()  # this module is imported when a benchmark starts
# Every process a benchmark starts inherits this marker, so CPU used by anything else on the
# machine during a measurement can be told apart (see ForeignCpu).
MARKER_VAR = "BENCH_AIRFLOW_TF_TAG"  # no AIRFLOW prefix: launchers strip those from child environments
os.environ.setdefault(MARKER_VAR, f"{os.getpid()}-{time.time_ns()}")

HEADER = """# Benchmarks

Measured, not asserted: `./scripts/bench.sh` (or `make bench`) sets up `.venv` and runs every
benchmark in `benchmarks/`; each writes its own section below and replaces only that section
when re-run (`./scripts/bench.sh parse_cost` re-runs one). Numbers depend on the machine; each
section says which machine produced it. Run nothing else heavy meanwhile.
"""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "airflow_tf", "dags"],
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" + uncommitted changes in airflow_tf/ or dags/" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine_facts() -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join([
        f"- date: {now}",
        f"- machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu_model()}, {ram_gib()} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- software: Python {platform.python_version()}, apache-airflow {package_version('apache-airflow')}, "
        f"tensorflow-cpu {package_version('tensorflow-cpu')}, tf-keras {package_version('tf-keras')}",
        f"- commit: {git_commit()}",
        "- load average (1/5/15 min) at start: {}; at end: {} (anything else running skews the numbers)".format(
            " / ".join(f"{v:.2f}" for v in LOAD_AT_START), " / ".join(f"{v:.2f}" for v in os.getloadavg())),
    ])


def command_line() -> str:
    """The command that re-runs this benchmark, relative to the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return " ".join(["python", shlex.quote(script), *map(shlex.quote, sys.argv[1:])])


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]), idle


def cpu_busy(sample_s: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``sample_s`` (while this process sleeps)."""
    total0, idle0 = _cpu_times()
    time.sleep(sample_s)
    total1, idle1 = _cpu_times()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(max_busy: float = 0.15, max_wait_s: float | None = None) -> float:
    """Wait (up to BENCH_QUIET_WAIT_S, default 180 s) until the CPUs are idle enough to measure.

    Returns the busy fraction seen last; a measurement then starts whatever it is, and the
    reports print it so a noisy run can be told apart.
    """
    if max_wait_s is None:
        max_wait_s = float(os.environ.get("BENCH_QUIET_WAIT_S", "180"))
    deadline = time.monotonic() + max_wait_s
    busy = cpu_busy()
    told = False
    while busy > max_busy and time.monotonic() < deadline:
        if not told:
            print(f"machine busy ({busy:.0%} CPU in use by others): waiting up to {max_wait_s:.0f} s for it to settle",
                  flush=True)
            told = True
        busy = cpu_busy()
    return busy


class ForeignCpu:
    """Samples /proc while a measurement runs: CPU seconds used by processes that are not the
    benchmark's (no marker in their environment). Processes that start and end between two
    samples are missed, so this is a lower bound; it tells a clean run from a disturbed one."""

    def __init__(self, interval_s: float = 0.5):
        import threading

        self.interval_s = interval_s
        self.tick = os.sysconf("SC_CLK_TCK")
        self.marker = f"{MARKER_VAR}={os.environ[MARKER_VAR]}".encode()
        self.seen: dict[tuple[int, int], tuple[int, bool]] = {}  # (pid, start) -> (cpu ticks, ours)
        self.foreign_ticks = self.own_ticks = 0
        self.foreign_by_name: dict[str, int] = {}  # command name -> ticks
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.foreign_s = self.own_s = 0.0

    def _boot_ticks_now(self) -> float:
        with open("/proc/uptime") as f:
            return float(f.read().split()[0]) * self.tick

    def _sample(self, first: bool) -> None:
        me = os.getpid()
        stats: dict[int, tuple[int, int, int, str]] = {}  # pid -> (cpu ticks, start, ppid, comm)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, _, tail = f.read().rpartition(")")
                fields = tail.split()
                stats[int(entry)] = (int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[1]),
                                     head.partition("(")[2])
            except (OSError, IndexError, ValueError):
                continue

        def ours(pid: int, depth: int = 0) -> bool:
            """Started by this benchmark: the marker in its environment, or an ancestor that is ours.
            (Airflow's components rewrite their process title over their environment block, so
            for them only the ancestry tells.)"""
            if pid == me:
                return True
            if pid not in stats or pid <= 1 or depth > 64:
                return False
            key = (pid, stats[pid][1])
            if key in self.seen:
                return self.seen[key][1]
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if self.marker in f.read().split(b"\0"):
                        return True
            except OSError:
                pass  # kernel threads and the like
            return ours(stats[pid][2], depth + 1)

        for pid, (cpu, start, _ppid, comm) in stats.items():
            key = (pid, start)
            if key in self.seen:
                before, mine = self.seen[key]
            else:
                mine = ours(pid)
                # Known before the measurement: count from now; started since: count it all.
                before = cpu if first or start < self.t0_ticks else 0
            delta = max(0, cpu - before)
            if mine:
                self.own_ticks += delta
            else:
                self.foreign_ticks += delta
                if delta:
                    self.foreign_by_name[comm] = self.foreign_by_name.get(comm, 0) + delta
            self.seen[key] = (cpu, mine)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample(first=False)

    def __enter__(self) -> "ForeignCpu":
        self.t0_ticks = self._boot_ticks_now()
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample(first=False)
        self.foreign_s = self.foreign_ticks / self.tick
        self.own_s = self.own_ticks / self.tick

    def top_foreign(self, n: int = 3) -> str:
        """The other processes that used the most CPU, e.g. ``cc1plus 12.3 s, python 4.0 s``."""
        top = sorted(self.foreign_by_name.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{name} {ticks / self.tick:.1f} s" for name, ticks in top) or "none"


def median(values) -> float:
    return statistics.median(values)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def fmt_s(seconds: float | None, digits: int = 2) -> str:
    return "n/a" if seconds is None else f"{seconds:.{digits}f}"


def write_section(name: str, body: str, path: str = REPORT) -> None:
    """Replace the ``name`` section of the report, or add it (the sections in SECTIONS keep that
    order; any other name is appended at the end)."""
    if not re.fullmatch(r"[a-z0-9_-]+", name):
        raise ValueError(f"section names are [a-z0-9_-]+, got {name!r}")
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lock_dir = os.path.join(REPO, ".airflow")  # git-ignored
    os.makedirs(lock_dir, exist_ok=True)
    with open(os.path.join(lock_dir, "benchmarks-report.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmarks finishing at once must not lose a section
        _replace_section(path, name, start, end, block)


def _replace_section(path: str, name: str, start: str, end: str, block: str) -> None:
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        text = HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        # Insert before the first later section present, else append.
        later = [f"<!-- bench:{s} -->" for s in SECTIONS[SECTIONS.index(name) + 1:]] if name in SECTIONS else []
        positions = [text.find(marker) for marker in later if marker in text]
        if positions:
            at = min(positions)
            text = text[:at] + block + "\n\n" + text[at:]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    print(f"wrote section {name!r} of {os.path.relpath(path, REPO)}")


def bench_env(airflow_home: str) -> dict[str, str]:
    """The environment scripts/env.sh sets, with this benchmark's own Airflow home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
        "AIRFLOW_HOME": airflow_home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(REPO, "dags"),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })
    return env
