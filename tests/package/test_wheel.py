"""The built package as a user gets it: sdist and wheel, installed with [docker,ssh] into a fresh
virtual environment (no system site-packages, no .venv), then used there.

The install resolves the wheel's declared dependencies; requirements/constraints.txt only fixes
their versions to the ones CI tests (pip may answer from its cache). To check another
Airflow instead (how the lower bound in setup.cfg was verified, docs/installation.md)::

    AIRFLOW_TF_WHEEL_TEST_PINS="apache-airflow==3.3.0" .venv/bin/python -m pytest tests/package -m package

Nothing here skips: a missing tool or dependency fails the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from email.parser import Parser

import pytest
from packaging.requirements import Requirement

import airflow_tf

pytestmark = pytest.mark.package

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXTRAS = "docker,ssh"


def run(cmd, *, env=None, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} exited {out.returncode}\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    return out


class Installed:
    """The build outputs and the fresh venv holding the wheel."""

    def __init__(self, root):
        self.root = root
        self.dist = root / "dist"
        self.venv = root / "venv"
        self.home = root / "airflow-home"
        self.dags = root / "dags"
        self.timings: dict[str, float] = {}
        self.versions: dict[str, str] = {}
        for d in (self.home, self.dags):
            d.mkdir()

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def artifact(self, suffix: str):
        (path,) = [p for p in self.dist.iterdir() if p.name.endswith(suffix)]
        return path

    def env(self) -> dict[str, str]:
        """A user's shell: no test-session Airflow settings, no PYTHONPATH, the venv first on PATH."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AIRFLOW", "_AIRFLOW", "PYTHON", "VIRTUAL_ENV", "TF_"))}
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if not p.startswith(os.path.join(REPO, ".venv"))]
        env.update({
            "PATH": os.pathsep.join([str(self.venv / "bin"), *path]),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([{
                "name": "dags-folder", "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(self.dags)},
            }]),
        })
        return env

    def timed(self, name, cmd, **kwargs):
        start = time.monotonic()
        try:
            return run(cmd, **kwargs)
        finally:
            self.timings[name] = round(time.monotonic() - start, 1)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    it = Installed(tmp_path_factory.mktemp("wheel"))
    # sdist first, then the wheel built from that sdist: a file missing from the sdist fails here.
    it.timed("build", [sys.executable, "-m", "build", "--outdir", str(it.dist), REPO], cwd=str(it.root), timeout=600)
    it.timed("venv", [sys.executable, "-m", "venv", str(it.venv)], timeout=300)
    pins = os.environ.get("AIRFLOW_TF_WHEEL_TEST_PINS", "").split()
    versions = pins if pins else ["-c", os.path.join(REPO, "requirements", "constraints.txt")]
    it.timed("install", [it.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *versions,
                         f"{it.artifact('.whl')}[{EXTRAS}]"], env=it.env(), cwd=str(it.root), timeout=900)
    return it


