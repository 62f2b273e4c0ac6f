"""KubernetesBackend without a cluster: settings (DAG-parse time), names, and the exact objects it
creates, each built through the official ``kubernetes`` client models (an unknown or misplaced
field fails). Goldens: tests/goldens/k8s_*.yaml (the Service and the Pods; regenerate with
``UPDATE_GOLDENS=1`` and review the diff). The pod's init and keeper scripts and the node
runtime in the bundle are run here for real, as the pod would run them (paths remapped).

No Kubernetes API server runs on these machines: nothing here was applied to a real cluster.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

from airflow_tf.backends import kubernetes_manifests as manifests
from airflow_tf.backends import kubernetes_names as names
from airflow_tf.backends.base import Backend
from airflow_tf.backends.kubernetes import KubernetesBackend
from airflow_tf.backends.kubernetes_models import load_template, round_trip, to_model, to_yaml
from airflow_tf.cluster.errors import SpecError
from airflow_tf.cluster.horovod import HorovodSpec, plan_horovod_job
from airflow_tf.cluster.parameter_server import ParameterServerSpec, plan_parameter_server_job
from airflow_tf.cluster.spec import TrainingSpec
from airflow_tf.cluster.tensorflow import plan_tensorflow_job

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GOLDENS = os.path.join(REPO, "tests", "goldens")
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"
IMAGE = "registry.example.org/ml/tf:2.21.0-gpu"

TEMPLATE = """\
apiVersion: v1
kind: Pod
metadata:
  labels: {team: vision}
  annotations: {cluster-autoscaler.kubernetes.io/safe-to-evict: "false"}
spec:
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 1000}
  tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
  containers:
  - name: base
    resources: {requests: {cpu: "8", memory: 32Gi}}
    env: [{name: TF_CPP_MIN_LOG_LEVEL, value: "2"}]
    volumeMounts: [{name: data, mountPath: /data, readOnly: true}]
  - name: log-shipper
    image: fluent/fluent-bit:3.0
  volumes: [{name: data, persistentVolumeClaim: {claimName: imagenet}}]
