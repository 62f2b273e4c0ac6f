#!/usr/bin/env bash
# Apply airflow-tf's two one-line fixes to an unpacked Horovod 0.28.1 source tree (see
# scripts/build_horovod.sh for why). Used by build_horovod.sh and by docker/train-gpu.Dockerfile.
# Usage: scripts/patch_horovod.sh HOROVOD_SOURCE_DIR
set -euo pipefail
src="$1"
xla="$src/horovod/tensorflow/xla_mpi_ops.cc"
grep -q '#if TENSORFLOW_VERSION >= 2006000000' "$xla"
sed -i 's/#if TENSORFLOW_VERSION >= 2006000000/#if 0  \/\/ airflow-tf: XLA ops compiled out (horovod PR #4302)/' "$xla"
context="$src/horovod/common/gloo/gloo_context.cc"
[ "$(grep -c '  device_attr.iface = gloo_iface_;' "$context")" = 3 ]
# the third occurrence is InitializeForProcessSet's: use the global context's interface
awk '/  device_attr.iface = gloo_iface_;/ && ++n == 3 { sub(/gloo_iface_/, "global_context.gloo_iface_") } { print }' \
  "$context" > "$context.new" && mv "$context.new" "$context"
grep -q 'device_attr.iface = global_context.gloo_iface_;' "$context"
echo "patched $src"