def test_sdist_and_wheel_hold_the_package_and_declare_its_dependencies(installed):
    wheel = zipfile.ZipFile(installed.artifact(".whl"))
    names = set(wheel.namelist())
    sources = {os.path.relpath(os.path.join(d, f), REPO) for d, _, fs in os.walk(os.path.join(REPO, "airflow_tf"))
               if "__pycache__" not in d for f in fs if f.endswith(".py")}
    assert sources and sources <= names, f"missing from the wheel: {sorted(sources - names)}"
    assert not [n for n in names if n.startswith(("tests/", "dags/", "docs/"))]

    (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    meta = Parser().parsestr(wheel.read(meta_name).decode())
    assert meta["Version"] == airflow_tf.__version__
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    core = {r.name: r.specifier for r in requires if r.marker is None}
    assert set(core) == {"apache-airflow", "apache-airflow-providers-standard"}, core
    assert "3.3.0" in core["apache-airflow"] and "4.0" not in core["apache-airflow"]
    assert {"docker", "ssh", "kubernetes", "onnx", "plots", "mlflow", "tensorflow", "all"} <= set(meta.get_all("Provides-Extra"))
    assert "Documentation, docs/installation.md" in meta.get_all("Project-URL")
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "provider_info = airflow_tf.provider_info:get_provider_info" in wheel.read(entry_points).decode()

    with tarfile.open(installed.artifact(".tar.gz")) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {"setup.cfg", "pyproject.toml", "README.md", "airflow_tf/__init__.py"} <= members


def test_the_venv_is_clean(installed):
    cfg = (installed.venv / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = false" in cfg
    code = "import sys, importlib.util as u; print(sys.prefix); print(u.find_spec('tensorflow') is None)"
    prefix, no_tf = run([installed.python, "-c", code], env=installed.env()).stdout.split()
    assert prefix == str(installed.venv) and no_tf == "True"  # [docker,ssh] is the Airflow side: no TensorFlow


IMPORT_ALL = """
import json, sys, airflow_tf
loaded = {name: getattr(airflow_tf, name).__module__ for name in airflow_tf.__all__}
from importlib.metadata import version
print(json.dumps({"file": airflow_tf.__file__, "names": loaded,
                  "ml": sorted(m for m in ("tensorflow", "keras", "tf_keras", "horovod") if m in sys.modules),
                  "versions": {p: version(p) for p in ("apache-airflow", "apache-airflow-providers-docker",
                                                       "apache-airflow-providers-ssh", "apache-airflow-providers-standard")}}))
"""


def test_every_public_name_imports_in_the_clean_venv(installed):
    out = run([installed.python, "-c", IMPORT_ALL], env=installed.env(), cwd=str(installed.root))
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["file"].startswith(str(installed.venv)), got["file"]  # the wheel, not the repository
    assert sorted(got["names"]) == sorted(airflow_tf.__all__)
    assert got["ml"] == []
    assert all(got["versions"].values())
    installed.versions = got["versions"]


def test_airflow_lists_the_provider_in_the_clean_venv(installed):
    airflow = str(installed.venv / "bin" / "airflow")
    out = run([airflow, "providers", "list", "-o", "json"], env=installed.env(), cwd=str(installed.root))
    providers = {p["package_name"]: p for p in json.loads(out.stdout[out.stdout.index("["):])}
    assert providers["airflow-tf"]["version"] == airflow_tf.__version__
    assert {"apache-airflow-providers-docker", "apache-airflow-providers-ssh"} <= set(providers)
    out = run([airflow, "providers", "get", "airflow-tf", "--full", "-o", "json"], env=installed.env(),
              cwd=str(installed.root))
    (info,) = json.loads(out.stdout[out.stdout.index("["):])
    assert info["documentation-url"] == "docs/installation.md"
    assert "warn" not in out.stderr.lower(), out.stderr


ENTRY_SCRIPT = """\
import json, os
task = json.loads(os.environ["TF_CONFIG"])["task"]
print(f"hello from {task['type']} {task['index']}, {len(json.loads(os.environ['TF_CONFIG'])['cluster']['worker'])} workers", flush=True)
"""

DAG_FILE = """\
import os
from airflow.sdk import DAG
from airflow_tf import LocalBackend, TensorFlowTrainOperator

with DAG(dag_id="airflow_tf_wheel_check", schedule=None, catchup=False):
    TensorFlowTrainOperator(
        task_id="train",
        source_directory={src!r},
        entry_script="hello.py",
        node_count=2,
        backend=LocalBackend(job_root={jobs!r}),
        poll_interval=0.5,
    )
"""

RUN_DAG = """\
import sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
run = bag.get_dag("airflow_tf_wheel_check").test()
print("RUN STATE", run.state)
"""


def test_dag_test_of_a_local_backend_job_in_the_clean_venv(installed):
    src, jobs = installed.root / "src", installed.root / "jobs"
    src.mkdir()
    (src / "hello.py").write_text(ENTRY_SCRIPT)
    dag_file = installed.dags / "wheel_check.py"
    dag_file.write_text(DAG_FILE.format(src=str(src), jobs=str(jobs)))
    env = installed.env()
    installed.timed("db migrate", [str(installed.venv / "bin" / "airflow"), "db", "migrate"], env=env,
                    cwd=str(installed.root), timeout=300)
    out = installed.timed("dag.test", [installed.python, "-c", RUN_DAG, str(dag_file)], env=env,
                          cwd=str(installed.root), timeout=300)
    assert "RUN STATE success" in out.stdout, out.stdout[-4000:] + out.stderr[-4000:]
    logs = out.stdout + out.stderr
    # Each node's output reached the wait task's log with its prefix, and each got its TF_CONFIG.
    assert "[node 0 rank 0] hello from worker 0, 2 workers" in logs, logs[-4000:]
    assert "[node 1 rank 1] hello from worker 1, 2 workers" in logs, logs[-4000:]
    # The job directory is where LocalBackend(job_root=...) was told to put it.
    node_logs = [os.path.join(d, f) for d, _, fs in os.walk(jobs) for f in fs if f == "node.log"]
    assert len(node_logs) == 2, node_logs
    print(f"\nwheel check: {installed.versions}, timings (s): {installed.timings}", file=sys.stderr)
