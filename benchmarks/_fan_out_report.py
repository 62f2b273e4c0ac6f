"""The fan_out section of docs/benchmarks.md, from benchmarks/fan_out.py's results (a module of its
own so the benchmark stays one job: run and measure; this one formats). Not a benchmark itself:
scripts/bench.sh skips names starting with an underscore."""

from __future__ import annotations

import os

from common import fmt_s, machine_facts


def report(command, settings, results, settings_env, hold_s, boots, warmups, swept, busy_before, total_s,
           orphans=None) -> str:
    def s(v, digits=1):
        return fmt_s(v, digits)

    lines = [
        "## Launch fan-out: plan end -> all nodes up (real scheduler, LocalBackend, sleeping ranks)",
        "",
        machine_facts(),
        f"- command: `{command}` ({total_s:.0f} s in all; CPU busy before it started: {busy_before:.0%})",
        "- `airflow standalone` (LocalExecutor, SQLite, scheduler/triggerer heartbeats 1 s) in .airflow/bench-fanout via "
        "tests/e2e/server.py, restarted per setting; DAG bench_fan_out (benchmarks/dags/bench_fan_out.py): one "
        "TensorFlowTrainOperator step, one sleeping rank per node (no TensorFlow), released "
        f"{hold_s:g} s after every node is up",
        "- settings: " + "; ".join(f"**{name}** = " + ", ".join(f"`{k.split('__', 1)[1].replace('__', '.').lower()}` {v}"
                                                                 for k, v in settings_env[name].items()) for name in settings)
        + "; server start -> DAG unpaused: " + ", ".join(f"{n} {boots.get(n, 0):.0f} s" for n in settings)
        + "; a 2-node warm-up run first on each server (not in the tables): "
        + (", ".join(f"{n} {w}" for n, w in warmups.items()) or "none (the first run on a server is a cold one: its "
                                                                  "trigger -> plan end shows it)")
        + "; job processes alive 15 s after each server stopped: " + ", ".join(f"{n} {c}" for n, c in swept.items())
        + "; the server's own processes still there 10 s after its stop (then killed): "
        + (", ".join(f"{n} {len(c)}" + (f" ({orphan_names(c)})" if c else "") for n, c in orphans.items())
           if orphans else "not recorded"),
        "- times in seconds after the plan task's end_date (REST API), except where a row says otherwise; \"all started\" = "
        "the last handle's started_at (its launcher spawned), \"all up\" = the last rank's own start time",
        "",
        "| setting | nodes | first launch start | all started | **all up** | launch task median / max | launch tasks at "
        "once (max) | queued -> running median | CPU-s per node (machine) | trigger -> plan end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    after = ["", "| setting | nodes | last launch end | wait seen deferred | trigger's first poll | release -> last node "
             "exit | last exit -> wait end | teardown task | last exit -> run end | trigger -> run end | peak memory "
             "(GiB, machine) | PSS per node (MiB) | processes left | run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in settings:
        for r in results.get(name, []):
            if "skipped" in r:
                lines.append("| " + " | ".join([name, str(r["nodes"]), r["skipped"]] + [""] * 7) + " |")
                continue
            lines.append(f"| {name} | {r['nodes']} | {s(r['first_launch'])} | {s(r['all_started'])} | **{s(r['all_up'])}** "
                         f"| {s(r['launch_median'])} / {s(r['launch_max'])} | {r['concurrency']} | {s(r['queued_median'])} "
                         f"| {s(r['cpu_per_node'], 2)} | {s(r['trigger_to_plan_end'])} |")
            after.append(f"| {name} | {r['nodes']} | {s(r['last_launch_end'])} | {s(r['deferred'])} | {s(r['first_poll'])} "
                         f"| {s(r['release_to_exit'])} | {s(r['exit_to_wait_end'])} | {s(r['teardown'])} "
                         f"| {s(r['exit_to_run_end'])} | {s(r['trigger_to_end'])} | {s(r['mem_peak_gib'], 2)} "
                         f"| {s(r['pss_node_mib'])} ({r['pids_up']} processes) | **{r['leftover']}** | {r['state']}"
                         f"{'; ' + '; '.join(r['notes']) if r['notes'] else ''}; others used {r['foreign_s']:.1f} CPU-s "
                         f"({r['foreign_top']}) |")
    lines += after
    lines += ["", recommendation(settings, results, settings_env)]
    return "\n".join(lines)


def orphan_names(names: list[str]) -> str:
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in sorted(counts.items(), key=lambda kv: -kv[1]))


def recommendation(settings, results, settings_env) -> str:
    """The limit, in this run's numbers: N launch tasks of c CPU-s each on P CPUs take at least
    N*c/P; with S slots and tasks of d s each (d: the median of the setting's smallest run, the
    least contended) at least N*d/S; whichever is larger binds."""
    cpus = len(os.sched_getaffinity(0))
    parts = []
    for name in settings:
        rows = [r for r in results.get(name, []) if "skipped" not in r and r.get("all_up")]
        if not rows:
            continue
        r, small = max(rows, key=lambda x: x["nodes"]), min(rows, key=lambda x: x["nodes"])
        config = settings_env[name]
        slots = min(int(config["AIRFLOW__CORE__PARALLELISM"]), int(config["AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG"]))
        d = small["launch_median"] or 0
        cpu_bound = r["nodes"] * (r["cpu_per_node"] or 0) / cpus
        parts.append(f"**{name}** at {r['nodes']} nodes: all up {r['all_up']:.1f} s = {r['all_up'] / r['nodes']:.2f} s "
                     f"per node; CPU bound {r['cpu_per_node'] or 0:.2f} CPU-s per node x {r['nodes']} / {cpus} CPUs = "
                     f"{cpu_bound:.1f} s; slot bound {r['nodes']} x {d:.1f} s (median launch at {small['nodes']} nodes) / "
                     f"{slots} slots = {r['nodes'] * d / slots:.1f} s; {r['concurrency']} launch tasks at once at most")
    return ("Where the limit is (this run): " + "; ".join(parts) + ". The larger bound is the limit; docs/deployment.md, "
            "\"Wide jobs (many nodes)\", says what to set.") if parts else "No complete run."
