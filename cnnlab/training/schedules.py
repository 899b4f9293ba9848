"""Learning-rate schedules over epochs, as Keras callbacks."""

from __future__ import annotations

import math

from cnnlab.common.checks import check_choice

LR_SCHEDULES = ("constant", "reduce_on_plateau", "cosine")
# reduce_on_plateau: halve the rate after this many epochs without a better validation loss.
PLATEAU_FACTOR, PLATEAU_PATIENCE, MIN_LEARNING_RATE = 0.5, 2, 1e-6


def cosine_rate(epoch: int, epochs: int, initial: float) -> float:
    """Cosine decay from `initial` at epoch 0 towards zero after the last epoch (0-based `epoch`)."""
    return initial * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def schedule_callbacks(schedule: str, learning_rate: float, epochs: int, monitor: str = "val_loss") -> list:
    """The Keras callbacks that apply `schedule` (none for "constant")."""
    import keras

    check_choice("lr_schedule", schedule, LR_SCHEDULES)
    if schedule == "reduce_on_plateau":
        return [
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, factor=PLATEAU_FACTOR, patience=PLATEAU_PATIENCE, min_lr=MIN_LEARNING_RATE
            )
        ]
    if schedule == "cosine":
        return [keras.callbacks.LearningRateScheduler(lambda epoch, _rate: cosine_rate(epoch, epochs, learning_rate))]
    return []