"""


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("src")
    (path / "train.py").write_text("import os\nprint('rank', os.environ['AIRFLOW_TF_RANK'], 'ok')\n")
    (path / "eval.py").write_text("print('eval')\n")
    return str(path)


def backend(**kwargs) -> KubernetesBackend:
    return KubernetesBackend(**{"image": IMAGE, "namespace": "ml", **kwargs})


def plan_for(case: str, b: KubernetesBackend, src: str):
    job_id = f"golden.k8s.{case}-0123abcd"
    if case == "mwms_gpu":
        spec = TrainingSpec(source_directory=src, entry_script="train.py", node_count=2, process_count_per_node=2,
                            use_gpu=True, script_params={"--epochs": 3})
        return plan_tensorflow_job(spec, job_id=job_id, hosts=b.planned_hosts(2, job_id))
    if case == "ps":
        spec = ParameterServerSpec(source_directory=src, entry_script="train.py", node_count=2, worker_count=2,
                                   parameter_server_count=1)
        return plan_parameter_server_job(spec, job_id=job_id, hosts=b.planned_hosts(2, job_id))
    spec = HorovodSpec(source_directory=src, entry_script="train.py", node_count=2, process_count_per_node=1,
                       distributed_backend=case.removeprefix("horovod_"))
    return plan_horovod_job(spec, job_id=job_id, hosts=b.planned_hosts(2, job_id))


def objects(b: KubernetesBackend, plan, src: str, environment=None, secrets=None) -> list[dict]:
    launches = [plan.launch(i, environment or {}) for i in range(len(plan.nodes))]
    return manifests.job_objects(b, launches, manifests.build_bundle(b, src), load_template(b.pod_template),
                                 secrets=secrets)


# -- settings (parse time) ----------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"image": "my image"}, "image must be an image reference"),
    ({"namespace": "ML_team"}, "namespace must be a namespace name"),
    ({"namespace": "x" * 64}, "namespace must be"),
    ({"kubernetes_conn_id": "a b"}, "kubernetes_conn_id must be an Airflow connection id"),
    ({"gpus_per_node": 0}, "gpus_per_node must be an integer >= 1, got 0"),
    ({"gpus_per_node": True}, "gpus_per_node must be an integer >= 1"),
    ({"gpu_resource": "gpu"}, "gpu_resource must be an extended resource name"),
    ({"labels": {"team": "vision team"}}, r"labels\['team'\] must be a label value"),
    ({"labels": {"team": "x" * 64}}, r"labels\['team'\] must be a label value"),
    ({"labels": {"bad key!": "x"}}, "labels: 'bad key!' is not a valid label/annotation key"),
    ({"labels": {"airflow-tf/job": "x"}}, "reserved"),
    ({"node_selector": {"pool": "gpu a100"}}, r"node_selector\['pool'\] must be a label value"),
    ({"annotations": {"a": 1}}, r"annotations\['a'\] must be a string"),
    ({"resources": {"limit": {"cpu": "1"}}}, "resources must be a dict with 'requests' and/or 'limits'"),
    ({"resources": {"limits": {"cpu": "one"}}}, r"resources\['limits'\]\['cpu'\] must be a Kubernetes quantity"),
    ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, r"tolerations\[0\] .*unknown: \['effects'\]"),
    ({"affinity": {"nodeAffinty": {}}}, r"affinity must be .*unknown: \['nodeAffinty'\]"),
    ({"service_account_name": "Trainer"}, "service_account_name must be a Kubernetes object name"),
    ({"image_pull_secrets": "regcred"}, "image_pull_secrets must be a list of strings"),
    ({"image_pull_secrets": ["Reg_Cred"]}, r"image_pull_secrets\[0\] must be a Kubernetes object name"),
    ({"image_pull_policy": "always"}, "image_pull_policy must be one of"),
    ({"outputs_pvc": "my_claim"}, "outputs_pvc must be a Kubernetes object name"),
    ({"shm_size": "lots"}, "shm_size must be a Kubernetes quantity"),
    ({"environment": {"A": 1}}, "environment must be a dict of environment variable names to strings"),
    ({"image_source_dir": "app"}, "image_source_dir must be an absolute path"),
    ({"image_source_dir": "/airflow_tf/src"}, "reserved"),
    ({"start_timeout": 0}, "start_timeout must be an integer >= 1"),
    ({"pod_template": {"specs": {}}}, r"pod_template: unknown top-level field\(s\) \['specs'\]"),
    ({"pod_template": {"kind": "Deployment"}}, "pod_template must be a Pod"),
    ({"pod_template": "/no/such/template.yaml"}, "no file '/no/such/template.yaml'"),
    ({"pod_template": 3}, "pod_template must be a V1Pod, a dict or the path"),
])
def test_bad_settings_fail_at_construction_naming_the_field(kwargs, message):
    with pytest.raises(SpecError, match=message):
        backend(**kwargs)


def test_settings_round_trip_through_json_and_a_v1pod_template_becomes_its_dict(tmp_path):
    from kubernetes.client import models as k8s

    template = k8s.V1Pod(spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="base")], priority_class_name="hi"))
    b = backend(gpus_per_node=4, resources={"requests": {"cpu": 4}}, node_selector={"pool": "a100"},
                tolerations=[{"key": "gpu", "operator": "Exists"}], image_pull_secrets=["regcred"], shm_size="2Gi",
                labels={"team": "vision"}, annotations={"owner": "me"}, pod_template=template, outputs_pvc="models")
    rebuilt = Backend.deserialize(json.loads(json.dumps(b.serialize())))
    assert isinstance(rebuilt, KubernetesBackend) and rebuilt.settings() == b.settings()
    assert b.resources == {"requests": {"cpu": "4"}}
    assert b.pod_template == {"spec": {"containers": [{"name": "base"}], "priorityClassName": "hi"}}


def test_unknown_pod_template_fields_fail_at_plan_time_naming_the_path(tmp_path):
    path = tmp_path / "pod.yaml"
    path.write_text(TEMPLATE.replace("resources: {requests", "resourcs: {requests"))
    b = backend(pod_template=str(path))  # parse time: only the shape (no kubernetes import)
    with pytest.raises(SpecError, match=r"pod_template\.spec\.containers\[0\]: unknown field 'resourcs' "
                                        r"\(did you mean 'resources'\?\)"):
        b.planned_hosts(2, "job-0123abcd")
    path.write_text(TEMPLATE.replace("fsGroup: 1000", "fsGroup: lots"))
    with pytest.raises(SpecError, match=r"pod_template\.spec\.securityContext\.fsGroup must be a number"):
        backend(pod_template=str(path)).planned_hosts(1, "job-0123abcd")


def test_constructing_and_parsing_a_dag_imports_no_kubernetes_client(tmp_path, src):
    dag = tmp_path / "k8s_dag.py"
    dag.write_text(
        "from airflow.sdk import DAG\n"
        "from airflow_tf import KubernetesBackend, TensorFlowTrainOperator\n"
        "with DAG(dag_id='k8s_parse', schedule=None):\n"
        f"    TensorFlowTrainOperator(task_id='train', source_directory={src!r}, entry_script='train.py',\n"
        "        node_count=2, use_gpu=True, backend=KubernetesBackend(image='tf:1', namespace='ml', gpus_per_node=2,\n"
        "        pod_template={'spec': {'priorityClassName': 'high'}}))\n"
    )
    # (Airflow itself imports the provider's package and provider info: not its hook or the client.)
    code = ("import runpy, sys\nrunpy.run_path(sys.argv[1])\n"
            "print(sorted(m for m in ('kubernetes', 'kubernetes_asyncio', 'airflow.providers.cncf.kubernetes.hooks', "
            "'airflow.providers.cncf.kubernetes.pod_generator', 'tensorflow') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code, str(dag)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_provider_names_the_extra(monkeypatch):
    from airflow_tf import extras

    monkeypatch.setattr(extras, "available", lambda module: module != "airflow.providers.cncf.kubernetes")
    with pytest.raises(SpecError, match=r'KubernetesBackend needs the cncf.kubernetes provider: '
                                        r'pip install "airflow-tf\[kubernetes\]"'):
        backend()


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("job_id", [
    "tf_mwms_example.render.train-6e21fbcc", "d" * 150 + ".scheduled__2026-01-01T00:00:00+00:00.train-0a1b2c3d",
    "1starts.with.digit-00000000", "UPPER.Case_job", "x",
])
def test_names_are_dns_1123_within_63_and_hosts_are_stable_pod_dns_names(job_id):
    service, pod = names.service_name(job_id), names.pod_name(job_id, 4095)
    assert names.DNS1123_LABEL.fullmatch(service) and service[0].isalpha() and len(service) <= names.MAX_SERVICE
    assert names.DNS1123_LABEL.fullmatch(pod) and len(pod) <= 63
    label = names.label_value(job_id)
    assert len(label) <= 63 and names.LABEL_NAME.fullmatch(label)
    host = backend().planned_hosts(3, job_id)[2]
    assert host == f"{names.pod_name(job_id, 2)}.{service}.ml.svc"
    assert names.parse_host(host) == (names.pod_name(job_id, 2), service, "ml")


def test_long_job_ids_sharing_a_prefix_get_different_names():
    a, b = "p" * 100 + "-a", "p" * 100 + "-b"
    assert names.service_name(a) != names.service_name(b) and names.label_value(a) != names.label_value(b)


# -- the objects ------------------------------------------------------------------------------
GOLDEN_CASES = {
    "k8s_mwms_2_nodes_gpu.yaml": ("mwms_gpu", {"gpus_per_node": 4, "shm_size": "8Gi",
                                               "resources": {"requests": {"cpu": "16", "memory": "64Gi"}},
                                               "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-a100"},
                                               "outputs_pvc": "models"}),
    "k8s_ps_chief_worker_ps.yaml": ("ps", {"service_account_name": "trainer", "image_pull_secrets": ["regcred"]}),
    "k8s_horovod_gloo.yaml": ("horovod_gloo", {"image_pull_policy": "IfNotPresent", "labels": {"team": "vision"}}),
    "k8s_pod_template_merge.yaml": ("mwms_gpu", {"pod_template": "TEMPLATE", "annotations": {"owner": "ml-team"}}),
}


@pytest.mark.parametrize("golden", sorted(GOLDEN_CASES))
def test_objects_match_golden_and_survive_the_client_models(golden, src, tmp_path):
    case, kwargs = GOLDEN_CASES[golden]
    if kwargs.get("pod_template") == "TEMPLATE":
        (tmp_path / "pod.yaml").write_text(TEMPLATE)
        kwargs = {**kwargs, "pod_template": str(tmp_path / "pod.yaml")}
    b = backend(**kwargs)
    plan = plan_for(case, b, src)
    docs = objects(b, plan, src, environment={"DATA_DIR": "/data"})
    for doc in docs:
        assert round_trip(doc) == doc  # every field is the model's: nothing dropped or misplaced
    assert [d["kind"] for d in docs] == ["Service", "ConfigMap", "Secret", "Secret", "Pod", "Pod"]
    shown = to_yaml([d for d in docs if d["kind"] in ("Service", "Pod")])
    path = os.path.join(GOLDENS, golden)
    if UPDATE:
        with open(path, "w") as f:
            f.write(shown)
    with open(path) as f:
        assert shown == f.read()
    pods = [d for d in docs if d["kind"] == "Pod"]
    for node, pod in zip(plan.nodes, pods):
        spec = pod["spec"]
        assert spec["restartPolicy"] == "Never" and spec["subdomain"] == docs[0]["metadata"]["name"]
        assert f"{spec['hostname']}.{spec['subdomain']}.ml.svc" == node.host  # TF_CONFIG / rendezvous address
        node_container = spec["containers"][0]
        assert node_container["name"] == "node"
        assert sorted(p["containerPort"] for p in node_container.get("ports", [])) == node.ports
        # No secret, no user environment value in the pod spec: those are in the node's Secret.
        assert "DATA_DIR" not in json.dumps(pod) and "secret" not in json.dumps(node_container).lower()
        assert pod["metadata"]["labels"][names.LABEL_NODE] == str(node.node_index)
    if case == "mwms_gpu":
        limits = [p["spec"]["containers"][0]["resources"]["limits"] for p in pods]
        assert limits == [{"nvidia.com/gpu": "2" if "pod_template" in kwargs else "4"}] * 2
    if "pod_template" in kwargs:
        node_container = pods[0]["spec"]["containers"][0]
        assert node_container["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}  # template's, merged
        assert [e["name"] for e in node_container["env"]] == ["TF_CPP_MIN_LOG_LEVEL", "PYTHONPATH"]
        assert [c["name"] for c in pods[0]["spec"]["containers"]] == ["node", "files", "log-shipper"]
        assert pods[0]["metadata"]["labels"]["team"] == "vision"
        assert {v["name"] for v in pods[0]["spec"]["volumes"]} >= {"data", "airflow-tf", "outputs"}


def test_node_secret_carries_node_json_and_secrets_never_the_pod(src):
    b = backend()
    plan = plan_for("horovod_gloo", b, src)
    docs = objects(b, plan, src, environment={"DATA_DIR": "/data"}, secrets={"API_TOKEN": "s3cr3t-value"})
    secret, pod = docs[2], docs[4]
    assert secret["metadata"]["name"] == names.node_secret_name(plan.job_id, 0)
    assert json.loads(secret["stringData"]["node.json"])["environment"] == {"DATA_DIR": "/data"}
    assert json.loads(secret["stringData"]["secrets.json"]) == {"API_TOKEN": "s3cr3t-value"}
    assert "s3cr3t-value" not in json.dumps(pod)
    mounts = {c["name"]: [m["name"] for m in c.get("volumeMounts", [])] for c in
              pod["spec"]["initContainers"] + pod["spec"]["containers"]}
    assert [name for name, m in mounts.items() if "node-files" in m] == ["unpack"]  # the init container only


def test_misplaced_fields_fail_the_model_round_trip():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "node", "image": "x", "nodeSelector": {"a": "b"}}]}}
    with pytest.raises(SpecError, match=r"Pod\.spec\.containers\[0\]: unknown field 'nodeSelector'"):
        to_model(pod)
    with pytest.raises(SpecError, match=r"containers\[0\]\.ports\[0\]\.containerPort must be a number"):
        to_model({**pod, "spec": {"containers": [{"name": "n", "ports": [{"containerPort": "80"}]}]}})
    with pytest.raises(SpecError, match="name"):
        to_model({**pod, "spec": {"containers": [{"image": "x"}]}})  # a required field


def test_horovod_mpi_is_refused_with_the_reason_and_the_alternative(src):
    b = backend()
    plan = plan_for("horovod_mpi", b, src)
    with pytest.raises(SpecError, match="Horovod over Gloo only: distributed_backend='mpi' needs sshd"):
        objects(b, plan, src)


def test_gpus_per_node_below_the_ranks_is_refused(src):
    b = backend(gpus_per_node=1)
    with pytest.raises(SpecError, match="gpus_per_node=1 but node 0 runs 2 GPU rank"):
        objects(b, plan_for("mwms_gpu", b, src), src)


def test_sources_over_the_configmap_limit_are_refused_and_image_sources_ship_only_the_runtime(tmp_path, src):
    big = tmp_path / "big"
    big.mkdir()
    (big / "train.py").write_text("pass\n")
    (big / "data.bin").write_bytes(os.urandom(1_100_000))
    with pytest.raises(SpecError, match=r"packs to \d+ bytes .*over what one ConfigMap holds.*image_source_dir"):
        manifests.build_bundle(backend(), str(big))
    runtime_only = manifests.build_bundle(backend(image_source_dir="/app"), str(big))
    with tarfile.open(fileobj=io.BytesIO(runtime_only)) as tar:
        members = tar.getnames()
    assert "lib/airflow_tf/runtime/launcher.py" in members and not any(m.startswith("src") for m in members)
    b = backend(image_source_dir="/app")
    pod = objects(b, plan_for("ps", b, src), src)[4]
    assert pod["spec"]["containers"][0]["workingDir"] == "/app"


def test_the_pods_scripts_and_the_bundled_runtime_run_as_the_pod_would(tmp_path, src):
    """The init container's script unpacks the ConfigMap's bundle and the node files, the node
    container's command runs the launcher from it, the keeper ends after the exit code."""
    b = backend()
    plan = plan_tensorflow_job(TrainingSpec(source_directory=src, entry_script="train.py", node_count=1),
                               job_id="script.run.train-0123abcd", hosts=["localhost"])
    launch = plan.launch(0, {"DATA_DIR": "/data"})
    payload = manifests.build_bundle(b, src)
    root = tmp_path / "pod"
    (root / "bundle").mkdir(parents=True)
    (root / "bundle" / manifests.BUNDLE_KEY).write_bytes(payload)
    (root / "node").mkdir()
    secret = round_trip(manifests.node_secret(b, launch, {"TOKEN": "t0k3n"}, 1))
    for name, text in secret["stringData"].items():
        (root / "node" / name).write_text(text)

    def local(script: str) -> str:
        return (script.replace(names.BUNDLE_MOUNT, str(root / "bundle")).replace(names.NODE_MOUNT, str(root / "node"))
                .replace(f"'{names.ROOT}'", f"'{root / 'fs'}'"))

    node_dir = str(root / "fs" / "job" / "node-0")
    init = subprocess.run([sys.executable, "-S", "-c", local(manifests.INIT_SCRIPT), node_dir, "localhost", "5"],
                          capture_output=True, text=True, timeout=60)
    assert init.returncode == 0, init.stderr
    assert "localhost resolves" in init.stdout
    assert oct(os.stat(os.path.join(node_dir, "secrets.json")).st_mode & 0o777) == "0o600"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(root / "fs" / "lib")}
    node = subprocess.run([sys.executable, "-m", "airflow_tf.runtime.launcher", node_dir, "--workdir",
                           str(root / "fs" / "src"), "--output-dir", str(root / "fs" / "outputs")],
                          capture_output=True, text=True, env=env, timeout=60, cwd=str(tmp_path))
    assert node.returncode == 0, node.stdout + node.stderr
    assert "rank 0 ok" in node.stdout and not os.path.exists(os.path.join(node_dir, "secrets.json"))
    keeper = subprocess.run([sys.executable, "-S", "-c", manifests.KEEPER_SCRIPT, node_dir, "0"], timeout=30)
    assert keeper.returncode == 0
    no_dns = subprocess.run([sys.executable, "-S", "-c", local(manifests.INIT_SCRIPT), node_dir,
                             "no-such-pod.invalid", "1"], capture_output=True, text=True, timeout=60)
    assert no_dns.returncode == 1 and "does not resolve after 1 s" in no_dns.stderr


