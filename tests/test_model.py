"""The CNN builder: validated config, the right head for the task, raw-pixel input that survives saving."""

import dataclasses

import numpy as np
import pytest

from cnnlab.model import (
    MAX_PARAMS,
    ModelConfig,
    build_model,
    check_trainable,
    count_params,
    estimate_training_bytes,
    model_summary,
)
from helpers import tiny_model_config


@pytest.mark.parametrize(
    "field, value",
    [
        ("image_size", (4, 4)),
        ("image_size", (64, 2000)),
        ("image_size", "big"),
        ("color_mode", "cmyk"),
        ("resize_mode", "zoom"),
        ("conv_blocks", 0),
        ("conv_blocks", 2.5),
        ("filters", 0),
        ("filters", True),
        ("filters_growth", 0.5),
        ("kernel_size", 12),
        ("pooling", "min"),
        ("batch_norm", "yes"),
        ("head", "attention"),
        ("dropout", 0.95),
        ("dense_units", -1),
        ("flip", "diagonal"),
        ("rotation", 0.6),
        ("zoom", -0.1),
        ("contrast", 1.0),
        ("translation", "a bit"),
        ("optimizer", "lbfgs"),
        ("learning_rate", 0.0),
        ("learning_rate", 5.0),
    ],
)
def test_each_bad_field_is_a_value_error_naming_it(field, value):
    with pytest.raises(ValueError, match=f"Received: {field}=") as exc:
        ModelConfig(**{field: value})
    assert "\n" not in str(exc.value)


def test_too_many_blocks_for_the_image_size():
    with pytest.raises(ValueError, match=r"shrink a 8x8 image to nothing.*Received: conv_blocks=4"):
        ModelConfig(image_size=(8, 8), conv_blocks=4)
    assert ModelConfig(image_size=(8, 8), conv_blocks=3).conv_blocks == 3


def test_config_round_trips_and_normalises_image_size():
    config = ModelConfig(image_size=48, conv_blocks=2, filters=8)
    assert config.image_size == (48, 48)
    assert config.block_filters() == [8, 16]
    data = config.to_dict()
    assert data["image_size"] == [48, 48]
    assert ModelConfig.from_dict({**data, "from_a_newer_version": 1}) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.filters = 3  # type: ignore[misc]  # frozen


def test_two_classes_get_one_sigmoid_unit():
    model = build_model(tiny_model_config(), num_classes=2)
    assert model.input_shape == (None, 32, 32, 3)
    assert model.output_shape == (None, 1)
    assert model.get_layer("predictions").activation.__name__ == "sigmoid"
    assert model.loss == "binary_crossentropy"


def test_more_classes_get_softmax():
    model = build_model(tiny_model_config(), num_classes=5)
    assert model.output_shape == (None, 5)
    assert model.get_layer("predictions").activation.__name__ == "softmax"
    probs = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_grayscale_input_has_one_channel():
    model = build_model(tiny_model_config(color_mode="grayscale"), num_classes=3)
    assert model.input_shape == (None, 32, 32, 1)


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="Received: num_classes=1"):
        build_model(tiny_model_config(), num_classes=1)


def test_summary_has_one_row_per_layer():
    config = tiny_model_config(
        conv_blocks=2, filters=4, dense_units=8, batch_norm=True, head="global_average", dropout=0.2, flip="horizontal"
    )
    model = build_model(config, num_classes=3)
    rows = model_summary(model)
    assert [row["layer"] for row in rows] == [layer.name for layer in model.layers]
    by_name = {row["layer"]: row for row in rows}
    assert {"rescale", "conv_1", "bn_1", "pool_2", "gap", "dropout", "dense", "predictions"} <= set(by_name)
    # Augmentation lives on the training path, not in the saved and served model.
    assert not any(row["type"].startswith("Random") for row in rows)
    assert by_name["conv_1"]["output_shape"] == "(batch, 32, 32, 4)"
    assert by_name["conv_2"]["output_shape"] == "(batch, 16, 16, 8)"
    assert by_name["conv_1"]["params"] == 3 * 3 * 3 * 4  # no bias beside batch norm
    assert by_name["predictions"]["params"] == 8 * 3 + 3
    assert sum(row["params"] for row in rows) == model.count_params()
    assert all(set(row) == {"layer", "type", "output_shape", "params"} for row in rows)


def test_flatten_head_and_average_pooling():
    config = tiny_model_config(head="flatten", pooling="average", batch_norm=False, dense_units=0)
    model = build_model(config, num_classes=3)
    rows = {row["layer"]: row for row in model_summary(model)}
    assert rows["pool_1"]["type"] == "AveragePooling2D"
    assert rows["flatten"]["output_shape"] == "(batch, 1024)"
    assert "dense" not in rows


@pytest.mark.parametrize("optimizer, klass", [("adam", "Adam"), ("sgd", "SGD"), ("rmsprop", "RMSprop")])
def test_optimizer_and_learning_rate_are_used(optimizer, klass):
    model = build_model(tiny_model_config(optimizer=optimizer, learning_rate=0.01), num_classes=2)
    assert type(model.optimizer).__name__ == klass
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(0.01)


