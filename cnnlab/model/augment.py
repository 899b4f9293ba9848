"""Data augmentation: the model's random layers, named presets, and a preview of what they do."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from cnnlab.model.config import ModelConfig

AUGMENTATION_FIELDS = ("flip", "rotation", "zoom", "translation", "contrast")


@dataclass(frozen=True)
class Preset:
    """A named set of augmentation settings and a line on when it is safe to use."""

    values: dict[str, Any]
    when: str


DEFAULT_PRESET = "label-safe (default)"
PRESETS: dict[str, Preset] = {
    "none": Preset(
        {"flip": "none", "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "contrast": 0.0},
        "Always safe: the images as they are. For large datasets, or to see what the model learns unaided.",
    ),
    DEFAULT_PRESET: Preset(
        {"flip": "none", "rotation": 0.0, "zoom": 0.1, "translation": 0.05, "contrast": 0.1},
        "Safe for any data: small shifts, zoom and contrast, no flip, no rotation, so text, digits, arrows, "
        "road signs and X-rays keep their meaning.",
    ),
    "photos: flips and rotation": Preset(
        {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1, "translation": 0.0, "contrast": 0.0},
        "Only for photos whose mirror image is the same class (animals, plants, objects); "
        "never when left and right or the angle carry meaning (text, digits, arrows, road signs, X-rays).",
    ),
    "no up or down: all flips, any rotation": Preset(
        {"flip": "horizontal_and_vertical", "rotation": 0.5, "zoom": 0.1, "translation": 0.0, "contrast": 0.0},
        "Only for images without an up or down (satellite, microscope, textures); never for text or scenes.",
    ),
}


def with_preset(config: ModelConfig, name: str) -> ModelConfig:
    """`config` with the augmentation settings of preset `name`."""
    if name not in PRESETS:
        raise ValueError(
            f"Unknown augmentation preset; expected one of {', '.join(PRESETS)}. Received: preset={name!r}"
        )
    return replace(config, **PRESETS[name].values)


def augmentation_model(config: ModelConfig):
    """The random augmentation layers as a model that training applies to each batch of raw pixels.

    None when `config` asks for none. Training applies the same transforms in its tf.data pipeline
    with `cnnlab.model.augment_batch.augment_batch`, so the model that is saved, served and
    exported holds no random layer; these layers serve a model that augments inside itself.
    """
    import keras

    inputs = keras.Input(shape=(*config.image_size, config.channels))
    outputs = augmentation(config, inputs)
    return None if outputs is inputs else keras.Model(inputs, outputs, name="augmentation")


def augmentation(config: ModelConfig, x, seed: int | None = None):
    """Apply the random augmentation layers `config` asks for to the Keras tensor `x`.

    They are active only in training (Keras's `training=True`); `seed` fixes their random draws.
    They define what augmentation means: training and the preview apply the same transforms,
    stateless and composed into one, with `cnnlab.model.augment_batch.augment_batch`.
    """
    from keras import layers

    if config.flip != "none":
        x = layers.RandomFlip(config.flip, seed=seed, name="augment_flip")(x)
    if config.rotation:
        x = layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed, name="augment_rotation")(x)
    if config.zoom:
        x = layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed, name="augment_zoom")(x)
    if config.translation:
        x = layers.RandomTranslation(
            config.translation, config.translation, fill_mode="reflect", seed=seed, name="augment_translation"
        )(x)
    if config.contrast:
        x = layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed, name="augment_contrast")(x)
    return x


def augment_preview(config: ModelConfig, image: np.ndarray, n: int = 8, seed: int = 0) -> list[np.ndarray]:
    """`n` random augmentations of one image, made by the function training augments its batches with.

    `image` is a uint8 array of the model's input shape (height, width, channels); each output
    has that shape and dtype. The previews are batch 0 of a training seeded `seed`, made of `n`
    copies of the image. With augmentation off every output equals the image.
    """
    from cnnlab.model.augment_batch import augment_batch

    expected = (*config.image_size, config.channels)
    image = np.asarray(image)
    if image.shape != expected:
        raise ValueError(
            f"The preview image must have the model's input shape {expected}; resize it with "
            f"cnnlab.data.images.normalize first. Received: image.shape={image.shape}"
        )
    if not 1 <= n <= 64:
        raise ValueError(f"n must be between 1 and 64 previews. Received: n={n}")
    batch = np.repeat(image[None], n, axis=0)
    out = np.asarray(augment_batch(batch, config, seed, 0))
    return [np.clip(np.rint(a), 0, 255).astype(np.uint8) for a in out]
