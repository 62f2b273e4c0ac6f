#!/usr/bin/env bash
# Build Horovod 0.28.1 against the venv's TensorFlow and install it, reusing a cached wheel.
#
# Two patches, both one line:
# 1. Horovod 0.28.1 (the last release; upstream is dormant) fails to build against TF >= 2.16 at
#    99 % (highwayhash/arch_specific.h: TF wheels no longer ship those headers). Its XLA ops are
#    what need them; they are off by default at run time, so we compile them out (upstream fix:
#    horovod PR #4302, still open).
# 2. Gloo process-set contexts ignore HOROVOD_GLOO_IFACE (GlooContext::InitializeForProcessSet
#    reads its own, never-set gloo_iface_ instead of the global context's), so they advertise
#    whatever the host name resolves to. Where that is 127.0.0.1/127.0.1.1 (Debian's default
#    /etc/hosts, containers, network namespaces) peers on other hosts get "Connection refused".
# --no-build-isolation: the build imports the venv's tensorflow to find its headers and ABI.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$REPO"

HVD_VERSION=0.28.1
TF_VERSION="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("tensorflow-cpu"))')"
PATCHES=2  # bump when the patches change: the cached wheel is keyed by it
CACHE="${AIRFLOW_TF_WHEEL_CACHE:-$HOME/.cache/airflow-tf/wheels}/horovod-$HVD_VERSION-tf$TF_VERSION-p$PATCHES"

stamp="$VENV/.horovod-$HVD_VERSION-tf$TF_VERSION-p$PATCHES"
if [ -f "$stamp" ] && "$VENV/bin/python" -c "import horovod.tensorflow" 2>/dev/null; then
  echo "horovod: $HVD_VERSION already installed"
  exit 0
fi

if ! ls "$CACHE"/horovod-*.whl >/dev/null 2>&1; then
  echo "horovod: building $HVD_VERSION against tensorflow $TF_VERSION (about 2 minutes)"
  work="$REPO/build/horovod"
  rm -rf "$work" && mkdir -p "$work/dl"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: "horovod==$HVD_VERSION" -d "$work/dl"
  tar xzf "$work/dl/horovod-$HVD_VERSION.tar.gz" -C "$work"
  src="$work/horovod-$HVD_VERSION"
  "$REPO/scripts/patch_horovod.sh" "$src"
  mkdir -p "$CACHE"
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_PYTORCH=1 \
  HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
    "$VENV/bin/pip" wheel -q --disable-pip-version-check --no-deps --no-build-isolation "$src" -w "$CACHE"
  rm -rf "$work"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$CACHE"/horovod-*.whl
touch "$stamp"
"$VENV/bin/python" -c "import horovod.tensorflow as hvd; print('horovod:', hvd.__version__ if hasattr(hvd, '__version__') else 'ok', 'mpi', hvd.mpi_built(), 'gloo', hvd.gloo_built())"
