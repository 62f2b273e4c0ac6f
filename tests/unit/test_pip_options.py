"""pip_index_url / pip_extra_index_urls / pip_trusted_hosts: from the spec through the plan to the
node's pip, with credentials redacted in everything airflow-tf logs.

Real pip against a real (local, plain-HTTP) package index that requires the credentials the
index URL carries: the install proves the options reached pip, the server log that the
password was sent, the node's messages that it was never printed.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import threading
import zipfile
from pathlib import Path

import pytest

from airflow_tf.cluster.plan import NodePlan
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job
from airflow_tf.runtime.packages import ensure_env, index_options, pip_argv, redact

USER, PASSWORD = "ci", "s3cret-token"


def make_wheel(directory: Path, name: str = "aftf_demo", version: str = "0.1") -> Path:
    """A minimal pure-Python wheel (no build tool needed)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data.encode()).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()]
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


@pytest.fixture
def index(tmp_path):
    """A PEP 503 index at /simple/ that answers 401 without the right basic-auth credentials."""
    root = tmp_path / "index"
    (root / "simple" / "aftf-demo").mkdir(parents=True)
    wheel = make_wheel(root / "simple" / "aftf-demo")
    (root / "simple" / "aftf-demo" / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    (root / "simple" / "index.html").write_text('<a href="aftf-demo/">aftf-demo</a>\n')
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    seen = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization") == expected))
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="test"')
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"url": f"http://{USER}:{PASSWORD}@127.0.0.1:{server.server_port}/simple", "seen": seen}
    finally:
        server.shutdown()


def test_redact_hides_user_and_password_of_every_url():
    text = "from https://tok@a.example/simple and http://u:p%40ss@b:8080/x, not mail@c.org"
    assert redact(text) == "from https://****@a.example/simple and http://****@b:8080/x, not mail@c.org"


def test_pip_argv_puts_requirements_after_the_end_of_options():
    argv = pip_argv(["numpy"], "/t", index_url="https://i/simple", extra_index_urls=["https://e/simple"],
                    trusted_hosts=["i"])
    assert argv[-2:] == ["--", "numpy"]
    assert argv[argv.index("--index-url") + 1] == "https://i/simple" and "--extra-index-url" in argv
    assert argv[argv.index("--trusted-host") + 1] == "i"


def test_spec_to_plan_to_node_json_round_trip(tmp_path):
    (tmp_path / "train.py").write_text("")
    spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py", pip_packages=["numpy>=1.26"],
                        pip_index_url="https://mirror/simple", pip_extra_index_urls=["https://extra/simple"],
                        pip_trusted_hosts=["mirror"])
    node = plan_tensorflow_job(spec, job_id="j", hosts=["127.0.0.1"]).nodes[0]
    again = NodePlan.from_json(node.to_json())
    assert again == node
    assert index_options(again.to_json()) == {"index_url": "https://mirror/simple",
                                              "extra_index_urls": ["https://extra/simple"], "trusted_hosts": ["mirror"]}


def test_the_node_installs_from_the_index_with_credentials_never_printed(index, tmp_path):
    said = []
    options = {"index_url": index["url"], "extra_index_urls": [], "trusted_hosts": ["127.0.0.1"]}
    target = ensure_env(["aftf-demo==0.1"], said.append, cache_root=str(tmp_path / "cache"), **options)
    assert os.path.isfile(os.path.join(target, "aftf_demo", "__init__.py"))
    assert any(authorised for _, authorised in index["seen"]), index["seen"]  # the password did reach pip
    assert said and all(PASSWORD not in line for line in said), said
    assert any("http://****@127.0.0.1" in line for line in said), said

    # The same packages from another index are another environment (not the cached one).
    other = ensure_env(["aftf-demo==0.1"], said.append, cache_root=str(tmp_path / "cache"),
                       **{**options, "extra_index_urls": [index["url"].replace("/simple", "/simple/")]})
    assert other != target

    with pytest.raises(RuntimeError) as failed:
        ensure_env(["aftf-missing==9"], said.append, cache_root=str(tmp_path / "cache"), **options)
    assert "pip install of ['aftf-missing==9'] failed" in str(failed.value)
    assert PASSWORD not in str(failed.value) and all(PASSWORD not in line for line in said)


def test_a_user_pythonpath_adds_to_the_runtime_and_the_packages(tmp_path, monkeypatch):
    """environment_variables={"PYTHONPATH": ...} used to replace the runtime's path (remote ranks
    failed with No module named 'airflow_tf') and to be dropped when pip_packages was set."""
    from airflow_tf.runtime.launcher import Node

    (tmp_path / "train.py").write_text("")
    spec = TrainingSpec(source_directory=str(tmp_path), entry_script="train.py", pip_packages=["numpy"],
                        environment_variables={"PYTHONPATH": "/user/lib"})
    plan = plan_tensorflow_job(spec, job_id="j", hosts=["127.0.0.1"])
    launch = plan.launch(0, spec.environment_variables).to_json()
    monkeypatch.setenv("PYTHONPATH", "/runtime/lib")  # what the backend started the launcher with
    node = Node(launch, str(tmp_path), str(tmp_path), str(tmp_path / "out"), grace_s=1)
    node.packages_dir = "/cache/env"
    env = node._env(launch["node"]["processes"][0])
    assert env["PYTHONPATH"].split(os.pathsep) == ["/cache/env", "/user/lib", "/runtime/lib"]
