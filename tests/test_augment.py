"""Augmentation: label-safe defaults, presets, the stateless batch augmentation training and the preview share."""

import dataclasses

import numpy as np
import pytest

from cnnlab.model import ModelConfig, build_model
from cnnlab.model.augment import (
    AUGMENTATION_FIELDS,
    DEFAULT_PRESET,
    PRESETS,
    augment_preview,
    augmentation_model,
    with_preset,
)
from cnnlab.model.augment_batch import affine_matrices, augment_batch, augmentation_draws
from helpers import class_image


def test_the_default_model_never_flips_or_rotates():
    config = ModelConfig()
    assert config.flip == "none" and config.rotation == 0.0
    # Training applies the augmentation model to its batches; the built model holds none.
    names = {layer.name for layer in augmentation_model(config).layers}
    assert not {"augment_flip", "augment_rotation"} & names
    assert {"augment_zoom", "augment_translation", "augment_contrast"} <= names
    assert not any(type(layer).__name__.startswith("Random") for layer in build_model(config, 3).layers)


def test_the_default_preset_is_the_default_config_and_presets_apply():
    default = ModelConfig()
    assert PRESETS[DEFAULT_PRESET].values == {name: getattr(default, name) for name in AUGMENTATION_FIELDS}
    photos = with_preset(ModelConfig(conv_blocks=2), "photos: flips and rotation")
    assert photos.flip == "horizontal" and photos.rotation > 0 and photos.conv_blocks == 2
    assert all(preset.when for preset in PRESETS.values())
    for name in PRESETS:
        with_preset(default, name)  # every preset is a valid config
    with pytest.raises(ValueError, match="Received: preset='mirror'"):
        with_preset(default, "mirror")


def _image(config: ModelConfig) -> np.ndarray:
    image = class_image((200, 40, 40), np.random.default_rng(0), config.image_size)
    image[:, : config.image_size[1] // 3] = 20  # a dark left third, so a flip or shift shows
    return image if config.channels == 3 else image[..., :1]


@pytest.mark.parametrize(
    "preset",
    ["photos: flips and rotation", "no up or down: all flips, any rotation", DEFAULT_PRESET],
)
def test_the_preview_shows_eight_different_augmentations_of_the_input_shape(preset):
    config = with_preset(ModelConfig(image_size=(32, 32)), preset)
    image = _image(config)
    previews = augment_preview(config, image, n=8, seed=1)
    assert len(previews) == 8
    for out in previews:
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image)
    assert len({out.tobytes() for out in previews}) > 1
    # The same seed gives the same draws, so the preview does not flicker on a rerun.
    assert all(np.array_equal(a, b) for a, b in zip(previews, augment_preview(config, image, seed=1), strict=True))


def test_the_preview_equals_the_image_when_augmentation_is_off():
    config = dataclasses.replace(with_preset(ModelConfig(image_size=(32, 32)), "none"), color_mode="grayscale")
    image = _image(config)
    previews = augment_preview(config, image)
    assert len(previews) == 8 and all(np.array_equal(out, image) for out in previews)


def test_the_preview_needs_the_model_input_shape():
    with pytest.raises(ValueError, match=r"input shape \(32, 32, 3\).*Received: image.shape=\(64, 64, 3\)"):
        augment_preview(ModelConfig(image_size=(32, 32)), np.zeros((64, 64, 3), dtype=np.uint8))


def _batch(config: ModelConfig, n: int = 8) -> np.ndarray:
    return np.repeat(_image(config)[None], n, axis=0)


def test_batch_augmentation_is_a_pure_function_of_the_seed_and_the_batch_number():
    config = ModelConfig(image_size=(32, 32))  # the default: zoom, translation, contrast
    batch = _batch(config)
    first = np.asarray(augment_batch(batch, config, 7, 3))
    assert first.dtype == np.float32 and first.shape == batch.shape
    np.testing.assert_array_equal(first, np.asarray(augment_batch(batch, config, 7, 3)))
    assert not np.allclose(first, np.asarray(augment_batch(batch, config, 7, 4)))  # another batch
    assert not np.allclose(first, np.asarray(augment_batch(batch, config, 8, 3)))  # another seed
    assert len({image.tobytes() for image in first}) == len(first)  # each image its own draws


def test_batch_augmentation_follows_the_config():
    config = with_preset(ModelConfig(image_size=(32, 32)), "none")
    batch = _batch(config)
    np.testing.assert_array_equal(np.asarray(augment_batch(batch, config, 1, 0)), batch)
    # A flip alone: each image is itself or its exact mirror, and both happen.
    flips = np.asarray(augment_batch(_batch(config, 16), dataclasses.replace(config, flip="horizontal"), 1, 0))
    mirrored = [np.array_equal(out, batch[0][:, ::-1]) for out in flips]
    assert all(m or np.array_equal(out, batch[0]) for m, out in zip(mirrored, flips, strict=True))
    assert 0 < sum(mirrored) < len(flips)


@pytest.mark.parametrize(
    ("fields", "check"),
    [
        ({"rotation": 0.1}, "rotation"),
        ({"zoom": 0.1}, "zoom"),
        ({"translation": 0.05}, "translation"),
    ],
)
def test_each_transform_stays_within_its_configured_range(fields, check):
    config = dataclasses.replace(with_preset(ModelConfig(image_size=(40, 60)), "none"), **fields)
    draws = augmentation_draws(3, 11, 256)
    m = np.asarray(affine_matrices(config, draws, config.image_size))
    linear, shift = m[:, :2, :2], m[:, :2, 2]
    if check == "rotation":  # a rotation about the centre by at most 0.1 of a turn (36 degrees)
        angles = np.degrees(np.arctan2(linear[:, 1, 0], linear[:, 0, 0]))
        np.testing.assert_allclose(np.linalg.det(linear), 1, rtol=1e-5)
        assert np.abs(angles).max() <= 36 and np.abs(angles).max() > 30
        centre = np.array([29.5, 19.5])  # (x, y) of the centre maps onto itself
        np.testing.assert_allclose(linear @ centre + shift, np.broadcast_to(centre, shift.shape), atol=1e-3)
    elif check == "zoom":  # one scale for both sides, in [0.9, 1.1]
        np.testing.assert_allclose(linear[:, 0, 0], linear[:, 1, 1])
        assert linear[:, 0, 0].min() >= 0.9 and linear[:, 0, 0].max() <= 1.1 and np.ptp(linear[:, 0, 0]) > 0.15
    else:  # a shift of at most 5% of each side: 3 pixels across, 2 down
        np.testing.assert_allclose(linear, np.broadcast_to(np.eye(2), linear.shape))
        assert np.abs(shift[:, 0]).max() <= 3 and np.abs(shift[:, 1]).max() <= 2


def test_parallel_augmentation_in_tf_data_is_deterministic():
    import tensorflow as tf

    config = with_preset(ModelConfig(image_size=(32, 32)), "photos: flips and rotation")
    images = np.stack([_image(config)] * 24)

    def run(parallel: int) -> list[np.ndarray]:
        ds = tf.data.Dataset.from_tensor_slices(images).batch(4).enumerate(start=10)
        ds = ds.map(lambda k, x: augment_batch(x, config, 5, k), num_parallel_calls=parallel, deterministic=True)
        return [np.asarray(batch) for batch in ds]

    serial, parallel = run(1), run(4)
    assert all(np.array_equal(a, b) for a, b in zip(serial, parallel, strict=True))
    # Batch 12 of the pipeline is batch number 12 whatever came before it: what a resumed training relies on.
    np.testing.assert_array_equal(serial[2], np.asarray(augment_batch(images[8:12], config, 5, 12)))
