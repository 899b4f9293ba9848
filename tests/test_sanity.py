"""Sanity checks of explanations: cascading randomisation and masking the map's region."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis.sanity import SIMILAR, masking_check, randomisation_check, run_masking_check, spearman  # noqa: E402
from helpers import random_images, small_cnn  # noqa: E402


def test_spearman_is_a_rank_correlation():
    a = np.arange(16, dtype=float).reshape(4, 4)
    assert spearman(a, a**3) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert spearman(a, np.zeros_like(a)) == 0.0
    ties = np.array([0.0, 0.0, 1.0, 2.0])
    assert spearman(ties, np.array([0.0, 0.0, 5.0, 9.0])) == pytest.approx(1.0)


def test_randomising_the_model_changes_integrated_gradients(planted_patch):
    model, images, labels, _ = planted_patch
    before = [w.copy() for w in model.get_weights()]
    check = randomisation_check(model, images[labels == 1][0], ["integrated_gradients", "gradcam"])
    # From the classifier down: dense, conv_2, conv_1; the last step has every layer random.
    assert [step.layer.split("_")[0] for step in check.steps] == ["dense", "conv", "conv"]
    assert [step.layer for step in check.steps][1:] == ["conv_2", "conv_1"]
    assert check.class_index == 1
    assert check.final("integrated_gradients") < 0.3
    assert check.explains("integrated_gradients") and "depends on the trained weights" in check.verdict(
        "integrated_gradients"
    )
    # The user's model is never changed.
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
    assert set(check.to_dict()["verdicts"]) == {"gradcam", "integrated_gradients"}


def test_a_map_that_ignores_the_model_is_labelled_not_explaining():
    from cnnlab.analysis.sanity import RandomisationCheck, RandomisationStep

    check = RandomisationCheck(0, ("occlusion",), (RandomisationStep("dense", {"occlusion": SIMILAR + 0.3}),))
    assert not check.explains("occlusion") and check.verdict("occlusion").startswith("not explaining this model")


def test_randomisation_groups_many_layers_into_max_steps():
    model = small_cnn(3, seed=0)
    check = randomisation_check(model, random_images(1)[0], "occlusion", max_steps=2)
    assert len(check.steps) == 2 and check.steps[-1].layer == "conv_1"
    with pytest.raises(ValueError, match=r"Received: max_steps=0$"):
        randomisation_check(model, random_images(1)[0], "occlusion", max_steps=0)


def test_masking_the_maps_region_hurts_more_than_a_random_region(planted_patch):
    model, images, labels, _ = planted_patch
    check = masking_check(model, images, labels, "gradcam", fraction=0.2)
    assert check.num_images == len(images) and check.accuracy == 1.0
    assert check.map_masked_accuracy < check.random_masked_accuracy
    assert check.points_at_evidence and check.to_dict()["points_at_evidence"]


@pytest.mark.parametrize(
    ("kwargs", "received"),
    [
        ({"method": "lime"}, "Received: method='lime'"),
        ({"fraction": 1.5}, "Received: fraction=1.5"),
        ({"labels": np.array([0])}, "Received: len(images)=2, len(labels)=1"),
    ],
)
def test_masking_check_bad_input(kwargs, received):
    arguments = {"images": random_images(2), "labels": np.array([0, 1]), **kwargs}
    with pytest.raises(ValueError) as caught:
        masking_check(small_cnn(3, seed=0), **arguments)
    assert str(caught.value).endswith(received) and "\n" not in str(caught.value)


def test_run_masking_check_uses_the_runs_test_split(trained_run):
    run = trained_run["run"]
    check = run_masking_check(run, run.load_model(), cache=trained_run["cache"], max_images=5)
    assert check.num_images == 5 and 0.0 <= check.map_masked_accuracy <= 1.0


def test_randomisation_reaches_into_a_nested_backbone_and_leaves_it_unchanged():
    from helpers import nested_model

    model, backbone = nested_model()
    before = [w.copy() for w in backbone.get_weights()]
    image = random_images(1, (24, 24, 3))[0]
    check = randomisation_check(model, image, ["gradcam", "smoothgrad"], max_steps=4)
    assert [step.layer for step in check.steps] == [
        "head_conv",
        "backbone/block3_conv",
        "backbone/block2_conv",
        "backbone/block1_conv",
    ]
    for old, new in zip(before, backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)
