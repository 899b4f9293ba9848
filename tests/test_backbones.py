"""Pretrained backbones: building, weights (random, a file, ImageNet offline), the two training phases,
and every later step (predict, explain, export) on a backbone run. Images are 32 px, the smallest
keras.applications accepts, to keep the CPU cost down."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis.explain import grad_cam, last_conv_layer_name  # noqa: E402
from cnnlab.deploy.export import export_run, read_export  # noqa: E402
from cnnlab.deploy.prediction import predict  # noqa: E402
from cnnlab.model import (  # noqa: E402
    ModelConfig,
    backbones,
    build_model,
    count_params,
    find_backbone,
)
from cnnlab.runs.workspace import Workspace  # noqa: E402
from cnnlab.training.engine import train  # noqa: E402
from cnnlab.training.hooks import TrainingHooks  # noqa: E402
from helpers import (  # noqa: E402
    imagenet_unreachable,
    offline_environment,
    random_images,
    tiny_model_config,
    tiny_train_config,
)

SIZE = (32, 32)
REPO = Path(__file__).resolve().parent.parent


def backbone_config(name: str = "mobilenet_v3_small", **overrides) -> ModelConfig:
    settings = dict(image_size=SIZE, backbone=name, backbone_weights="none", dense_units=0, dropout=0.0)
    settings.update(overrides)
    return tiny_model_config(**settings)


class Snapshots(keras.callbacks.Callback):
    """Every backbone layer's weights when each fit() starts and ends (head phase, fine-tune phase)."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[dict[str, list[np.ndarray]]] = []

    def _take(self) -> None:
        layers = [*find_backbone(self.model).layers, self.model.get_layer("predictions")]
        self.taken.append({layer.name: [w.numpy() for w in layer.weights] for layer in layers if layer.weights})

    def on_train_begin(self, logs=None) -> None:
        self._take()

    def on_train_end(self, logs=None) -> None:
        self._take()


