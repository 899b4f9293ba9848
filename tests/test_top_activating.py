"""The training images that excite a channel most: against a brute-force pass, and the run's cache."""

import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnlab.analysis import top_activating  # noqa: E402
from cnnlab.analysis.top_activating import TOP_K, inspect_folder, top_images  # noqa: E402
from cnnlab.runs.store import RunStore  # noqa: E402
from cnnlab.settings import DEMO_RUN_DIR  # noqa: E402
from helpers import layer_output  # noqa: E402


@pytest.fixture
def own_run(trained_run, tmp_path):
    """A private copy of the shared tiny run (one block of 4 filters), so its inspect cache is this test's."""
    target = tmp_path / "models" / trained_run["run"].id
    shutil.copytree(trained_run["run"].path, target)
    run = RunStore(tmp_path / "models").get(target.name)
    return run, run.load_model(), trained_run["cache"]


def brute_force_means(model, layer: str, images: np.ndarray, channel: int) -> np.ndarray:
    """One forward pass per image, through the plain Keras route."""
    return np.array([layer_output(model, layer, image[np.newaxis])[0, ..., channel].mean() for image in images])


@pytest.mark.parametrize(("layer", "channel"), [("relu_1", 1), ("pool_1", 3)])
def test_top_images_are_the_highest_mean_activations_by_brute_force(own_run, layer, channel):
    from cnnlab.analysis.evaluate import open_split

    run, model, cache = own_run
    with open_split(run, cache=cache) as (prepared, parts):
        train = parts["train"]
        means = brute_force_means(model, layer, np.asarray(prepared.images[train]), channel)
    expected = train[np.argsort(-means, kind="stable")[:TOP_K]]
    top = top_images(run, model, layer, channel, cache=cache)
    assert top.paths == [prepared.report.files[i] for i in expected]
    assert top.labels == [prepared.report.class_names[prepared.labels[i]] for i in expected]
    np.testing.assert_allclose(top.scores, np.sort(means)[::-1][:TOP_K], atol=1e-5)
    np.testing.assert_array_equal(top.images, prepared.images[expected])


def test_the_channel_means_are_cached_with_the_run_and_reused(own_run, monkeypatch):
    run, model, cache = own_run
    first = top_images(run, model, "conv_1", 0, cache=cache)
    (cached,) = (run.path / "inspect").glob("conv_1-*.npy")
    means = np.load(cached)
    assert means.shape == (len(run.split()["train"]), 4)  # every channel at once

    def no_second_pass(*args, **kwargs):
        raise AssertionError("the training split was passed through the model again")

    monkeypatch.setattr(top_activating, "channel_means", no_second_pass)
    other = top_images(run, model, "conv_1", 3, cache=cache)
    np.testing.assert_allclose(first.scores, np.sort(means[:, 0])[::-1][:TOP_K])
    np.testing.assert_allclose(other.scores, np.sort(means[:, 3])[::-1][:TOP_K])


def test_a_new_model_file_recomputes_the_means_and_drops_the_old_ones(own_run):
    run, model, cache = own_run
    top_images(run, model, "conv_1", 0, cache=cache)
    (old,) = (run.path / "inspect").glob("conv_1-*.npy")
    run.save_model(model)  # as a training does after a better epoch
    top_images(run, model, "conv_1", 0, cache=cache)
    (new,) = (run.path / "inspect").glob("conv_1-*.npy")
    assert new.name != old.name


def test_the_demo_runs_means_go_to_the_cache_not_the_repository(tmp_path):
    demo = next(run for run in RunStore(tmp_path / "models", demo=DEMO_RUN_DIR).list() if run.is_demo)
    assert inspect_folder(demo, tmp_path / "cache") == tmp_path / "cache" / "inspect" / demo.id


def test_a_channel_out_of_range_is_a_clear_error(own_run):
    run, model, cache = own_run
    with pytest.raises(ValueError, match=r"channel must be an int from 0 to 3 .*Received: channel=4"):
        top_images(run, model, "conv_1", 4, cache=cache)
