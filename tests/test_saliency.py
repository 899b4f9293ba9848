"""Four explanation methods on one scale: shapes, ranges, bad input and a planted discriminative patch."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis.saliency import (  # noqa: E402
    METHODS,
    NOTES,
    check_methods,
    class_index_of,
    explain,
    explain_image,
    normalise,
    occlusion_patch,
    predicted_class,
)
from helpers import random_images, small_cnn  # noqa: E402


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("num_classes", [2, 3])
def test_each_map_has_the_image_shape_and_values_in_0_1(method, num_classes):
    model = small_cnn(num_classes, shape=(24, 40, 3), seed=0)
    heatmap = explain(model, random_images(1, (24, 40, 3))[0], method)
    assert heatmap.shape == (24, 40) and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0 and heatmap.max() > 0.0


@pytest.mark.parametrize("method", METHODS)
def test_each_method_highlights_the_planted_patch(planted_patch, method):
    model, images, labels, mask = planted_patch
    patched = images[labels == 1][:6]
    assert [predicted_class(model, image) for image in patched] == [1] * len(patched)
    share = mask.mean()  # 1/16 of the image
    for image in patched:
        heatmap = explain(model, image, method, class_index=1)
        inside = heatmap[mask].sum() / heatmap.sum()
        assert inside > 3 * share, f"{method}: {inside:.3f} of the map's mass in the patch"


def test_explain_image_times_each_method_for_the_predicted_class(planted_patch):
    model, images, labels, _ = planted_patch
    explanations = explain_image(model, images[1], "all")
    assert [e.method for e in explanations] == list(METHODS)
    assert {e.class_index for e in explanations} == {1}
    assert all(e.seconds > 0 and e.note == NOTES[e.method] and e.label for e in explanations)
    # Any other class can be asked for, and each map is then that class's.
    other = explain_image(model, images[1], ["occlusion", "gradcam"], class_index=0)
    assert [e.method for e in other] == ["gradcam", "occlusion"] and {e.class_index for e in other} == {0}


def test_smoothgrad_is_reproducible_with_its_seed():
    model, image = small_cnn(3, seed=0), random_images(1)[0]
    np.testing.assert_array_equal(explain(model, image, "smoothgrad"), explain(model, image, "smoothgrad"))
    assert not np.array_equal(explain(model, image, "smoothgrad"), explain(model, image, "smoothgrad", seed=1))


def test_methods_and_class_names_are_checked():
    assert check_methods("all") == METHODS
    assert check_methods(["smoothgrad", "gradcam", "smoothgrad"]) == ("gradcam", "smoothgrad")
    assert class_index_of(["cats", "dogs"], "dogs") == 1


@pytest.mark.parametrize(
    ("call", "received"),
    [
        (lambda m, x: explain(m, x, "lime"), "Received: method='lime'"),
        (lambda m, x: explain(m, x, "all"), "Received: method='all'"),
        (lambda m, x: explain_image(m, x, ["gradcam", "shap"]), "Received: method='shap'"),
        (lambda m, x: explain_image(m, x, []), "Received: methods=[]"),
        (lambda m, x: explain(m, x, "occlusion", class_index=3), "Received: class_index=3"),
        (lambda m, x: explain(m, x, "smoothgrad", class_index=-1), "Received: class_index=-1"),
        (lambda m, x: explain(m, x[:10], "integrated_gradients"), "Received: image.shape=(10, 32, 3)"),
        (lambda m, x: explain(m, "not an image", "gradcam"), "Received: image.shape=()"),
        (lambda m, x: class_index_of(["cats", "dogs"], "owls"), "Received: class_name='owls'"),
    ],
)
def test_bad_input_is_one_line_ending_in_received(call, received):
    model, image = small_cnn(3, seed=0), random_images(1)[0]
    with pytest.raises(ValueError) as caught:
        call(model, image)
    message = str(caught.value)
    assert "\n" not in message and message.endswith(received)


def test_normalise_shares_one_scale():
    ramp = np.arange(100, dtype=np.float32).reshape(10, 10)
    # Scaling a map does not change it: every method's map is read on the same 0-1 scale.
    np.testing.assert_allclose(normalise(ramp), normalise(ramp * 1000.0), rtol=1e-6)
    assert normalise(-ramp).max() == 0.0 and normalise(ramp).max() == 1.0


def test_occlusion_patches_cover_the_whole_image():
    assert occlusion_patch(64, 64) == (8, 4)
    assert occlusion_patch(8, 200) == (2, 1)
    model = small_cnn(3, shape=(30, 30, 3), seed=0)
    heatmap = explain(model, random_images(1, (30, 30, 3))[0], "occlusion")
    assert heatmap.shape == (30, 30)


def test_the_maps_figure_puts_every_map_on_one_colour_bar():
    from cnnlab.charts import explanations_figure, randomisation_figure

    image = random_images(1)[0]
    maps = [(name, np.linspace(0, 1, 32 * 32).reshape(32, 32)) for name in ("a", "b", "c")]
    fig = explanations_figure(image, maps)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3 and {t.coloraxis for t in heatmaps} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == (0.0, 1.0)
    with pytest.raises(ValueError, match=r"Received: a shape=\(4, 4\)$"):
        explanations_figure(image, [("a", np.zeros((4, 4)))])
    assert len(randomisation_figure(["dense", "conv"], {"x": [0.9, 0.1]}).data) == 1
