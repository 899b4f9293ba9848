"""Grad-CAM heatmaps and overlays on tiny Functional models built in the test."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis.explain import grad_cam, jet_colormap, last_conv_layer_name, overlay  # noqa: E402
from helpers import random_images, small_cnn  # noqa: E402

SQUARE = 6


def _model(num_classes: int, shape=(32, 32, 3), augment: bool = False):
    return small_cnn(num_classes, shape, augment=augment)


def _images(n: int, shape=(32, 32, 3), seed: int = 0) -> np.ndarray:
    return random_images(n, shape, seed)


def _square_dataset(n: int, rng: np.random.Generator):
    """Dark noisy images, each with a bright 1x12 bar; class 1 also has a bright square elsewhere."""
    images = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.uint8)
    labels = np.arange(n) % 2
    corners = np.zeros((n, 2), dtype=int)
    for i in range(n):
        while True:
            row, col = rng.integers(0, 32 - SQUARE, 2)
            bar_row, bar_col = rng.integers(0, 32), rng.integers(0, 32 - 12)
            apart = not (
                row - 2 <= bar_row < row + SQUARE + 2 and bar_col - 2 < col + SQUARE + 2 and col - 2 < bar_col + 14
            )
            if apart:
                break
        images[i, bar_row, bar_col : bar_col + 12] = 255
        if labels[i]:
            images[i, row : row + SQUARE, col : col + SQUARE] = 255
        corners[i] = row, col
    return images, labels, corners


@pytest.fixture(scope="module")
def square_model():
    """A sigmoid model trained to tell 'has a bright square' from 'only a bright bar'."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images, labels, _ = _square_dataset(400, rng)
    model = _model(2, augment=True)
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=8, batch_size=32, verbose=0)
    return model, _square_dataset(60, rng)


def _in_square(heatmap: np.ndarray, corner, margin: int = 2) -> bool:
    row, col = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    top, left = corner
    return top - margin <= row < top + SQUARE + margin and left - margin <= col < left + SQUARE + margin


def test_last_conv_layer_name_finds_the_last_conv():
    assert last_conv_layer_name(_model(3)) == "conv_2"


def test_last_conv_layer_name_without_conv_raises():
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    with pytest.raises(ValueError, match="needs a Conv2D layer.*Received: model="):
        last_conv_layer_name(model)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_heatmap_shape_dtype_and_range(num_classes):
    model = _model(num_classes)
    heatmap = grad_cam(model, _images(1)[0])
    assert heatmap.shape == (32, 32)
    assert heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0


def test_heatmap_is_resized_to_non_square_and_grayscale_images():
    model = _model(3, shape=(24, 40, 1))
    image = _images(1, shape=(24, 40, 1))[0]
    assert grad_cam(model, image).shape == (24, 40)
    # A grayscale image may also come without its channel axis.
    np.testing.assert_allclose(grad_cam(model, image[..., 0]), grad_cam(model, image))


def test_default_class_is_the_predicted_class():
    keras.utils.set_random_seed(1)
    model = _model(4)
    image = _images(1, seed=3)[0]
    predicted = int(np.argmax(model.predict(image[None], verbose=0)[0]))
    np.testing.assert_allclose(grad_cam(model, image), grad_cam(model, image, class_index=predicted))


def test_augmentation_inside_the_model_does_not_change_the_heatmap():
    augmented, plain = _model(3, augment=True), _model(3)
    trained = [layer for layer in augmented.layers if layer.trainable_weights]
    for source, target in zip(trained, [layer for layer in plain.layers if layer.trainable_weights], strict=True):
        target.set_weights(source.get_weights())
    image = _images(1, seed=5)[0]
    # The flip and rotation do move the image when run as in training...
    moved = augmented(image[None].astype("float32"), training=True)
    assert not np.allclose(moved, augmented(image[None].astype("float32"), training=False))
    # ...but Grad-CAM explains the model as it predicts: as if the augmentation were not there.
    np.testing.assert_allclose(grad_cam(augmented, image), grad_cam(plain, image), rtol=1e-5, atol=1e-6)


def test_named_layer_is_used():
    model = small_cnn(3, seed=0)  # seeded: an unlucky random model can give two all-zero heatmaps
    image = _images(1)[0]
    first = grad_cam(model, image, class_index=0, layer_name="conv_1")
    assert first.shape == (32, 32)
    assert not np.allclose(first, grad_cam(model, image, class_index=0, layer_name="conv_2"))


def test_heatmap_peaks_on_the_deciding_square(square_model):
    model, (images, labels, corners) = square_model
    _, accuracy = model.evaluate(images, labels, verbose=0)
    assert accuracy >= 0.9
    positives = np.flatnonzero(labels == 1)
    hits = sum(_in_square(grad_cam(model, images[i]), corners[i]) for i in positives)
    # The square's neighbourhood is ~19% of the image; the bar is a same-brightness decoy.
    assert hits >= 0.8 * len(positives)


