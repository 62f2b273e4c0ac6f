"""airflow_tf.config: [airflow_tf] options through Airflow's config, the 0.1 variables still read.

Environment variables are read by Airflow at each lookup, so those cases run in this process.
airflow.cfg is read once per process, so the file cases run in a fresh interpreter with its own
AIRFLOW_HOME (and the airflow.cfg Airflow writes there on first start).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from airflow_tf import config
from airflow_tf.cluster.limits import DEFAULTS as LIMITS
from airflow_tf.cluster.errors import SpecError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL_ENV = ["AIRFLOW__AIRFLOW_TF__JOB_ROOT", "AIRFLOW__AIRFLOW_TF__PACKAGE_CACHE", "AIRFLOW__AIRFLOW_TF__POLL_INTERVAL",
           "AIRFLOW__AIRFLOW_TF__STOP_GRACE_SECONDS", "AIRFLOW_TF_JOB_ROOT", "AIRFLOW_TF_PACKAGE_CACHE"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ALL_ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    assert config.job_root() == os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs")
    assert config.package_cache() is None
    assert config.poll_interval() == 1.0
    assert config.stop_grace_seconds() == 10.0


def test_airflow_env_var_sets_each_option(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__JOB_ROOT", str(tmp_path / "jobs"))
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__PACKAGE_CACHE", str(tmp_path / "envs"))
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__POLL_INTERVAL", "2.5")
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__STOP_GRACE_SECONDS", "0")
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__MAX_NODE_COUNT", "9000")
    assert config.settings() == {"job_root": str(tmp_path / "jobs"), "package_cache": str(tmp_path / "envs"),
                                 "poll_interval": 2.5, "stop_grace_seconds": 0.0, **LIMITS, "max_node_count": 9000}
    # The same value through Airflow's own API: it is an ordinary Airflow option.
    from airflow.configuration import conf

    assert conf.get("airflow_tf", "job_root") == str(tmp_path / "jobs")


def test_old_variables_are_still_honoured(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_TF_JOB_ROOT", str(tmp_path / "old-jobs"))
    monkeypatch.setenv("AIRFLOW_TF_PACKAGE_CACHE", str(tmp_path / "old-envs"))
    assert config.job_root() == str(tmp_path / "old-jobs")
    assert config.package_cache() == str(tmp_path / "old-envs")


def test_airflow_setting_wins_over_the_old_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_TF_JOB_ROOT", str(tmp_path / "old"))
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__JOB_ROOT", str(tmp_path / "new"))
    monkeypatch.setenv("AIRFLOW_TF_PACKAGE_CACHE", str(tmp_path / "old-envs"))
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__PACKAGE_CACHE", str(tmp_path / "new-envs"))
    assert config.job_root() == str(tmp_path / "new")
    assert config.package_cache() == str(tmp_path / "new-envs")


def test_empty_values_count_as_unset(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__JOB_ROOT", "")
    monkeypatch.setenv("AIRFLOW_TF_PACKAGE_CACHE", "")
    assert config.job_root() == os.path.join(os.environ["AIRFLOW_HOME"], "airflow_tf_jobs")
    assert config.package_cache() is None
    monkeypatch.setenv("AIRFLOW_TF_JOB_ROOT", str(tmp_path / "old"))
    assert config.job_root() == str(tmp_path / "old")  # an empty Airflow value does not hide it


def test_paths_expand_the_home_directory(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AIRFLOW_TF__JOB_ROOT", "~/tf-jobs")
    monkeypatch.setenv("AIRFLOW_TF_PACKAGE_CACHE", "~/tf-envs")
    assert config.job_root() == os.path.join(os.path.expanduser("~"), "tf-jobs")
    assert config.package_cache() == os.path.join(os.path.expanduser("~"), "tf-envs")


@pytest.mark.parametrize("option, value, message", [
    ("POLL_INTERVAL", "0", "[airflow_tf] poll_interval must be a number > 0, got '0'"),
    ("POLL_INTERVAL", "fast", "[airflow_tf] poll_interval must be a number > 0, got 'fast'"),
    ("POLL_INTERVAL", "nan", "[airflow_tf] poll_interval must be a number > 0, got 'nan'"),
    ("STOP_GRACE_SECONDS", "-1", "[airflow_tf] stop_grace_seconds must be a number >= 0, got '-1'"),
])
def test_bad_numbers_name_the_option(monkeypatch, option, value, message):
    monkeypatch.setenv(f"AIRFLOW__AIRFLOW_TF__{option}", value)
    with pytest.raises(SpecError) as err:
        config.poll_interval() if option == "POLL_INTERVAL" else config.stop_grace_seconds()
    assert str(err.value) == message


PRINT_SETTINGS = "import json, airflow_tf.config as c; print(json.dumps(c.settings()))"


def settings_in(home, env=None, *python_flags):
    """``config.settings()`` in a fresh interpreter with AIRFLOW_HOME=home."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_TF_"))}
    clean.update({"AIRFLOW_HOME": str(home), "PYTHONPATH": REPO, **(env or {})})
    out = subprocess.run([sys.executable, *python_flags, "-c", PRINT_SETTINGS], env=clean, cwd=str(home),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_airflow_cfg_written_by_airflow_does_not_hide_the_old_variable(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert settings_in(home)["job_root"] == str(home / "airflow_tf_jobs")
    # Airflow's CLI writes an airflow.cfg on first start, with our section's defaults in it ...
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_TF_"))}
    out = subprocess.run([sys.executable, "-m", "airflow", "config", "get-value", "airflow_tf", "job_root"],
                         env={**env, "AIRFLOW_HOME": str(home)}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(home / "airflow_tf_jobs")  # provider default = ours
    cfg = (home / "airflow.cfg").read_text()
    assert f"job_root = {home}/airflow_tf_jobs" in cfg and "[airflow_tf]" in cfg
    # ... which must not turn an airflow-tf 0.1 deployment's AIRFLOW_TF_JOB_ROOT off.
    assert settings_in(home, {"AIRFLOW_TF_JOB_ROOT": str(tmp_path / "old")})["job_root"] == str(tmp_path / "old")


def test_airflow_cfg_value_wins_over_the_old_variable(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "airflow.cfg").write_text(textwrap.dedent(f"""\
        [core]
        load_examples = False

        [airflow_tf]
        job_root = {tmp_path}/cfg-jobs
        poll_interval = 3
        """))
    got = settings_in(home, {"AIRFLOW_TF_JOB_ROOT": str(tmp_path / "old")})
    assert got["job_root"] == str(tmp_path / "cfg-jobs")
    assert got["poll_interval"] == 3.0
    # And the environment wins over the file, as for every Airflow option.
    got = settings_in(home, {"AIRFLOW__AIRFLOW_TF__JOB_ROOT": str(tmp_path / "env-jobs")})
    assert got["job_root"] == str(tmp_path / "env-jobs")


def test_without_airflow_the_environment_and_defaults_still_answer(tmp_path):
    # -S: no site-packages, so no Airflow: what a training node's interpreter may look like.
    probe = subprocess.run([sys.executable, "-S", "-c", "import airflow"], capture_output=True)
    assert probe.returncode != 0, "airflow importable without site-packages: the case is not tested"
    got = settings_in(tmp_path, {"AIRFLOW_TF_PACKAGE_CACHE": "/srv/envs", "AIRFLOW__AIRFLOW_TF__POLL_INTERVAL": "7"},
                      "-S")
    # The Airflow-style variable needs Airflow; the 0.1 variable and the defaults do not.
    assert got == {"job_root": str(tmp_path / "airflow_tf_jobs"), "package_cache": "/srv/envs",
                   "poll_interval": 1.0, "stop_grace_seconds": 10.0, **LIMITS}


def test_import_airflow_tf_config_is_cheap():
    code = "import sys, airflow_tf.config; print(sorted(m for m in ('airflow', 'tensorflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"
