"""Bad parameter-server input fails at DAG-parse time with a SpecError naming the field and what is allowed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from airflow.sdk import DAG

from airflow_tf import ParameterServerTrainOperator, SpecError, TensorFlowTrainOperator
from airflow_tf.cluster.parameter_server import ParameterServerSpec, ServerMode


@pytest.fixture
def src(tmp_path: Path) -> Path:
    source = tmp_path / "project"
    source.mkdir()
    (source / "train.py").write_text("print('train')\n")
    (source / "evaluate.py").write_text("print('evaluate')\n")
    return source


def build(src: Path, operator=ParameterServerTrainOperator, **options):
    """Build the operator the way a DAG file does; returns the group."""
    options.setdefault("source_directory", str(src))
    options.setdefault("entry_script", "train.py")
    with DAG(dag_id="ps_validation", schedule=None):
        return operator("train", **options)


def spec(src: Path, **options) -> ParameterServerSpec:
    options.setdefault("source_directory", str(src))
    options.setdefault("entry_script", "train.py")
    return ParameterServerSpec(**options)


def raises_spec_error(*fragments: str):
    """pytest.raises(SpecError) whose message must contain every fragment (literally)."""
    return pytest.raises(SpecError, match="(?s)" + "".join(f"(?=.*{re.escape(f)})" for f in fragments))


# role counts


def test_parameter_server_count_zero(src):
    with raises_spec_error("parameter_server_count", "must be an integer >= 1", "got 0"):
        build(src, parameter_server_count=0)


def test_worker_count_zero(src):
    with raises_spec_error("worker_count", "must be an integer >= 1", "got 0"):
        build(src, worker_count=0)


def test_worker_count_digit_string(src):
    # Not a templated field: a string count is a typo, not a template to render later.
    with raises_spec_error("worker_count", "must be an integer >= 1", "'2' (str)"):
        build(src, worker_count="2")


def test_server_mode_bogus(src):
    with raises_spec_error("server_mode", "must be one of ['script', 'runtime']", "'bogus'"):
        build(src, server_mode="bogus")


def test_max_worker_restarts_negative(src):
    with raises_spec_error("max_worker_restarts", "must be an integer >= 0", "-1"):
        build(src, max_worker_restarts=-1)


def test_process_count_per_node_not_one(src):
    with raises_spec_error(
        "process_count_per_node must be 1 for parameter-server training",
        "worker_count, parameter_server_count and node_count",
        "got 2",
    ):
        build(src, process_count_per_node=2)


# layout


def test_max_tasks_per_node_exceeded(src):
    with raises_spec_error(
        "max_tasks_per_node is 2",
        "4 tasks (chief + 2 workers + 1 ps)",
        "node_count=1",
        "put 4 on one node",
        "raise node_count",
    ):
        build(src, node_count=1, worker_count=2, parameter_server_count=1, max_tasks_per_node=2)


def test_node_count_larger_than_task_count(src):
    with raises_spec_error("node_count is 5", "only 3 tasks (chief + 1 workers + 1 ps)", "lower node_count"):
        build(src, node_count=5, worker_count=1, parameter_server_count=1)


def test_node_count_counts_the_evaluator(src):
    # 4 tasks with the evaluator: node_count=4 is fine, 5 is one too many.
    build(src, node_count=4, evaluator=True)
    with raises_spec_error("node_count is 5", "only 4 tasks", "+ evaluator"):
        build(src, node_count=5, evaluator=True)


# evaluator_script


def test_evaluator_script_without_evaluator(src):
    with raises_spec_error(
        "evaluator_script is set but evaluator is False", "set evaluator=True", "drop evaluator_script"
    ):
        build(src, evaluator_script="evaluate.py")


def test_evaluator_script_missing(src):
    with pytest.raises(SpecError) as info:
        build(src, evaluator=True, evaluator_script="nope.py")
    message = str(info.value)
    assert f"evaluator_script 'nope.py' not found under source_directory {str(src)!r}" in message
    assert "entry_script" not in message


def test_evaluator_script_missing_message_keeps_the_real_path(tmp_path):
    # Only the field name is renamed; a directory whose name contains "entry_script" stays as it is.
    source = tmp_path / "my_entry_scripts"
    source.mkdir()
    (source / "train.py").write_text("print('train')\n")
    with raises_spec_error("evaluator_script 'nope.py' not found under source_directory", str(source)):
        build(source, evaluator=True, evaluator_script="nope.py")


# operator options


def test_unknown_option_suggests_worker_count(src):
    with raises_spec_error(
        "ParameterServerTrainOperator", "unknown option", "'worker_cnt'", "did you mean 'worker_count'"
    ):
        build(src, worker_cnt=2)


def test_ps_option_refused_by_tensorflow_operator(src):
    with raises_spec_error("TensorFlowTrainOperator", "unknown option", "['worker_count']"):
        build(src, operator=TensorFlowTrainOperator, worker_count=2)


def test_ps_options_not_listed_as_allowed_for_tensorflow_operator(src):
    with pytest.raises(SpecError) as info:
        build(src, operator=TensorFlowTrainOperator, parameter_server_count=1)
    allowed = str(info.value).split("Allowed:", 1)[1]
    for name in ("worker_count", "parameter_server_count", "evaluator", "server_mode", "max_worker_restarts"):
        assert f"'{name}'" not in allowed


# The same bad input is refused by the spec itself (what the plan task builds once templates render).


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"parameter_server_count": 0}, ("parameter_server_count", "integer >= 1")),
        ({"worker_count": 0}, ("worker_count", "integer >= 1")),
        ({"worker_count": "2"}, ("worker_count", "'2' (str)")),
        ({"server_mode": "bogus"}, ("server_mode", "['script', 'runtime']")),
        ({"max_worker_restarts": -1}, ("max_worker_restarts", "integer >= 0")),
        ({"process_count_per_node": 2}, ("process_count_per_node must be 1",)),
        ({"worker_count": 2, "max_tasks_per_node": 2}, ("max_tasks_per_node is 2", "raise node_count")),
        ({"node_count": 4}, ("node_count is 4", "only 3 tasks")),
        ({"evaluator_script": "evaluate.py"}, ("evaluator_script is set but evaluator is False",)),
        ({"evaluator": True, "evaluator_script": "nope.py"}, ("evaluator_script 'nope.py' not found",)),
        ({"max_tasks_per_node": 0}, ("max_tasks_per_node", "integer >= 1")),
        ({"evaluator": "yes"}, ("evaluator must be True or False", "'yes' (str)")),
    ],
)
def test_spec_refuses_the_same_input(src, options, fragments):
    with raises_spec_error(*fragments):
        spec(src, **options)


# positive cases


def test_defaults_build(src):
    # worker_count/parameter_server_count fall back to the spec's defaults (1 each).
    group = build(src, node_count=3)
    assert group.plan_task.strategy == "parameter_server"
    made = spec(src, node_count=3)
    assert (made.worker_count, made.parameter_server_count, made.evaluator) == (1, 1, False)
    assert made.server_mode is ServerMode.SCRIPT


def test_server_mode_is_normalised_to_the_enum(src):
    assert spec(src, server_mode="runtime").server_mode is ServerMode.RUNTIME
    assert spec(src, server_mode=ServerMode.RUNTIME).server_mode is ServerMode.RUNTIME


def test_valid_operator_builds_four_tasks(src):
    group = build(
        src, node_count=2, worker_count=2, parameter_server_count=1, evaluator=True,
        evaluator_script="evaluate.py", server_mode="runtime", max_worker_restarts=2, max_tasks_per_node=3,
    )
    assert [t.task_id for t in (group.plan_task, group.launch_task, group.wait_task, group.teardown_task)] == [
        "train.plan", "train.launch", "train.wait", "train.teardown",
    ]
    assert group.plan_task.strategy == "parameter_server"
    assert group.plan_task.spec_fields["worker_count"] == 2
    assert group.plan_task.spec_fields["evaluator_script"] == "evaluate.py"


def test_templated_node_count_accepted_at_parse_time(src):
    group = build(src, node_count="{{ params.n }}", worker_count=2, parameter_server_count=1, max_tasks_per_node=2)
    # Left for the plan task to render; the layout is checked once it is a number.
    assert group.plan_task.node_count == "{{ params.n }}"
    assert "node_count" in group.plan_task.template_fields
    assert group.plan_task.strategy == "parameter_server"
    assert "node_count" not in group.plan_task.spec_fields


def test_templated_node_count_layout_checked_once_rendered(src):
    # What the plan task does with a rendered "1": 4 tasks on one node breaks max_tasks_per_node=2.
    with raises_spec_error("max_tasks_per_node is 2", "raise node_count"):
        spec(src, node_count=1, worker_count=2, parameter_server_count=1, max_tasks_per_node=2)
    assert spec(src, node_count=2, worker_count=2, parameter_server_count=1, max_tasks_per_node=2).node_count == 2


def test_templated_node_count_does_not_hide_other_bad_fields(src):
    with raises_spec_error("worker_count", "integer >= 1", "got 0"):
        build(src, node_count="{{ params.n }}", worker_count=0)
