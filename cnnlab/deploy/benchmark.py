"""The export formats of one run side by side: file size, test accuracy, agreement with Keras, speed.

Each format is exported into a temporary folder (checked as `cnnlab export` checks it), then runs
every test image of the run's own split, one at a time, in its own runtime: Keras
(`predict_on_batch`), the TensorFlow Lite interpreter, onnxruntime, TensorFlow's SavedModel loader.
Speed is the median of `repeats` timed single-image calls after `warmup` untimed ones. The
result is kept beside the run (the demo's in the cache folder), keyed by the model file's hash,
so a page shows the last benchmark without running it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cnnlab.common.checks import check_choice
from cnnlab.common.files import folder_bytes, write_json

BENCHMARK_FORMATS = ("keras", "tflite", "tflite-float16", "tflite-dynamic", "tflite-int8", "onnx", "savedmodel")
BENCHMARK_FILE = "benchmark.json"
COLUMNS = ("format", "size_mb", "test_accuracy", "agreement", "ms_per_image", "note")


def parse_formats(formats: str | Sequence[str]) -> tuple[str, ...]:
    """Formats from a comma-separated string or a sequence, each one of `BENCHMARK_FORMATS`."""
    names = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else list(formats)
    if not names or not all(names):
        raise ValueError(
            f"Name at least one format to benchmark, e.g. 'keras,tflite-int8'. Received: formats={formats!r}"
        )
    for name in names:
        check_choice("format", name, BENCHMARK_FORMATS)
    return tuple(dict.fromkeys(names))


def benchmark_run(
    run,
    formats: str | Sequence[str] = BENCHMARK_FORMATS,
    *,
    cache: Path,
    repeats: int = 30,
    warmup: int = 5,
    max_cache_mb: int | None = None,
) -> dict[str, Any]:
    """Benchmark a run's model in each of `formats` on its test split, save the result and return it
    (not saved for a run still training).

    The result has `rows` (one per format, see `COLUMNS`; a format whose runtime is not installed
    has only its `note`), `num_test_images`, `repeats`, `warmup`, `machine` and `model_sha256`.
    """
    from cnnlab.analysis.evaluate import class_probabilities, open_split
    from cnnlab.deploy.quantize import NUM_REPRESENTATIVE, spread

    formats = parse_formats(formats)
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int of at least 1, e.g. 30. Received: repeats={repeats!r}")
    with open_split(run, cache=cache, max_cache_mb=max_cache_mb) as (prepared, parts):
        test = parts.get("test", np.zeros(0, dtype=np.int64))
        if not len(test):
            raise ValueError(
                f"This run has no test images to benchmark on; train with a test split. Received: run={run.id!r}"
            )
        images = np.asarray(prepared.images[test])
        labels = np.asarray(prepared.labels[test])
        train = parts.get("train", np.zeros(0, dtype=np.int64))
        calibration = np.asarray(prepared.images[spread(train, NUM_REPRESENTATIVE)]) if len(train) else None
    model = run.load_model()
    reference = class_probabilities(model.predict(images.astype(np.float32), verbose=0)).argmax(axis=1)
    rows = []
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".benchmark-") as tmp:
        for name in formats:
            rows.append(_row(name, run, model, images, labels, reference, calibration, Path(tmp), repeats, warmup))
    result = {
        "model_sha256": model_hash(run),
        "num_test_images": len(images),
        "repeats": repeats,
        "warmup": warmup,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "rows": rows,
    }
    if run.status != "running":  # a running run's folder is its training's to write
        path = benchmark_path(run, cache)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, result)
    return result


def cached_benchmark(run, *, cache: Path) -> dict[str, Any] | None:
    """The last benchmark of the run's current model, or None when there is none (or the model changed)."""
    path = benchmark_path(run, cache)
    if not path.is_file() or not run.model_path.is_file():
        return None
    result = json.loads(path.read_text(encoding="utf-8"))
    return result if result.get("model_sha256") == model_hash(run) else None


