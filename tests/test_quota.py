"""A hosted visitor's disk budget: what a sweep of several trials is expected to add to it."""

import pytest

from cnnlab import data
from cnnlab.model import count_params
from cnnlab.server import hosting, quota
from cnnlab.sweep import space_from_dict
from helpers import write_dataset


def space(**params):
    return space_from_dict({"params": params, "fixed": {"epochs": 1}})


def test_a_sweep_counts_every_trials_largest_model_and_each_image_setting_it_may_decode(tmp_path):
    cache = tmp_path / "cache"
    uploads = hosting.uploads_dir(cache, "s1")
    report = data.scan(write_dataset(uploads / "aaa", per_class=4), cache=cache)  # the visitor's own: 12 images
    searched = space(conv_blocks={"low": 1, "high": 3}, filters=[8, 16], image_size=[32, 48])
    most = max(count_params(model, 3) for model, _ in searched.corner_configs())
    # The most weights: one block of 16 filters (the flattened head sees the most features), at 48 px.
    assert most == count_params(searched.configs({"conv_blocks": 1, "filters": 16, "image_size": 48})[0], 3)
    at_32, at_48 = (data.prepared_bytes(report, (side, side), "rgb") for side in (32, 48))

    assert quota.sweep_bytes(report, searched, 5, cache, uploads) == runs(5, most) + at_48 + at_32
    assert quota.sweep_bytes(report, searched, 1, cache, uploads) == runs(1, most) + at_48  # one setting decoded
    data.prepare(report, (48, 48), cache=cache)  # decoded already: nothing more to add for it
    assert quota.sweep_bytes(report, searched, 5, cache, uploads) == runs(5, most) + at_32
    # A dataset that is not the visitor's upload (the sample, a catalog dataset) costs them no decoded images.
    shared = data.scan(write_dataset(tmp_path / "shared", per_class=4), cache=cache)
    assert quota.sweep_bytes(shared, searched, 5, cache, uploads) == runs(5, most)


def runs(trials: int, params: int) -> int:
    """Run folders of `trials` Adam trials in a row: float32 weights in `model.keras`, and in each
    checkpoint the weights and Adam's two moments; a completed trial keeps one checkpoint, the
    running one up to three (latest, best, and the next being written)."""
    completed, running = 4 * params * (1 + 3), 4 * params * (1 + 3 * 3)
    return (trials - 1) * completed + running


def test_a_range_of_image_sizes_counts_each_size_a_trial_may_draw(tmp_path):
    cache = tmp_path / "cache"
    uploads = hosting.uploads_dir(cache, "s1")
    report = data.scan(write_dataset(uploads / "aaa", per_class=2), cache=cache)
    searched = space(image_size={"low": 30, "high": 33}, color_mode=["rgb", "grayscale"])
    assert searched.values("image_size") == [30, 31, 32, 33] and searched.values("resize_mode") == ["stretch"]
    most = max(count_params(model, 3) for model, _ in searched.corner_configs())
    settings = [((side, side), mode) for side in (30, 31, 32, 33) for mode in ("rgb", "grayscale")]
    decoded = sorted((data.prepared_bytes(report, size, mode) for size, mode in settings), reverse=True)
    assert quota.sweep_bytes(report, searched, 3, cache, uploads) == runs(3, most) + sum(decoded[:3])
    assert quota.sweep_bytes(report, searched, 20, cache, uploads) == runs(20, most) + sum(decoded)


def test_a_sweep_over_the_budget_is_refused_with_what_to_do(tmp_path, run_store):
    usage = quota.session_usage(tmp_path / "cache", run_store, "s1", budget_mb=1)
    with pytest.raises(
        ValueError, match=r"^A sweep of 8 trials needs about 2\.0 MB but 1\.0 MB is left: .* or choose fewer trials"
    ):
        quota.check_room(usage, 2 * 2**20, "A sweep of 8 trials", "choose fewer trials or smaller image sizes")
