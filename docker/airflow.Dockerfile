# Airflow 3.3.2 with airflow-tf and the docker/ssh providers, for the compose deployment.
# Build from the repository root:
#   docker build -f docker/airflow.Dockerfile -t airflow-tf/airflow:3.3.2 .
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:0 setup.cfg pyproject.toml README.md /opt/airflow-tf/
COPY --chown=airflow:0 airflow_tf /opt/airflow-tf/airflow_tf
# Airflow's side imports no TensorFlow: the Airflow image stays small; training runs in the
# GPU image (train-gpu.Dockerfile) through DockerBackend or on SSH GPU hosts.
# Versions: the ones the test suite ran with (requirements/*.txt resolved on 2026-11-26).
RUN pip install --no-cache-dir "apache-airflow==3.3.2" "apache-airflow-providers-docker==4.6.1" \
      "apache-airflow-providers-ssh==7.0.1" "apache-airflow-providers-celery==3.26.0" "celery==5.6.3" \
      "psycopg2-binary==2.9.13" "psycopg[binary]==3.3.9" "asyncpg==0.32.0" "apache-airflow-providers-sftp==7.0.0" \
      "sshfs==2026.8.0" "matplotlib==3.11.2" "onnxruntime==1.32.0" /opt/airflow-tf