def benchmark_table(result: dict[str, Any]) -> pd.DataFrame:
    """The benchmark's rows as a table with `COLUMNS`."""
    return pd.DataFrame(result["rows"], columns=list(COLUMNS))


def benchmark_path(run, cache: Path) -> Path:
    """Where a run's benchmark is kept: in the run folder, or for the read-only demo, the cache folder."""
    return cache / "benchmarks" / f"{run.id}.json" if run.is_demo else run.path / BENCHMARK_FILE


def model_hash(run) -> str:
    """SHA-256 of the run's model file: what a cached benchmark is valid for."""
    return hashlib.sha256(run.model_path.read_bytes()).hexdigest()


def _row(
    name: str,
    run,
    model,
    images: np.ndarray,
    labels: np.ndarray,
    reference: np.ndarray,
    calibration: np.ndarray | None,
    workdir: Path,
    repeats: int,
    warmup: int,
) -> dict[str, Any]:
    """One format's figures, or only a note when it cannot run here."""
    from cnnlab.analysis.evaluate import class_probabilities
    from cnnlab.deploy import export, quantize

    row: dict[str, Any] = dict.fromkeys(COLUMNS) | {"format": name}
    format, _, mode = name.partition("-")
    if format == "onnx" and not export.onnx_available():
        return row | {"note": "not installed: onnxruntime, tf2onnx and onnx (pip install 'cnnlab[onnx]')"}
    if mode == "int8" and calibration is None:
        return row | {"note": "not run: int8 calibrates on training images and the run has none"}
    if format == "keras":
        path = run.model_path
    else:
        out = workdir / name
        if mode:
            quantize.export_quantized(model, run.class_names, out, mode, images[:32], calibration)
        else:
            export.export_model(model, run.class_names, out, format, images[:8])
        path = out / export.ARTIFACTS[format]
    size = folder_bytes(path) if path.is_dir() else path.stat().st_size
    predict = _RUNNERS[format](path)
    batches = images.astype(np.float32)[:, None]
    predicted = np.asarray([class_probabilities(predict(one))[0].argmax() for one in batches])
    for one in batches[:warmup]:
        predict(one)
    seconds = []
    for i in range(repeats):
        start = time.perf_counter()
        predict(batches[i % len(batches)])
        seconds.append(time.perf_counter() - start)
    return row | {
        "size_mb": size / 1e6,
        "test_accuracy": float(np.mean(predicted == labels)),
        "agreement": float(np.mean(predicted == reference)),
        "ms_per_image": float(np.median(seconds) * 1000),
    }


def _keras_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import keras

    model = keras.saving.load_model(path, compile=False)
    # `predict` builds a dataset per call and an eager `model(batch)` call retraces nothing but runs op by op
    # (11.7 ms against 2.9 ms for the demo model): `predict_on_batch` is Keras's own single-batch path.
    return lambda batch: np.asarray(model.predict_on_batch(batch))


def _savedmodel_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    serve = loaded.signatures["serving_default"]

    def predict(batch: np.ndarray, _keep=loaded) -> np.ndarray:  # its signatures do not own the variables
        (output,) = serve(**{"image": tf.constant(batch)}).values()
        return output.numpy()

    return predict


def _tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from cnnlab.deploy.export import _tflite_interpreter

    interpreter = _tflite_interpreter(path)
    (inputs,) = interpreter.get_input_details()
    (outputs,) = interpreter.get_output_details()
    interpreter.resize_tensor_input(inputs["index"], [1, *inputs["shape"][1:]])
    interpreter.allocate_tensors()

    def predict(batch: np.ndarray) -> np.ndarray:
        interpreter.set_tensor(inputs["index"], batch)
        interpreter.invoke()
        return interpreter.get_tensor(outputs["index"]).copy()

    return predict


def _onnx_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


_RUNNERS = {"keras": _keras_runner, "savedmodel": _savedmodel_runner, "tflite": _tflite_runner, "onnx": _onnx_runner}
