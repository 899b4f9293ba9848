"""Export round trips: each format is written, loaded back independently and predicts like the model."""

import io
import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.deploy import export  # noqa: E402
from cnnlab.deploy.export import EXPORT_FORMATS, export_archive, export_model  # noqa: E402
from helpers import NO_AUGMENTATION, random_images, small_cnn  # noqa: E402

SHAPE = (32, 32, 3)


def _model(num_classes: int, shape=SHAPE):
    # Augmentation and dropout inside the model, as in older saved models: both must be off in every export.
    return small_cnn(num_classes, shape, augment=True, dropout=0.5, seed=num_classes)


def _images(n: int, shape=SHAPE, seed: int = 0) -> np.ndarray:
    return random_images(n, shape, seed)


@pytest.fixture(scope="module")
def models():
    return {"softmax": (_model(3), ["cat", "dog", "fox"]), "sigmoid": (_model(2), ["no", "yes"])}


def _predict_keras(path, images):
    return keras.saving.load_model(path, compile=False).predict(images.astype(np.float32), verbose=0)


def _predict_savedmodel(path, images):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    return loaded.signatures["serving_default"](image=tf.constant(images.astype(np.float32)))["output_0"].numpy()


def _tflite_interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # the deprecated TensorFlow copy, until ai-edge-litert is installed
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


def _predict_tflite(path, images):
    interpreter = _tflite_interpreter_class()(model_path=str(path))
    rows = []
    for image in images:  # one at a time through the converted fixed batch-of-1 input
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32))
        interpreter.invoke()
        rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0])
    return np.stack(rows)


def _predict_onnx(path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": images.astype(np.float32)})[0]


PREDICT = {"keras": _predict_keras, "savedmodel": _predict_savedmodel, "tflite": _predict_tflite, "onnx": _predict_onnx}


@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
@pytest.mark.parametrize("format", EXPORT_FORMATS)
def test_round_trip_predicts_like_the_model(models, tmp_path, format, kind):
    model, class_names = models[kind]
    out = export_model(model, class_names, tmp_path / "export", format, _images(4))
    assert out == tmp_path / "export"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [export.ARTIFACTS[format], "class_names.json", "export.json"]
    )
    assert json.loads((out / "class_names.json").read_text()) == class_names
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["format"] == format
    assert manifest["input_shape"] == list(SHAPE)
    assert manifest["class_names"] == class_names
    assert 0.0 <= manifest["max_abs_diff"] <= 1e-4
    # Fresh images, read back without cnnlab: the artefact stands on its own.
    fresh = _images(3, seed=7)
    expected = model.predict(fresh, verbose=0)
    np.testing.assert_allclose(PREDICT[format](out / export.ARTIFACTS[format], fresh), expected, atol=1e-4)


def test_grayscale_model_exports(tmp_path):
    model = _model(3, shape=(24, 40, 1))
    out = export_model(model, ["a", "b", "c"], tmp_path / "gray", "savedmodel", _images(2, shape=(24, 40, 1)))
    assert json.loads((out / "export.json").read_text())["input_shape"] == [24, 40, 1]


def test_empty_existing_folder_is_filled(models, tmp_path):
    (tmp_path / "export").mkdir()
    model, class_names = models["sigmoid"]
    assert (export_model(model, class_names, tmp_path / "export", "keras", _images(2)) / "model.keras").is_file()


def test_failed_check_leaves_nothing_behind(models, tmp_path, monkeypatch):
    model, class_names = models["softmax"]
    monkeypatch.setitem(export._LOADERS, "keras", lambda path, batch: model.predict(batch, verbose=0) + 0.01)
    with pytest.raises(ValueError, match="differ from the original by up to 0.01.*Received: atol=0.0001"):
        export_model(model, class_names, tmp_path / "nested" / "export", "keras", _images(2))
    assert list((tmp_path / "nested").iterdir()) == []


def test_bad_format_raises(models, tmp_path):
    model, class_names = models["softmax"]
    with pytest.raises(ValueError, match="expected one of keras, savedmodel, tflite, onnx. Received: format=.coreml."):
        export_model(model, class_names, tmp_path / "export", "coreml", _images(2))
    assert not (tmp_path / "export").exists()


@pytest.mark.parametrize("class_names", [["cat", "dog"], ["cat", "cat", "dog"], "cat,dog,fox", ["cat", "", "fox"]])
def test_bad_class_names_raise(models, tmp_path, class_names):
    model, _ = models["softmax"]
    with pytest.raises(ValueError, match="class_names must be 3 distinct non-empty strings.*Received: class_names="):
        export_model(model, class_names, tmp_path / "export", "keras", _images(2))


@pytest.mark.parametrize("shape", [(2, 16, 16, 3), (32, 32, 3), (0, 32, 32, 3)])
def test_bad_check_images_raise(models, tmp_path, shape):
    model, class_names = models["softmax"]
    with pytest.raises(ValueError, match=r"check_images must be a non-empty uint8 batch \(N, 32, 32, 3\).*Received"):
        export_model(model, class_names, tmp_path / "export", "keras", np.zeros(shape, dtype=np.uint8))


