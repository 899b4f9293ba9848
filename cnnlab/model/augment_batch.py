"""Stateless batch augmentation: the augmentation layers' transforms as a pure function of (seed, batch number).

`augment_batch` does what `cnnlab.model.augment.augmentation` (Keras's RandomFlip, RandomRotation,
RandomZoom, RandomTranslation and RandomContrast, in that order) does, with the same ranges, but
draws its random numbers with `tf.random.stateless_uniform` keyed by (seed, batch number) and
composes flip, rotation, zoom and translation into one affine transform per image, applied with
one `ImageProjectiveTransformV3` call per batch. Nothing is shared between calls, so tf.data can
augment several batches in parallel, ahead of the training step, and a resumed training draws
exactly what an uninterrupted one would. One composed transform fills the border once (reflected,
as the layers do) where the layers reflect after each step: the two differ only near the border.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.model.config import ModelConfig

# Columns of one image's draws, each uniform in [0, 1).
FLIP, ANGLE, ZOOM, SHIFT_Y, SHIFT_X, CONTRAST = range(6)
NUM_DRAWS = 6


def is_augmented(config: ModelConfig) -> bool:
    """Whether `config` asks for any augmentation."""
    return config.flip != "none" or bool(config.rotation or config.zoom or config.translation or config.contrast)


def _is_geometric(config: ModelConfig) -> bool:
    return config.flip != "none" or bool(config.rotation or config.zoom or config.translation)


def augmentation_draws(seed, number, num_images):
    """The (num_images, 6) uniform draws of batch `number` of a training seeded `seed`.

    Philox is named, not auto-selected, so the draws are the same on every device.
    """
    import tensorflow as tf

    key = tf.stack([tf.cast(seed, tf.int64), tf.cast(number, tf.int64)])
    return tf.random.stateless_uniform((num_images, NUM_DRAWS), seed=key, alg="philox")


def affine_matrices(config: ModelConfig, draws, image_size: tuple[int, int]):
    """Each image's 3x3 map from output to input pixel coordinates (x, y, 1): flip, rotation, zoom, shift.

    The layers apply flip, then rotation, zoom and translation, each mapping its output to its
    input; composed, the output pixel goes through the translation's map first and the flip's last.
    """
    import tensorflow as tf

    height, width = (float(side) for side in image_size)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    n = tf.shape(draws)[0]
    ones, zeros = tf.ones((n,)), tf.zeros((n,))

    def matrix(a0, a1, a2, b0, b1, b2):
        return tf.reshape(tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros, ones], axis=1), (n, 3, 3))

    def spread(column, factor):  # uniform in [-factor, factor]
        return (2.0 * draws[:, column] - 1.0) * factor

    result = matrix(ones, zeros, zeros, zeros, ones, zeros)
    if config.translation:  # RandomTranslation: a shift of up to `translation` of each side
        dx, dy = spread(SHIFT_X, config.translation) * width, spread(SHIFT_Y, config.translation) * height
        result = matrix(ones, zeros, -dx, zeros, ones, -dy) @ result
    if config.zoom:  # RandomZoom without width_factor: one factor in [1 - zoom, 1 + zoom] for both sides
        z = 1.0 + spread(ZOOM, config.zoom)
        result = matrix(z, zeros, cx * (1 - z), zeros, z, cy * (1 - z)) @ result
    if config.rotation:  # RandomRotation: up to `rotation` of a full turn either way, about the centre
        angle = spread(ANGLE, config.rotation) * 2 * math.pi
        cos, sin = tf.cos(angle), tf.sin(angle)
        result = matrix(cos, -sin, cx - cx * cos + cy * sin, sin, cos, cy - cx * sin - cy * cos) @ result
    if config.flip != "none":  # RandomFlip: one draw per image; "horizontal_and_vertical" flips both axes
        flipped = draws[:, FLIP] < 0.5
        sx = tf.where(flipped & (config.flip != "vertical"), -1.0, 1.0)
        sy = tf.where(flipped & (config.flip != "horizontal"), -1.0, 1.0)
        result = matrix(sx, zeros, (1 - sx) * cx, zeros, sy, (1 - sy) * cy) @ result
    return result


def augment_batch(images, config: ModelConfig, seed, number):
    """Batch `number` of a training seeded `seed`, augmented as `config` asks: float32, raw 0-255 pixels.

    `images` is a (batch, height, width, channels) tensor of any numeric dtype. A pure function of
    its arguments: the same batch number gives the same draws however often and in whatever
    order it is called, another batch number other draws.
    """
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if not is_augmented(config):
        return x
    height, width = config.image_size
    draws = augmentation_draws(seed, number, tf.shape(x)[0])
    if _is_geometric(config):
        matrices = affine_matrices(config, draws, (height, width))
        x = tf.raw_ops.ImageProjectiveTransformV3(
            images=x,
            transforms=tf.reshape(matrices, (-1, 9))[:, :8],
            output_shape=tf.constant([height, width], tf.int32),
            fill_value=0.0,
            interpolation="BILINEAR",
            fill_mode="REFLECT",
        )
    if config.contrast:  # RandomContrast: (x - mean) x factor + mean per image and channel, factor in 1 +- contrast
        factor = tf.reshape(1.0 + (2.0 * draws[:, CONTRAST] - 1.0) * config.contrast, (-1, 1, 1, 1))
        mean = tf.reduce_mean(x, axis=(1, 2), keepdims=True)
        x = tf.clip_by_value((x - mean) * factor + mean, 0.0, 255.0)
    return x
