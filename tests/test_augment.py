"""Augmentation: label-safe defaults, presets, and the preview made by the model's own layers."""

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
