"""Learning-rate schedules: each one changes the rate recorded per epoch as it says."""

import numpy as np
import pytest

from cnnlab.runs.store import RunStore
from cnnlab.runs.workspace import Workspace
from cnnlab.training.engine import TrainConfig, train
from cnnlab.training.schedules import MIN_LEARNING_RATE, PLATEAU_FACTOR, PLATEAU_PATIENCE, cosine_rate
from helpers import image_bytes, tiny_model_config, tiny_train_config

RATE = 1e-2


def _noise_dataset(root):
    """Random images in random classes: nothing to learn, so the validation loss soon stops improving."""
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        for i in range(16):
            (root / name / f"{i}.png").write_bytes(image_bytes(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)))
    return root


def _rates(tmp_path, schedule: str, epochs: int = 6):
    run = train(
        _noise_dataset(tmp_path / f"data-{schedule}"),
        tiny_model_config(image_size=(16, 16), learning_rate=RATE),
        tiny_train_config(epochs=epochs, lr_schedule=schedule),
        workspace=Workspace(RunStore(tmp_path / "runs"), tmp_path / "cache"),
    )
    return [row.learning_rate for row in run.history], [row.val_loss for row in run.history]


def test_constant_keeps_the_rate(tmp_path):
    rates, _ = _rates(tmp_path, "constant", epochs=3)
    assert rates == pytest.approx([RATE] * 3)


def test_cosine_decays_the_rate_each_epoch(tmp_path):
    rates, _ = _rates(tmp_path, "cosine", epochs=4)
    assert rates == pytest.approx([cosine_rate(e, 4, RATE) for e in range(4)], rel=1e-5)
    assert rates[0] == pytest.approx(RATE) and rates[-1] < 0.2 * RATE


@pytest.mark.slow
def test_reduce_on_plateau_halves_the_rate_after_epochs_without_progress(tmp_path):
    rates, val_losses = _rates(tmp_path, "reduce_on_plateau", epochs=8)
    # Replay Keras's rule on the recorded validation losses: each epoch's row holds the rate it trained with.
    expected, rate, best, wait = [], RATE, np.inf, 0
    for loss in val_losses:
        expected.append(rate)
        if loss < best - 1e-4:
            best, wait = loss, 0
        else:
            wait += 1
            if wait >= PLATEAU_PATIENCE:
                rate, wait = max(rate * PLATEAU_FACTOR, MIN_LEARNING_RATE), 0
    assert rates == pytest.approx(expected, rel=1e-5)
    assert min(rates) < RATE, "the validation loss never stalled, so the schedule was not exercised"


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="Received: lr_schedule='step'"):
        TrainConfig(lr_schedule="step")
