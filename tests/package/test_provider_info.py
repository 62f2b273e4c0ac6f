"""Provider metadata: complete, valid against Airflow's schema, and what the CLI shows."""

from __future__ import annotations

import configparser
import json
import os
import pkgutil
import subprocess
import sys
from importlib.metadata import version
from importlib.resources import files

import jsonschema

import airflow_tf
from airflow_tf import config
from airflow_tf.provider_info import CONFIG_OPTIONS, DOCUMENTATION_URL, get_provider_info

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# For every module of these packages: which classes it defines, by kind; and whether importing
# them all loaded an ML framework (it must not: the dag-processor imports them).
SURVEY = """
import importlib, inspect, json, pkgutil, sys
from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger
import airflow_tf
found = {}
for package in ("airflow_tf.operators", "airflow_tf.sensors", "airflow_tf.triggers"):
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__, package + "."):
        module = importlib.import_module(info.name)
        kinds = set()
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and obj.__module__ == module.__name__ and not name.startswith("_"):
                if issubclass(obj, BaseTrigger):
                    kinds.add("trigger")
                elif issubclass(obj, BaseOperator) or name in airflow_tf.__all__:
                    kinds.add("operator")
        found[info.name] = sorted(kinds)
print(json.dumps({"modules": found,
                  "ml": sorted(m for m in ("tensorflow", "keras", "tf_keras", "horovod") if m in sys.modules)}))
"""


def survey() -> dict:
    out = subprocess.run([sys.executable, "-c", SURVEY], capture_output=True, text=True, cwd=REPO, timeout=180)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def listed(info: dict, kind: str) -> set[str]:
    return {m for entry in info.get(kind, []) for m in entry["python-modules"]}


def test_valid_against_airflows_provider_info_schema():
    schema = json.loads((files("airflow") / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_every_operator_sensor_and_trigger_module_is_listed_and_imports_no_ml_framework():
    info = get_provider_info()
    result = survey()
    assert result["ml"] == []
    modules = result["modules"]
    for kind, section in (("operator", "operators"), ("trigger", "triggers")):
        for module, kinds in modules.items():
            if kind in kinds:
                where = "sensors" if module.startswith("airflow_tf.sensors.") else section
                assert module in listed(info, where), f"{module} defines a {kind}: list it under {where!r}"
    # And nothing listed that does not exist or defines nothing of its kind.
    for section in ("operators", "sensors", "triggers"):
        for module in listed(info, section):
            assert modules.get(module), f"{module} listed under {section!r} defines no operator/trigger"
    assert listed(info, "sensors") == {"airflow_tf.sensors.training"}
    # The public names of the package are all covered.
    for name in ("TensorFlowTrainOperator", "ParameterServerTrainOperator", "HorovodTrainOperator",
                 "OnnxExportOperator", "HyperparameterSweep", "TrainingCompletionSensor"):
        assert airflow_tf._EXPORTS[name] in listed(info, "operators") | listed(info, "sensors"), name


def test_integrations_are_named_by_every_entry():
    info = get_provider_info()
    names = {i["integration-name"] for i in info["integrations"]}
    assert {"TensorFlow", "Horovod"} <= names
    assert all(i["external-doc-url"].startswith("https://") for i in info["integrations"])
    for section in ("operators", "sensors", "triggers"):
        for entry in info[section]:
            assert entry["integration-name"] in names


def test_config_section_matches_what_the_code_reads():
    options = get_provider_info()["config"]["airflow_tf"]["options"]
    assert options is CONFIG_OPTIONS
    defaults = config.defaults()
    assert set(options) == set(defaults)
    for name, option in options.items():
        default = option["default"]
        if default is not None:
            default = default.format(AIRFLOW_HOME=os.environ["AIRFLOW_HOME"])
        if option["type"] == "float":
            assert float(default) == float(defaults[name]), name
        else:
            assert default == defaults[name], name


def test_documentation_url_is_the_package_metadata_one_and_exists():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(REPO, "setup.cfg"))
    urls = dict(line.split(" = ", 1) for line in cfg["metadata"]["project_urls"].strip().splitlines())
    assert urls["Documentation"] == DOCUMENTATION_URL
    assert os.path.isfile(os.path.join(REPO, DOCUMENTATION_URL))


def test_versions_come_from_the_installed_distribution():
    assert get_provider_info()["versions"] == [version("airflow-tf")]
    assert version("airflow-tf") == airflow_tf.__version__, "reinstall: ./scripts/setup.sh"


def test_airflow_cli_shows_the_full_provider_info_without_warnings(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-m", "airflow", "providers", "get", "airflow-tf", "--full", "-o", "json"],
                         env=env, capture_output=True, text=True, timeout=180, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "warn" not in out.stderr.lower(), out.stderr
    (shown,) = json.loads(out.stdout[out.stdout.index("["):])
    assert shown["documentation-url"] == DOCUMENTATION_URL
    assert shown["versions"] == [airflow_tf.__version__]
    assert set(shown["config"]["airflow_tf"]["options"]) == {"job_root", "package_cache", "poll_interval",
                                                            "stop_grace_seconds", "max_node_count",
                                                            "max_processes_per_node", "max_world_size",
                                                            "max_sweep_trials"}
    assert listed(shown, "sensors") == {"airflow_tf.sensors.training"}


def test_extra_links_are_the_wait_tasks_and_importable():
    from airflow.sdk import BaseOperatorLink
    from airflow.sdk.module_loading import import_string

    from airflow_tf.operators.links import LINK_CLASSES
    from airflow_tf.operators.nodes import WaitForTrainingJobOperator

    assert get_provider_info()["extra-links"] == LINK_CLASSES
    assert [f"{type(link).__module__}.{type(link).__name__}"
            for link in WaitForTrainingJobOperator.operator_extra_links] == LINK_CLASSES
    assert all(issubclass(import_string(name), BaseOperatorLink) for name in LINK_CLASSES)
