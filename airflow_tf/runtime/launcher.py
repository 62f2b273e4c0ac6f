"""Node runtime: start a node's ranks, prefix their output, forward signals, record the exit code.

Started detached by a backend as ``python -m airflow_tf.runtime.launcher NODE_DIR --workdir SRC``
with stdout going to the node's log. ``NODE_DIR/node.json`` is what the node runs (the JSON of
``airflow_tf.cluster.plan.NodeLaunch``: its plan, the job's cluster, the user's environment
values); the exit code lands in ``NODE_DIR/exit_code`` (file names: ``runtime.node_files``).

The launcher is its session's leader and the ranks stay in its process group, so a backend can
stop the whole node with one ``killpg``. On the first rank that fails the others are stopped:
a half-dead collective only hangs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time

from airflow_tf.runtime import node_files, procfs
from airflow_tf.runtime.rank_env import process_env

POLL_S = 0.1
LOG_FAILED = node_files.LOG_FAILED
USER_SCRIPT = ["-m", "airflow_tf.runtime.user_script"]
PORTS_TAKEN = node_files.PORTS_TAKEN


class Node:
    def __init__(self, launch: dict, node_dir: str, workdir: str, output_dir: str, grace_s: float,
                 secrets: dict[str, str] | None = None):
        self.spec = launch["node"]
        self.cluster = launch["cluster"]
        self.environment = dict(launch.get("environment") or {})
        self.packages_dir: str | None = None
        self.conda_prefix: str | None = None
        self.conda_site: str | None = None
        self.node_dir = node_dir
        self.workdir = workdir
        self.output_dir = output_dir
        self.grace_s = grace_s
        self.procs: list[subprocess.Popen] = []
        self.restarts: list[int] = []
        self.pumps: list[threading.Thread] = []
        self.out_lock = threading.Lock()
        self.stop_signal: int | None = None
        self.start_failed: int | None = None  # the node's exit code when it could not start its ranks
        self.log_error: Exception | None = None
        self.secrets = dict(secrets or {})

    def _env(self, rank: dict) -> dict:
        env = dict(os.environ)
        env.update(process_env(self.spec, rank, self.cluster, {**self.environment, **self.secrets}))
        # The user's PYTHONPATH adds to the runtime's (and the per-job packages come first).
        paths = [self.packages_dir, self.conda_site, self.environment.get("PYTHONPATH"), os.environ.get("PYTHONPATH")]
        if any(paths):
            env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
        if self.conda_prefix:  # the conda environment's programs first, as its activation would
            env["PATH"] = os.pathsep.join([os.path.join(self.conda_prefix, "bin"), env.get("PATH", os.defpath)])
        env["AIRFLOW_TF_NODE_DIR"] = self.node_dir
        env["AIRFLOW_TF_OUTPUT_DIR"] = self.output_dir
        if "HOROVOD_GLOO_RENDEZVOUS_ADDR" in env and not env.get("HOROVOD_GLOO_IFACE"):
            # No interface planned: use the one this node reaches the rendezvous (node 0) on.
            from airflow_tf.runtime.netif import interface_towards

            iface = interface_towards(env["HOROVOD_GLOO_RENDEZVOUS_ADDR"])
            self.say(f"{rank['label']}: Gloo interface {iface} (towards {env['HOROVOD_GLOO_RENDEZVOUS_ADDR']})")
            if iface:
                env["HOROVOD_GLOO_IFACE"] = iface
                env.setdefault("NCCL_SOCKET_IFNAME", iface)
        return env

    def _write(self, data: bytes) -> None:
        """Into the node's log. When the log cannot be written (disk full, directory removed) the
        output is dropped, never left in a pipe: a rank blocked on a full pipe would hang the node
        forever. The main loop then fails the node (LOG_FAILED)."""
        with self.out_lock:
            if self.log_error is not None:
                return
            try:
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            except (OSError, ValueError) as exc:
                self.log_error = exc

    def _pump(self, label: str, stream) -> None:
        prefix = f"[{label}] ".encode()
        for line in iter(stream.readline, b""):
            self._write(prefix + (line if line.endswith(b"\n") else line + b"\n"))
        stream.close()

    def say(self, message: str) -> None:
        self._write(f"[node {self.spec['node_index']}] {message}\n".encode())

    def _spawn(self, index: int) -> subprocess.Popen:
        rank = self.spec["processes"][index]
        # A rank may run its own command (e.g. the runtime's TF server) instead of the script.
        # The entry script runs through user_script: Horovod's Keras fixes and Keras autolog first.
        target = rank.get("command") or [*USER_SCRIPT, self.spec["script"], *self.spec["script_args"]]
        # argv is a list: script params never pass through a shell.
        proc = subprocess.Popen(
            [sys.executable, "-u", *target], cwd=self.workdir, env=self._env(rank), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        pump = threading.Thread(target=self._pump, args=(rank["label"], proc.stdout), daemon=True)
        pump.start()
        self.pumps.append(pump)
        return proc

    def start(self) -> None:
        os.makedirs(self.output_dir, exist_ok=True)
        if self.spec.get("pip_packages"):
            from airflow_tf.runtime.packages import Interrupted, ensure_env, index_options

            try:
                self.packages_dir = ensure_env(self.spec["pip_packages"], self.say, **index_options(self.spec),
                                               should_stop=lambda: self.stop_signal is not None)
            except Interrupted:  # a signal during the install: run() stops at once with its code
                self.say("pip_packages: install stopped")
                return
        if self.spec.get("conda_packages"):
            from airflow_tf.runtime import conda_env
            from airflow_tf.runtime.packages import Interrupted

            try:
                self.conda_prefix = conda_env.ensure_env(self.spec["conda_packages"], self.spec["conda_channels"],
                                                         self.say, should_stop=lambda: self.stop_signal is not None)
            except Interrupted:
                self.say("conda_packages: install stopped")
                return
            self.conda_site = conda_env.site_packages(self.conda_prefix)
        from airflow_tf.runtime import frameworks

        problem = frameworks.check(self.spec.get("framework_version"), [self.packages_dir, self.conda_site])
        if problem:  # before any rank starts: the node fails with this message
            self.say(problem)
            self.start_failed = 1
            return
        # The planned ports, checked right before the ranks bind them: taken by someone else since
        # the plan (another job on a shared host), the node fails now, naming them, instead of a
        # TF server that cannot bind or a rank that joins another job's cluster.
        resume = (self.spec.get("env") or {}).get("AIRFLOW_TF_RESUME_FROM")
        if resume and not os.path.exists(resume):
            self.say(f"resume_from {resume!r} does not exist on this node; no rank was started")
            self.start_failed = 1
            return
        ports = sorted(p["port"] for p in self.spec["processes"] if p.get("port") is not None)
        busy = procfs.busy_ports(ports)
        if busy:
            self.say(f"port(s) {busy} planned for this node are already in use on this host (another job or "
                     "service took them after the plan); no rank was started. Re-run the job: it plans free ports")
            self.start_failed = PORTS_TAKEN
            return
        self.procs = [self._spawn(index) for index in range(len(self.spec["processes"]))]
        self.restarts = [0] * len(self.procs)
        self.say(f"started {len(self.procs)} rank(s): pids {[p.pid for p in self.procs]}")

    def stop_ranks(self, sig: int = signal.SIGTERM) -> None:
        """Signal every live rank, then SIGKILL whatever outlives the grace period."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs):
            time.sleep(POLL_S)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def on_signal(self, signum, _frame) -> None:
        self.stop_signal = signum

    def run(self) -> int:
        """Wait for the ranks and return the node's exit code.

        A failed rank is restarted while its ``max_restarts`` budget lasts; otherwise the node
        fails with its code and the other ranks are stopped. The node succeeds when every rank
        that is not a ``daemon`` exited 0; daemons (parameter servers, PS workers: they serve
        until told to stop) are then stopped. A node of daemons only runs until it is stopped.
        """
        ranks = self.spec["processes"]
        if self.start_failed is not None:
            return self.start_failed
        while True:
            if self.stop_signal is not None:
                self.say(f"received signal {self.stop_signal}, stopping ranks")
                self.stop_ranks(self.stop_signal)
                return 128 + self.stop_signal
            if self.log_error is not None:
                self.stop_ranks()
                return LOG_FAILED
            codes = [p.poll() for p in self.procs]
            for index, code in enumerate(codes):
                if code in (None, 0):
                    continue
                label = ranks[index]["label"]
                if self.restarts[index] < ranks[index].get("max_restarts", 0):
                    self.restarts[index] += 1
                    self.say(f"{label} exited with {code}; restarting it "
                             f"({self.restarts[index]}/{ranks[index]['max_restarts']})")
                    self.procs[index] = self._spawn(index)
                    continue
                self.say(f"{label} exited with {code}; stopping the other ranks")
                self.stop_ranks()
                return code if code > 0 else 128 - code
            essential = [code for code, rank in zip(codes, ranks) if not rank.get("daemon")]
            if essential and all(code == 0 for code in essential):
                if any(code is None for code in codes):
                    self.say("all non-daemon ranks finished; stopping the daemon ranks")
                    self.stop_ranks()
                return 0
            if not essential and all(code == 0 for code in codes):
                return 0
            time.sleep(POLL_S)

    def finish(self) -> None:
        for pump in self.pumps:
            pump.join(timeout=5)


