"""OnnxExportOperator: trained model -> ONNX, verified against TensorFlow in ONNX Runtime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airflow_tf.cluster.errors import SpecError

MAX_SAMPLES = 100_000  # random inputs compared in one process: beyond this, memory, not accuracy
TF_NOISE = ("oneDNN", "absl::", "cpu_feature_guard", "rebuild TensorFlow", "I0000 ", "W0000 ")


class OnnxExportOperator(BaseOperator):
    """Convert a Keras model (Keras 3 or tf_keras ``.keras``) to ONNX with tf2onnx, run it in ONNX
    Runtime on sample inputs, and fail if it disagrees with TensorFlow beyond ``tolerance``.

    :param model_path: the model file, or a training group's results (``train.output``), whose
        ``model_path`` is used. Templated.
    :param output_path: the ``.onnx`` file (default: next to the model, ``model.onnx``). Templated.
    :param opset: ONNX opset (default 17).
    :param tolerance: largest allowed absolute difference between TF and ONNX outputs (> 0).
    :param reference_model_path: compare against this model instead (e.g. the deployed one).
    :param samples: how many random sample inputs to compare on.

    The conversion runs in a fresh Python process: TensorFlow stays out of the worker, and
    tf_keras vs Keras 3 must be chosen before TensorFlow is imported. Returns the summary
    (onnx_path, max_abs_difference, ...) as XCom.
    """

    template_fields = ("model_path", "output_path", "reference_model_path")
    ui_color = "#f0e6ff"

    def __init__(self, *, model_path: Any, output_path: str | None = None, opset: int = 17, tolerance: float = 1e-4,
                 reference_model_path: str | None = None, samples: int = 16, python: str | None = None, **kwargs):
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance > 0:
            raise SpecError(f"tolerance must be a number > 0, got {tolerance!r}")
        if isinstance(opset, bool) or not isinstance(opset, int) or not 7 <= opset <= 21:
            raise SpecError(f"opset must be an integer in 7..21, got {opset!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= MAX_SAMPLES:
            raise SpecError(f"samples must be an integer in 1..{MAX_SAMPLES}, got {samples!r}")
        if not (isinstance(model_path, (str, dict)) or hasattr(model_path, "resolve")) or model_path in ("", {}):
            raise SpecError("model_path must be a model file path, a training group's results (train.output) "
                            f"or a template, got {model_path!r}")
        for field, value in (("output_path", output_path), ("reference_model_path", reference_model_path),
                             ("python", python)):
            if value is not None and (not isinstance(value, str) or not value.strip() or "\0" in value):
                raise SpecError(f"{field} must be a path (a non-empty string without NUL) or None, got {value!r}")
        super().__init__(**kwargs)
        self.model_path = model_path
        self.output_path = output_path
        self.opset = opset
        self.tolerance = tolerance
        self.reference_model_path = reference_model_path
        self.samples = samples
        self.python = python

    def execute(self, context) -> dict[str, Any]:
        import shutil

        from airflow_tf.results.outputs import local_copy

        model = self.model_path["model_path"] if isinstance(self.model_path, dict) else self.model_path
        if not model:
            raise AirflowFailException(f"model_path {model!r} is empty (did the training step save a model?)")
        # A URI (the training group's output_uri: sftp://, s3://...) is read through ObjectStoragePath,
        # into a scratch folder; the ONNX file then goes back next to the model there.
        scratch = None
        try:
            local, scratch = local_copy(str(model)) if "://" in str(model) else (model, None)
            return self._export(local, str(model) if scratch else None, scratch)
        except FileNotFoundError:
            raise AirflowFailException(f"model_path {model!r} does not exist (did the training step save a model?)") \
                from None
        finally:
            if scratch:
                shutil.rmtree(scratch, ignore_errors=True)

    def _export(self, model: str, model_uri: str | None, scratch: str | None) -> dict[str, Any]:
        from airflow_tf.results.outputs import upload

        if not os.path.exists(model):
            raise FileNotFoundError(model)
        target = self.output_path or (model_uri.rsplit("/", 1)[0] + "/model.onnx" if model_uri else None)
        remote_target = target if target and "://" in target and not target.startswith("file://") else None
        if remote_target:
            output = os.path.join(scratch or os.path.dirname(model), "model.onnx")
        else:
            output = (target or "").removeprefix("file://") or os.path.join(os.path.dirname(os.path.abspath(model)),
                                                                          "model.onnx")
        argv = [self.python or sys.executable, "-m", "airflow_tf.runtime.onnx_export", model, output,
                "--opset", str(self.opset), "--tolerance", repr(float(self.tolerance)), "--samples", str(self.samples)]
        if self.reference_model_path:
            argv += ["--reference", self.reference_model_path]
        self.log.info("converting %s -> %s (opset %d, tolerance %g)", model, output, self.opset, self.tolerance)
        result = subprocess.run(argv, capture_output=True, text=True)
        for line in (result.stdout + result.stderr).splitlines():
            if line.strip() and not any(noise in line for noise in TF_NOISE):
                self.log.info("%s", line)
        summary_lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode == 3:
            raise AirflowFailException(result.stderr.strip().splitlines()[-1])
        if result.returncode != 0 or not summary_lines:
            raise AirflowFailException(f"ONNX export failed (exit {result.returncode}): {result.stderr.strip()[-1500:]}")
        summary = json.loads(summary_lines[-1])
        if remote_target:
            upload(output, remote_target)
            summary["onnx_path"] = remote_target
            self.log.info("uploaded %s to %s", output, remote_target)
        return summary
