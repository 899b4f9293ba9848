"""Model export: write a trained model in a deployable format, load it back and check it agrees.

Every export folder holds the artefact, `class_names.json` and `export.json`. The folder appears
only once the reloaded artefact has predicted like the original model on the check images.
The exported model is the inference model, with no random augmentation (older models that
carry augmentation layers have them removed first), so Keras's own `model.export` writes the
SavedModel and ONNX formats; TFLite is converted from that SavedModel.

The artefact outputs the model's own probabilities, so an export predicts exactly as the model
it was checked against. A run's calibration temperature is recorded in `export.json`
(`temperature`, with the formula in `calibration`): to get the probabilities `cnnlab predict`
shows, apply softmax(log(p) / temperature) to the outputs (for one sigmoid unit p, that is
sigmoid(logit(p) / temperature)).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import zipfile
from datetime import UTC
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.analysis.calibration import check_temperature
from cnnlab.common.checks import check_choice
from cnnlab.common.files import build_folder, write_json
from cnnlab.model import without_augmentation

EXPORT_FORMATS = ("keras", "savedmodel", "tflite", "onnx")
ARTIFACTS = {"keras": "model.keras", "savedmodel": "saved_model", "tflite": "model.tflite", "onnx": "model.onnx"}
# What ONNX export and its check import; they come with the `onnx` extra.
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
CLASS_NAMES_FILE = "class_names.json"
EXPORT_FILE = "export.json"
# The SavedModel signature and TFLite input name: one float32 batch of raw 0-255 pixels.
INPUT_NAME = "image"


def export_model(
    model,
    class_names: list[str],
    out_dir: Path,
    format: str,
    check_images: np.ndarray,
    atol: float = 1e-4,
    temperature: float | None = None,
) -> Path:
    """Export `model` as `format` into `out_dir` and return `out_dir`.

    `format` is "keras" (`model.keras`), "savedmodel" (`saved_model/`, serving signature
    `serving_default` taking `image`), "tflite" (`model.tflite`) or "onnx" (`model.onnx`, input
    `image`; needs the `onnx` extra). The artefact is loaded back and
    its predictions on `check_images` (a uint8 batch N, H, W, C) must match `model.predict` within
    `atol`; otherwise ValueError and nothing is left behind. `out_dir` must not exist or be empty.
    `temperature` (the run's calibration, `Run.temperature`) is recorded in the manifest.
    """
    check_choice("format", format, EXPORT_FORMATS)
    if format == "onnx":
        _check_onnx_installed()
    _check_atol(atol)
    out_dir = Path(out_dir)
    class_names = _check_class_names(model, class_names)
    batch = _check_images(model, check_images)
    _check_out_dir(out_dir)
    model = without_augmentation(model)
    if temperature is not None:
        check_temperature(temperature)
    manifest = {"temperature": None} if temperature is None else calibration_manifest(temperature)
    return build_folder(
        out_dir, lambda folder: _write_checked(model, class_names, folder, format, batch, atol, manifest)
    )


def export_archive(out_dir: Path) -> bytes:
    """Zip an export folder (entries under its folder name) for a download button."""
    out_dir = Path(out_dir)
    if not (out_dir / EXPORT_FILE).is_file():
        raise ValueError(
            f"Not an export folder: it has no {EXPORT_FILE}; pass the folder export_model returned. "
            f"Received: out_dir={str(out_dir)!r}"
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
            archive.write(path, arcname=f"{out_dir.name}/{path.relative_to(out_dir).as_posix()}")
    return buffer.getvalue()


def read_export(out_dir: Path) -> dict[str, Any]:
    """The `export.json` manifest of an export folder."""
    return json.loads((Path(out_dir) / EXPORT_FILE).read_text(encoding="utf-8"))


def _write_checked(
    model, class_names: list[str], folder: Path, format: str, batch: np.ndarray, atol: float, extra: dict
) -> None:
    """Write the artefact, reload it, compare predictions, then write the JSON files beside it
    (`extra` keys added to the manifest)."""
    artifact = folder / ARTIFACTS[format]
    _WRITERS[format](model, artifact)
    expected = np.asarray(model.predict(batch, verbose=0), dtype=np.float64)
    actual = np.asarray(_LOADERS[format](artifact, batch), dtype=np.float64)
    max_abs_diff = _compare(expected, actual, format, atol)
    write_json(folder / CLASS_NAMES_FILE, class_names)
    write_json(folder / EXPORT_FILE, _manifest(model, class_names, format, len(batch), max_abs_diff, atol) | extra)


def _check_atol(atol: float) -> None:
    if isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0:
        raise ValueError(f"atol must be a float of at least 0, e.g. 1e-4. Received: atol={atol!r}")


def _num_classes(model) -> int:
    units = int(model.outputs[0].shape[-1])
    # One sigmoid unit is the probability of class 1 of two.
    return 2 if units == 1 else units


def _input_shape(model) -> tuple:
    return tuple(model.inputs[0].shape[1:])


def _check_class_names(model, class_names: list[str]) -> list[str]:
    names = list(class_names) if isinstance(class_names, (list, tuple)) else []
    ok = names and all(isinstance(n, str) and n for n in names) and len(set(names)) == len(names)
    if not ok or len(names) != _num_classes(model):
        raise ValueError(
            f"class_names must be {_num_classes(model)} distinct non-empty strings, one per model class "
            f"in training order. Received: class_names={class_names!r}"
        )
    return names


def _check_images(model, check_images: np.ndarray) -> np.ndarray:
    expected = _input_shape(model)
    array = np.asarray(check_images)
    fits = array.ndim == len(expected) + 1 and all(
        e is None or e == a for e, a in zip(expected, array.shape[1:], strict=True)
    )
    if not fits or len(array) == 0 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(
            f"check_images must be a non-empty uint8 batch (N, {', '.join(map(str, expected))}) of images the "
            f"model accepts, e.g. a few validation images. Received: check_images.shape={array.shape}"
        )
    # Every format is fed float32 0-255 pixels, as Keras feeds the model itself.
    return array.astype(np.float32)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ValueError(
            f"out_dir already exists and is not an empty folder; pick a new folder or delete it first. "
            f"Received: out_dir={str(out_dir)!r}"
        )


def onnx_available() -> bool:
    """Whether the packages ONNX export needs are installed (the `onnx` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ONNX_PACKAGES)


def _check_onnx_installed() -> None:
    if not onnx_available():
        missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
        raise ValueError(
            "ONNX export needs tf2onnx, onnx and onnxruntime; install them with `pip install 'cnnlab[onnx]'` "
            f"and try again. Received: missing={', '.join(missing)}"
        )


def _input_signature(model) -> list:
    """One float32 batch of raw 0-255 pixels named `image`, whatever the model's input layer is called."""
    import tensorflow as tf

    return [tf.TensorSpec((None, *_input_shape(model)), tf.float32, name=INPUT_NAME)]


def _write_keras(model, path: Path) -> None:
    model.save(path)


def _write_savedmodel(model, path: Path) -> None:
    model.export(str(path), format="tf_saved_model", input_signature=_input_signature(model), verbose=False)


def _write_onnx(model, path: Path) -> None:
    # tf2onnx logs every conversion step at INFO level; its warnings and errors still show.
    logging.getLogger("tf2onnx").setLevel(logging.WARNING)
    model.export(str(path), format="onnx", input_signature=_input_signature(model), verbose=False)


def _write_tflite(model, path: Path) -> None:
    import tempfile

    import tensorflow as tf

    # Converting through our SavedModel, not from the traced function directly: with TF 2.21 the
    # direct route produced NaNs whenever the input fed Rescaling or a conv straight away.
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        _write_savedmodel(model, Path(tmp) / "saved_model")
        path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(Path(tmp) / "saved_model")).convert())


