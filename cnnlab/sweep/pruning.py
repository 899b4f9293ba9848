"""The Keras callback that lets Optuna's pruner stop a hopeless trial.

Imported only when a trial trains, so importing `cnnlab.sweep` never imports Keras.
"""

from __future__ import annotations

from typing import Any

import keras


class OptunaPruning(keras.callbacks.Callback):
    """Reports `objective` to `trial` after each epoch (step = 0-based epoch) and honours the pruner.

    `pruned_at` is the 1-based epoch after which the pruner stopped training, or None.
    """

    def __init__(self, trial: Any, objective: str) -> None:
        super().__init__()
        self.trial = trial
        self.objective = objective
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        if self.objective not in logs:
            return
        self.trial.report(float(logs[self.objective]), epoch)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True
