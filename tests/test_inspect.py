"""Inside the network: layers, feature maps, receptive fields, filters, top images and gradient ascent,
checked against the models' own outputs, NumPy, gradients and brute force on tiny trained runs."""

import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from conftest import random_images, tiny_model_config, tiny_train_config, write_dataset  # noqa: E402

from cnnlab import grids, inspect  # noqa: E402
from cnnlab.runs import RunStore  # noqa: E402


@pytest.fixture(scope="module")
def deep_run(tmp_path_factory):
    """A run with two conv blocks, batch norm and flip/rotation augmentation, trained for one epoch."""
    from cnnlab.train import train

    base = tmp_path_factory.mktemp("inspect-run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE_DIR", str(base / "cache"))
        config = tiny_model_config(conv_blocks=2, batch_norm=True, flip="horizontal", rotation=0.1)
        run = train(
            write_dataset(base / "data", per_class=12),
            config,
            tiny_train_config(epochs=1),
            store=RunStore(base / "models", include_demo=False),
        )
    return run, run.load_model()


@pytest.fixture
def own_run(trained_run, tmp_path):
    """A private copy of the shared tiny run (one block of 4 filters), so its inspect cache is this test's."""
    target = tmp_path / "models" / trained_run["run"].id
    shutil.copytree(trained_run["run"].path, target)
    run = RunStore(tmp_path / "models", include_demo=False).get(target.name)
    return run, run.load_model()


def layer_output(model, name: str, images: np.ndarray) -> np.ndarray:
    """The model's own intermediate output, by the plain Keras route."""
    probe = keras.Model(model.inputs[0], model.get_layer(name).output)
    return np.asarray(probe(images.astype(np.float32), training=False))


def nested_model():
    """An outer model with augmentation, rescaling and a nested functional 'backbone' with a residual Add."""
    from keras import layers

    keras.utils.set_random_seed(3)
    inner_in = keras.Input((24, 24, 3))
    x = layers.Conv2D(4, 3, padding="same", name="block1_conv")(inner_in)
    x = layers.ReLU(name="block1_relu")(x)
    x = layers.MaxPooling2D(name="block1_pool")(x)
    y = layers.Conv2D(4, 3, padding="same", activation="relu", name="block2_conv")(x)
    x = layers.Add(name="block2_add")([x, y])
    x = layers.Conv2D(6, 3, strides=2, name="block3_conv")(x)
    backbone = keras.Model(inner_in, x, name="backbone")
    inputs = keras.Input((24, 24, 3))
    x = layers.RandomFlip("horizontal", name="augment_flip")(inputs)
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(x)
    x = backbone(x)
    x = layers.Conv2D(5, 1, name="head_conv")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x)), backbone


# ------------------------------------------------------------------------------------- layers


def test_layers_are_conv_pooling_and_activation_outputs_grouped_by_block(deep_run):
    _, model = deep_run
    found = inspect.list_layers(model)
    assert [(x.name, x.kind, x.block) for x in found] == [
        ("conv_1", "conv", "block 1"),
        ("relu_1", "activation", "block 1"),
        ("pool_1", "pooling", "block 1"),
        ("conv_2", "conv", "block 2"),
        ("relu_2", "activation", "block 2"),
        ("pool_2", "pooling", "block 2"),
    ]
    for item in found:
        assert item.output_shape == tuple(model.get_layer(item.name).output.shape[1:])
    view = inspect.input_view(model)
    assert view.path == ("rescale",) and view.output_shape == (32, 32, 3)  # after rescaling, augmentation skipped


def test_nested_submodel_layers_are_flattened_with_a_prefix(tmp_path):
    model, backbone = nested_model()
    found = {x.name: x for x in inspect.list_layers(model)}
    assert list(found) == [
        "backbone/block1_conv",
        "backbone/block1_relu",
        "backbone/block1_pool",
        "backbone/block2_conv",
        "backbone/block3_conv",
        "head_conv",
    ]
    assert found["backbone/block1_relu"].block == "backbone block1"
    assert found["backbone/block3_conv"].output_shape == (5, 5, 6)
    assert inspect.input_view(model).path == ("rescale",)
    image = random_images(1, (24, 24, 3), seed=4)[0]
    maps = {m.layer.name: m.values for m in inspect.feature_maps(model, image)}
    rescaled = image[np.newaxis].astype(np.float32) / 127.5 - 1.0
    for name in ("block1_relu", "block3_conv"):
        probe = keras.Model(backbone.inputs[0], backbone.get_layer(name).output)
        np.testing.assert_allclose(maps[f"backbone/{name}"], np.asarray(probe(rescaled))[0], atol=1e-5)
    np.testing.assert_allclose(maps["head_conv"], layer_output(model, "head_conv", image[np.newaxis])[0], atol=1e-5)


