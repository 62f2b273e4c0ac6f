"""Horovod: what building it costs, and what HorovodTrainOperator costs over plain ``horovodrun``.

(i) Build time of scripts/build_horovod.sh's Horovod wheel:
    - fresh: the script's build steps (pip download of the sdist, unpack, scripts/patch_horovod.sh,
      ``pip wheel --no-deps --no-build-isolation`` with the script's HOROVOD_* flags and
      MAKEFLAGS=-j$(nproc)), copied here and run in a new temporary directory with a new, empty
      wheel cache. Nothing is installed: the venv is left alone. Run --build-repeats times (default 1;
      a build takes minutes).
    - cached: ``scripts/build_horovod.sh`` itself while the venv's stamp file exists (the path every
      re-run of scripts/setup.sh takes): it checks the stamp and ``import horovod.tensorflow`` and
      exits. Not run (and reported so) when the stamp is missing: then the script would reinstall.
    - cached wheel, stamp missing: the script's ``pip install --no-deps --force-reinstall`` of the
      cached wheel, here with ``--target`` a temporary directory instead of the venv (same pip, same
      wheel), plus the script's closing import check.
(ii) Job overhead: the same 2-rank job (dags/horovod_example/train_tf2.py --epochs 2
    --steps-per-epoch 20, both ranks on this machine), four ways, alternating, REPEATS rounds:
    - hand gloo: ``horovodrun --gloo -np 2 -H localhost:2 python train_tf2.py ...`` (cwd dags/horovod_example)
    - operator gloo: ``dag.test()`` of bench_hvd_gloo_2x1 (benchmarks/dags/bench_training.py, the same
      HorovodTrainOperator as tests/dags/hvd_matrix.py's hvd_gloo_2x1: 2 nodes x 1 process, poll 0.5 s)
    - hand mpi: ``horovodrun --mpi -np 2 -H localhost:2 python train_tf2.py ...`` (horovodrun itself adds
      ``--allow-run-as-root`` for Open MPI, so no --mpi-args are needed as root)
    - operator mpi: ``dag.test()`` of bench_hvd_mpi_2x1 (hvd_matrix.py's hvd_mpi_2x1)
    Each ``dag.test()`` runs in a fresh process (like scripts/run_demo.py). A run during which other
    processes used more than --max-foreign-cpu-s CPU seconds is repeated (--max-discards in all).
Usage: python benchmarks/horovod_overhead.py [--repeats N] [--build-repeats N] [--skip-build] [--skip-jobs]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (REPO, ForeignCpu, bench_env, command_line, fmt_s, machine_facts, median, package_version,  # noqa: E402
                    wait_for_quiet, write_section)
from job_overhead import AIRFLOW_HOME, HAND_DIR, run_dag_test  # noqa: E402
from ps_overhead import BENCH_DAGS, breakdown, prepare  # noqa: E402

SECTION = "horovod"
VENV = os.path.join(REPO, ".venv")
BUILD_SCRIPT = os.path.join(REPO, "scripts", "build_horovod.sh")
SOURCE_DIR = os.path.join(REPO, "dags", "horovod_example")
HVD_VERSION = "0.28.1"
PATCHES = 2
# The build's command lines as scripts/build_horovod.sh has them: if one is gone from the script,
# the report says the copy below may no longer be the script's build.
SCRIPT_LINES = [
    f"HVD_VERSION={HVD_VERSION}",
    f"PATCHES={PATCHES}",
    '"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$work/dl"',
    'tar xzf "$work/dl/horovod-$HVD_VERSION.tar.gz" -C "$work"',
    '"$REPO/scripts/patch_horovod.sh" "$src"',
    "HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1",
    'HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)"',
    '"$VENV/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation "$src" -w "$CACHE"',
    '"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$CACHE"/horovod-*.whl',
]
TRAIN_ARGS = ["train_tf2.py", "--epochs", "2", "--steps-per-epoch", "20"]
DAGS = {"gloo": "bench_hvd_gloo_2x1", "mpi": "bench_hvd_mpi_2x1"}
POLL_INTERVAL_S = 0.5


def tf_version() -> str:
    return package_version("tensorflow-cpu")


def stamp_path() -> str:
    return os.path.join(VENV, f".horovod-{HVD_VERSION}-tf{tf_version()}-p{PATCHES}")


def cached_wheel() -> str | None:
    cache = os.environ.get("AIRFLOW_TF_WHEEL_CACHE", os.path.expanduser("~/.cache/airflow-tf/wheels"))
    wheels = glob.glob(os.path.join(cache, f"horovod-{HVD_VERSION}-tf{tf_version()}-p{PATCHES}", "horovod-*.whl"))
    return wheels[0] if wheels else None


def script_drift() -> list[str]:
    with open(BUILD_SCRIPT) as f:
        text = f.read()
    return [line for line in SCRIPT_LINES if line not in text]


def sh(cmd: str, **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], check=True, **kwargs)
    return time.perf_counter() - start


# -- (i) build ---------------------------------------------------------------------------------
def fresh_build() -> dict:
    """scripts/build_horovod.sh's build steps, into a new temporary work dir and wheel cache."""
    root = tempfile.mkdtemp(prefix="hvd-build-")
    work, cache = os.path.join(root, "work"), os.path.join(root, "wheel-cache")
    os.makedirs(os.path.join(work, "dl"))
    env = {**os.environ, "REPO": REPO, "VENV": VENV, "work": work, "CACHE": cache, "HVD_VERSION": HVD_VERSION}
    env["PATH"] = os.pathsep.join([os.path.join(VENV, "bin"), env.get("PATH", "")])
    steps = {}
    try:
        steps["download_s"] = sh('"$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: '
                                 '"horovod==$HVD_VERSION" -d "$work/dl"', env=env)
        # The patches themselves are the project's script (shared with docker/train-gpu.Dockerfile).
        steps["unpack_patch_s"] = sh(
            'tar xzf "$work/dl/horovod-$HVD_VERSION.tar.gz" -C "$work" && '
            '"$REPO/scripts/patch_horovod.sh" "$work/horovod-$HVD_VERSION" >/dev/null && mkdir -p "$CACHE"', env=env)
        log = os.path.join(root, "pip-wheel.log")
        with open(log, "w") as out:
            steps["compile_s"] = sh(
                'HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 '
                'HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" '
                '"$VENV/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation '
                '"$work/horovod-$HVD_VERSION" -w "$CACHE"', env=env, stdout=out, stderr=subprocess.STDOUT)
        wheels = glob.glob(os.path.join(cache, "horovod-*.whl"))
        steps["wheel_bytes"] = os.path.getsize(wheels[0]) if wheels else None
        steps["total_s"] = steps["download_s"] + steps["unpack_patch_s"] + steps["compile_s"]
        return steps
    finally:
        shutil.rmtree(root, ignore_errors=True)


