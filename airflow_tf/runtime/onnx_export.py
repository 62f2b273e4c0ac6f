"""Convert a trained Keras model to ONNX and check it against TensorFlow on sample inputs.

    python -m airflow_tf.runtime.onnx_export MODEL OUTPUT [--opset 17] [--tolerance 1e-4]
        [--reference MODEL] [--samples 16] [--seed 0]

Route: Keras model -> SavedModel -> ``tf2onnx.convert`` (its CLI). tf2onnx's ``from_keras`` fails
on Keras 3 models without ``output_names``; the SavedModel route works for Keras 3 and tf_keras
alike. Which Keras loads the file is read from the ``.keras`` archive's metadata (tf_keras
writes 2.x), and must be chosen before TensorFlow is imported, hence a process of its own.
Exit 0 and a JSON summary on stdout when ONNX Runtime agrees within the tolerance; exit 3 when
it does not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile


def keras_major(path: str) -> int:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(archive.read("metadata.json"))["keras_version"].split(".")[0])
    return 2  # a SavedModel / H5 directory: tf_keras' formats


def load(path: str):
    import tensorflow as tf  # noqa: PLC0415

    # Inference only: compile=False also skips optimizers a trainer wrapped (e.g. Horovod's).
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        return tf.keras.models.load_model(path, compile=False)
    import keras  # noqa: PLC0415

    return keras.saving.load_model(path, compile=False)


def export_saved_model(model, directory: str) -> None:
    """An inference SavedModel (serving signature only), what tf2onnx converts."""
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        model.export(directory)  # tf_keras
    else:
        model.export(directory, format="tf_saved_model", verbose=False)  # Keras 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="airflow_tf.runtime.onnx_export")
    parser.add_argument("model")
    parser.add_argument("output")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--reference", help="model whose outputs the ONNX model must match (default: MODEL)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if keras_major(args.model) < 3 and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
        # Re-run with tf_keras selected: it must be set before TensorFlow is imported.
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
        return subprocess.run([sys.executable, "-m", "airflow_tf.runtime.onnx_export", *(argv or sys.argv[1:])], env=env).returncode

    import numpy as np  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    model = load(args.model)
    reference = load(args.reference) if args.reference else model
    with tempfile.TemporaryDirectory() as saved:
        export_saved_model(model, saved)
        subprocess.run(
            [sys.executable, "-m", "tf2onnx.convert", "--saved-model", saved, "--output", args.output,
             "--opset", str(args.opset)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
    session = onnxruntime.InferenceSession(args.output, providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    shape = [args.samples] + [dim if isinstance(dim, int) else 1 for dim in onnx_input.shape[1:]]
    samples = np.random.default_rng(args.seed).normal(size=shape).astype(np.float32)
    expected = np.asarray(reference(samples, training=False))
    actual = session.run(None, {onnx_input.name: samples})[0]
    difference = float(np.max(np.abs(expected - actual)))
    summary = {"onnx_path": os.path.abspath(args.output), "opset": args.opset, "max_abs_difference": difference,
               "tolerance": args.tolerance, "samples": args.samples, "input_shape": shape}
    print(json.dumps(summary), flush=True)
    if not difference <= args.tolerance:
        print(f"ONNX Runtime disagrees with TensorFlow: max abs difference {difference:.3g} "
              f"exceeds tolerance {args.tolerance:g}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