def test_saved_model_predicts_identically_on_raw_pixels(tmp_path):
    import keras

    config = tiny_model_config(
        conv_blocks=2,
        filters=4,
        dense_units=8,
        batch_norm=True,
        dropout=0.2,
        flip="horizontal",
        rotation=0.1,
        zoom=0.1,
        contrast=0.1,
        translation=0.1,
    )
    model = build_model(config, num_classes=3)
    raw = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    x, y = raw.astype("float32"), np.array([0, 1, 2, 0])
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)  # moves batch-norm statistics off their defaults
    before = model.predict(raw, verbose=0)
    assert np.allclose(model.predict(raw, verbose=0), before)  # augmentation is off at inference
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    np.testing.assert_allclose(loaded.predict(raw, verbose=0), before, rtol=1e-6, atol=1e-7)
    # The model rescales inside: feeding 0-1 floats gives a different answer than raw 0-255 pixels.
    assert not np.allclose(loaded.predict(raw / 255.0, verbose=0), before, atol=1e-4)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"conv_blocks": 3, "batch_norm": True, "head": "global_average", "dense_units": 0},
        {"image_size": (48, 40), "color_mode": "grayscale", "conv_blocks": 2, "filters_growth": 1.5, "kernel_size": 5},
    ],
)
@pytest.mark.parametrize("num_classes", [2, 5])
def test_count_params_matches_the_built_model(overrides, num_classes):
    config = tiny_model_config(**overrides)
    assert count_params(config, num_classes) == build_model(config, num_classes).count_params()
    assert count_params(ModelConfig(), num_classes) == build_model(ModelConfig(), num_classes).count_params()


def test_a_model_too_big_for_a_cpu_is_refused_before_it_is_built():
    huge = ModelConfig(image_size=(224, 224), conv_blocks=1, filters=128, dense_units=512)
    assert count_params(huge, 3) > MAX_PARAMS
    with pytest.raises(ValueError, match=r"would have 822,\d{3},\d{3} weights.*Received: params=822"):
        build_model(huge, 3)


def test_training_memory_grows_with_batch_and_image_and_is_checked_against_the_limit():
    default = ModelConfig()
    bigger_images = ModelConfig(image_size=(128, 128))
    assert estimate_training_bytes(default, 5, 64) > estimate_training_bytes(default, 5, 32)
    assert estimate_training_bytes(bigger_images, 5, 32) > 3 * estimate_training_bytes(default, 5, 32)
    check_trainable(default, 5, 32, max_training_mb=1024)  # the app's default fits a hosted server
    wide = ModelConfig(image_size=(224, 224), conv_blocks=1, filters=128, head="global_average")
    assert count_params(wide, 5) < MAX_PARAMS  # few weights, yet gigabytes of activations
    with pytest.raises(
        ValueError, match=r"needs about [\d,]+ MB per step.*Received: image_size=224, batch_size=128, filters=128"
    ):
        check_trainable(wide, 5, 128, max_training_mb=1024)
    check_trainable(wide, 5, 128, max_training_mb=None)  # no limit set: a big machine may train it
    # Adam keeps two slots per weight beside its gradient, SGD with momentum one.
    sgd = dataclasses.replace(default, optimizer="sgd")
    assert estimate_training_bytes(default, 5, 32) - estimate_training_bytes(sgd, 5, 32) == 4 * count_params(default, 5)


def test_train_refuses_an_oversized_step_before_creating_a_run(make_dataset, run_store, cache_dir):
    from cnnlab.runs.workspace import Workspace
    from cnnlab.training.engine import TrainConfig, train

    with pytest.raises(ValueError, match="over the 64 MB this server allows"):
        train(
            make_dataset(),
            ModelConfig(image_size=(128, 128)),
            TrainConfig(batch_size=128),
            workspace=Workspace(run_store, cache_dir, max_training_mb=64),
        )
    assert run_store.list() == []


def test_training_flops_count_conv_and_dense_multiply_adds():
    from cnnlab.model import training_flops

    config = ModelConfig(image_size=(8, 8), conv_blocks=1, filters=4, kernel_size=3, dense_units=10)
    # conv: 8*8 outputs x 3*3*3 inputs x 4 filters; flatten 4*4*4 -> dense 10 -> 3 classes.
    macs = 8 * 8 * 27 * 4 + 64 * 10 + 10 * 3
    assert training_flops(config, 3) == 6 * macs
    assert training_flops(config, 2) == 6 * (macs - 10 * 2)


def test_demo_model_with_augmentation_inside_loads_and_serves_without_it():
    from cnnlab.model import without_augmentation
    from cnnlab.runs.store import RunStore
    from cnnlab.settings import DEMO_RUN_DIR

    # Saved before augmentation moved to the training pipeline: its random layers are inside.
    model = RunStore(DEMO_RUN_DIR.parent).get(str(DEMO_RUN_DIR)).load_model()
    assert any(type(layer).__name__.startswith("Random") for layer in model.layers)
    served = without_augmentation(model)
    assert not any(type(layer).__name__.startswith("Random") for layer in served.layers)
    raw = np.random.default_rng(1).integers(0, 256, size=(3, *model.inputs[0].shape[1:]), dtype=np.uint8)
    np.testing.assert_allclose(served.predict(raw, verbose=0), model.predict(raw, verbose=0), atol=1e-6)
    assert served.get_layer("predictions") is model.get_layer("predictions")  # weights shared, not copied


def test_augmentation_model_holds_the_configured_random_layers():
    from cnnlab.model.augment import augmentation_model

    config = tiny_model_config(flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.1, translation=0.1)
    names = [layer.name for layer in augmentation_model(config).layers[1:]]  # after its input
    assert names == ["augment_flip", "augment_rotation", "augment_zoom", "augment_translation", "augment_contrast"]
    assert augmentation_model(tiny_model_config()) is None