def cached_script_run() -> float:
    """scripts/build_horovod.sh with the stamp present: check and exit, no install."""
    start = time.perf_counter()
    out = subprocess.run([BUILD_SCRIPT], capture_output=True, text=True, check=True, cwd=REPO)
    wall = time.perf_counter() - start
    if "already installed" not in out.stdout:
        raise RuntimeError(f"build_horovod.sh did not take the stamp path: {out.stdout}")
    return wall


def cached_wheel_install(wheel: str) -> dict:
    """The script's install of a cached wheel, into a temporary --target (not the venv), plus its
    closing import check (run against the venv's own, identical install)."""
    target = tempfile.mkdtemp(prefix="hvd-install-")
    try:
        start = time.perf_counter()
        subprocess.run([os.path.join(VENV, "bin", "pip"), "install", "-q", "--disable-pip-version-check", "--no-deps",
                        "--force-reinstall", "--target", target, wheel], check=True, capture_output=True)
        install = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run([os.path.join(VENV, "bin", "python"), "-c",
                        "import horovod.tensorflow as hvd; print('horovod:', 'mpi', hvd.mpi_built(), 'gloo', hvd.gloo_built())"],
                       check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        check = time.perf_counter() - start
        return {"install_s": install, "check_s": check, "total_s": install + check}
    finally:
        shutil.rmtree(target, ignore_errors=True)


# -- (ii) jobs ---------------------------------------------------------------------------------
def run_horovodrun(backend: str) -> dict:
    run_dir = tempfile.mkdtemp(prefix=f"hvd-{backend}-", dir=HAND_DIR)
    env = bench_env(AIRFLOW_HOME)
    # Where train_tf2.py's helpers write metrics and the model (else: into dags/horovod_example).
    env.update({"AIRFLOW_TF_NODE_DIR": run_dir, "AIRFLOW_TF_OUTPUT_DIR": os.path.join(run_dir, "outputs"),
                "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"})
    argv = [os.path.join(VENV, "bin", "horovodrun"), f"--{backend}", "-np", "2", "-H", "localhost:2", "python", *TRAIN_ARGS]
    log_path = os.path.join(run_dir, "horovodrun.log")
    start = time.perf_counter()
    start_epoch = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run(argv, cwd=SOURCE_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log,
                              stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"horovodrun --{backend} failed ({proc.returncode}); log: {log_path}")
    first_epoch = None
    with open(os.path.join(run_dir, "metrics-rank0.jsonl")) as f:
        first_epoch = json.loads(f.readline())["time"] - start_epoch
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"wall_s": wall, "first_epoch_s": first_epoch}


