"""Quantised TFLite exports of a trained run: written, reloaded and checked against the Keras model."""

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from cnnlab.analysis.evaluate import class_probabilities, open_split
from cnnlab.cli import main
from cnnlab.deploy import quantize as quantizing
from cnnlab.deploy.export import _load_tflite, _tflite_interpreter, export_run
from helpers import copied_models


def _test_images(trained_run):
    run = trained_run["run"]
    with open_split(run, cache=trained_run["cache"]) as (prepared, parts):
        return np.asarray(prepared.images[parts["test"]]).astype(np.float32)


@pytest.fixture(scope="module")
def int8_export(trained_run, tmp_path_factory):
    run = trained_run["run"]
    out = tmp_path_factory.mktemp("int8") / "export"
    return export_run(run, "tflite", out, cache=trained_run["cache"], quantize="int8")


def test_int8_agrees_with_keras_on_the_test_split(trained_run, int8_export):
    images = _test_images(trained_run)
    assert len(images) >= 5
    keras_probs = class_probabilities(trained_run["run"].load_model().predict(images, verbose=0))
    tflite_probs = class_probabilities(_load_tflite(int8_export / "model.tflite", images))
    # The stated tolerance: probabilities within 0.1 and at least 90% of top-1 classes the same.
    assert np.max(np.abs(keras_probs - tflite_probs)) <= quantizing.TOLERANCES["int8"] == 0.1
    assert np.mean(keras_probs.argmax(1) == tflite_probs.argmax(1)) >= quantizing.MIN_AGREEMENT == 0.9


def test_int8_keeps_float_input_and_output_and_quantises_inside(int8_export):
    interpreter = _tflite_interpreter(int8_export / "model.tflite")
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    inner = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in inner


def test_int8_manifest_records_the_quantisation(trained_run, int8_export):
    manifest = json.loads((int8_export / "export.json").read_text())
    q = manifest["quantization"]
    assert q["mode"] == "int8" and q["representative_split"] == "train"
    # The tiny run has fewer than 100 training images: all of them calibrate.
    assert q["num_representative_images"] == len(trained_run["run"].split()["train"])
    assert 0.9 <= q["top1_agreement"] <= 1.0 and 0.0 <= q["max_abs_diff"] <= 0.1
    assert manifest["input_dtype"] == "float32" and manifest["max_abs_diff"] == q["max_abs_diff"]
    # The run's calibration travels with the export, as for the unquantised formats.
    assert manifest["temperature"] == trained_run["run"].temperature


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_float16_and_dynamic_load_and_agree(trained_run, tmp_path, mode):
    out = export_run(trained_run["run"], "tflite", tmp_path / mode, cache=trained_run["cache"], quantize=mode)
    images = _test_images(trained_run)
    keras_probs = class_probabilities(trained_run["run"].load_model().predict(images, verbose=0))
    tflite_probs = class_probabilities(_load_tflite(out / "model.tflite", images))
    assert np.max(np.abs(keras_probs - tflite_probs)) <= quantizing.TOLERANCES[mode]
    assert np.mean(keras_probs.argmax(1) == tflite_probs.argmax(1)) >= 0.9
    assert json.loads((out / "export.json").read_text())["quantization"]["mode"] == mode


def test_quantised_files_are_smaller(trained_run, tmp_path, int8_export):
    plain = export_run(trained_run["run"], "tflite", tmp_path / "plain", cache=trained_run["cache"])
    assert (int8_export / "model.tflite").stat().st_size < (plain / "model.tflite").stat().st_size


def test_bad_quantisation_raises(trained_run, tmp_path):
    run, cache = trained_run["run"], trained_run["cache"]
    with pytest.raises(ValueError, match=r"expected one of float16, dynamic, int8\. Received: quantize='int4'$"):
        export_run(run, "tflite", tmp_path / "a", cache=cache, quantize="int4")
    with pytest.raises(ValueError, match=r"tflite.*Received: format='onnx', quantize='int8'$"):
        export_run(run, "onnx", tmp_path / "b", cache=cache, quantize="int8")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_disagreeing_model_is_refused(trained_run):
    expected = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    flipped = expected[:, ::-1].copy()
    with pytest.raises(ValueError, match=r"agrees with the Keras model on 0%.*Received: quantize='dynamic'$"):
        quantizing.agreement_check(expected, flipped, "dynamic")


def test_cli_exports_int8_and_refuses_bad_input(trained_run, tmp_path, monkeypatch, capsys):
    run = trained_run["run"]
    monkeypatch.setenv("CNNLAB_MODELS_DIR", str(copied_models(run, tmp_path / "models")))
    monkeypatch.setenv("CNNLAB_CACHE_DIR", str(trained_run["cache"]))
    assert main(["export", run.id, "--format", "tflite", "--quantize", "dynamic", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["quantize"] == "dynamic" and 0.9 <= result["top1_agreement"] <= 1.0
    assert main(["export", run.id, "--format", "onnx", "--quantize", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("error: ") and err[0].endswith("Received: format='onnx', quantize='int8'")
    )
    assert main(["export", run.id, "--format", "tflite", "--quantize", "int4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Received: " in err[0]


def test_a_model_int8_cannot_express_is_one_line_error(tmp_path):
    import keras

    class Erf(keras.layers.Layer):  # TFLite has no int8 kernel for erf
        def call(self, x):
            return keras.ops.erf(x)

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(3, activation="softmax")(Erf()(keras.layers.Flatten()(inputs)))
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"could not quantise this model as int8 .*Received: quantize='int8'$") as info:
        quantizing.export_quantized(
            keras.Model(inputs, outputs), ["a", "b", "c"], tmp_path / "x", "int8", images, images
        )
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x").exists()
