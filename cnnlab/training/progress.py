"""The Keras callback that turns a training into a run: epoch rows, batch progress, stop requests
and the best weights.

Imported only when a training starts, so importing `cnnlab.training.engine` never imports Keras.
"""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from cnnlab.runs.record import HistoryRow
from cnnlab.runs.store import Run
from cnnlab.training.hooks import TrainingHooks


class TrainingProgress(keras.callbacks.Callback):
    """Records each epoch in `run`, reports batches, honours a stop request, keeps the best weights.

    The best weights (lowest validation loss, or training loss without a validation split) are
    kept in memory and saved to the run after each improving epoch, so a stop, an early stop or
    a crash all leave the best model saved. The `hooks`' `on_epoch` gets each epoch's row,
    `on_batch` each batch's progress; setting their `stop_event` ends training after the current
    batch. `phase` ("head", or "fine_tune" once a backbone's fine-tuning starts) goes into every
    row. A training resumed or continued from a saved state starts after `initial_epoch` epochs.
    """

    def __init__(
        self,
        run: Run,
        *,
        steps: int,
        num_train: int,
        batch_size: int,
        epochs: int,
        hooks: TrainingHooks = TrainingHooks(),
        initial_epoch: int = 0,
    ) -> None:
        super().__init__()
        self.run, self.steps, self.num_train, self.epochs = run, steps, num_train, epochs
        self.batch_size = batch_size
        self.on_epoch, self.on_batch, self.stop_event = hooks.on_epoch, hooks.on_batch, hooks.stop_event
        self.best_loss, self.best_epoch = np.inf, 0
        self.best_weights: list[np.ndarray] | None = None
        self.started = self.epoch_started = self.last_batch = time.perf_counter()
        self.initial_epoch = self.epochs_done = initial_epoch
        self.batches_done = 0
        self.stopped_by_user = False
        self.phase = "head"

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch_started = self.last_batch = time.perf_counter()
        self.batches_done = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.last_batch = time.perf_counter()
        self.batches_done = batch + 1
        if self.on_batch is not None:
            done = self.epochs_done * self.steps + batch + 1
            done_here = done - self.initial_epoch * self.steps  # the rate is this process's
            elapsed = self.last_batch - self.started
            total = self.epochs * self.steps
            self.on_batch(
                {
                    "epoch": self.epochs_done + 1,
                    "batch": batch + 1,
                    "steps": self.steps,
                    "fraction": done / total,
                    "elapsed_s": elapsed,
                    "eta_s": elapsed / done_here * (total - done),
                }
            )
        # Checked after reporting, so a stop asked for while this batch was reported is honoured now.
        self._stop_if_asked()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        train_seconds = self.last_batch - self.epoch_started
        # Batches are full except the last of an epoch, so this counts a stopped epoch's images exactly.
        images_seen = min(self.batches_done * self.batch_size, self.num_train)
        row = HistoryRow(
            epoch=epoch + 1,
            loss=_logged(logs, "loss"),
            accuracy=_logged(logs, "accuracy"),
            val_loss=_logged(logs, "val_loss"),
            val_accuracy=_logged(logs, "val_accuracy"),
            learning_rate=float(np.asarray(self.model.optimizer.learning_rate)),
            seconds=round(time.perf_counter() - self.epoch_started, 3),
            images_seen=images_seen,
            images_per_s=round(images_seen / max(train_seconds, 1e-9), 1),
            partial=self.batches_done < self.steps,
            phase=self.phase,
        )
        self.epochs_done = epoch + 1
        if row.loss is not None and not np.isfinite(row.loss):
            self.model.stop_training = True  # diverged (as Keras's TerminateOnNaN): no later epoch learns
        val_loss = row.val_loss if row.val_loss is not None else row.loss
        if val_loss is not None and np.isfinite(val_loss) and val_loss < self.best_loss:
            self.best_loss, self.best_epoch = val_loss, epoch + 1
            self.best_weights = self.model.get_weights()
            self.run.save_model(self.model)
        self.run.append_history(row)
        if self.on_epoch is not None:
            self.on_epoch(row.to_dict())
        # A stop asked for during validation or the epoch report ends training before the next epoch.
        if epoch + 1 < self.epochs:
            self._stop_if_asked()

    def _stop_if_asked(self) -> None:
        if self.stop_event is not None and self.stop_event.is_set():
            self.stopped_by_user = True
            self.model.stop_training = True


def _logged(logs: dict[str, Any], name: str) -> float | None:
    """A metric of Keras's epoch logs (validation ones are there only with a validation split)."""
    return float(logs[name]) if name in logs else None