def op_first_epoch(op: dict) -> float | None:
    wait = op["xcoms"].get("train.wait[-1]") or {}
    times = [r["time"] for r in wait.get("history") or [] if r.get("epoch") == 1 and "loss" in r and "time" in r]
    return min(times) - op["dag_test_start"] if times else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--build-repeats", type=int, default=1)
    parser.add_argument("--cached-repeats", type=int, default=3)
    parser.add_argument("--skip-build", action="store_true", help="measure the jobs only")
    parser.add_argument("--skip-jobs", action="store_true", help="measure the build only")
    parser.add_argument("--max-foreign-cpu-s", type=float, default=1.5,
                        help="a run during which other processes used more CPU seconds is repeated")
    parser.add_argument("--max-discards", type=int, default=3, help="repeat at most this many disturbed runs in all")
    args = parser.parse_args()
    t_begin = time.perf_counter()

    discarded: list[str] = []
    foreign_log: dict[str, list[float]] = {}
    busy_log: dict[str, list[float]] = {}

    def measured(label, key, fn, *fn_args, repeatable=True):
        while True:
            quiet = wait_for_quiet()
            with ForeignCpu() as cpu:
                result = fn(*fn_args)
            if repeatable and cpu.foreign_s > args.max_foreign_cpu_s and len(discarded) < args.max_discards:
                discarded.append(f"{label} ({cpu.foreign_s:.1f})")
                print(f"{label}: others used {cpu.foreign_s:.1f} CPU-s meanwhile -> discarded, repeated", flush=True)
                continue
            foreign_log.setdefault(key, []).append(cpu.foreign_s)
            busy_log.setdefault(key, []).append(quiet)
            return result

    # (i) build
    builds, cached, installs = [], [], []
    drift = script_drift()
    # The script is only run where it will take the stamp path (it would reinstall into the venv
    # otherwise): stamp present, same version and patch level as here, and horovod importable.
    stamp_ok = (os.path.exists(stamp_path()) and not any(line in drift for line in SCRIPT_LINES[:2])
                and subprocess.run([os.path.join(VENV, "bin", "python"), "-c", "import horovod.tensorflow"],
                                   capture_output=True).returncode == 0)
    wheel = cached_wheel()
    if not args.skip_build:
        for i in range(args.build_repeats):
            print(f"fresh build {i + 1}/{args.build_repeats} (minutes) ...", flush=True)
            builds.append(measured(f"fresh build {i + 1}", "build", fresh_build, repeatable=False))
            print(f"fresh build: {builds[-1]['total_s']:.1f} s", flush=True)
        for i in range(args.cached_repeats if stamp_ok else 0):
            cached.append(measured(f"cached {i + 1}", "cached", cached_script_run))
            print(f"build_horovod.sh, stamp present: {cached[-1]:.2f} s", flush=True)
        for i in range(args.cached_repeats if wheel else 0):
            installs.append(measured(f"wheel install {i + 1}", "install", cached_wheel_install, wheel))
            print(f"cached wheel install + check: {installs[-1]['total_s']:.2f} s", flush=True)

    # (ii) jobs
    hand = {"gloo": [], "mpi": []}
    op = {"gloo": [], "mpi": []}
    if not args.skip_jobs:
        env, log_dir = prepare()
        for i in range(args.repeats):
            for backend in ("gloo", "mpi"):
                hand[backend].append(measured(f"round {i + 1} hand {backend}", f"hand-{backend}", run_horovodrun, backend))
                print(f"round {i + 1}: horovodrun --{backend} {hand[backend][-1]['wall_s']:.2f} s", flush=True)
                result = measured(f"round {i + 1} operator {backend}", f"op-{backend}", run_dag_test, DAGS[backend],
                                  BENCH_DAGS, 2, 2, env, os.path.join(log_dir, f"hvd-{backend}-{i + 1}.log"))
                result["phases"] = breakdown(result)
                op[backend].append(result)
                print(f"round {i + 1}: operator {backend} dag.test() {result['dag_test_s']:.2f} s", flush=True)
    runtime = time.perf_counter() - t_begin

    lines = ["## Horovod: build time, and HorovodTrainOperator vs. plain horovodrun", "", machine_facts(),
             f"- command: `{command_line()}` (this run took {runtime:.0f} s in all)",
             f"- Horovod {HVD_VERSION} (patches p{PATCHES}), tensorflow-cpu {tf_version()}, "
             f"Open MPI `{(subprocess.run(['mpirun', '--version'], capture_output=True, text=True).stdout.splitlines() or ['?'])[0]}`"]
    lines += ["", "### (i) Building Horovod (scripts/build_horovod.sh)", ""]
    if args.skip_build:
        lines.append("Not measured in this run (--skip-build).")
    else:
        lines.append(f"- fresh: the script's download + unpack + scripts/patch_horovod.sh + `pip wheel --no-deps --no-build-isolation` steps with "
                     f"MAKEFLAGS=-j{len(os.sched_getaffinity(0))}, copied into this benchmark and run in a new temporary "
                     "directory with a new, empty wheel cache; the wheel is built, not installed (the venv is left alone)")
        if drift:
            lines.append(f"- **note**: scripts/build_horovod.sh no longer contains {len(drift)} of the build lines this "
                         "benchmark copies; the fresh build below may not be the script's any more")
        lines.append("- cached: `scripts/build_horovod.sh` itself with the venv's stamp present (the path it takes whenever "
                     "scripts/setup.sh re-runs it with Horovod installed: stamp + `import horovod.tensorflow`, exit)"
                     + ("" if stamp_ok else f" -- **not run: stamp {os.path.relpath(stamp_path(), REPO)} missing, "
                                         "the script's version/patch level changed, or horovod does not import**"))
        lines.append("- cached wheel, stamp missing: the script's `pip install --no-deps --force-reinstall` of the cached "
                     "wheel into a temporary `--target` instead of the venv, plus its closing import check"
                     + ("" if wheel else " -- **not run: no cached wheel**"))
        lines += ["", "| path | runs (s) | median (s) |", "|---|---|---|"]
        for key, label in (("download_s", "fresh: pip download of the sdist"), ("unpack_patch_s", "fresh: unpack + patches"),
                           ("compile_s", "fresh: pip wheel (compile)"), ("total_s", "**fresh: total**")):
            values = [b[key] for b in builds]
            lines.append(f"| {label} | {', '.join(fmt_s(v, 1) for v in values)} | {fmt_s(median(values), 1) if values else 'n/a'} |")
        if cached:
            lines.append(f"| **cached: build_horovod.sh, stamp present** | {', '.join(fmt_s(v) for v in cached)} | "
                         f"{fmt_s(median(cached))} |")
        if installs:
            lines.append(f"| cached wheel: pip install --force-reinstall | {', '.join(fmt_s(v['install_s']) for v in installs)} | "
                         f"{fmt_s(median([v['install_s'] for v in installs]))} |")
            lines.append(f"| cached wheel: import check | {', '.join(fmt_s(v['check_s']) for v in installs)} | "
                         f"{fmt_s(median([v['check_s'] for v in installs]))} |")
            lines.append(f"| **cached wheel, stamp missing: total** | {', '.join(fmt_s(v['total_s']) for v in installs)} | "
                         f"{fmt_s(median([v['total_s'] for v in installs]))} |")
        lines.append("")
        if builds:
            wheel_mb = [b["wheel_bytes"] / 1e6 for b in builds if b["wheel_bytes"]]
            ref = f"{os.path.getsize(wheel) / 1e6:.1f} MB" if wheel else "none"
            lines.append(f"- wheel built: {', '.join(f'{v:.1f} MB' for v in wheel_mb)} (the cached wheel the venv has: {ref})")
        if builds and cached:
            lines.append(f"- fresh build / stamp path: **{median([b['total_s'] for b in builds]) / median(cached):.0f}x**; "
                         f"the stamp saves **{median([b['total_s'] for b in builds]) - median(cached):.0f} s** each time "
                         "build_horovod.sh re-runs (scripts/setup.sh calls it only when its own stamp is stale)")
    lines += ["", "### (ii) Job overhead: HorovodTrainOperator vs. horovodrun", ""]
    if args.skip_jobs:
        lines.append("Not measured in this run (--skip-jobs).")
    else:
        lines += [
            f"- workload: dags/horovod_example/{' '.join(TRAIN_ARGS)}, 2 ranks on this machine (CPU)",
            "- hand: `horovodrun --gloo|--mpi -np 2 -H localhost:2 python train_tf2.py --epochs 2 --steps-per-epoch 20`, "
            "cwd dags/horovod_example (metrics and model redirected to a temporary directory); wall time of horovodrun",
            "- operator: `dag.test()` of bench_hvd_gloo_2x1 / bench_hvd_mpi_2x1 (benchmarks/dags/bench_training.py: "
            "tests/dags/hvd_matrix.py's hvd_gloo_2x1 / hvd_mpi_2x1, node_count=2, process_count_per_node=1, "
            f"poll_interval={POLL_INTERVAL_S}) in a fresh process, SQLite, AIRFLOW_HOME=.airflow/bench; the dag.test() call's time",
            f"- {args.repeats} rounds, each: hand gloo, operator gloo, hand mpi, operator mpi; seconds",
            "",
            "| round | hand gloo | operator gloo | op. gloo whole process | op. gloo - hand | hand mpi | operator mpi | "
            "op. mpi whole process | op. mpi - hand |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i in range(args.repeats):
            cells = []
            for b in ("gloo", "mpi"):
                h, o = hand[b][i]["wall_s"], op[b][i]
                cells += [fmt_s(h), fmt_s(o["dag_test_s"]), fmt_s(o["process_s"]), f"{o['dag_test_s'] - h:+.2f}"]
            lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
        med = {}
        cells = []
        for b in ("gloo", "mpi"):
            mh, mo = median([h["wall_s"] for h in hand[b]]), median([o["dag_test_s"] for o in op[b]])
            md = median([o["dag_test_s"] - h["wall_s"] for h, o in zip(hand[b], op[b])])
            med[b] = (mh, mo, md)
            cells += [f"**{fmt_s(mh)}**", f"**{fmt_s(mo)}**", fmt_s(median([o["process_s"] for o in op[b]])), f"{md:+.2f}"]
        lines.append("| **median** | " + " | ".join(cells) + " |")
        lines += ["", "Medians:", ""]
        for b in ("gloo", "mpi"):
            mh, mo, md = med[b]
            ph = [o["phases"] for o in op[b]]

            def m(key, ph=ph):
                vals = [p[key] for p in ph if p[key] is not None]
                return median(vals) if vals else None

            hand_first = median([h["first_epoch_s"] for h in hand[b]])
            opf = [v for v in (op_first_epoch(o) for o in op[b]) if v is not None]
            lines.append(
                f"- {b}: operator / horovodrun **{mo / mh:.2f}x**, difference **{mo - mh:+.2f} s** (median of per-round "
                f"differences {md:+.2f} s). Where the operator's time goes: {fmt_s(m('to_first_node_start_s'))} s from "
                f"dag.test() start until the first node process is up (of which {fmt_s(m('first_task_start_s'))} s before "
                f"the plan task starts; plan task {fmt_s(m('plan_task_s'))} s), node start skew "
                f"{fmt_s(m('node_start_skew_s'), 3)} s, node span {fmt_s(m('node_span_s'))} s "
                f"({m('node_span_s') - mh:+.2f} s vs. horovodrun's whole run), {fmt_s(m('after_last_exit_s'))} s from the "
                f"last node's exit to the end of dag.test() (exit -> wait task done {fmt_s(m('exit_to_wait_end_s'))} s, "
                f"trigger polling every {POLL_INTERVAL_S} s; teardown {fmt_s(m('teardown_task_s'))} s). Start -> rank 0 "
                f"logged epoch 1: horovodrun {fmt_s(hand_first)} s, operator "
                f"{fmt_s(median(opf)) if opf else 'n/a'} s.")
        gap_hand = med["mpi"][0] - med["gloo"][0]
        gap_op = med["mpi"][1] - med["gloo"][1]
        lines.append(f"- mpi - gloo: horovodrun {gap_hand:+.2f} s, operator {gap_op:+.2f} s (the same job; the backend's own cost "
                     "on this machine, whoever launches it)")
        lines += ["", "Raw:", ""]
        for b in ("gloo", "mpi"):
            ph = [o["phases"] for o in op[b]]
            lines.append(f"- {b}, operator node durations (launcher start -> exit code written): "
                         + "; ".join(", ".join(fmt_s(d, 3) for d in p["node_durations_s"]) for p in ph))
            lines.append(f"- {b}, operator: DagBag load before dag.test(): {', '.join(fmt_s(o['load_s']) for o in op[b])}; "
                         f"dag.test() start -> plan task start: {', '.join(fmt_s(p['first_task_start_s']) for p in ph)}; "
                         f"node exit -> wait task end: {', '.join(fmt_s(p['exit_to_wait_end_s']) for p in ph)}")
        lines.append("- logs of each dag.test(): .airflow/bench/bench-logs/hvd-*.log")
    lines += [
        "- CPU busy (all cores) in the second before each measurement: "
        + "; ".join(f"{k} {', '.join(f'{v:.0%}' for v in vals)}" for k, vals in busy_log.items()),
        "- others' CPU-s (CPU seconds used meanwhile by processes this benchmark did not start, sampled every 0.5 s, "
        "a lower bound; near 0 = undisturbed; a disturbed fresh build is reported, not repeated): "
        + "; ".join(f"{k} {', '.join(f'{v:.1f}' for v in vals)}" for k, vals in foreign_log.items()),
        f"- runs discarded as disturbed (others > {args.max_foreign_cpu_s:g} CPU-s; at most {args.max_discards} repeated; "
        f"others' CPU-s in brackets): {', '.join(discarded) or 'none'}",
    ]
    body = "\n".join(lines)
    write_section(SECTION, body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
