"""Training throughput: the same ranks and script launched by hand and through the operators.

The script is benchmarks/dags/throughput/synthetic.py (a small CNN on random data; rank 0
writes the images/s of its timed steps). Baselines, as users launch by hand:

- gloo: ``horovodrun --gloo -np 2 -H localhost:2 python synthetic.py --framework horovod``
- mpi:  ``horovodrun --mpi -np 2 -H localhost:2 python synthetic.py --framework horovod``
- mwms: two ``python synthetic.py --framework mwms`` with a hand-written TF_CONFIG each

against benchmarks/dags/bench_throughput.py (HorovodTrainOperator 1 node x 2 processes,
TensorFlowTrainOperator 2 nodes), (a) under ``dag.test()`` in a fresh process, and (b) on a real
scheduler (``airflow standalone``, LocalExecutor; the hand runs of (b) run while that server is
up and idle, so both sides share its background). Rounds alternate hand, operator per mode.
The throughput ratio is operator / hand of each round's pair; medians and spreads are reported.
Usage: python benchmarks/throughput.py [--rounds N] [--steps N] [--modes gloo,mpi,mwms]
       [--where dag_test,scheduler] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, ForeignCpu, bench_env, command_line, machine_facts, median, wait_for_quiet, write_section  # noqa: E402

SCRIPT = os.path.join(REPO, "benchmarks", "dags", "throughput", "synthetic.py")
DAG_FILE = os.path.join(REPO, "benchmarks", "dags", "bench_throughput.py")
HOME = os.path.join(REPO, ".airflow", "bench-throughput")
MODES = ("gloo", "mpi", "mwms")
RANK_ENV = {"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}  # what the operators give distributed ranks
TIMEOUT_S = 600


def free_ports(count: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def rank_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(RANK_ENV)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    return env


def read_result(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


WARMUP = 5  # warm-up steps per run (--warmup)


def by_hand(mode: str, steps: int, workdir: str) -> dict:
    out = os.path.join(workdir, f"hand-{mode}-{time.time_ns()}.json")
    args = ["--steps", str(steps), "--warmup", str(WARMUP), "--out", out]
    log = open(out + ".log", "w")
    start = time.perf_counter()
    if mode in ("gloo", "mpi"):
        argv = [os.path.join(os.path.dirname(sys.executable), "horovodrun"), f"--{mode}", "-np", "2", "-H", "localhost:2",
                sys.executable, SCRIPT, "--framework", "horovod", *args]
        code = subprocess.run(argv, env=rank_env(), cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                              timeout=TIMEOUT_S).returncode
        codes = [code]
    else:
        ports = free_ports(2)
        workers = [f"127.0.0.1:{p}" for p in ports]
        procs = []
        for i in range(2):
            env = {**rank_env(), "TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})}
            procs.append(subprocess.Popen([sys.executable, SCRIPT, "--framework", "mwms", *args], env=env, cwd=workdir,
                                          stdout=log, stderr=subprocess.STDOUT))
        codes = [p.wait(TIMEOUT_S) for p in procs]
    wall = time.perf_counter() - start
    if any(codes) or not os.path.exists(out):
        raise RuntimeError(f"hand {mode} failed ({codes}); log {out}.log")
    return {**read_result(out), "wall_s": wall}


# -- (a) dag.test() in a fresh process ------------------------------------------------------------
CHILD = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag(sys.argv[2])
run = dag.test(run_conf={"out": sys.argv[3], "steps": int(sys.argv[4]), "warmup": int(sys.argv[5])})
print("DAG_TEST_STATE", run.state)
"""


def dag_test(mode: str, steps: int, workdir: str, env: dict) -> dict:
    out = os.path.join(workdir, f"dagtest-{mode}-{time.time_ns()}.json")
    start = time.perf_counter()
    with open(out + ".log", "w") as log:
        code = subprocess.run([sys.executable, "-c", CHILD, DAG_FILE, f"bench_tp_{mode}", out, str(steps), str(WARMUP)], env=env,
                              cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT_S).returncode
    wall = time.perf_counter() - start
    if code or not os.path.exists(out):
        raise RuntimeError(f"dag.test() of bench_tp_{mode} failed ({code}); log {out}.log")
    return {**read_result(out), "wall_s": wall}


