"""Class imbalance: the weights `auto` applies, and what they do to a 10:1 dataset's balanced accuracy."""

import numpy as np
import pytest

from cnnlab import data
from cnnlab.data.imbalance import class_weights, imbalance_advice
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import TrainConfig, train
from helpers import image_bytes, tiny_model_config, tiny_train_config


def test_auto_weights_only_past_one_and_a_half_times():
    assert class_weights([0] * 15 + [1] * 10, 2, "auto") is None  # 1.5x: not yet
    assert class_weights([0] * 16 + [1] * 10, 2, "auto") == pytest.approx({0: 26 / 32, 1: 26 / 20})
    assert class_weights([0] * 10 + [1] * 10, 2, "balanced") == {0: 1.0, 1: 1.0}
    assert class_weights([0] * 100 + [1] * 10, 2, "none") is None
    # Every class adds the same total weight to the loss.
    weights = class_weights([0] * 50 + [1] * 5 + [2] * 20, 3, "auto")
    assert 50 * weights[0] == pytest.approx(5 * weights[1]) == pytest.approx(20 * weights[2])
    with pytest.raises(ValueError, match="Received: class_weight='inverse'"):
        class_weights([0, 1], 2, "inverse")
    with pytest.raises(ValueError, match="Received: class_weight='sometimes'"):
        TrainConfig(class_weight="sometimes")


def test_the_data_warning_says_what_cnnlab_does(make_dataset):
    report = data.scan(make_dataset(classes=("cats", "dogs"), per_class=20))
    assert not any("imbalanced" in note for note in data.report_warnings(report))
    advice = imbalance_advice({"cats": 200, "dogs": 20})
    assert "10.0x" in advice and "weights each class inversely" in advice and "balanced accuracy" in advice
    assert imbalance_advice({"cats": 15, "dogs": 10}) is None


@pytest.fixture
def ten_to_one(tmp_path):
    """200 'common' and 20 'rare' images whose colours differ only a little under heavy noise."""
    rng = np.random.default_rng(0)
    for name, color, n in (("common", (120, 120, 120), 200), ("rare", (140, 110, 120), 20)):
        folder = tmp_path / "imbalanced" / name
        folder.mkdir(parents=True)
        for i in range(n):
            pixels = np.clip(np.asarray(color) + rng.integers(-50, 51, (32, 32, 3)), 0, 255).astype(np.uint8)
            (folder / f"{name}_{i:03d}.png").write_bytes(image_bytes(pixels))
    return tmp_path / "imbalanced"


@pytest.mark.slow
def test_auto_weights_a_ten_to_one_dataset_and_balanced_accuracy_does_not_drop(ten_to_one, run_store, cache_dir):
    runs = {
        mode: train(
            ten_to_one,
            tiny_model_config(),
            tiny_train_config(epochs=3, class_weight=mode, validation_split=0.2, test_split=0.3),
            workspace=Workspace(run_store, cache_dir),
        )
        for mode in ("none", "auto")
    }
    assert runs["none"].record.class_weights is None
    weights = runs["auto"].record.class_weights
    assert weights["rare"] == pytest.approx(10 * weights["common"], rel=0.1)
    metrics = {mode: run.record.metrics for mode, run in runs.items()}
    for values in metrics.values():
        assert 0.0 <= values.test_balanced_accuracy <= 1.0 and 0.0 <= values.test_macro_f1 <= 1.0
    assert metrics["auto"].test_balanced_accuracy >= metrics["none"].test_balanced_accuracy
