"""Bad input fails at DAG-parse time with a SpecError that names the field and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from airflow.sdk import DAG
from hypothesis import example, given
from hypothesis import strategies as st

from airflow_tf import SpecError, TensorFlowTrainOperator, TrainingSpec
from airflow_tf.cluster.params import script_argv
from airflow_tf.cluster.checks import check_choice, check_hosts, coerce_positive_int
from airflow_tf.cluster.plan import Strategy
from airflow_tf.cluster.spec import check_script_params


@pytest.fixture
def src(tmp_path: Path) -> Path:
    source = tmp_path / "project"
    source.mkdir()
    (source / "train.py").write_text("print('train')\n")
    return source


def build(src: Path, **options):
    """Build the operator the way a DAG file does; returns the group."""
    options.setdefault("source_directory", str(src))
    options.setdefault("entry_script", "train.py")
    with DAG(dag_id="x", schedule=None):
        return TensorFlowTrainOperator("train", **options)


def spec(src: Path, **options) -> TrainingSpec:
    options.setdefault("source_directory", str(src))
    options.setdefault("entry_script", "train.py")
    return TrainingSpec(**options)


def raises_spec_error(*fragments: str):
    """pytest.raises(SpecError) whose message must contain every fragment (literally)."""
    return pytest.raises(SpecError, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# node_count / process_count_per_node


def test_node_count_zero(src):
    with raises_spec_error("node_count", "integer >= 1", "got 0"):
        build(src, node_count=0)


def test_node_count_negative(src):
    with raises_spec_error("node_count", "integer >= 1", "got -2"):
        build(src, node_count=-2)


def test_node_count_word_string(src):
    with raises_spec_error("node_count", "integer >= 1", "'two' (str)"):
        build(src, node_count="two")


def test_node_count_float(src):
    with raises_spec_error("node_count", "integer >= 1", "2.5 (float)"):
        build(src, node_count=2.5)


def test_node_count_bool(src):
    with raises_spec_error("node_count", "integer >= 1", "True (bool)"):
        build(src, node_count=True)


def test_node_count_bad_in_spec_too(src):
    # The same checks guard TrainingSpec (used at run time, after templates are rendered).
    with raises_spec_error("node_count", "integer >= 1", "got 0"):
        spec(src, node_count=0)


def test_process_count_per_node_zero(src):
    with raises_spec_error("process_count_per_node", "integer >= 1", "got 0"):
        build(src, process_count_per_node=0)


def test_process_count_per_node_zero_in_spec(src):
    with raises_spec_error("process_count_per_node", "integer >= 1", "got 0"):
        spec(src, process_count_per_node=0)


# source_directory / entry_script


def test_entry_script_missing(src):
    with raises_spec_error("entry_script 'nope.py' not found under source_directory", str(src)):
        build(src, entry_script="nope.py")


def test_entry_script_escaping_source_directory(src):
    # The escaping target exists, so only the "inside source_directory" rule can reject it.
    (src.parent / "x.py").write_text("print('outside')\n")
    with raises_spec_error("entry_script must be a relative path inside source_directory", "'../x.py'"):
        build(src, entry_script="../x.py")


def test_entry_script_absolute_path(src):
    with raises_spec_error("entry_script must be a relative path inside source_directory"):
        build(src, entry_script=str(src / "train.py"))


def test_source_directory_is_a_file(src):
    with raises_spec_error("source_directory must be an existing directory", str(src / "train.py")):
        build(src, source_directory=str(src / "train.py"))


def test_source_directory_missing(src):
    missing = src / "does-not-exist"
    with raises_spec_error("source_directory must be an existing directory", str(missing)):
        build(src, source_directory=str(missing))


def test_source_directory_not_a_path(src):
    with raises_spec_error("source_directory must be a path to a directory", "(int)"):
        spec(src, source_directory=42)


# script_params


def test_script_params_list_value(src):
    with raises_spec_error("script_params['--layers']", "must be a scalar (str, int, float, bool) or None", "(list)"):
        build(src, script_params={"--layers": [1, 2]})


def test_script_params_dict_value(src):
    with raises_spec_error("script_params['--opt']", "must be a scalar (str, int, float, bool) or None", "(dict)"):
        build(src, script_params={"--opt": {"lr": 0.1}})


def test_script_params_non_string_key(src):
    with raises_spec_error("script_params keys must be non-empty strings", "1 (int)"):
        build(src, script_params={1: "x"})


def test_script_params_list_with_non_scalar(src):
    with raises_spec_error("script_params[1]", "must be a scalar", "(dict)"):
        build(src, script_params=["--a", {"b": 1}])


def test_script_params_wrong_container(src):
    with raises_spec_error("script_params must be a dict of flag -> scalar or a list of arguments", "(int)"):
        build(src, script_params=5)


# operator options


def test_unknown_option_suggests_node_count(src):
    with raises_spec_error("TensorFlowTrainOperator", "unknown option", "'nodes_count'", "did you mean 'node_count'"):
        build(src, nodes_count=2)


@pytest.mark.parametrize("name", ["TF_CONFIG", "CUDA_VISIBLE_DEVICES", "AIRFLOW_TF_RANK", "HOROVOD_RANK"])
def test_environment_variables_cannot_override_plan_owned_names(src, name):
    with raises_spec_error(f"environment_variables[{name!r}]", "set by airflow-tf's plan", "cannot be overridden"):
        build(src, environment_variables={name: "x"})


def test_environment_variables_tf_config_rejected_in_spec(src):
    with raises_spec_error("environment_variables['TF_CONFIG']", "cannot be overridden"):
        spec(src, environment_variables={"TF_CONFIG": "{}"})


def test_pip_packages_are_accepted(src):
    build(src, pip_packages=["numpy"])  # installed per job by the node runtime


def test_conda_packages_are_accepted(src):
    build(src, conda_packages=["numpy"])  # installed per job by the node runtime (tests/unit/test_migration_options.py)


def test_pip_packages_not_a_list(src):
    with raises_spec_error("pip_packages must be a list of strings", "'numpy' (str)"):
        build(src, pip_packages="numpy")


def test_use_gpu_not_bool(src):
    with raises_spec_error("use_gpu must be True or False", "'yes' (str)"):
        build(src, use_gpu="yes")


def test_poll_interval_must_be_positive(src):
    with raises_spec_error("poll_interval must be a number of seconds > 0", "got 0"):
        build(src, poll_interval=0)


def test_timeout_must_be_positive(src):
    with raises_spec_error("timeout must be a number of seconds > 0 or None", "-1"):
        build(src, timeout=-1)


def test_spec_from_json_rejects_unknown_option(src):
    with raises_spec_error("unknown training option(s) ['nodes']", "node_count"):
        TrainingSpec.from_json({"source_directory": str(src), "entry_script": "train.py", "nodes": 2})


# positive cases


def test_valid_operator_builds_four_tasks(src):
    group = build(src, node_count=2, process_count_per_node=2, script_params={"--epochs": 1})
    assert group.group_id == "train"
    assert [t.task_id for t in (group.plan_task, group.launch_task, group.wait_task, group.teardown_task)] == [
        "train.plan", "train.launch", "train.wait", "train.teardown",
    ]
    assert group.plan_task.node_count == 2


def test_templated_node_count_accepted_at_parse_time(src):
    group = build(src, node_count="{{ params.node_count }}")
    # Left for the plan task to render and check at run time.
    assert group.plan_task.node_count == "{{ params.node_count }}"
    assert "node_count" in group.plan_task.template_fields


def test_templated_node_count_is_still_checked_once_rendered():
    assert coerce_positive_int("node_count", "3") == 3
    assert coerce_positive_int("node_count", " 4 ") == 4
    assert coerce_positive_int("node_count", 5) == 5


@pytest.mark.parametrize("rendered", ["0", "-1", "", "two", "2.5"])
def test_coerce_positive_int_rejects_bad_rendered_values(rendered):
    with raises_spec_error("node_count must be an integer >= 1"):
        coerce_positive_int("node_count", rendered)


@given(st.one_of(st.text(max_size=6), st.integers().map(str)))
@example("²")  # str.isdigit() is True for superscripts, but int() cannot parse them
@example("-3")
@example("--3")  # lstrip("-") would strip both dashes, then int() fails
@example(" 7 ")
def test_coerce_positive_int_any_text_gives_int_or_spec_error(text):
    """Whatever a template renders to: a positive int, or a SpecError naming the field, never another error."""
    try:
        value = coerce_positive_int("node_count", text)
    except SpecError as e:
        assert "node_count must be an integer >= 1" in str(e)
    else:
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 1
        assert value == int(text)


def test_spec_normalises_source_directory_to_absolute(src, monkeypatch):
    monkeypatch.chdir(src.parent)
    made = spec(src, source_directory=src.name)
    assert made.source_directory == str(src)


# script_argv


def test_script_argv_dict_in_order():
    assert script_argv({"--lr": 0.1, "--epochs": 3, "--name": "run a", "--flag": True}) == [
        "--lr", "0.1", "--epochs", "3", "--name", "run a", "--flag", "True",
    ]


def test_script_argv_none_is_bare_flag():
    assert script_argv({"--verbose": None, "--lr": 0.5, "--dry-run": None}) == ["--verbose", "--lr", "0.5", "--dry-run"]


def test_script_argv_list_passthrough():
    params = ["--lr", "0.1", "positional"]
    argv = script_argv(params)
    assert argv == ["--lr", "0.1", "positional"]
    argv.append("mutated")
    assert params == ["--lr", "0.1", "positional"]  # a copy, not the caller's list


def test_script_argv_empty():
    assert script_argv({}) == []
    assert script_argv([]) == []


def test_script_params_list_is_stringified_before_argv():
    assert script_argv(check_script_params(["--epochs", 3, 0.5])) == ["--epochs", "3", "0.5"]
    assert check_script_params(None) == {}


def test_model_asset_must_be_an_asset_or_uri(src):
    with raises_spec_error("model_asset must be an airflow.sdk.Asset or a URI string"):
        build(src, model_asset=42)


# shared checks (airflow_tf.cluster.checks)


def test_check_choice_accepts_member_or_value_and_names_the_choices():
    assert check_choice("strategy", "single", Strategy) is Strategy.SINGLE
    assert check_choice("strategy", Strategy.HOROVOD, Strategy) is Strategy.HOROVOD
    with raises_spec_error("strategy must be one of ['single', 'multi_worker_mirrored'", "got 'mirrored'"):
        check_choice("strategy", "mirrored", Strategy)


@pytest.mark.parametrize("bad_host", ["10.0.0.1:2222", "", "node a", None, "h\t"])
def test_check_hosts_rejects_ports_and_blanks(bad_host):
    with raises_spec_error("host 1 must be a hostname or IPv4 address without port", repr(bad_host)):
        check_hosts(2, ["10.0.0.1", bad_host])


def test_check_hosts_counts_one_per_node():
    assert check_hosts(2, ("a", "b")) == ["a", "b"]
    with raises_spec_error("node_count is 3 but the backend offered 2 host(s)", "['a', 'b']"):
        check_hosts(3, ["a", "b"])


def test_validate_fields_skips_templated_fields(src):
    TrainingSpec.validate_fields({"node_count": "{{ params.n }}", "entry_script": "train.py",
                                  "source_directory": str(src)}, skip={"node_count"})
    with raises_spec_error("process_count_per_node", "integer >= 1", "got 0"):
        TrainingSpec.validate_fields({"node_count": "{{ params.n }}", "process_count_per_node": 0},
                                     skip={"node_count"})
    with raises_spec_error("entry_script 'nope.py' not found"):
        TrainingSpec.validate_fields({"source_directory": str(src), "entry_script": "nope.py"})
