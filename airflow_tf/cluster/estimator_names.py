"""Where each option of the retired ``azureml.train.dnn.TensorFlow`` estimator went, for the
unknown-option messages of the training groups and of ``airflow_tf.azureml.TensorFlow``.

Keys are the estimator's names that our training groups do not take as they are; values say
what to write instead (docs/migration.md has the whole table). Pure data: no imports.
"""

from __future__ import annotations

# estimator option -> what to use on a *TrainOperator instead.
INSTEAD = {
    "compute_target": "compute_target is Azure ML's: pass backend=LocalBackend() / DockerBackend(...) / "
                      "SSHBackend(...) / KubernetesBackend(...) instead",
    "vm_size": "machines come from the backend (its hosts, daemons or Kubernetes resources), not a VM size",
    "vm_priority": "machines come from the backend; there is no VM priority",
    "distributed_training": "choose the operator (TensorFlowTrainOperator, ParameterServerTrainOperator, "
                            "HorovodTrainOperator) or use airflow_tf.azureml.TensorFlow(distributed_backend=...)",
    "use_docker": "the backend decides: DockerBackend(...) runs containers, LocalBackend() processes",
    "custom_docker_image": "pass it as the backend's image: DockerBackend(image=...) or KubernetesBackend(image=...) "
                           "(airflow_tf.azureml.TensorFlow does that for you)",
    "custom_docker_base_image": "pass the image to DockerBackend(image=...) / KubernetesBackend(image=...)",
    "image_registry_details": "images are never pulled by airflow-tf: load them on the daemons, or use "
                              "KubernetesBackend(image_pull_secrets=[...])",
    "user_managed": "nodes always use their own Python; per-job packages come from pip_packages / conda_packages",
    "conda_dependencies_file": "list the packages in conda_packages (and their channels in conda_channels)",
    "conda_dependencies_file_path": "list the packages in conda_packages (and their channels in conda_channels)",
    "pip_requirements_file": "list the requirements in pip_packages",
    "pip_requirements_file_path": "list the requirements in pip_packages",
    "environment_definition": "use environment_variables, pip_packages, conda_packages and the backend's image",
    "inputs": "give the data's path in script_params, or use airflow_tf.azureml.TensorFlow(inputs=...), which "
              "makes each input reachable on the node and tells the script where",
    "source_directory_data_store": "the source directory is shipped by the backend; no data store is needed",
    "shm_size": "pass it to the backend: DockerBackend(shm_size=...) or KubernetesBackend(shm_size=...)",
    "_enable_optimized_mode": "not needed: there is no image build step",
    "_disable_validation": "options are always validated when the DAG is parsed",
    "_show_lint_warnings": "not applicable",
    "_show_package_warnings": "not applicable",
}


def hint(name: str) -> str | None:
    return INSTEAD.get(name)