def _load_keras(path: Path, batch: np.ndarray) -> np.ndarray:
    import keras

    return keras.saving.load_model(path, compile=False).predict(batch, verbose=0)


def _load_savedmodel(path: Path, batch: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    # Keep `loaded` referenced while calling: its signatures do not own the variables.
    loaded = tf.saved_model.load(str(path))
    # The serving signature is what TF Serving and other consumers call.
    (output,) = loaded.signatures["serving_default"](**{INPUT_NAME: tf.constant(batch)}).values()
    return output.numpy()


def _load_tflite(path: Path, batch: np.ndarray) -> np.ndarray:
    interpreter = _tflite_interpreter(path)
    (inputs,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inputs["index"], list(batch.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inputs["index"], batch)
    interpreter.invoke()
    (outputs,) = interpreter.get_output_details()
    return interpreter.get_tensor(outputs["index"])


def _load_onnx(path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inputs,) = session.get_inputs()
    return session.run(None, {inputs.name: batch})[0]


def _tflite_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        # tf.lite.Interpreter is deprecated in favour of LiteRT but still ships with TensorFlow.
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


_WRITERS = {"keras": _write_keras, "savedmodel": _write_savedmodel, "tflite": _write_tflite, "onnx": _write_onnx}
_LOADERS = {"keras": _load_keras, "savedmodel": _load_savedmodel, "tflite": _load_tflite, "onnx": _load_onnx}


def _compare(expected: np.ndarray, actual: np.ndarray, format: str, atol: float) -> float:
    if expected.shape != actual.shape:
        raise ValueError(
            f"The exported {format} model returns a different output shape than the original; export was "
            f"abandoned. Received: output.shape={actual.shape}"
        )
    max_abs_diff = float(np.max(np.abs(expected - actual)))
    if not max_abs_diff <= atol:
        raise ValueError(
            f"The exported {format} model's predictions differ from the original by up to {max_abs_diff:.3g}, "
            f"more than atol; export was abandoned (raise atol only if that is acceptable). Received: atol={atol!r}"
        )
    return max_abs_diff


def _manifest(model, class_names: list[str], format: str, num_images: int, max_abs_diff: float, atol: float) -> dict:
    import keras
    import tensorflow as tf

    binary = int(model.outputs[0].shape[-1]) == 1
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    if format == "onnx":
        import onnxruntime
        import tf2onnx

        versions |= {"tf2onnx": tf2onnx.__version__, "onnxruntime": onnxruntime.__version__}
    return {
        "format": format,
        "artifact": ARTIFACTS[format],
        "input_name": INPUT_NAME,
        "input_shape": [None if d is None else int(d) for d in _input_shape(model)],
        "input_dtype": "float32",
        "input_range": [0, 255],
        "output": "sigmoid: probability of class_names[1]" if binary else "softmax: one probability per class",
        "class_names": class_names,
        "max_abs_diff": max_abs_diff,
        "atol": atol,
        "num_check_images": num_images,
        "versions": versions,
    }


def calibration_manifest(temperature: float) -> dict[str, Any]:
    """The manifest's calibration keys: the temperature and how to apply it to the exported outputs."""
    return {
        "temperature": float(temperature),
        "calibration": "outputs are uncalibrated; calibrated p = softmax(log(outputs) / temperature) over the "
        "classes (one sigmoid output p: sigmoid(logit(p) / temperature)), as cnnlab predict applies it",
    }


def export_run(
    run,
    format: str,
    out_dir: Path | None = None,
    num_check_images: int = 8,
    *,
    cache: Path,
    quantize: str | None = None,
) -> Path:
    """Export a run's model, checked on some of its own test images, and return the folder.

    By default each export gets a new folder under the run (`exports/<format>-<time>`), so an
    earlier export is never overwritten; the demo's go to the `cache` folder, leaving the app's
    files as shipped (its built-in sample is found there too). `quantize` ("float16", "dynamic",
    "int8"; tflite only) writes a quantised model (`cnnlab.deploy.quantize`), checked on 32 test images.
    """
    from datetime import datetime

    from cnnlab.deploy import quantize as quantizing

    check_choice("format", format, EXPORT_FORMATS)
    quantizing.check_quantize(format, quantize)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    exports = exports_folder(run, cache)
    target = Path(out_dir) if out_dir is not None else exports / f"{format}{'-' + quantize if quantize else ''}-{stamp}"
    if quantize is None:
        check_images = _run_check_images(run, num_check_images, cache)
        return export_model(
            run.load_model(), run.class_names, target, format, check_images, temperature=run.temperature
        )
    representative = quantizing.representative_images(run, cache=cache) if quantize == "int8" else None
    if quantize == "int8" and representative is None:
        raise ValueError(
            "int8 quantisation calibrates on the run's training images, which are not on this machine; put its "
            f"dataset back or pick float16 or dynamic. Received: quantize={quantize!r}"
        )
    check_images = _run_check_images(run, max(num_check_images, 32), cache)
    return quantizing.export_quantized(
        run.load_model(), run.class_names, target, quantize, check_images, representative, run.temperature
    )


def exports_folder(run, cache: Path) -> Path:
    """Where a run's exports go by default: inside the run, or for the read-only demo, the cache folder."""
    return cache / "exports" / run.id if run.is_demo else run.path / "exports"


def _run_check_images(run, count: int, cache: Path) -> np.ndarray:
    from cnnlab.data.images import ImageError, load_array

    config = run.model_config()
    arrays = []
    for rel in run.split().get("test", [])[: count * 2]:
        try:
            arrays.append(
                load_array(run.image_path(rel, cache), config.image_size, config.color_mode, config.resize_mode)
            )
        except (ImageError, OSError):
            continue
        if len(arrays) == count:
            break
    if arrays:
        return np.stack(arrays)
    # Without its dataset, random images still show the artefact computes the same function.
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (count, *config.image_size, config.channels), dtype=np.uint8)
