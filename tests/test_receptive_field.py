"""Receptive fields: checked against the input pixels a unit's gradient reaches, by hand through the
default stack, and across a nested sub-model's residual branch."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis.inspect import find_layer  # noqa: E402
from cnnlab.analysis.receptive_field import Box, receptive_field  # noqa: E402
from helpers import nested_model  # noqa: E402


def gradient_box(model, layer: str, row: int, col: int, shape) -> tuple[int, int, int, int]:
    """The bounding box of the input pixels with a non-zero gradient on one unit."""
    import tensorflow as tf

    probe = keras.Model(model.inputs[0], model.get_layer(layer).output)
    x = tf.Variable(np.random.default_rng(0).uniform(0, 255, (1, *shape)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        unit = tf.reduce_sum(probe(x, training=False)[0, row, col])
    rows, cols = np.nonzero(np.abs(tape.gradient(unit, x).numpy()[0]).sum(axis=-1))
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def linear_model():
    """Positive weights and average pooling: every pixel in a unit's receptive field gets a gradient."""
    from keras import layers

    positive = keras.initializers.RandomUniform(0.1, 1.0, seed=0)
    inputs = keras.Input((21, 19, 1))
    x = layers.Rescaling(1 / 255, name="rescale")(inputs)
    x = layers.Conv2D(2, 3, padding="same", kernel_initializer=positive, name="conv_a")(x)
    x = layers.AveragePooling2D(2, padding="same", name="pool_a")(x)
    x = layers.ZeroPadding2D(((1, 0), (2, 1)), name="pad")(x)
    x = layers.Conv2D(2, (3, 5), strides=2, dilation_rate=1, kernel_initializer=positive, name="conv_b")(x)
    x = layers.Conv2D(2, 3, padding="same", dilation_rate=2, kernel_initializer=positive, name="conv_c")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(2, activation="softmax")(x))


@pytest.mark.parametrize("layer", ["conv_a", "pool_a", "conv_b", "conv_c"])
def test_receptive_fields_are_the_pixels_with_a_gradient(layer):
    model = linear_model()
    height, width, _ = find_layer(model, layer).output_shape
    for row, col in {(0, 0), (height - 1, width - 1), (height // 2, width // 3)}:
        box = receptive_field(model, layer, row, col)
        assert (box.top, box.left, box.bottom, box.right) == gradient_box(model, layer, row, col, (21, 19, 1))


def test_receptive_fields_of_the_default_stack_grow_block_by_block(deep_run):
    _, model = deep_run
    assert receptive_field(model, "conv_1", 5, 7) == Box(4, 6, 7, 9)
    assert receptive_field(model, "pool_1", 5, 7) == Box(9, 13, 13, 17)
    assert receptive_field(model, "conv_2", 5, 7) == Box(7, 11, 15, 19)
    # pool_2 (0, 0) <- conv_2 rows 0-1 <- pool_1 rows -1-2 (the padding row is no pixel) <- conv_1 rows 0-5.
    assert receptive_field(model, "pool_2", 0, 0) == Box(0, 0, 7, 7)
    with pytest.raises(ValueError, match=r"row must be an int from 0 to 7.*Received: row=8"):
        receptive_field(model, "pool_2", 8, 0)


def test_receptive_fields_cross_a_nested_submodel_and_its_residual_branch():
    model, _ = nested_model()
    # block2_conv (2, 2) <- pool rows 1-3 <- block1 rows 2-7 <- input rows 1-8 (3x3 "same" conv).
    assert receptive_field(model, "backbone/block2_conv", 2, 2) == Box(1, 1, 9, 9)
    # block3_conv (0, 0) <- add rows 0-2 <- the pool's rows 0-2 united with block2_conv's view of rows 0-3.
    assert receptive_field(model, "backbone/block3_conv", 0, 0) == Box(0, 0, 9, 9)
    # Past the squeeze-and-excite gate (a global average), every unit depends on the whole image.
    assert receptive_field(model, "backbone/re_lu_7", 4, 4) == Box(0, 0, 24, 24)
    assert receptive_field(model, "head_conv", 0, 0) == Box(0, 0, 24, 24)
