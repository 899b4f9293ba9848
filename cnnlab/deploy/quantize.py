"""Quantised TensorFlow Lite exports: float16 weights, dynamic-range, or full-integer (int8).

A quantised model computes a slightly different function, so its check is not `export.py`'s
1e-4: the reloaded model's class probabilities must stay within `TOLERANCES[mode]` of the Keras
model's on the check images, and its top-1 class must agree with Keras's on at least
`MIN_AGREEMENT` of them. int8 is calibrated on a representative set of the run's *training*
images (never its test images), decoded through the run's own preprocessing; its input and output
stay float32 raw 0-255 pixels and probabilities, so a caller feeds it exactly like the float model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cnnlab.common.checks import check_choice
from cnnlab.common.files import build_folder, write_json

QUANTIZATIONS = ("float16", "dynamic", "int8")
# Largest difference in any class probability from the Keras model that the check accepts.
TOLERANCES = {"float16": 0.01, "dynamic": 0.05, "int8": 0.1}
# Share of check images whose top-1 class must match Keras's: a near-tie may flip, a real change may not.
MIN_AGREEMENT = 0.9
NUM_REPRESENTATIVE = 100


def check_quantize(format: str, quantize: str | None) -> None:
    """Raise ValueError unless `quantize` is None or a known mode asked of the tflite format."""
    if quantize is None:
        return
    check_choice("quantize", quantize, QUANTIZATIONS)
    if format != "tflite":
        raise ValueError(
            f"Quantisation is for TensorFlow Lite exports only; pass format='tflite' or leave quantize unset. "
            f"Received: format={format!r}, quantize={quantize!r}"
        )


def export_quantized(
    model,
    class_names: list[str],
    out_dir: Path,
    quantize: str,
    check_images: np.ndarray,
    representative: np.ndarray | None = None,
    temperature: float | None = None,
) -> Path:
    """Export `model` as a quantised `model.tflite` into `out_dir`, checked after reloading; return `out_dir`.

    `quantize` is "float16", "dynamic" or "int8"; int8 needs `representative`, a uint8 batch
    (N, H, W, C) of training images to calibrate its ranges on. The reloaded model must agree
    with `model` on `check_images` within `TOLERANCES[quantize]` and `MIN_AGREEMENT`, else
    ValueError and nothing is left behind. `export.json` records the quantisation and the check,
    and `temperature` (the run's calibration) as `export_model` does.
    """
    from cnnlab.deploy import export
    from cnnlab.model import without_augmentation

    check_quantize("tflite", quantize)
    class_names = export._check_class_names(model, class_names)
    batch = export._check_images(model, check_images)
    calibration = None
    if quantize == "int8":
        if representative is None:
            raise ValueError(
                "int8 quantisation needs representative training images to calibrate on; pass a uint8 batch. "
                "Received: representative=None"
            )
        calibration = export._check_images(model, representative)
    out_dir = Path(out_dir)
    export._check_out_dir(out_dir)
    model = without_augmentation(model)

    def fill(folder: Path) -> None:
        artifact = folder / export.ARTIFACTS["tflite"]
        artifact.write_bytes(convert(model, quantize, calibration, folder))
        expected = np.asarray(model.predict(batch, verbose=0), dtype=np.float64)
        actual = np.asarray(export._load_tflite(artifact, batch), dtype=np.float64)
        check = agreement_check(expected, actual, quantize)
        manifest = export._manifest(model, class_names, "tflite", len(batch), check["max_abs_diff"], check["atol"])
        manifest["quantization"] = {
            "mode": quantize,
            **check,
            "num_representative_images": 0 if calibration is None else len(calibration),
            "representative_split": None if calibration is None else "train",
        }
        calibrated = {"temperature": None} if temperature is None else export.calibration_manifest(temperature)
        write_json(folder / export.CLASS_NAMES_FILE, class_names)
        write_json(folder / export.EXPORT_FILE, manifest | calibrated)

    return build_folder(out_dir, fill)


def convert(model, quantize: str, calibration: np.ndarray | None, workdir: Path) -> bytes:
    """The TFLite flatbuffer of `model` quantised as `quantize` (float32 input and output in every mode)."""
    import tempfile

    import tensorflow as tf
    from tensorflow.lite.python.convert_phase import ConverterError

    from cnnlab.deploy.export import _write_savedmodel

    # Through a SavedModel, as export.py's float TFLite does (the direct route gave NaNs in TF 2.21).
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        _write_savedmodel(model, Path(tmp) / "saved_model")
        converter = tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved_model"))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            converter.representative_dataset = _representative(calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            # Callers keep feeding float pixels and reading float probabilities.
            converter.inference_input_type = tf.float32
            converter.inference_output_type = tf.float32
        try:
            return converter.convert()
        except ConverterError as exc:
            # An op with no kernel for this mode (int8 most often): say so in one line, not a traceback.
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"TensorFlow Lite could not quantise this model as {quantize} ({first[:200]}); try a milder "
                f"quantisation (dynamic or float16) or none. Received: quantize={quantize!r}"
            ) from None


def _representative(calibration: np.ndarray | None):
    def samples() -> Iterator[list[np.ndarray]]:
        for image in calibration if calibration is not None else ():
            yield [image[None].astype(np.float32)]

    return samples


def agreement_check(expected: np.ndarray, actual: np.ndarray, quantize: str) -> dict[str, float]:
    """Top-1 agreement and the largest probability difference of a quantised model against Keras.

    Raises ValueError when they are outside `TOLERANCES[quantize]` and `MIN_AGREEMENT`.
    """
    from cnnlab.analysis.evaluate import class_probabilities

    if expected.shape != actual.shape:
        raise ValueError(
            f"The {quantize}-quantised model returns a different output shape than the original; export was "
            f"abandoned. Received: output.shape={actual.shape}"
        )
    want, got = class_probabilities(expected), class_probabilities(actual)
    max_abs_diff = float(np.max(np.abs(want - got)))
    agreement = float(np.mean(want.argmax(axis=1) == got.argmax(axis=1)))
    atol = TOLERANCES[quantize]
    if not (max_abs_diff <= atol and agreement >= MIN_AGREEMENT):
        raise ValueError(
            f"The {quantize}-quantised model agrees with the Keras model on {agreement:.0%} of the check images "
            f"(at least {MIN_AGREEMENT:.0%} needed) and differs by up to {max_abs_diff:.3g} (at most {atol} "
            f"allowed); export was abandoned, use a milder quantisation. Received: quantize={quantize!r}"
        )
    return {"top1_agreement": agreement, "max_abs_diff": max_abs_diff, "atol": atol, "min_agreement": MIN_AGREEMENT}


def representative_images(run, count: int = NUM_REPRESENTATIVE, *, cache: Path) -> np.ndarray | None:
    """Up to `count` of the run's training images, decoded as in training (evenly spread over the split);
    None when its dataset is not on this machine."""
    from cnnlab.analysis.evaluate import open_split

    try:
        with open_split(run, cache=cache) as (prepared, parts):
            train = parts.get("train", np.zeros(0, dtype=np.int64))
            if not len(train):
                return None
            return np.asarray(prepared.images[spread(train, count)])
    except (ValueError, OSError):
        return None


def spread(indices: np.ndarray, count: int) -> np.ndarray:
    """Up to `count` of `indices`, evenly spread over them (every class of a class-ordered split), sorted."""
    indices = np.asarray(indices, dtype=np.int64)
    if not len(indices):
        return indices
    return np.sort(indices[np.linspace(0, len(indices) - 1, min(count, len(indices))).astype(np.int64)])