def take_secrets(node_dir: str) -> dict[str, str]:
    """The secret values the backend left for this node, and the file gone: they then live only
    in this process's and its ranks' memory (and environment)."""
    path = os.path.join(node_dir, node_files.SECRETS)
    try:
        with open(path) as f:
            secrets = json.load(f)
    except FileNotFoundError:
        return {}
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return {str(k): str(v) for k, v in secrets.items()}


def kill_leftovers_in_group() -> None:
    """SIGKILL processes a rank left behind in our process group (daemonised helpers and such)."""
    group = os.getpgid(0)
    if group != os.getpid():  # not a session/group leader (run by hand): nothing of ours to sweep
        return
    procfs.kill_all(procfs.group_members(group))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_tf.runtime.launcher", description=__doc__.splitlines()[0])
    parser.add_argument("node_dir", help="directory holding node.json; the exit code is written here")
    parser.add_argument("--workdir", required=True, help="the user's source directory on this node")
    parser.add_argument("--output-dir", help="where the chief writes its model (default NODE_DIR/../outputs)")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    args = parser.parse_args(argv)
    node_dir = os.path.abspath(args.node_dir)
    # Everything the node and its ranks write (logs, metrics, models) is private to the job's user.
    os.umask(0o077)
    secrets = take_secrets(node_dir)  # first: the file must not outlive a launcher that fails early
    with open(os.path.join(node_dir, node_files.NODE_SPEC)) as f:
        launch = json.load(f)
    output_dir = os.path.abspath(args.output_dir or os.path.join(node_dir, os.pardir, node_files.OUTPUTS))
    node = Node(launch, node_dir, os.path.abspath(args.workdir), output_dir, args.grace, secrets)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, node.on_signal)
    # Room for the exit code, taken now: on a disk that fills up later it still gets written.
    node_files.reserve_exit_code(node_dir)
    code = 1
    try:
        node.start()
        code = node.run()
    except BaseException as exc:  # a launcher bug must still leave an exit code and no ranks
        node.say(f"launcher error: {exc!r}")
        node.stop_ranks(signal.SIGKILL)
        code = 1
    finally:
        # Sweep first: a leftover holding a rank's stdout would stall finish() (5 s per pump), and
        # the exit code must not announce the end while processes of the node still run. Nothing
        # before the code can fail (log writes never raise, joins time out) and the log is
        # complete when it appears: the trigger reads the last lines after seeing it.
        kill_leftovers_in_group()
        node.finish()
        node.say(f"exit code {code}")
        node_files.write_exit_code(node_dir, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