def test_an_unknown_layer_lists_the_choices(deep_run):
    _, model = deep_run
    with pytest.raises(ValueError, match=r"one of: conv_1, relu_1.*Received: layer='dense'"):
        inspect.feature_maps(model, random_images(1)[0], ["dense"])


# ------------------------------------------------------------------------------- feature maps


def test_feature_maps_have_each_layers_shape_and_equal_its_own_outputs(deep_run):
    _, model = deep_run
    image = random_images(1, seed=5)[0]
    maps = inspect.feature_maps(model, image)
    assert maps[0].layer.kind == "input"
    np.testing.assert_allclose(maps[0].values, image / 255.0, atol=1e-6)  # augmentation off: the image itself
    for fmap in maps[1:]:
        assert fmap.values.shape == fmap.layer.output_shape and fmap.values.dtype == np.float32
        np.testing.assert_allclose(fmap.values, layer_output(model, fmap.layer.name, image[np.newaxis])[0], atol=1e-5)
        assert fmap.value_range == (fmap.values.min(), fmap.values.max())
    again = inspect.feature_maps(model, image, ["pool_2"])
    assert [m.layer.name for m in again] == ["input", "pool_2"]
    np.testing.assert_array_equal(again[1].values, maps[-1].values)


def test_first_conv_maps_equal_a_numpy_convolution(own_run):
    _, model = own_run
    image = random_images(1, seed=6)[0]
    weights, bias = model.get_layer("conv_1").get_weights()
    padded = np.pad(image / 255.0, ((1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(0, 1))  # (32, 32, 3, 3, 3)
    expected = np.einsum("hwcij,ijco->hwo", windows, weights) + bias
    (fmap,) = inspect.feature_maps(model, image, ["conv_1"])[1:]
    np.testing.assert_allclose(fmap.values, expected, atol=1e-5)


def test_a_wrong_image_shape_is_a_clear_error(deep_run):
    _, model = deep_run
    with pytest.raises(
        ValueError, match=r"shaped like the model input \(32, 32, 3\).*Received: image.shape=\(16, 16, 3\)"
    ):
        inspect.feature_maps(model, random_images(1, (16, 16, 3))[0])


# ---------------------------------------------------------------------------- receptive field


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
    height, width, _ = inspect.find_layer(model, layer).output_shape
    for row, col in {(0, 0), (height - 1, width - 1), (height // 2, width // 3)}:
        box = inspect.receptive_field(model, layer, row, col)
        assert (box.top, box.left, box.bottom, box.right) == gradient_box(model, layer, row, col, (21, 19, 1))


def test_receptive_fields_of_the_default_stack_grow_block_by_block(deep_run):
    _, model = deep_run
    assert inspect.receptive_field(model, "conv_1", 5, 7) == inspect.Box(4, 6, 7, 9)
    assert inspect.receptive_field(model, "pool_1", 5, 7) == inspect.Box(9, 13, 13, 17)
    assert inspect.receptive_field(model, "conv_2", 5, 7) == inspect.Box(7, 11, 15, 19)
    # pool_2 (0, 0) <- conv_2 rows 0-1 <- pool_1 rows -1-2 (the padding row is no pixel) <- conv_1 rows 0-5.
    assert inspect.receptive_field(model, "pool_2", 0, 0) == inspect.Box(0, 0, 7, 7)
    with pytest.raises(ValueError, match=r"row must be an int from 0 to 7.*Received: row=8"):
        inspect.receptive_field(model, "pool_2", 8, 0)


def test_receptive_fields_cross_a_nested_submodel_and_its_residual_branch():
    model, _ = nested_model()
    # block2_conv (2, 2) <- pool rows 1-3 <- block1 rows 2-7 <- input rows 1-8 (3x3 "same" conv).
    assert inspect.receptive_field(model, "backbone/block2_conv", 2, 2) == inspect.Box(1, 1, 9, 9)
    # block3_conv (0, 0) <- add rows 0-2 <- the pool's rows 0-2 united with block2_conv's view of rows 0-3.
    assert inspect.receptive_field(model, "backbone/block3_conv", 0, 0) == inspect.Box(0, 0, 9, 9)
    # head_conv (4, 4) <- block3 (4, 4) <- add rows 8-10 <- pool rows 7-11 <- input rows 13-23 (clipped at 23).
    assert inspect.receptive_field(model, "head_conv", 4, 4) == inspect.Box(13, 13, 24, 24)


# ------------------------------------------------------------------------------------ filters


def test_first_layer_filters_are_the_models_kernel_weights(deep_run):
    _, model = deep_run
    weights = inspect.kernel(model, "conv_1")
    np.testing.assert_array_equal(weights, model.get_layer("conv_1").get_weights()[0])
    patches = grids.filter_patches(weights)
    assert patches.shape == (4, 3, 3, 3) and patches.min() >= 0.0 and patches.max() <= 1.0
    peaks = np.abs(weights).max(axis=(0, 1, 2))
    np.testing.assert_allclose((patches - 0.5) * 2 * peaks[:, None, None, None], np.moveaxis(weights, -1, 0), atol=1e-6)
    assert inspect.kernel(model, "conv_2").shape == (3, 3, 4, 8)
    with pytest.raises(ValueError, match=r"Only conv layers have filters.*conv_1, conv_2.*Received: layer='relu_1'"):
        inspect.kernel(model, "relu_1")


# ---------------------------------------------------------------------- top-activating images


def brute_force_means(model, layer: str, images: np.ndarray, channel: int) -> np.ndarray:
    """One forward pass per image, through the plain Keras route."""
    return np.array([layer_output(model, layer, image[np.newaxis])[0, ..., channel].mean() for image in images])


@pytest.mark.parametrize(("layer", "channel"), [("relu_1", 1), ("pool_1", 3)])
def test_top_images_are_the_highest_mean_activations_by_brute_force(own_run, layer, channel):
    from cnnlab.evaluate import prepared_split

    run, model = own_run
    prepared, train = prepared_split(run, "train")
    means = brute_force_means(model, layer, np.asarray(prepared.images[train]), channel)
    expected = train[np.argsort(-means, kind="stable")[: inspect.TOP_K]]
    top = inspect.top_images(run, model, layer, channel)
    assert top.paths == [prepared.report.files[i] for i in expected]
    assert top.labels == [prepared.report.class_names[prepared.labels[i]] for i in expected]
    np.testing.assert_allclose(top.scores, np.sort(means)[::-1][: inspect.TOP_K], atol=1e-5)
    np.testing.assert_array_equal(top.images, prepared.images[expected])


def test_the_channel_means_are_cached_with_the_run_and_reused(own_run, monkeypatch):
    run, model = own_run
    first = inspect.top_images(run, model, "conv_1", 0)
    (cached,) = (run.path / "inspect").glob("conv_1-*.npy")
    means = np.load(cached)
    assert means.shape == (len(run.split()["train"]), 4)  # every channel at once

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the training split was passed through the model again")

    monkeypatch.setattr(inspect, "channel_means", no_second_pass)
    other = inspect.top_images(run, model, "conv_1", 3)
    np.testing.assert_allclose(first.scores, np.sort(means[:, 0])[::-1][: inspect.TOP_K])
    np.testing.assert_allclose(other.scores, np.sort(means[:, 3])[::-1][: inspect.TOP_K])


def test_a_new_model_file_recomputes_the_means_and_drops_the_old_ones(own_run):
    run, model = own_run
    inspect.top_images(run, model, "conv_1", 0)
    (old,) = (run.path / "inspect").glob("conv_1-*.npy")
    run.save_model(model)  # as a training does after a better epoch
    inspect.top_images(run, model, "conv_1", 0)
    (new,) = (run.path / "inspect").glob("conv_1-*.npy")
    assert new.name != old.name


def test_the_demo_runs_means_go_to_the_cache_not_the_repository(tmp_path):
    demo = next(run for run in RunStore(tmp_path / "models").list() if run.is_demo)
    assert inspect.inspect_folder(demo, tmp_path / "cache") == tmp_path / "cache" / "inspect" / demo.id


def test_a_channel_out_of_range_is_a_clear_error(own_run):
    run, model = own_run
    with pytest.raises(ValueError, match=r"channel must be an int from 0 to 3 .*Received: channel=4"):
        inspect.top_images(run, model, "conv_1", 4)


# --------------------------------------------------------------------------- gradient ascent


@pytest.mark.parametrize(("layer", "channel"), [("conv_1", 2), ("conv_2", 5), ("relu_2", 1), ("pool_2", 6)])
def test_gradient_ascent_raises_the_channels_activation(deep_run, layer, channel):
    _, model = deep_run
    ascent = inspect.gradient_ascent(model, layer, channel, steps=30)
    assert ascent.image.shape == (32, 32, 3) and ascent.image.dtype == np.uint8
    assert ascent.start_activation == ascent.history[0] and len(ascent.history) == 30
    reached = layer_output(model, layer, ascent.image[np.newaxis])[0, ..., channel].mean()
    assert ascent.end_activation == pytest.approx(reached, abs=1e-5)
    assert ascent.end_activation > ascent.start_activation


def test_gradient_ascent_reaches_into_a_nested_submodel():
    model, _ = nested_model()
    ascent = inspect.gradient_ascent(model, "backbone/block3_conv", 1, steps=20)
    assert ascent.end_activation > ascent.start_activation
