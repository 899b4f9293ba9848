"""Inside the network: layers, feature maps, filters and gradient ascent, checked against the models'
own outputs and NumPy on tiny trained runs and a nested sub-model."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis import inspect  # noqa: E402
from cnnlab.charts import grids  # noqa: E402
from helpers import layer_output, nested_model, random_images  # noqa: E402

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
        "backbone/expanded_conv_4_project",
        "backbone/re_lu_7",
        "head_conv",
    ]  # block3_gate's 1x1 output is no map
    assert found["backbone/block1_relu"].block == "backbone block1"
    assert found["backbone/re_lu_7"].block == found["backbone/expanded_conv_4_project"].block
    assert found["backbone/re_lu_7"].block == "backbone expanded_conv_4"
    assert found["head_conv"].block == "block 1"
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


def test_first_conv_maps_equal_a_numpy_convolution(trained_run):
    model = trained_run["run"].load_model()
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


def test_the_pngs_are_the_input_view_then_each_layers_maps_and_a_convs_filters(deep_run, tmp_path):
    from PIL import Image

    _, model = deep_run
    maps = inspect.feature_maps(model, random_images(1, seed=7)[0], ["conv_1", "pool_1"])
    out = tmp_path / "new" / "pngs"
    written = inspect.write_pngs(model, maps, out)
    assert [p.name for p in written] == [
        "input.png",
        "conv_1-feature-maps.png",
        "conv_1-filters.png",
        "pool_1-feature-maps.png",
    ]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in written)
    assert np.asarray(Image.open(out / "input.png")).shape == (256, 256, 3)  # the 32x32 view enlarged 8x
    np.testing.assert_array_equal(np.asarray(Image.open(written[1])), grids.feature_grid_png(maps[1].values))
    np.testing.assert_array_equal(
        np.asarray(Image.open(written[2])), grids.filter_grid_png(inspect.kernel(model, "conv_1"))
    )


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