def test_sigmoid_class_zero_uses_the_negated_score(square_model):
    model, (images, labels, corners) = square_model
    i = int(np.flatnonzero(labels == 1)[0])
    (top, left), image = corners[i], images[i]
    inside = np.s_[top : top + SQUARE, left : left + SQUARE]
    for_square = grad_cam(model, image, class_index=1)
    against_square = grad_cam(model, image, class_index=0)
    assert for_square[inside].mean() > against_square[inside].mean() + 0.3
    np.testing.assert_allclose(grad_cam(model, image), for_square)


def test_overlay_blends_jet_colours_into_rgb():
    image = np.full((4, 5, 3), 100, dtype=np.uint8)
    heatmap = np.zeros((4, 5), dtype=np.float32)
    heatmap[0, 0] = 1.0
    out = overlay(image, heatmap, alpha=0.5)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [114, 50, 50])  # 100/2 + 127.5/2: jet(1) is dark red (0.5, 0, 0)
    np.testing.assert_array_equal(out[1, 1], [50, 50, 114])  # jet(0) is dark blue (0, 0, 0.5)
    np.testing.assert_array_equal(overlay(image, heatmap, alpha=0.0), image)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1)])
def test_overlay_expands_grayscale(shape):
    out = overlay(np.zeros(shape, dtype=np.uint8), np.ones((4, 5), dtype=np.float32))
    assert out.shape == (4, 5, 3)


def test_jet_runs_from_blue_through_green_to_red():
    colours = jet_colormap(np.array([0.0, 0.5, 1.0]))
    assert np.argmax(colours[0]) == 2 and np.argmax(colours[1]) == 1 and np.argmax(colours[2]) == 0


def test_bad_image_shape_raises():
    with pytest.raises(ValueError, match=r"shaped like the model input.*Received: image.shape=\(16, 16, 3\)"):
        grad_cam(_model(3), _images(1, shape=(16, 16, 3))[0])


@pytest.mark.parametrize("class_index", [3, -1, 1.0, True])
def test_bad_class_index_raises(class_index):
    with pytest.raises(ValueError, match="class_index must be an int from 0 to 2.*Received: class_index="):
        grad_cam(_model(3), _images(1)[0], class_index=class_index)


def test_sigmoid_model_accepts_two_classes_only():
    model = _model(2)
    assert grad_cam(model, _images(1)[0], class_index=0).shape == (32, 32)
    with pytest.raises(ValueError, match="from 0 to 1"):
        grad_cam(model, _images(1)[0], class_index=2)


@pytest.mark.parametrize("layer_name", ["missing", "global_average_pooling2d"])
def test_bad_layer_name_raises(layer_name):
    model = _model(3)
    name = layer_name if layer_name == "missing" else model.layers[-2].name
    with pytest.raises(ValueError, match=r"4-D feature-map output.*'conv_2'.*Received: layer_name="):
        grad_cam(model, _images(1)[0], layer_name=name)


def test_overlay_bad_inputs_raise():
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"Received: heatmap.shape=\(5, 4\)"):
        overlay(image, np.zeros((5, 4)))
    with pytest.raises(ValueError, match="Received: alpha=1.5"):
        overlay(image, np.zeros((4, 5)), alpha=1.5)
    with pytest.raises(ValueError, match=r"Received: image.shape=\(4, 5, 2\)"):
        overlay(np.zeros((4, 5, 2)), np.zeros((4, 5)))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_works_on_the_project_model_builder(num_classes):
    from cnnlab.model import ModelConfig, build_model

    config = ModelConfig(image_size=(32, 32), conv_blocks=2, filters=4, dense_units=8, zoom=0.1, contrast=0.1)
    model = build_model(config, num_classes)
    assert last_conv_layer_name(model) == "conv_2"
    heatmap = grad_cam(model, _images(1)[0])
    assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32
    np.testing.assert_array_equal(heatmap, grad_cam(model, _images(1)[0]))


def test_grad_cam_traces_once_per_model_leaves_it_unchanged_and_lets_it_go():
    import gc
    import weakref

    from cnnlab.analysis import explain

    model = _model(3)
    images = _images(4)
    before = [(layer.name, getattr(layer, "activation", None)) for layer in model.layers]
    maps = [grad_cam(model, image) for image in images]
    again = grad_cam(model, images[0])
    assert np.array_equal(again, maps[0]) and not np.array_equal(maps[0], maps[1])
    assert len(explain._cam_functions[model]) == 1
    assert [(layer.name, getattr(layer, "activation", None)) for layer in model.layers] == before
    assert model.outputs[0] is model.layers[-1].output
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
