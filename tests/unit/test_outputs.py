"""output_uri (results/outputs.py): checked at parse time; the copy and the relocated results,
through LocalBackend.output_files into a real file:// target (the deployment tests copy over
sftp:// and from Docker containers)."""

import json
import os

import pytest

from airflow_tf import LocalBackend, TensorFlowTrainOperator
from airflow_tf.cluster.errors import SpecError
from airflow_tf.results import outputs

SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "dags",
                      "mwms_example")


@pytest.mark.parametrize("value, expected", [
    ("/plain/path", "URI string"), ("ftp://host/x", "scheme 'ftp'"), (3, "ObjectStoragePath"), ("", "URI string"),
])
def test_bad_output_uri_fails_at_parse_naming_the_field(value, expected):
    from airflow.sdk import DAG

    with DAG("outputs_bad", schedule=None), pytest.raises(SpecError, match="output_uri") as info:
        TensorFlowTrainOperator(task_id="t", source_directory=SOURCE, entry_script="train.py", output_uri=value)
    assert expected in str(info.value)


def test_object_storage_path_keeps_its_connection_and_options():
    from airflow.sdk import ObjectStoragePath

    setting = outputs.to_setting(ObjectStoragePath("sftp://my_sftp@/srv/models", known_hosts="/etc/kh"))
    assert setting["conn_id"] == "my_sftp" and setting["kwargs"]["known_hosts"] == "/etc/kh"
    assert json.loads(json.dumps(setting)) == setting  # an operator field: JSON only


def test_copy_through_the_backend_and_results_point_at_the_copy(tmp_path):
    backend = LocalBackend(job_root=str(tmp_path / "jobs"))
    node_outputs = backend.output_location("job-1")
    os.makedirs(os.path.join(node_outputs, "tensorboard", "train"))
    with open(os.path.join(node_outputs, "model.keras"), "wb") as f:
        f.write(b"\x00model" * 1000)
    with open(os.path.join(node_outputs, "tensorboard", "train", "events.out"), "wb") as f:
        f.write(b"events")
    os.symlink("/etc/passwd", os.path.join(node_outputs, "link"))  # never followed
    results = {"job_id": "job-1", "model_path": f"{node_outputs}/model.keras", "metrics": {"loss": 0.5},
               "tensorboard_dir": f"{node_outputs}/tensorboard", "output_dir": node_outputs, "history": []}
    destination = outputs.target(outputs.to_setting(f"file://{tmp_path}/shared"), "job-1")
    copied = outputs.copy_outputs(backend.output_files({"job_id": "job-1"}), destination,
                                  {outputs.METRICS_FILE: outputs.metrics_payload(results)})
    assert copied == {"model.keras": 6000, "tensorboard/train/events.out": 6,
                      outputs.METRICS_FILE: len(outputs.metrics_payload(results))}
    moved = outputs.relocate(results, node_outputs, destination)
    assert moved["model_path"] == f"file://{tmp_path}/shared/job-1/model.keras"
    assert moved["tensorboard_dir"] == f"file://{tmp_path}/shared/job-1/tensorboard"
    assert moved["node_model_path"] == f"{node_outputs}/model.keras"
    with open(f"{tmp_path}/shared/job-1/model.keras", "rb") as f:
        assert f.read() == b"\x00model" * 1000
    assert json.load(open(f"{tmp_path}/shared/job-1/metrics.json"))["metrics"] == {"loss": 0.5}
    assert not os.path.exists(f"{tmp_path}/shared/job-1/link")


def test_a_backend_that_cannot_read_outputs_is_refused_at_parse():
    from airflow.sdk import DAG

    from airflow_tf import KubernetesBackend

    with DAG("outputs_k8s", schedule=None), pytest.raises(SpecError, match="output_uri: KubernetesBackend"):
        TensorFlowTrainOperator(task_id="t", source_directory=SOURCE, entry_script="train.py",
                                backend=KubernetesBackend(image="x"), output_uri="s3://bucket/models")