def changed(before: dict, after: dict) -> set[str]:
    return {
        name for name in before if any(not np.array_equal(a, b) for a, b in zip(before[name], after[name], strict=True))
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_each_backbone_trains_predicts_explains_and_exports(make_dataset, run_store, cache_dir, name):
    data_dir = make_dataset(per_class=6)
    run = train(data_dir, backbone_config(name), tiny_train_config(epochs=1), workspace=Workspace(run_store, cache_dir))
    assert run.status == "completed"
    assert [row.phase for row in run.history] == ["head"]
    model = run.load_model()
    backbone = find_backbone(model)
    assert backbone is not None and not backbone.trainable
    assert [layer.name for layer in model.layers][-2:] == ["gap", "predictions"]
    images = random_images(2, (*SIZE, 3))
    results = predict(model, run.class_names, run.model_config(), [keras.utils.array_to_img(i) for i in images])
    assert [r.label in run.class_names for r in results] == [True, True]
    assert sum(p for _, p in results[0].ranked) == pytest.approx(1.0, abs=1e-5)
    layer = last_conv_layer_name(model)
    assert layer.startswith(f"{backbone.name}/")
    heatmap = grad_cam(model, images[0], layer_name=layer)
    assert heatmap.shape == SIZE and heatmap.dtype == np.float32 and 0.0 <= heatmap.min() <= heatmap.max() <= 1.0
    folder = export_run(run, "keras", cache=cache_dir)
    assert read_export(folder)["max_abs_diff"] <= 1e-4


def test_the_model_takes_raw_pixels_and_counts_the_backbone():
    config = backbone_config("efficientnet_b0", dense_units=16)
    model = build_model(config, 3)
    assert count_params(config, 3) == model.count_params()
    assert model.inputs[0].shape[1:] == (*SIZE, 3)
    # The backbone's own preprocessing sits inside it: its first layers rescale 0-255 pixels.
    first = [type(layer).__name__ for layer in find_backbone(model).layers[:3]]
    assert "Rescaling" in first


def test_memory_estimate_grows_with_the_backbone():
    from cnnlab.model import estimate_training_bytes

    small = estimate_training_bytes(backbone_config("mobilenet_v3_small"), 3, 8)
    large = estimate_training_bytes(backbone_config("mobilenet_v3_large"), 3, 8)
    cnn = estimate_training_bytes(tiny_model_config(image_size=SIZE), 3, 8)
    assert cnn < small < large


@pytest.mark.parametrize("name", list(backbones.BACKBONES))
def test_memory_estimate_counts_gradients_and_optimizer_slots_for_the_trained_weights_only(name):
    from cnnlab.model import estimate_training_bytes, unfreeze_top_layers

    adam, sgd = backbone_config(name, dense_units=16), backbone_config(name, dense_units=16, optimizer="sgd")
    model = build_model(adam, 3)
    for layers in (0, 20, 1000):
        if layers:
            unfreeze_top_layers(find_backbone(model), layers)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        # Adam keeps two slots per trainable weight, SGD with momentum one: 4 bytes apart each.
        slot = estimate_training_bytes(adam, 3, 8, layers) - estimate_training_bytes(sgd, 3, 8, layers)
        assert slot == 4 * trainable
    head = estimate_training_bytes(adam, 3, 8)
    assert head < estimate_training_bytes(adam, 3, 8, 20) < estimate_training_bytes(adam, 3, 8, 1000)
    # The frozen backbone keeps nothing for backpropagation: what the head phase holds per image
    # is its forward pass's peak, below what fine-tuning every layer keeps.
    frozen, tuned = backbones.phase_cost(name, SIZE), backbones.phase_cost(name, SIZE, 1000)
    assert frozen.backward_ops == 0 and tuned.backward_ops > 0
    assert 2 * frozen.values < tuned.values


def test_hosted_memory_guard_takes_a_backbone_that_fits_and_refuses_one_that_does_not():
    from cnnlab.model import check_trainable

    large = backbone_config("mobilenet_v3_large", image_size=(224, 224))
    # bench/bench_memory.py: at batch 32 a real training grew by about 0.4 GB in the head phase and
    # 0.5-0.65 GB fine-tuning the top 20 layers, but 1.8 GB fine-tuning them all.
    assert check_trainable(large, 5, 32, max_training_mb=1024) < check_trainable(large, 5, 32, 1024, 20) < 1024
    with pytest.raises(ValueError, match=r"over the 1,024 MB.*fewer fine-tuned layers.*fine_tune_layers=300"):
        check_trainable(large, 5, 32, max_training_mb=1024, fine_tune_layers=300)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"color_mode": "grayscale"}, "made for colour images.*Received: color_mode='grayscale'"),
        ({"image_size": (24, 24)}, "at least 32x32 pixels.*Received: image_size=24x24"),
        ({"backbone_weights": "weights.bin"}, "path of a Keras weights file.*Received: backbone_weights='weights.bin'"),
        ({"backbone": "resnet50"}, "Unknown backbone.*Received: backbone='resnet50'"),
    ],
)
def test_bad_backbone_settings_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        backbone_config(**overrides)


@pytest.mark.slow
def test_weights_file_is_loaded_by_path_and_predicts_like_its_source(tmp_path):
    source = backbones.build_backbone("mobilenet_v3_small", SIZE, "none")
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    loaded = backbones.build_backbone("mobilenet_v3_small", SIZE, str(path))
    fresh = backbones.build_backbone("mobilenet_v3_small", SIZE, "none")
    images = random_images(3, (*SIZE, 3)).astype(np.float32)
    expected = source.predict(images, verbose=0)
    # A random MobileNetV3's features are tiny (about 1e-11), so compare them on their own scale.
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(loaded.predict(images, verbose=0) / scale, expected / scale, atol=1e-5)
    assert not np.allclose(fresh.predict(images, verbose=0) / scale, expected / scale, atol=1e-2)


def test_missing_weights_file_stops_before_a_run_exists(make_dataset, run_store, cache_dir, tmp_path):
    config = backbone_config(backbone_weights=str(tmp_path / "nowhere.weights.h5"))
    with pytest.raises(ValueError, match="weights file was not found.*Received: backbone_weights="):
        train(make_dataset(per_class=4), config, tiny_train_config(epochs=1), workspace=Workspace(run_store, cache_dir))
    assert not run_store.root.exists()