# -- (b) a real scheduler -------------------------------------------------------------------------
def on_scheduler(server, mode: str, steps: int, workdir: str) -> dict:
    from orchestration import run_state

    out = os.path.join(workdir, f"sched-{mode}-{time.time_ns()}.json")
    start = time.perf_counter()
    run_id = server.trigger(f"bench_tp_{mode}", {"out": out, "steps": steps, "warmup": WARMUP})
    state = None
    while time.perf_counter() - start < TIMEOUT_S:
        state = run_state(server.home, f"bench_tp_{mode}", run_id)
        if state in ("success", "failed"):
            break
        time.sleep(0.5)
    if state != "success" or not os.path.exists(out):
        raise RuntimeError(f"run {run_id} of bench_tp_{mode} ended {state}; see {server.log_path}")
    return {**read_result(out), "wall_s": time.perf_counter() - start}


ROLES = (  # (role, what its command line contains), first match wins
    ("ranks", "synthetic.py"),
    ("launcher", "airflow_tf.runtime.launcher"),
    ("hvd wrappers", "airflow_tf.runtime.hvd_"),
    ("horovodrun / mpirun", "horovodrun"), ("horovodrun / mpirun", "mpirun"), ("horovodrun / mpirun", "orted"),
    ("airflow (dag.test, scheduler, triggerer, tasks)", "airflow"),
)


