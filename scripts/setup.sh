#!/usr/bin/env bash
# Create or update .venv with everything airflow-tf needs. Idempotent: a second run with
# unchanged requirements only checks a stamp file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO"

# System packages (requirements/apt.txt): installed only when missing.
missing=()
while read -r pkg; do
  [ -z "$pkg" ] || [ "${pkg#\#}" != "$pkg" ] && continue
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done < requirements/apt.txt
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi

# The extras of setup.cfg that .venv gets ([mlflow]: the tracking tests run a real MLflow server). [kubernetes]
# brings the cncf provider (pinned in requirements/constraints.txt): KubernetesBackend's tests
# build every object with its client models; no cluster is needed.
EXTRAS="docker,ssh,kubernetes,celery,sftp,plots,onnx,mlflow,tensorflow,conda,tuning,test"

stamp="$VENV/.airflow-tf-setup"
want="$(cat requirements/*.txt setup.cfg scripts/setup.sh scripts/build_horovod.sh scripts/patch_horovod.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: .venv is up to date"
  exit 0
fi

echo "setup: installing Python packages into $VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -U pip
# airflow-tf itself with the extras the demo and the tests use: the dependencies are declared
# once, in setup.cfg; requirements/constraints.txt pins the versions CI tests with.
"$VENV/bin/pip" install -q --disable-pip-version-check -c requirements/constraints.txt \
  -e ".[$EXTRAS]" -r requirements/horovod.txt
# The editable install's metadata lives in .venv; the copy setuptools leaves in the repository root
# would be a second "airflow-tf" distribution for every Python started here, and Airflow would
# load the airflow.plugins entry point (the job page) twice and report a duplicate plugin.
rm -rf "$REPO/airflow_tf.egg-info"
# tf-keras declares a dependency on 'tensorflow', not 'tensorflow-cpu': without --no-deps pip
# would pull the full GPU 'tensorflow' wheel next to tensorflow-cpu.
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "tf-keras==2.21.0"
"$REPO/scripts/build_horovod.sh"
echo "$want" > "$stamp"
echo "setup: done"