def test_imagenet_offline_stops_before_a_run_exists(make_dataset, run_store, cache_dir, monkeypatch):
    # The weights' address is a closed port: Keras's download fails at once and nothing is left behind.
    imagenet_unreachable(monkeypatch)
    config = backbone_config(backbone_weights="imagenet")
    with pytest.raises(ValueError) as caught:
        train(make_dataset(per_class=4), config, tiny_train_config(epochs=1), workspace=Workspace(run_store, cache_dir))
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("Could not download the ImageNet weights of mobilenet_v3_small (")
    assert "--backbone-weights PATH" in message and message.endswith("Received: backbone_weights='imagenet'")
    assert not run_store.root.exists()


@pytest.mark.slow
def test_cli_imagenet_offline_exits_2_with_one_line(make_dataset, tmp_path):
    data_dir = make_dataset(per_class=4)
    models = tmp_path / "models"
    env = {**os.environ, "PYTHONPATH": str(REPO), "CNNLAB_MODELS_DIR": str(models), "KERAS_HOME": str(tmp_path / "k")}
    env.update(offline_environment())
    args = ["train", str(data_dir), "--backbone", "mobilenet_v3_small", "--image-size", "32", "--epochs", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Could not download the ImageNet weights")
    assert "--backbone-weights PATH" in lines[0]
    assert not models.exists() or list(models.iterdir()) == []
    assert not (tmp_path / "k" / "models" / backbones.BACKBONES["mobilenet_v3_small"].weights_file).exists()


@pytest.mark.slow
def test_frozen_head_phase_then_fine_tuning_of_the_top_layers_only(make_dataset, run_store, cache_dir, tmp_path):
    source = backbones.build_backbone("mobilenet_v3_small", SIZE, "none")
    weights = tmp_path / "pretrained.weights.h5"
    source.save_weights(weights)
    snapshots = Snapshots()
    config = backbone_config(backbone_weights=str(weights), learning_rate=0.01)
    train_config = tiny_train_config(epochs=1, fine_tune_layers=12, fine_tune_epochs=1)
    data_dir = make_dataset(per_class=6)
    run = train(
        data_dir,
        config,
        train_config,
        workspace=Workspace(run_store, cache_dir),
        hooks=TrainingHooks(callbacks=(snapshots,)),
    )
    head_start, head_end, tune_start, tune_end = snapshots.taken
    # Head phase: only the new head learns; the backbone, batch-norm statistics included, is untouched.
    assert changed(head_start, head_end) == {"predictions"}
    for layer in (layer for layer in source.layers if layer.weights):
        for kept, original in zip(head_end[layer.name], layer.weights, strict=True):
            np.testing.assert_array_equal(kept, original.numpy())
    # Fine-tuning: only layers among the top 12 (never batch normalisation) and the head move.
    top = source.layers[-12:]
    allowed = {layer.name for layer in top if type(layer).__name__ != "BatchNormalization"}
    moved = changed(tune_start, tune_end) - {"predictions"}
    assert moved and moved <= allowed
    assert not any(type(source.get_layer(name)).__name__ == "BatchNormalization" for name in moved)
    assert [row.phase for row in run.history] == ["head", "fine_tune"]
    assert [row.epoch for row in run.history] == [1, 2]
    record = json.loads((run.path / "run.json").read_text())
    assert record["phase"] == "fine_tune"
    assert record["fine_tune"]["start_epoch"] == 2
    assert record["fine_tune"]["learning_rate"] == pytest.approx(0.001)
    assert set(record["fine_tune"]["layers"]) <= allowed


def test_a_mixed_precision_backbone_model_gets_a_float32_copy():
    from cnnlab.model.precision import float32_copy

    model = build_model(backbone_config(dense_units=16), 3, "mixed_bfloat16")
    assert model.get_layer("dense").dtype_policy.name == "mixed_bfloat16"
    copy = float32_copy(model)  # what training saves and evaluates
    assert {layer.dtype_policy.name for layer in copy.layers} == {"float32"}
    images = random_images(2, (*SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(copy.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-2)
