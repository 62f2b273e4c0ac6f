# GPU training image for DockerBackend / SSH GPU hosts: TensorFlow 2.21 (GPU), tf-keras, OpenMPI,
# Horovod 0.28.1 built with NCCL and airflow-tf's two one-line patches, mpi4py, tf2onnx, and an
# sshd for Horovod's MPI backend (mpirun reaches the other node containers over ssh).
# Build from the repository root:
#   docker build -f docker/train-gpu.Dockerfile -t airflow-tf/train-gpu:2.21 .
FROM tensorflow/tensorflow:2.21.0-gpu

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenmpi-dev openmpi-bin openssh-server openssh-client \
      cmake g++ make \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /run/sshd

# tf-keras declares 'tensorflow' (present here); --no-deps keeps pip from touching the TF install.
RUN pip install --no-deps "tf-keras==2.21.0" \
 && pip install "tf2onnx==1.17.0" "onnxruntime==1.32.0" "onnx==1.23.2" "mpi4py==4.1.2" "tensorboard==2.21.0" \
      "cloudpickle==3.1.3" "psutil==7.2.2" "pyyaml==6.0.4" "packaging==26.4"

COPY scripts/patch_horovod.sh /tmp/patch_horovod.sh
WORKDIR /tmp/horovod-build
# NCCL for GPU allreduce; Gloo and MPI for the controller; no PyTorch/MXNet.
RUN pip download --no-deps --no-binary :all: "horovod==0.28.1" -d . \
 && tar xzf horovod-0.28.1.tar.gz \
 && bash /tmp/patch_horovod.sh horovod-0.28.1 \
 && HOROVOD_GPU_OPERATIONS=NCCL HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITH_GLOO=1 \
    HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
    pip install --no-deps --no-build-isolation ./horovod-0.28.1 \
 && rm -rf /tmp/horovod-build /tmp/patch_horovod.sh

WORKDIR /workspace
# The node runtime needs nothing from airflow-tf in the image: DockerBackend copies it in.
CMD ["python3", "-c", "import horovod.tensorflow as hvd; print('nccl', hvd.nccl_built(), 'mpi', hvd.mpi_built())"]