class CpuByRole:
    """CPU seconds per role (ranks, launcher, Horovod's launchers, Airflow) during a run, and
    during its timed steps alone: where the CPU that is not training goes. /proc sampled every
    0.25 s; a process's last sample counts (a lower bound for processes that live less than a
    sample), and a window's edges are the samples nearest to it (+-0.25 s)."""

    def __init__(self):
        import threading

        self.tick = os.sysconf("SC_CLK_TCK")
        # One entry per sample: (time, {(pid, start time): (role, CPU ticks)}).
        self.series: list[tuple[float, dict[tuple[int, str], tuple[str, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        now, seen = time.time(), {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            role = next((r for r, needle in ROLES if needle in cmdline), None)
            if role is not None:
                seen[(int(pid), fields[19])] = (role, int(fields[11]) + int(fields[12]))
        self.series.append((now, seen))

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self._sample()

    def __enter__(self) -> "CpuByRole":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _between(self, first: dict, last: dict) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, (role, ticks) in last.items():
            out[role] = out.get(role, 0.0) + (ticks - first.get(key, (role, 0))[1]) / self.tick
        return out

    def seconds(self) -> dict[str, float]:
        """The whole run: each process from the first sample (or its start) to its last sample."""
        last: dict[tuple[int, str], tuple[str, int]] = {}
        for _, seen in self.series:
            last.update(seen)
        return self._between(self.series[0][1], last)

    def window(self, start: float, end: float) -> dict[str, float]:
        """CPU seconds per role between the samples nearest to ``start`` and ``end``."""
        def nearest(t: float) -> dict:
            return min(self.series, key=lambda s: abs(s[0] - t))[1]

        return self._between(nearest(start), nearest(end))


def measure(label: str, fn, *args) -> dict:
    quiet = wait_for_quiet()
    with ForeignCpu() as cpu, CpuByRole() as roles:
        result = fn(*args)
    result.update({"busy_before": quiet, "foreign_s": cpu.foreign_s, "roles": roles.seconds(),
                   "roles_timed": roles.window(*result["timed"]) if "timed" in result else {}})
    print(f"  {label}: {result['images_per_s']:.1f} images/s (run {result['wall_s']:.1f} s, others "
          f"{cpu.foreign_s:.1f} CPU-s; by role " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(result["roles"].items()))
          + ")", flush=True)
    return result


def rounds_for(where: str, modes: list[str], rounds: int, steps: int, workdir: str, env: dict, server=None) -> dict:
    operator = (lambda mode: dag_test(mode, steps, workdir, env)) if where == "dag_test" else \
        (lambda mode: on_scheduler(server, mode, steps, workdir))
    results = {m: {"hand": [], "operator": []} for m in modes}
    # One unrecorded, short warm-up pair (first imports, page cache, the server's first task processes).
    by_hand(modes[0], 8, workdir)
    operator(modes[0])
    for i in range(rounds):
        for mode in modes:
            print(f"[{where}] round {i + 1} {mode}", flush=True)
            # Alternate which goes first, so a slow drift of the machine favours neither side.
            order = ("hand", "operator") if i % 2 == 0 else ("operator", "hand")
            for side in order:
                fn = (lambda m=mode: by_hand(m, steps, workdir)) if side == "hand" else (lambda m=mode: operator(m))
                results[mode][side].append(measure(f"{side} {mode}", fn))
    return results


def summarize(where: str, results: dict) -> tuple[list[str], list[str]]:
    rows, notes = [], []
    for mode, sides in results.items():
        hand = [r["images_per_s"] for r in sides["hand"]]
        op = [r["images_per_s"] for r in sides["operator"]]
        ratios = [o / h for o, h in zip(op, hand)]
        rows.append(f"| {where} | {mode} | {len(ratios)} | {median(hand):.1f} ({min(hand):.1f}–{max(hand):.1f}) | "
                    f"{median(op):.1f} ({min(op):.1f}–{max(op):.1f}) | **{median(ratios):.3f}** "
                    f"({min(ratios):.3f}–{max(ratios):.3f}) | {median(op) / median(hand):.3f} | "
                    f"{median([r['foreign_s'] for r in sides['hand']]):.1f} / "
                    f"{median([r['foreign_s'] for r in sides['operator']]):.1f} |")
        notes.append(f"- {where}, {mode}: hand " + ", ".join(f"{v:.1f}" for v in hand) + "; operator "
                     + ", ".join(f"{v:.1f}" for v in op) + "; ratios " + ", ".join(f"{v:.3f}" for v in ratios)
                     + "; run walls hand / operator (s): " + ", ".join(f"{r['wall_s']:.0f}" for r in sides["hand"])
                     + " / " + ", ".join(f"{r['wall_s']:.0f}" for r in sides["operator"]))
        for side in ("hand", "operator"):
            roles = sorted({k for r in sides[side] for k in r["roles"]})
            notes.append(f"  - CPU-s per run by role, {side} (median): " + ", ".join(
                f"{k} {median([r['roles'].get(k, 0.0) for r in sides[side]]):.1f}" for k in roles))
        for side in ("hand", "operator"):
            timed = [r for r in sides[side] if r.get("roles_timed")]
            if not timed:
                continue
            roles = sorted({k for r in timed for k in r["roles_timed"]})
            seconds = median([r["timed"][1] - r["timed"][0] for r in timed])
            notes.append(f"  - CPU-s during the timed steps only ({seconds:.1f} s), {side} (median): " + ", ".join(
                f"{k} {median([r['roles_timed'].get(k, 0.0) for r in timed]):.2f}" for k in roles))
    return rows, notes


def main() -> int:
    global WARMUP
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run (after 5 warm-up steps)")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed steps first: more of them keep the jobs' start-up work (its Airflow tasks, the "
                             "trigger's start) out of the timed steps")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--where", default="dag_test,scheduler")
    parser.add_argument("--quick", action="store_true", help="1 round, gloo only, dag.test() only (a smoke run)")
    parser.add_argument("--section", default="throughput", choices=("throughput", "throughput_more", "throughput_mpi", "throughput_mwms"),
                        help="the docs/benchmarks.md section to write (throughput_more: a longer run of some modes)")
    args = parser.parse_args()
    WARMUP = args.warmup
    modes = ["gloo"] if args.quick else [m.strip() for m in args.modes.split(",")]
    wheres = ["dag_test"] if args.quick else [w.strip() for w in args.where.split(",")]
    rounds = 1 if args.quick else args.rounds
    workdir = os.path.join(HOME, "runs")  # result files and logs of every run, kept for a look afterwards
    shutil.rmtree(workdir, ignore_errors=True)
    os.makedirs(workdir)
    env = bench_env(HOME)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    # dag.test() runs only DAGs of a configured bundle: benchmarks/dags is this one's.
    env["AIRFLOW__CORE__DAGS_FOLDER"] = os.path.dirname(DAG_FILE)
    env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps([{
        "name": "bench", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": os.path.dirname(DAG_FILE)}}])
    os.makedirs(HOME, exist_ok=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    busy_before = wait_for_quiet()
    t_start = time.time()
    all_rows, all_notes = [], []
    if True:
        for where in wheres:
            if where == "dag_test":
                results = rounds_for(where, modes, rounds, args.steps, workdir, env)
            else:
                sys.path.insert(0, REPO)
                from tests.e2e.server import AirflowServer

                server = AirflowServer(home=HOME + "-e2e", bundles={"bench": os.path.join(REPO, "benchmarks", "dags")},
                                       env={"AIRFLOW__CORE__PARALLELISM": "32"})
                server.start()
                try:
                    for mode in modes:
                        server.wait_for_dag(f"bench_tp_{mode}")
                    results = rounds_for(where, modes, rounds, args.steps, workdir, env, server)
                finally:
                    server.stop()
            rows, notes = summarize(where, results)
            all_rows += rows
            all_notes += notes
    body = "\n".join([
        "## Training throughput: operators vs. launching by hand (same ranks, same script, one run)",
        "",
        machine_facts(),
        f"- command: `{command_line()}` ({time.time() - t_start:.0f} s in all); CPU busy before: {busy_before:.0%}",
        "- script: benchmarks/dags/throughput/synthetic.py, a small CNN (3 conv layers) on random 64x64 images,",
        f"  batch 32 per rank, 2 ranks on this machine (CPU, tf_keras), {WARMUP} warm-up steps, then {args.steps} timed steps;",
        "  rank 0 reports images/s over the timed steps (start-up is not in it: the job-overhead sections cover that)",
        "- hand: `horovodrun --gloo|--mpi -np 2 -H localhost:2 python synthetic.py`; MWMS: two processes with a",
        "  hand-written TF_CONFIG. Operator: HorovodTrainOperator 1 node x 2 processes, TensorFlowTrainOperator",
        "  2 nodes (benchmarks/dags/bench_throughput.py), LocalBackend, default poll_interval (1 s)",
        "- dag_test: `dag.test()` in a fresh process (its in-process triggerer included); scheduler: `airflow",
        "  standalone` (LocalExecutor), the hand runs made while that server was up, so both share its background",
        f"- {rounds} rounds after one short unrecorded warm-up pair; within a round hand and operator alternate",
        "  which goes first; ratio = operator / hand of the same round",
        "",
        "| where | mode | pairs | hand images/s median (min–max) | operator images/s median (min–max) | "
        "**ratio median** (min–max) | ratio of medians | others' CPU-s hand / operator |",
        "|---|---|---|---|---|---|---|---|",
        *all_rows,
        "",
        "GPU: not measured. This machine has no GPU and no device machine was lent to the session that wrote this",
        "benchmark; on one, the same script and protocol apply (`--modes` as here, the ranks pinned by the operators'",
        "CUDA_VISIBLE_DEVICES).",
        "",
        "Before (the issue that asked for this benchmark, issue 20): Horovod's own synthetic benchmark (MobileNetV2,",
        "batch 8, 2 ranks, Gloo), one `horovodrun -np 2` then one HorovodTrainOperator run under `dag.test()`, eight",
        "single pairs on this machine: operator / horovodrun = 0.90, 0.93, 0.93, 0.92, 1.11, 0.85, 0.99, 1.02, median",
        "0.93x, with a spread single pairs could not resolve. The protocol above (alternating rounds in one run, the",
        "throughput of the timed steps only, the CPU each role used) is what replaces it.",
        "",
        "Raw:",
        "",
        *all_notes,
    ]) + "\n"
    print(body)
    if args.section != "throughput":
        body = body.replace("## Training throughput:", "## Training throughput, more rounds:", 1)
    write_section(args.section, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
