"""Pure parts of what people see: node names (launch map index, job page rows), the extra links'
URLs, and the tracking options checked at DAG parse."""

import json
import os

import pytest

from airflow_tf.cluster.errors import SpecError
from airflow_tf.operators.links import as_url
from airflow_tf.results.tracking import Tracking, script_params, tracking_from_options, without_credentials
from airflow_tf.ui.names import group_of, job_page_path, node_title

GOLDENS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "goldens")


def _plan(name):
    with open(os.path.join(GOLDENS, name)) as f:
        data = json.load(f)
    return data.get("plan", data)


def test_node_titles_name_roles_and_hosts():
    assert [node_title(n) for n in _plan("plan_two_nodes_2x1_default_ports.json")["nodes"]] == [
        "node 0 · worker 0 @ 10.0.0.1", "node 1 · worker 1 @ 10.0.0.2"]
    ps = [node_title(n) for n in _plan("ps_three_nodes_3w_2ps_evaluator.json")["nodes"]]
    assert ps[0].startswith("node 0 · chief 0, worker 0, evaluator 0 @ ")
    assert ps[1].startswith("node 1 · ps 0, worker 1 @ ")


def test_many_processes_are_counted_not_listed():
    node = {"node_index": 3, "host": "gpu-3", "processes": [
        {"kind": "rank", "role": "worker", "task_index": None, "rank": r} for r in range(8)]}
    assert node_title(node) == "node 3 · worker 0, worker 1, … (8 processes) @ gpu-3"


def test_page_paths_and_urls():
    assert job_page_path("d", "manual__2026-01-01T00:00:00+00:00", "outer.train") == (
        "/airflow-tf/jobs/d/manual__2026-01-01T00%3A00%3A00%2B00%3A00?group=outer.train")
    assert group_of("outer.train.wait") == "outer.train"
    assert as_url("/srv/jobs/x/outputs") == "file:///srv/jobs/x/outputs"
    assert as_url("s3://bucket/x") == "s3://bucket/x" and as_url(None) == ""


def test_script_params_become_mlflow_params():
    assert script_params(["--epochs", "4", "--verbose", "--lr=0.1", "data.csv", "-b", "32"]) == {
        "epochs": "4", "verbose": "true", "lr": "0.1", "b": "32", "args": "data.csv"}
    assert without_credentials("http://me:secret@mlflow:5000/x") == "http://mlflow:5000/x"


@pytest.mark.parametrize("kwargs,message", [
    ({"tracking_uri": "http://a", "conn_id": "b"}, "not both"),
    ({"tracking_uri": "mlflow:5000"}, "must be a URI"),
    ({"conn_id": ""}, "mlflow_conn_id must be a non-empty string"),
    ({"tracking_uri": "http://a", "ranks": "some"}, "mlflow_ranks must be one of ['chief', 'all']"),
])
def test_bad_tracking_options_fail_at_parse(kwargs, message):
    with pytest.raises(SpecError, match=__import__("re").escape(message)):
        Tracking(**kwargs)


def test_tracking_options_need_a_target():
    assert tracking_from_options(None, None, None, "chief") is None
    with pytest.raises(SpecError, match="need mlflow_tracking_uri or mlflow_conn_id"):
        tracking_from_options(None, None, "exp", "chief")
    assert tracking_from_options("http://m:5000", None, None, "all").to_json() == {
        "tracking_uri": "http://m:5000", "conn_id": None, "experiment_name": None, "ranks": "all"}
