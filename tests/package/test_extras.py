"""Extras: declared once in setup.cfg, named in the error a missing one raises, pinned for CI."""

from __future__ import annotations

import configparser
import importlib.util
import os
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from airflow_tf import extras
from airflow_tf.cluster.errors import SpecError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What scripts/setup.sh installs into .venv (the others are declared only).
SETUP_EXTRAS = {"docker", "ssh", "celery", "sftp", "plots", "onnx", "mlflow", "tensorflow", "tuning", "conda", "test"}


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    return cfg


def declared() -> dict[str, list[Requirement]]:
    section = setup_cfg()["options.extras_require"]
    return {name: [Requirement(line) for line in section[name].strip().splitlines()] for name in section}


def pins() -> dict[str, str]:
    out = {}
    with open(os.path.join(REPO, "requirements", "constraints.txt")) as f:
        for line in f:
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                out[canonicalize_name(name)] = version
    return out


def test_missing_module_names_the_extra_to_install():
    with pytest.raises(SpecError) as err:
        extras.require("docker", "airflow_tf_no_such_provider.hooks", "DockerBackend")
    assert str(err.value) == 'DockerBackend needs the docker provider: pip install "airflow-tf[docker]"'


def test_a_missing_parent_package_is_a_missing_module():
    assert extras.available("no_such_top_level_package.sub.module") is False
    with pytest.raises(SpecError, match=r'pip install "airflow-tf\[ssh\]"'):
        extras.require("ssh", "no_such_top_level_package.sub.module", "SSHBackend")


def test_a_missing_provider_reads_like_this():
    # A provider package that is not installed (the same lookup as for a real one).
    assert extras.available("airflow.providers.airflow_tf_absent_provider") is False
    with pytest.raises(SpecError) as err:
        extras.require("kubernetes", "airflow.providers.airflow_tf_absent_provider", "KubernetesBackend")
    assert str(err.value) == \
        'KubernetesBackend needs the cncf.kubernetes provider: pip install "airflow-tf[kubernetes]"'


def test_checking_a_provider_does_not_make_airflow_discover_providers():
    # importlib.util.find_spec("airflow.providers.ssh") imports airflow.providers, which loads
    # every provider's info module: too slow for a DAG parse, and not what a check should do.
    code = ("import sys; from airflow_tf import extras\n"
            "assert extras.available('airflow.providers.ssh') and extras.available('airflow.providers.docker')\n"
            "print(sorted(m for m in sys.modules if m.startswith(('airflow.providers.ssh', 'airflow.providers.docker'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_installed_modules_pass_without_being_imported():
    # Airflow itself may load its provider packages; what require() must not do is import the
    # module it checks (matplotlib, the docker client, the ssh hook's paramiko).
    code = (
        "import sys, airflow; from airflow_tf import extras; before = set(sys.modules)\n"
        "extras.require('plots', 'matplotlib', 'curves')\n"
        "extras.require('docker', 'docker', 'DockerBackend')\n"
        "extras.require('ssh', 'paramiko', 'SSHBackend')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('matplotlib', 'docker', 'paramiko')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_extra_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown airflow-tf extra 'dockr'"):
        extras.require("dockr", "json", "x")


def test_every_extra_named_in_messages_is_declared_with_its_distributions():
    have = declared()
    for extra, (_, distributions) in extras.EXTRAS.items():
        assert extra in have, f"[{extra}] missing from setup.cfg"
        names = {canonicalize_name(r.name) for r in have[extra]}
        assert {canonicalize_name(d) for d in distributions} <= names, extra


def test_all_is_every_extra_but_test():
    have = declared()
    union = {str(r) for name, reqs in have.items() if name not in ("all", "test") for r in reqs}
    assert {str(r) for r in have["all"]} == union
    assert set(have) == set(extras.EXTRAS) | {"all", "test"}


def test_install_requires_has_ranges_not_pins():
    reqs = [Requirement(line) for line in setup_cfg()["options"]["install_requires"].strip().splitlines()]
    by_name = {canonicalize_name(r.name): r for r in reqs}
    assert set(by_name) == {"apache-airflow", "apache-airflow-providers-standard"}
    airflow = by_name["apache-airflow"].specifier
    assert "3.3.0" in airflow and "3.99" in airflow and "4.0.0" not in airflow and "3.2.2" not in airflow


def test_ci_pins_satisfy_the_declared_ranges():
    # .venv (what CI tests) gets constraints.txt's versions: they must lie inside setup.cfg's ranges,
    # or the ranges advertise versions nobody tested.
    pinned = pins()
    reqs = [Requirement(line) for line in setup_cfg()["options"]["install_requires"].strip().splitlines()]
    for extra, extra_reqs in declared().items():
        if extra in SETUP_EXTRAS:
            reqs += extra_reqs
    for req in reqs:
        name = canonicalize_name(req.name)
        assert name in pinned, f"{name} is installed into .venv but not pinned in requirements/constraints.txt"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{name}=={pinned[name]} outside {req}"


def test_venv_has_the_pinned_versions():
    from importlib.metadata import version

    pinned = pins()
    for name in ("apache-airflow", "apache-airflow-providers-docker", "apache-airflow-providers-ssh",
                 "tensorflow-cpu", "tf2onnx", "matplotlib"):
        assert version(name) == pinned[name], name
