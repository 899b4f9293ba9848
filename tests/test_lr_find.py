"""The learning-rate finder: a suggestion inside the tested range that trains a model that converges."""

import numpy as np
import pytest

from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import train
from cnnlab.training.lr_find import find_learning_rate, suggest
from helpers import made_dataset, tiny_model_config, tiny_train_config


@pytest.mark.slow
def test_the_suggestion_lies_in_the_tested_range_and_trains_a_converging_model(make_dataset, run_store, cache_dir):
    root = make_dataset(per_class=24)
    result = find_learning_rate(
        root,
        tiny_model_config(),
        tiny_train_config(),
        workspace=Workspace(run_store, cache_dir),
        min_lr=1e-5,
        max_lr=1.0,
        num_steps=60,
    )
    rates = result.learning_rates
    assert 10 <= len(rates) <= 60 and len(result.losses) == len(rates) == len(result.smoothed_losses)
    assert rates == sorted(rates) and rates[0] == pytest.approx(1e-5)
    assert rates[0] <= result.suggested_learning_rate <= rates[-1]
    assert set(result.to_dict()) >= {"suggested_learning_rate", "learning_rates", "smoothed_losses"}

    config = tiny_model_config(learning_rate=result.suggested_learning_rate)
    run = train(root, config, tiny_train_config(epochs=4), workspace=Workspace(run_store, cache_dir))
    losses = [row.loss for row in run.history]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0]
    assert run.record.metrics.test_accuracy > 0.6  # three classes: chance is a third


def test_suggest_takes_a_tenth_of_the_best_rate_inside_the_range():
    rates = np.geomspace(1e-4, 1.0, 5)
    assert suggest(rates, [2.0, 1.5, 0.5, 3.0, 9.0]) == pytest.approx(1e-3)
    assert suggest(rates, [0.1, 1.5, 2.0, 3.0, 9.0]) == pytest.approx(1e-4)  # never below the first rate
    with pytest.raises(ValueError, match="not finite"):
        suggest(rates, [float("nan")] * 5)


def test_bad_ranges_are_refused(make_dataset, run_store, cache_dir):
    workspace = Workspace(run_store, cache_dir)
    with pytest.raises(ValueError, match="Received: min_lr=0.1, max_lr=0.01"):
        find_learning_rate(make_dataset(), tiny_model_config(), workspace=workspace, min_lr=0.1, max_lr=0.01)
    with pytest.raises(ValueError, match="Received: num_steps=3"):
        find_learning_rate(make_dataset(), tiny_model_config(), workspace=workspace, num_steps=3)


def test_the_finder_runs_on_a_version_of_a_dataset_made_in_the_app(run_store, cache_dir, tmp_path):
    made_dataset(tmp_path / "datasets")  # version 2 can be trained on, the latest (3) cannot
    workspace = Workspace(run_store, cache_dir, datasets=tmp_path / "datasets")
    result = find_learning_rate(
        "shots", tiny_model_config(), tiny_train_config(), workspace=workspace, num_steps=10, dataset_version=2
    )
    assert len(result.learning_rates) >= 1 and result.min_lr <= result.suggested_learning_rate <= result.max_lr
    with pytest.raises(ValueError, match="at least two classes with usable images"):
        find_learning_rate("shots", tiny_model_config(), tiny_train_config(), workspace=workspace, num_steps=10)