def test_configmap_carries_the_bundle_and_the_service_is_headless(src):
    b = backend()
    plan = plan_for("ps", b, src)
    service, config_map = objects(b, plan, src)[:2]
    assert service["spec"] == {"clusterIP": "None", "publishNotReadyAddresses": True,
                               "selector": {names.LABEL_JOB: names.label_value(plan.job_id),
                                            names.LABEL_MANAGED: names.MANAGED_BY}}
    payload = base64.b64decode(config_map["binaryData"][manifests.BUNDLE_KEY])
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        members = set(tar.getnames())
    assert {"src/train.py", "lib/airflow_tf/runtime/launcher.py", "lib/airflow_tf/__init__.py"} <= members


# -- render --offline ---------------------------------------------------------------------------
@pytest.mark.parametrize("dag_file, group, kinds", [
    ("dags/tf_mwms_example.py", "train", ["Service", "ConfigMap", "Secret", "Secret", "Pod", "Pod"]),
    ("dags/tf_ps_example.py", "ps_tf_keras_fit", ["Service", "ConfigMap", "Secret", "Secret", "Pod", "Pod"]),
    ("dags/tf_horovod_example.py", "gloo_tf2_loop", ["Service", "ConfigMap", "Secret", "Secret", "Pod", "Pod"]),
    ("dags/tf_horovod_example.py", "mpi_keras_fit", None),
])
def test_render_offline_prints_the_seed_examples_as_kubernetes_manifests(dag_file, group, kinds):
    settings = json.dumps({"image": IMAGE, "namespace": "ml", "kubernetes_conn_id": "no_such_connection"})
    out = subprocess.run([sys.executable, "-m", "airflow_tf.render", "render", dag_file, group, "--offline",
                          "--backend", "KubernetesBackend", "--backend-kwargs", settings],
                         cwd=REPO, capture_output=True, text=True)
    if kinds is None:
        assert out.returncode == 2 and "Horovod over Gloo only" in out.stderr
        return
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]  # the plan is in YAML comments
    assert [d["kind"] for d in docs] == kinds
    for doc in docs:
        assert round_trip(doc) == doc
    assert out.stdout.startswith("# job ") and ".ml.svc:" in out.stdout  # TF_CONFIG / rendezvous on pod DNS names


