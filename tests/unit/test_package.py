"""Package-level promises: parsing DAGs loads no ML framework; Airflow sees us as a provider."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHECK_IMPORTS = """
import runpy, sys
import airflow_tf
from airflow_tf import TensorFlowTrainOperator, LocalBackend
runpy.run_path(sys.argv[1])
print(",".join(sorted(m for m in ("tensorflow", "keras", "tf_keras", "horovod") if m in sys.modules)) or "none")
"""


def test_parsing_the_example_dag_imports_no_ml_framework():
    dag_file = os.path.join(REPO, "dags", "tf_mwms_example.py")
    out = subprocess.run([sys.executable, "-c", CHECK_IMPORTS, dag_file], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "none"


def test_airflow_lists_the_provider():
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "providers", "list", "--output", "json"],
        capture_output=True, text=True, check=True,
    )
    providers = {p["package_name"]: p for p in json.loads(out.stdout[out.stdout.index("["):])}
    assert "airflow-tf" in providers
    import airflow_tf

    assert providers["airflow-tf"]["version"] == airflow_tf.__version__