def test_non_empty_out_dir_raises(models, tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "keep.txt").write_text("mine")
    model, class_names = models["softmax"]
    with pytest.raises(ValueError, match="already exists.*Received: out_dir="):
        export_model(model, class_names, tmp_path / "export", "keras", _images(2))
    assert [p.name for p in (tmp_path / "export").iterdir()] == ["keep.txt"]


def test_bad_atol_raises(models, tmp_path):
    model, class_names = models["softmax"]
    with pytest.raises(ValueError, match="Received: atol=-1"):
        export_model(model, class_names, tmp_path / "export", "keras", _images(2), atol=-1)


def test_export_archive_zips_the_folder(models, tmp_path):
    model, class_names = models["sigmoid"]
    out = export_model(model, class_names, tmp_path / "my_export", "tflite", _images(2))
    with zipfile.ZipFile(io.BytesIO(export_archive(out))) as archive:
        assert sorted(archive.namelist()) == [
            "my_export/class_names.json",
            "my_export/export.json",
            "my_export/model.tflite",
        ]
        assert archive.read("my_export/model.tflite") == (out / "model.tflite").read_bytes()


def test_export_archive_rejects_other_folders(tmp_path):
    with pytest.raises(ValueError, match="Not an export folder.*Received: out_dir="):
        export_archive(tmp_path)


def test_older_model_with_augmentation_inside_exports_without_it(tmp_path):
    import onnx

    # Keras's model.export() would leave these layers active at serving time (max diff ~0.4 measured),
    # so they are taken out first; the ONNX graph then holds no random op at all.
    model = _model(3)
    out = export_model(model, ["a", "b", "c"], tmp_path / "export", "onnx", _images(8))
    assert json.loads((out / "export.json").read_text())["max_abs_diff"] <= 1e-4
    ops = {node.op_type for node in onnx.load(str(out / "model.onnx")).graph.node}
    assert ops and not any("Random" in op for op in ops)


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
@pytest.mark.parametrize("augment", [False, True])
def test_models_from_the_builder_export_in_every_format(tmp_path, fmt, augment):
    """Regression: a model whose input feeds Rescaling directly once exported to TFLite as NaNs."""
    from cnnlab.model import ModelConfig, build_model

    extra = {} if augment else NO_AUGMENTATION
    model = build_model(ModelConfig(image_size=(32, 32), conv_blocks=2, filters=4, dense_units=8, **extra), 3)
    out = export_model(model, ["a", "b", "c"], tmp_path / "out", fmt, _images(4))
    assert export.read_export(out)["max_abs_diff"] <= 1e-4


def _backbone_model():
    """A MobileNetV3 Small classifier whose head is scaled up so its (tiny) random features decide the output."""
    from cnnlab.model import ModelConfig, build_model

    config = ModelConfig(image_size=(32, 32), backbone="mobilenet_v3_small", backbone_weights="none", dropout=0.0)
    model = build_model(config, 3)
    features = keras.Model(model.inputs, model.get_layer("gap").output).predict(_images(8), verbose=0)
    dense = model.get_layer("predictions")
    dense.kernel.assign(dense.kernel.numpy() / features.std())
    return model


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv_blocks", "backbone"])
def test_onnx_round_trip_is_close_and_repeatable(tmp_path, kind):
    from cnnlab.model import ModelConfig, build_model

    if kind == "backbone":
        model = _backbone_model()
    else:
        model = build_model(ModelConfig(image_size=(32, 32), conv_blocks=2, filters=4, dense_units=8), 3)
    out = export_model(model, ["a", "b", "c"], tmp_path / "onnx", "onnx", _images(8))
    manifest = export.read_export(out)
    assert manifest["artifact"] == "model.onnx" and manifest["input_name"] == "image"
    assert 0.0 <= manifest["max_abs_diff"] <= 1e-4
    fresh = _images(6, seed=3)
    expected = model.predict(fresh, verbose=0)
    assert expected.std(axis=0).max() > 1e-3  # outputs vary by 10x the tolerance: agreeing means something
    first = _predict_onnx(out / "model.onnx", fresh)
    np.testing.assert_allclose(first, expected, atol=1e-4)
    np.testing.assert_array_equal(_predict_onnx(out / "model.onnx", fresh), first)  # no randomness left


def test_onnx_missing_packages_explain_how_to_install(models, tmp_path, monkeypatch):
    monkeypatch.setattr(export.importlib.util, "find_spec", lambda name: None)
    model, class_names = models["softmax"]
    with pytest.raises(ValueError, match=r"pip install 'cnnlab\[onnx\]'.*Received: missing=tf2onnx, onnx, onnxruntime"):
        export_model(model, class_names, tmp_path / "export", "onnx", _images(2))
    assert not (tmp_path / "export").exists()