def test_render_offline_renders_ds_ti_and_params_and_names_the_secrets(tmp_path, src, capsys):
    from airflow_tf import render

    dag = tmp_path / "k8s_templates.py"
    dag.write_text(
        "from airflow.sdk import DAG, Param\n"
        "from airflow_tf import KubernetesBackend, TensorFlowTrainOperator\n"
        "with DAG(dag_id='k8s_templates', schedule=None, params={'epochs': Param(5, type='integer')}):\n"
        f"    TensorFlowTrainOperator(task_id='train', source_directory={src!r}, entry_script='train.py',\n"
        "        script_params={'--epochs': '{{ params.epochs }}', '--day': '{{ ds }}',\n"
        "                       '--try': '{{ ti.try_number }}'},\n"
        "        environment_variables={'RUN_DAY': '{{ ds_nodash }}'},\n"
        "        secret_environment_variables={'API_TOKEN': 'var:api_token'},\n"
        "        backend=KubernetesBackend(image='tf:1', namespace='ml', kubernetes_conn_id='not_defined'))\n"
    )
    assert render.main(["render", str(dag), "train", "--offline", "--conf", '{"epochs": 7}']) == 0
    out = capsys.readouterr().out
    docs = [d for d in yaml.safe_load_all(out) if d]
    pod = next(d for d in docs if d["kind"] == "Pod")
    node = json.loads(next(d for d in docs if d["kind"] == "Secret")["stringData"]["node.json"])
    today = __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
    assert node["node"]["script_args"] == ["--epochs", "7", "--day", today.strftime("%Y-%m-%d"), "--try", "1"]
    assert node["environment"] == {"RUN_DAY": today.strftime("%Y%m%d")}
    assert "# secret_environment_variables API_TOKEN: resolved by each launch" in out
    assert pod["metadata"]["labels"][names.LABEL_TRY] == "1"
